"""The report beside a scored file: ``<output stem>.report.html``, one self-contained page readable offline.

It holds the counts, the rejects by reason, the distribution of risks per outcome and horizon, a
SHAP beeswarm and the mean |SHAP| per feature for the cohort, and the drift table. Pictures are
embedded as PNG data; the page loads nothing. Everything in it is an aggregate except the
beeswarm's points, which carry no identifier; reasons are shown without the values they quote.

It is fed from the scoring loop, chunk result by chunk result (:class:`ReportTally`), so that memory
stays bounded whatever the cohort's size and nothing written is read back: risk histograms and mean
|SHAP| over every scored record, reject reasons over every reject, and the beeswarm over a uniform
sample of the scored records kept as they pass (:class:`ReportTally` says how).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from datetime import datetime, timezone

import numpy as np
from markdown import markdown

from features.drift import to_markdown
from features.schema import (
    FEATURE_NAMES,
    OUTCOME_DESCRIPTIONS,
    RESEARCH_NOTICE,
    TREATMENT_FEATURE,
    endpoint,
    shap_column,
)
from models.explanation_figures import beeswarm_figure, importance_figure
from pipelines.chunks import ChunkResult

# Risks are counted in bins of 0.01 percentage points: percentiles to within half of that.
RISK_BINS = 10_000
SAMPLE = 2000
TOP_REASONS = 20
DPI = 100
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])", re.IGNORECASE)


def reason_kind(reason: str) -> str:
    """A reject reason without the values it quotes: ``age_years: 400 is outside ... (>= 0 and <= 120)``
    -> ``age_years: … is outside ... (>= 0 and <= 120)``; the ranges in brackets stay."""
    parts = re.split(r"(\([^)]*\))", reason)
    return "".join(part if part.startswith("(") else _NUMBER.sub("…", _QUOTED.sub("…", part)) for part in parts)


class ReportTally:
    """What the report shows, gathered from each chunk result as the run writes it.

    Risk histograms, sums and maxima per outcome and horizon, the sum of |SHAP| per feature and the
    reject reasons count every record. The beeswarm's sample is a reservoir: every scored record draws a
    random key as it passes (from one generator seeded with ``seed``, in file order), and the
    :data:`SAMPLE` records with the smallest keys so far are kept with their SHAP values and inputs. That
    is a uniform sample of the whole file without replacement, in bounded memory, and the same sample for
    any chunk size and either engine (the keys follow the records, not the chunks). A first-N sample would
    be cheaper but not uniform: exports are often sorted by date, site or id.

    Parameters
    ----------
    outcomes : sequence of str
        The model's outcomes.
    horizons : tuple of int
        The run's horizons; SHAP values are those at the last.
    seed : int
        Seed of the sample's keys.
    """

    def __init__(self, outcomes, horizons, seed: int = 0) -> None:
        self.outcomes, self.horizons, self.shap_horizon = tuple(outcomes), tuple(horizons), max(horizons)
        self.risk_columns = {(o, h): f"risk_{endpoint(o, h)}" for o in outcomes for h in horizons}
        self.shap_columns = {o: [shap_column(o, f) if f != TREATMENT_FEATURE
                                 else shap_column(o, f, self.shap_horizon) for f in FEATURE_NAMES] for o in outcomes}
        self.histograms = {key: np.zeros(RISK_BINS, dtype=np.int64) for key in self.risk_columns}
        self.sums = {key: 0.0 for key in self.risk_columns}
        self.maxima = {key: 0.0 for key in self.risk_columns}
        self.abs_sums = {o: np.zeros(len(FEATURE_NAMES)) for o in outcomes}
        self.reasons: Counter = Counter()
        self.n = 0
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.keys = np.zeros(0)
        self.values = np.zeros((0, len(FEATURE_NAMES)))
        self.shap = {o: np.zeros((0, len(FEATURE_NAMES))) for o in outcomes}

    def add(self, result: ChunkResult) -> None:
        """Count one chunk result's scored records and rejects."""
        for reason in result.rejects.column("reason").to_pylist():
            for part in (reason or "").split("; "):
                self.reasons[reason_kind(part)] += 1
        n = result.scores.num_rows
        if n == 0:
            return
        self.n += n
        for key, column in self.risk_columns.items():
            risk = result.scores.column(column).to_numpy(zero_copy_only=False).astype(float)
            self.histograms[key] += np.bincount(np.minimum((risk * RISK_BINS).astype(int), RISK_BINS - 1),
                                                minlength=RISK_BINS)
            self.sums[key] += float(risk.sum())
            self.maxima[key] = max(self.maxima[key], float(risk.max()))
        shap = {o: np.column_stack([result.scores.column(c).to_numpy(zero_copy_only=False).astype(float)
                                    for c in columns]) for o, columns in self.shap_columns.items()}
        for outcome, values in shap.items():
            self.abs_sums[outcome] += np.abs(values).sum(axis=0)
        keys = np.r_[self.keys, self.rng.random(n)]
        keep = np.argsort(keys, kind="stable")[:SAMPLE]
        self.keys = keys[keep]
        self.values = np.vstack([self.values, result.values])[keep]
        for outcome, values in shap.items():
            self.shap[outcome] = np.vstack([self.shap[outcome], values])[keep]

    def percentile(self, key, q: float) -> float:
        """The ``q`` quantile of the risks of ``key`` (outcome, horizon), to within half a bin."""
        cumulative = np.cumsum(self.histograms[key])
        index = int(np.searchsorted(cumulative, q * cumulative[-1]))
        return (index + 0.5) / RISK_BINS


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(figure)}">'


