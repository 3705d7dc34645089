"""Model cards (Markdown and HTML) for registered versions, following TRIPOD+AI where it applies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import FEATURE_NAMES, endpoint_parts

CARD_METRICS = ("auroc", "oracle_auroc", "auroc_over_oracle", "auprc", "brier", "calibration_slope",
                "calibration_intercept", "observed_over_expected", "ici", "mean_abs_risk_error", "events")


@dataclass(frozen=True)
class ModelCard:
    markdown: str
    html: str


def _value(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.0f}" if key.endswith("events") else f"{value:.3f}"


def _with_interval(metrics: dict, key: str) -> str:
    text = _value(metrics, key)
    if f"{key}_lo" in metrics:
        text += f" ({metrics[f'{key}_lo']:.3f}–{metrics[f'{key}_hi']:.3f})"
    return text


def performance_table(metrics: dict, endpoints, prefix: str = "") -> str:
    """Markdown table of the card's metrics per endpoint (95% bootstrap intervals where computed)."""
    header = ("| endpoint | AUROC (95% CI) | oracle AUROC | AUROC / oracle | AUPRC (95% CI) | Brier (IPCW) | "
              "calibration slope | calibration intercept | O/E | ICI | mean abs. error vs true risk | events |")
    rows = [header, "|" + "---|" * 12]
    for e in endpoints:
        p = f"{prefix}{e}_"
        rows.append("| " + " | ".join([
            e, _with_interval(metrics, f"{p}auroc"), _value(metrics, f"{p}oracle_auroc"),
            _value(metrics, f"{p}auroc_over_oracle"), _with_interval(metrics, f"{p}auprc"),
            _value(metrics, f"{p}brier"), _value(metrics, f"{p}calibration_slope"),
            _value(metrics, f"{p}calibration_intercept"), _value(metrics, f"{p}observed_over_expected"),
            _value(metrics, f"{p}ici"), _value(metrics, f"{p}mean_abs_risk_error"), _value(metrics, f"{p}events"),
        ]) + " |")
    return "\n".join(rows)


def model_card(*, name: str, version: str, family: str, spec, config, simulator, metrics: dict,
               subgroup_rows: pd.DataFrame) -> ModelCard:
    """Build the card of one registered version from its training run's config and metrics."""
    import markdown

    endpoints = config.endpoints
    il21 = simulator.risk["thyroid"].il21
    external = "\n".join(
        f"### External: {c.name} ({c.label()})\n\n{performance_table(metrics, endpoints, f'ext_{c.name}_')}\n"
        for c in config.external_cohorts)
    subgroups = "—"
    if len(subgroup_rows):
        shown = subgroup_rows.copy()
        for column in ("auroc", "calibration_slope", "calibration_intercept", "observed_over_expected"):
            shown[column] = shown[column].map(lambda v: "—" if not np.isfinite(v) else f"{v:.3f}")
        subgroups = ("| subgroup | endpoint | n | events | AUROC | calibration slope | calibration intercept | O/E |\n"
                     "|---|---|---|---|---|---|---|---|\n" + "\n".join(
                         f"| {r.subgroup} | {r.endpoint} | {r.n} | {r.events:.0f} | {r.auroc} | {r.calibration_slope} | "
                         f"{r.calibration_intercept} | {r.observed_over_expected} |" for r in shown.itertuples()))
    horizons = sorted({endpoint_parts(e)[1] for e in endpoints})
    text = f"""# Model card: {name} version {version} ({family})

**Research use only, on synthetic data. Not for clinical decisions.**

## Intended use (TRIPOD+AI 3, 5)
Estimates, before a course of alemtuzumab for relapsing–remitting multiple sclerosis, each patient's
risk of a thyroid disorder and of immune thrombocytopenic purpura (ITP) by {", ".join(f"{h}" for h in horizons)}
months after the first course, with a SHAP explanation of every risk (log-odds scale:
base value + sum of SHAP values = logit(risk)). Meant for research on risk communication and
monitoring; it has never seen a real patient.

## Model (TRIPOD+AI 10, 12)
- Family `{family}`: estimator `{spec.estimator}`, censoring `{spec.censoring}` (ipcw: one classifier per
  endpoint on patients whose status at the horizon is known, weighted by inverse probability of
  censoring; ignore: censored patients counted as non-events), calibration `{spec.calibration}`
  (platt: recalibrated on a held-out {config.calibration_fraction:.0%} of the training split).
- Inputs: {", ".join(f"`{f}`" for f in FEATURE_NAMES)}; IL-21 is read as a z-score within its assay
  (`il21_assay`). Missing optional inputs are allowed (unknown).
- Experiment `{config.name}`; training cohorts {", ".join(c.label() for c in config.train_cohorts)};
  held-out test share {config.test_fraction:.0%}.

## Data (TRIPOD+AI 6, 7, 8)
Synthetic cohorts from the project's simulator (`experiments/cohorts.yaml`), whose every assumption
cites clinical-facts.md and is logged with the training run. Arms, baseline distributions, follow-up,
drop-out and the incidence of each outcome per arm match the published trials (CAMMS223, CARE-MS I and
II, the 72-month extension) within stated tolerances (`autorisk cohort-report`). IL-21 effect: up to an
odds ratio of {il21.max_odds_ratio:g} above a threshold of {il21.threshold_pg_ml:g} pg/mL (legacy kit),
after alemtuzumab only. Simulator overrides in this experiment: {config.simulator_overrides or "none"}.

## Performance on the held-out test split (TRIPOD+AI 23)
95% intervals: {config.bootstrap} bootstrap resamples. Time-dependent AUROC, Brier and calibration
use IPCW weights; the oracle is the simulator's exact risk on the same patients.

{performance_table(metrics, endpoints)}

## Benchmark cohort: {config.benchmark_cohort.label()}, never used in training

{performance_table(metrics, endpoints, "bench_")}

{external}
## Subgroups (TRIPOD+AI 23b)

{subgroups}

## Limitations (TRIPOD+AI 27)
- The data are synthetic: performance here says how well the model recovers the simulator's risk
  function, not how it would perform in patients.
- The predictive value of IL-21 is contested (clinical-facts.md §3); the simulator encodes one
  reading. Compare with the `il21-no-effect` experiment.
- Risk by 48 months is learned only from cohorts followed that long (the 72-month extension, all
  on alemtuzumab): 48-month risks on interferon are extrapolated.
- Values outside the training ranges are scored with a warning; the risks may then be unreliable.
"""
    html = ("<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{name} v{version} model card</title><style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}"
            "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
            "</head><body>" + markdown.markdown(text, extensions=["tables"]) + "</body></html>")
    return ModelCard(markdown=text, html=html)
