"""A validation's report as Markdown and as one self-contained HTML page (plots embedded; nothing loads from
elsewhere). Pure functions of the report dict of :mod:`pipelines.validate`."""

from __future__ import annotations

import base64
import html
import io

from markdown import markdown as render_markdown

from features.schema import RESEARCH_NOTICE

COLOURS = {"alemtuzumab": "#b2182b", "interferon_beta_1a": "#2166ac", "all": "#333333"}


def _pct(value, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _num(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(m: dict, key: str, fmt) -> str:
    if m.get(key) is None:
        return "—"
    lo, hi = m.get(f"{key}_lo"), m.get(f"{key}_hi")
    return fmt(m[key]) + ("" if lo is None or hi is None else f" ({fmt(lo)}–{fmt(hi)})")


def metrics_table(metrics: list[dict], outcome: str) -> str:
    """Markdown: one row per treatment and horizon of ``outcome``."""
    lines = ["| treatment | month | patients | onsets by then | observed risk (95% CI) | mean predicted | O/E (95% CI) | "
             "calibration slope (95% CI) | calibration intercept | ICI / E50 / E90 | AUROC (95% CI) | Brier | IPA |",
             "|" + "---|" * 13]
    for m in (m for m in metrics if m["outcome"] == outcome):
        observed = "—" if m["observed_risk"] is None else (
            f"{_pct(m['observed_risk'])} ({_pct(m['observed_lo'])}–{_pct(m['observed_hi'])})")
        ici = "—" if m.get("ici") is None else (f"{100 * m['ici']:.2f} / {100 * m['e50']:.2f} / "
                                                f"{100 * m['e90']:.2f} pts")
        lines.append(f"| {m['treatment']} | {m['horizon_months']} | {m['n']:,} | {m['events']:,} | {observed} | "
                     f"{_pct(m['mean_predicted'])} | {_interval(m, 'o_e', _num)} | "
                     f"{_interval(m, 'calibration_slope', _num)} | {_interval(m, 'calibration_intercept', _num)} | "
                     f"{ici} | {_interval(m, 'auroc', lambda v: f'{v:.3f}')} | {_num(m['brier'], 4)} | "
                     f"{_num(m['ipa'], 3)} |")
    return "\n".join(lines)


def to_markdown(report: dict, *, title: str) -> str:
    """The report as Markdown: the model, the cohort, the warnings and one table per outcome."""
    model, cohort = report["model"], report["cohort"]
    patients = ", ".join(f"{arm} {n:,}" for arm, n in cohort["patients"].items())
    parts = [f"# {title}", "", f"> {RESEARCH_NOTICE}", "",
             f"Model **{model['name']} v{model['version']}** ({model['family']}) against the observed, censored "
             f"outcomes of `{cohort['file']}` (SHA-256 `{cohort['sha256'][:16]}…`, read as {cohort['read_as']}): "
             f"{cohort['used']:,} of {cohort['records']:,} records used ({patients}); {cohort['rejected']:,} "
             "rejected, with their reasons, in `rejects.csv`.", ""]
    if report["warnings"]:
        parts += ["## Warnings", "", *[f"- {w}" for w in report["warnings"]], ""]
    outcomes = list(dict.fromkeys(m["outcome"] for m in report["metrics"]))
    for outcome in outcomes:
        parts += [f"## {outcome}", "", metrics_table(report["metrics"], outcome), ""]
    parts += ["Observed risk: Kaplan–Meier, 95% CI on the log-log scale; O/E with its CI from Greenwood's "
              "standard error; calibration slope and intercept: IPCW logistic recalibration at the month, with "
              "bootstrap CIs; ICI, E50, E90: Austin, Harrell & van Klaveren (2020), in percentage points; AUROC: "
              "cumulative/dynamic with IPCW (Uno); Brier with IPCW and IPA against the Kaplan–Meier risk "
              "(docs/validation.md).", ""]
    return "\n".join(parts)


def _figure_png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def calibration_figure(curves: list[dict], outcome: str, horizons: list[int]):
    """Per horizon, the observed risk by group of predicted risk (Kaplan–Meier, 95% CI) and the smoothed curve."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(horizons), 4.2), layout="constrained")
    panels = figure.subplots(1, len(horizons), squeeze=False)[0]
    for axes, horizon in zip(panels, horizons):
        top = 0.0
        for c in (c for c in curves if c["outcome"] == outcome and c["horizon_months"] == horizon):
            colour = COLOURS.get(c["treatment"], "black")
            groups = c["groups"]
            x = [100 * g["mean_predicted"] for g in groups]
            y = [100 * g["observed_risk"] for g in groups]
            errors = [[100 * (g["observed_risk"] - g["observed_lo"]) for g in groups],
                      [100 * (g["observed_hi"] - g["observed_risk"]) for g in groups]]
            axes.errorbar(x, y, yerr=errors, fmt="o", color=colour, markersize=3.5, capsize=2, linewidth=0.8,
                          label=f"{c['treatment']}: by risk group")
            if "smoothed" in c:
                axes.plot([100 * v for v in c["smoothed"]["risk"]], [100 * v for v in c["smoothed"]["observed"]],
                          color=colour, linewidth=1.2, alpha=0.8, label=f"{c['treatment']}: smoothed")
            top = max(top, *x, *y, *(100 * g["observed_hi"] for g in groups))
        axes.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=0.8)
        axes.set(xlabel="predicted risk (%)", ylabel="observed risk (%)", title=f"{outcome} by month {horizon}")
        _legend_or_note(axes, "upper left")
    return figure


def _legend_or_note(axes, where: str) -> None:
    """The panel's legend, or a note where nothing could be drawn (no patient followed to the month)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=6, loc=where)
    else:
        axes.text(0.5, 0.5, "no patient followed this long", ha="center", va="center", transform=axes.transAxes,
                  fontsize=8, color="grey")


def net_benefit_figure(curves: list[dict], outcome: str, horizons: list[int]):
    """Per horizon, the net benefit of the model against acting on everyone and on none (all patients)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(horizons), 3.4), layout="constrained")
    panels = figure.subplots(1, len(horizons), squeeze=False)[0]
    for axes, horizon in zip(panels, horizons):
        for c in (c for c in curves if c["outcome"] == outcome and c["horizon_months"] == horizon
                  and c["treatment"] == "all"):
            nb = c["net_benefit"]
            thresholds = [100 * t for t in nb["threshold"]]
            axes.plot(thresholds, nb["model"], color="#b2182b", label="model")
            axes.plot(thresholds, nb["treat_all"], color="grey", linestyle="--", label="act on everyone")
            axes.axhline(0, color="black", linewidth=0.8, label="act on no one")
            low = min(min(nb["model"]), 0.0)
            axes.set(ylim=(low - 0.005, max(max(nb["model"]), max(nb["treat_all"]), 0.01) * 1.15))
        axes.set(xlabel="threshold risk (%)", ylabel="net benefit", title=f"{outcome} by month {horizon}")
        _legend_or_note(axes, "upper right")
    return figure


def to_html(report: dict, *, title: str) -> str:
    """The report as one self-contained HTML page: the Markdown's text and tables, and the plots as images."""
    horizons = report["horizons_months"]
    body = [render_markdown(to_markdown(report, title=title), extensions=["tables"])]
    outcomes = list(dict.fromkeys(m["outcome"] for m in report["metrics"]))
    for outcome in outcomes:
        for caption, build in (("calibration: observed against predicted risk", calibration_figure),
                               ("net benefit (decision curve)", net_benefit_figure)):
            encoded = _figure_png(build(report["curves"], outcome, horizons))
            body.append(f"<h3>{html.escape(outcome)}: {html.escape(caption)}</h3>"
                        f"<p><img alt='{html.escape(outcome)}: {html.escape(caption)}' "
                        f"src='data:image/png;base64,{encoded}' style='max-width:100%'></p>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "blockquote{background:#fff3cd;margin:0;padding:.5em 1em}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
            f"style-src 'unsafe-inline'\"><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
