"""The headline table of a family's run: per endpoint, the few figures a researcher reads first.

Per endpoint (outcome and horizon) of the held-out split: AUROC with its 95% interval, its ratio
to the oracle's (the simulator's true risk on the same patients), the calibration slope beside the
oracle's, and, where the experiment measured it, each predictor's added value (ΔAUROC with its
interval). Logged at the top of every family's run: as its description (which the MLflow UI shows
above everything else), as an MLflow table and as a Markdown artifact. Pure functions of the
run's metrics, named as in :mod:`models.names`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.names import HEADLINE_METRICS, added_value_metric, endpoint_metric

HEADLINE_ARTIFACT = "headline.md"
HEADLINE_TABLE = "headline.json"


def headline_frame(metrics: dict[str, float], endpoints, predictors=(), *, coverage_metric=None) -> pd.DataFrame:
    """One row per endpoint with a held-out AUROC.

    Parameters
    ----------
    metrics : dict of str to float
        The run's metrics.
    endpoints : sequence of str
        ``thyroid_24m``, ... in display order.
    predictors : sequence of str
        Predictors whose added value was measured (``added_<predictor>_...`` metrics).
    coverage_metric : callable, optional
        ``endpoint -> metric name`` of the coverage of the true risk by the risks' intervals.

    Returns
    -------
    DataFrame
        Numbers, NaN where not measured: ``endpoint``, ``events``, ``auroc``, ``auroc_lo``,
        ``auroc_hi``, ``auroc_over_oracle``, ``calibration_slope``, ``oracle_calibration_slope``,
        per predictor ``delta_auroc_<p>`` (``_lo``, ``_hi``), and ``interval_coverage``.
    """
    rows = []
    for e in endpoints:
        get = lambda key: float(metrics.get(key, np.nan))  # noqa: E731
        if not np.isfinite(get(endpoint_metric(e, "auroc"))):
            continue
        row = {"endpoint": e, "events": get(endpoint_metric(e, "events"))}
        row |= {m: get(endpoint_metric(e, m)) for m in HEADLINE_METRICS}
        for p in predictors:
            row |= {f"delta_auroc_{p}{end}": get(added_value_metric(p, e, f"delta_auroc{end}"))
                    for end in ("", "_lo", "_hi")}
        if coverage_metric is not None:
            row["interval_coverage"] = get(coverage_metric(e))
        rows.append(row)
    return pd.DataFrame(rows)


def _number(value: float, digits: int, sign: bool = False) -> str:
    if not np.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def headline_markdown(frame: pd.DataFrame, predictors=()) -> str:
    """The headline table as Markdown ("—" where not measured)."""
    coverage = "interval_coverage" in frame
    header = ["endpoint", "onsets", "AUROC (95% CI)", "AUROC / oracle's", "calibration slope (oracle's)",
              *[f"ΔAUROC {p} (95% CI)" for p in predictors]]
    if coverage:
        header.append("true risk inside the 95% risk interval (benchmark, alemtuzumab arm)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in frame.to_dict("records"):
        auroc = _number(r["auroc"], 3) + (f" ({r['auroc_lo']:.3f}–{r['auroc_hi']:.3f})"
                                          if np.isfinite(r["auroc_lo"]) else "")
        cells = [r["endpoint"], _number(r["events"], 0), auroc, _number(r["auroc_over_oracle"], 3),
                 f"{_number(r['calibration_slope'], 2)} ({_number(r['oracle_calibration_slope'], 2)})"]
        for p in predictors:
            d, lo, hi = (r[f"delta_auroc_{p}{end}"] for end in ("", "_lo", "_hi"))
            cells.append(_number(d, 4, sign=True) + (f" ({lo:+.4f} to {hi:+.4f})" if np.isfinite(lo) else ""))
        if coverage:
            cells.append("—" if not np.isfinite(r["interval_coverage"]) else f"{r['interval_coverage']:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_description(*, experiment: str, family: str, version: str | None, table: str, notes: str = "") -> str:
    """The description of a family's run (MLflow shows it first on the run page): what the run is, then the table."""
    registered = f", registered as version {version}" if version else ""
    return (f"**{experiment} / {family}**{registered}. Held-out split, IPCW; the oracle is the simulator's true "
            f"risk on the same patients. Everything else: metrics (filter by prefix: `bench_`, `ext_`, `truth_`, "
            f"`contrast_`, `added_`, `sub_`), `model_card/model_card.md` and the plots under Artifacts."
            f"{(' ' + notes) if notes else ''}\n\n{table}\n")