def _risk_figure(tally: ReportTally, outcome: str) -> object:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 3.2), layout="constrained")
    axes = figure.subplots()
    top = max(tally.percentile((outcome, h), 0.999) for h in tally.horizons)
    edge = max(int(np.ceil(top * RISK_BINS)), 1)
    bounds = np.unique(np.linspace(0, edge, 41).astype(int))
    for h in tally.horizons:
        counts = tally.histograms[(outcome, h)]
        shown = np.add.reduceat(counts[:edge], bounds[:-1])
        shown[-1] += counts[edge:].sum()  # the top 0.1% in the last bin
        axes.stairs(shown, 100 * bounds / RISK_BINS, label=f"by month {h}", linewidth=1.6)
    axes.set_xlabel("risk of onset (%); the highest 0.1% in the last bin", fontsize=8)
    axes.set_ylabel("patients", fontsize=8)
    axes.legend(fontsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(f"{outcome}: {OUTCOME_DESCRIPTIONS.get(outcome, outcome)}", fontsize=9, loc="left")
    return figure


_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1b1f24;max-width:60rem;
margin:1.5rem auto;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #c5ccd6}
.notice{border-left:4px solid #a61b1b;background:#fdf1f1;padding:.5rem .75rem;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0}th,td{border-bottom:1px solid #c5ccd6;padding:.3rem .6rem;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;height:auto}
.muted{color:#4a5360;font-size:.9rem}code{font-size:.95em}
"""


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th scope='col'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='n'>{html.escape(c)}</td>" if k >= numeric_from else f"<th scope='row'>{html.escape(c)}</th>"
        for k, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _head(job, model) -> list[str]:
    name = html.escape(job.outputs.scores.name)
    options = job.options
    return [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Batch report: {name}</title><style>{_STYLE}</style></head><body>",
            f"<h1>Batch report: {name}</h1>",
            f"<p class='notice'>{html.escape(RESEARCH_NOTICE)}</p>",
            f"<p class='muted'>Model {html.escape(model.name)} version {html.escape(str(model.version))} "
            f"(MLflow run {html.escape(model.run_id)}); input {html.escape(job.input.name)}; horizons "
            f"{', '.join(map(str, options.horizons))} months"
            f"{'; with the contrast between treatments' if options.contrast else ''}; "
            f"written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]


def _counts(summary) -> list[str]:
    counts = [["records read", f"{summary.read:,}"], ["scored", f"{summary.scored:,}"],
              ["rejected", f"{summary.rejected:,}"],
              ["scored with a value outside the training range (warned)", f"{summary.outside_training_range:,}"],
              ["blank lines skipped", f"{summary.blank_lines:,}"]]
    parts = ["<h2>Counts</h2>", _table(["", "records"], counts)]
    if summary.ignored_columns:
        parts.append(f"<p>Ignored columns: {html.escape(', '.join(summary.ignored_columns))}.</p>")
    return parts


def _rejects(reasons: Counter, rejects_name: str) -> list[str]:
    if not reasons:
        return ["<h2>Rejects by reason</h2>", "<p>None.</p>"]
    shown = reasons.most_common(TOP_REASONS)
    rest = sum(reasons.values()) - sum(c for _, c in shown)
    rows = [[reason, f"{count:,}"] for reason, count in shown] + ([["other reasons", f"{rest:,}"]] if rest else [])
    return ["<h2>Rejects by reason</h2>",
            f"<p>Each record with its line number and full reason is in <code>{html.escape(rejects_name)}</code>; "
            "here the values are left out (…). A record can have several reasons.</p>",
            _table(["reason", "records"], rows)]


def _risks(tally: ReportTally) -> list[str]:
    parts = ["<h2>Risks</h2>"]
    for outcome in tally.outcomes:
        rows = []
        for h in tally.horizons:
            key = (outcome, h)
            rows.append([f"{outcome} by month {h}", f"{100 * tally.sums[key] / tally.n:.2f}%"]
                        + [f"{100 * tally.percentile(key, q):.2f}%" for q in (0.1, 0.5, 0.9)]
                        + [f"{100 * tally.maxima[key]:.2f}%"])
        parts += [_image(_risk_figure(tally, outcome), f"{outcome}: distribution of risks"),
                  _table(["", "mean", "10th percentile", "median", "90th percentile", "highest"], rows)]
    parts.append(f"<p class='muted'>Percentiles to within {100 / RISK_BINS / 2:g} percentage points. "
                 "Risks at horizons beyond a treatment's follow-up in training are extrapolated (see the "
                 "warnings column of the scores).</p>")
    return parts


def _explanations(tally: ReportTally, scale: str) -> list[str]:
    month = tally.shap_horizon
    parts = [f"<h2>Explanations (SHAP, {html.escape(scale)} scale, at month {month})</h2>"
             f"<p>The beeswarm shows {len(tally.keys):,} patients drawn at random from the "
             f"{tally.n:,} scored (colour: the feature's value; grey: not provided, which the model "
             "still credits with a part); the bars, the mean |SHAP| over all of them.</p>"]
    for outcome in tally.outcomes:
        mean_abs = dict(zip(FEATURE_NAMES, (tally.abs_sums[outcome] / tally.n).tolist()))
        parts += [f"<h3>{html.escape(outcome)}</h3>",
                  _image(beeswarm_figure(tally.shap[outcome], tally.values, list(FEATURE_NAMES),
                                         f"{outcome}: SHAP values at month {month}", seed=tally.seed),
                         f"{outcome}: SHAP beeswarm"),
                  _image(importance_figure(mean_abs, f"{outcome}: mean |SHAP| at month {month}, "
                                                     f"{tally.n:,} patients"), f"{outcome}: mean |SHAP|")]
    return parts


def build_report(tally: ReportTally, job, summary, model) -> str:
    """The report's HTML, from what a scoring run counted as it went.

    Parameters
    ----------
    tally : ReportTally
        Every chunk result of the run, added.
    job : pipelines.batch_job.ScoreJob
        The run: its input, outputs and options.
    summary : pipelines.score.Summary
        The run's counts and drift report.
    model : models.registry.LoadedModel
        The version the cohort was scored with.
    """
    parts = [*_head(job, model), *_counts(summary), *_rejects(tally.reasons, job.outputs.rejects.name)]
    if tally.n == 0:
        parts.append("<h2>Risks and explanations</h2><p>No record was scored.</p>")
    else:
        parts += [*_risks(tally), *_explanations(tally, model.risk_model.explanation_scale)]
    drift = markdown(to_markdown(summary.drift, model=f"{model.name} v{model.version}").replace("# Drift", "## Drift", 1),
                     extensions=["tables"])
    parts += [drift, f"<p class='notice'>{html.escape(RESEARCH_NOTICE)}</p></body></html>"]
    return "\n".join(parts)
