"""The report beside a scored file: ``<output stem>.report.html``, one self-contained page readable offline.

It holds the counts, the rejects by reason, the distribution of risks per outcome and horizon, a
SHAP beeswarm and the mean |SHAP| per feature for the cohort, and the drift table. Pictures are
embedded as PNG data; the page loads nothing. Everything in it is an aggregate except the
beeswarm's points, which carry no identifier; reasons are shown without the values they quote.

It is built from the files the run wrote, read back in batches, so that memory stays bounded
whatever the cohort's size and the scoring loop is left alone: risk histograms and mean |SHAP| over
every scored record, the beeswarm over a uniform sample of them, whose feature values come from a
second pass over the input.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.drift import to_markdown
from features.schema import (
    FEATURE_NAMES,
    OUTCOME_DESCRIPTIONS,
    RESEARCH_NOTICE,
    TREATMENT_FEATURE,
    endpoint,
    shap_column,
)
from features.validation import input_values, validate_frame
from models.explanation_figures import beeswarm_figure, importance_figure

# Risks are counted in bins of 0.01 percentage points: percentiles to within half of that.
RISK_BINS = 10_000
SAMPLE = 2000
READ_ROWS = 65_536
TOP_REASONS = 20
DPI = 100
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])", re.IGNORECASE)


def report_path(output: Path) -> Path:
    """``scores.csv`` -> ``scores.report.html``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.report.html")


def reason_kind(reason: str) -> str:
    """A reject reason without the values it quotes: ``age_years: 400 is outside ... (>= 0 and <= 120)``
    -> ``age_years: … is outside ... (>= 0 and <= 120)``; the ranges in brackets stay."""
    parts = re.split(r"(\([^)]*\))", reason)
    return "".join(part if part.startswith("(") else _NUMBER.sub("…", _QUOTED.sub("…", part)) for part in parts)


def _batches(path: Path, columns: list[str], types: dict[str, pa.DataType],
             parquet: bool | None = None) -> Iterator[pa.RecordBatch]:
    if Path(path).suffix.lower() == ".parquet" if parquet is None else parquet:
        yield from pq.ParquetFile(path).iter_batches(batch_size=READ_ROWS, columns=columns)
        return
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=4 << 20),
                            convert_options=pacsv.ConvertOptions(include_columns=columns, column_types=types))
    yield from reader


class _Scores:
    """Risk histograms, mean |SHAP| and a uniform sample of SHAP rows, accumulated batch by batch."""

    def __init__(self, outcomes, horizons, shap_horizon: int, seed: int) -> None:
        self.risk_columns = {(o, h): f"risk_{endpoint(o, h)}" for o in outcomes for h in horizons}
        self.shap_columns = {o: [shap_column(o, f) if f != TREATMENT_FEATURE
                                 else shap_column(o, f, shap_horizon) for f in FEATURE_NAMES] for o in outcomes}
        self.histograms = {key: np.zeros(RISK_BINS, dtype=np.int64) for key in self.risk_columns}
        self.sums = {key: 0.0 for key in self.risk_columns}
        self.maxima = {key: 0.0 for key in self.risk_columns}
        self.abs_sums = {o: np.zeros(len(FEATURE_NAMES)) for o in outcomes}
        self.n = 0
        self.rng = np.random.default_rng(seed)
        self.keys = np.zeros(0)
        self.lines = np.zeros(0, dtype=np.int64)
        self.shap = {o: np.zeros((0, len(FEATURE_NAMES))) for o in outcomes}

    def columns(self) -> list[str]:
        return ["line", *self.risk_columns.values(), *(c for cs in self.shap_columns.values() for c in cs)]

    def add(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        if n == 0:
            return
        self.n += n
        for key, column in self.risk_columns.items():
            risk = batch.column(column).to_numpy(zero_copy_only=False).astype(float)
            self.histograms[key] += np.bincount(np.minimum((risk * RISK_BINS).astype(int), RISK_BINS - 1),
                                                minlength=RISK_BINS)
            self.sums[key] += float(risk.sum())
            self.maxima[key] = max(self.maxima[key], float(risk.max()))
        shap = {o: np.column_stack([batch.column(c).to_numpy(zero_copy_only=False).astype(float) for c in columns])
                for o, columns in self.shap_columns.items()}
        for outcome, values in shap.items():
            self.abs_sums[outcome] += np.abs(values).sum(axis=0)
        # A uniform sample: the SAMPLE rows with the smallest random keys seen so far.
        keys = np.r_[self.keys, self.rng.random(n)]
        keep = np.argsort(keys, kind="stable")[:SAMPLE]
        self.keys = keys[keep]
        self.lines = np.r_[self.lines, batch.column("line").to_numpy(zero_copy_only=False).astype(np.int64)][keep]
        for outcome, values in shap.items():
            self.shap[outcome] = np.vstack([self.shap[outcome], values])[keep]

    def percentile(self, key, q: float) -> float:
        cumulative = np.cumsum(self.histograms[key])
        index = int(np.searchsorted(cumulative, q * cumulative[-1]))
        return (index + 0.5) / RISK_BINS


def _sample_values(input_path: Path, lines: np.ndarray, *, allow_extra: bool, chunk_rows: int,
                   sheet: str | None, il21_assay: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The model-matrix rows of the input records on ``lines``, in the order of ``lines``, and which were
    found; the input is read as the run read it (same sheet, same IL-21 kit)."""
    from pipelines.intake import prepare
    from pipelines.reading import open_input

    wanted = np.sort(lines)
    rows = np.full((len(lines), len(FEATURE_NAMES)), np.nan)
    found = np.zeros(len(lines), dtype=bool)
    position = {int(line): k for k, line in enumerate(lines)}
    opened = open_input(input_path, chunk_rows, sheet=sheet)
    try:
        source = prepare(opened, il21_assay=il21_assay)
        for chunk in source.chunks:
            mask = np.isin(chunk.lines, wanted)
            if not mask.any():
                continue
            batch = validate_frame(chunk.frame[mask].reset_index(drop=True), allow_extra=allow_extra)
            for line, row in zip(chunk.lines[mask][batch.rows], input_values(batch.matrix)):
                rows[position[int(line)]] = row
                found[position[int(line)]] = True
    finally:
        opened.close()
    return rows[found], found


def _rejects_by_reason(rejects_path: Path, source: Path) -> Counter:
    counts: Counter = Counter()
    if not Path(source).is_file():
        return counts
    parquet = Path(rejects_path).suffix.lower() == ".parquet"
    for batch in _batches(source, ["reason"], {"reason": pa.string()}, parquet):
        for reason in batch.column("reason").to_pylist():
            for part in (reason or "").split("; "):
                counts[reason_kind(part)] += 1
    return counts


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(figure)}">'


def _risk_figure(scores: _Scores, outcome: str, horizons) -> object:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 3.2), layout="constrained")
    axes = figure.subplots()
    top = max(scores.percentile((outcome, h), 0.999) for h in horizons)
    edge = max(int(np.ceil(top * RISK_BINS)), 1)
    bounds = np.unique(np.linspace(0, edge, 41).astype(int))
    for h in horizons:
        counts = scores.histograms[(outcome, h)]
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


def build_report(*, input_path: Path, output_path: Path, rejects_path: Path, summary, model, options,
                 allow_extra: bool = False, chunk_rows: int = 50_000, sheet: str | None = None,
                 il21_assay: str | None = None, seed: int = 0, read_from: dict[Path, Path] | None = None) -> str:
    """The report's HTML, from the files a scoring run wrote and its summary.

    Parameters
    ----------
    input_path, output_path, rejects_path : Path
        The cohort file, the scores and the rejects the run wrote.
    read_from : dict of Path to Path, optional
        Where to read an output that is not in place yet (an unnamed file of
        :class:`pipelines.outputs.OutputGroup`), by its path; the path itself otherwise.
    summary : pipelines.score.Summary
        The run's counts and drift report.
    model : models.registry.LoadedModel
        The version the cohort was scored with.
    options : models.scoring.ScoringOptions
        The horizons and contrast of the run.
    allow_extra : bool
        As in the run (the input is read again for the beeswarm's feature values).
    chunk_rows : int
        Records per chunk when the input is read again.
    sheet, il21_assay : str, optional
        As in the run: the workbook's sheet and the IL-21 kit of values without one.
    seed : int
        Seed of the beeswarm's sample.
    """
    from markdown import markdown

    outcomes = model.risk_model.outcome_names
    horizons = options.horizons
    shap_horizon = max(horizons)
    scores = _Scores(outcomes, horizons, shap_horizon, seed)
    types = {c: pa.int64() if c == "line" else pa.float64() for c in scores.columns()}
    read_from = read_from or {}
    parquet = Path(output_path).suffix.lower() == ".parquet"
    for batch in _batches(read_from.get(output_path, output_path), scores.columns(), types, parquet):
        scores.add(batch)
    reasons = _rejects_by_reason(rejects_path, read_from.get(rejects_path, rejects_path))

    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>Batch report: {html.escape(Path(output_path).name)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Batch report: {html.escape(Path(output_path).name)}</h1>",
             f"<p class='notice'>{html.escape(RESEARCH_NOTICE)}</p>",
             f"<p class='muted'>Model {html.escape(model.name)} version {html.escape(str(model.version))} "
             f"(MLflow run {html.escape(model.run_id)}); input {html.escape(Path(input_path).name)}; horizons "
             f"{', '.join(map(str, horizons))} months{'; with the contrast between treatments' if options.contrast else ''}; "
             f"written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]

    counts = [["records read", f"{summary.read:,}"], ["scored", f"{summary.scored:,}"],
              ["rejected", f"{summary.rejected:,}"],
              ["scored with a value outside the training range (warned)", f"{summary.outside_training_range:,}"],
              ["blank lines skipped", f"{summary.blank_lines:,}"]]
    parts += ["<h2>Counts</h2>", _table(["", "records"], counts)]
    if summary.ignored_columns:
        parts.append(f"<p>Ignored columns: {html.escape(', '.join(summary.ignored_columns))}.</p>")

    parts.append("<h2>Rejects by reason</h2>")
    if reasons:
        shown = reasons.most_common(TOP_REASONS)
        rest = sum(reasons.values()) - sum(c for _, c in shown)
        rows = [[reason, f"{count:,}"] for reason, count in shown] + ([["other reasons", f"{rest:,}"]] if rest else [])
        parts += [f"<p>Each record with its line number and full reason is in "
                  f"<code>{html.escape(Path(rejects_path).name)}</code>; here the values are left out (…). A record "
                  "can have several reasons.</p>", _table(["reason", "records"], rows)]
    else:
        parts.append("<p>None.</p>")

    if scores.n == 0:
        parts.append("<h2>Risks and explanations</h2><p>No record was scored.</p>")
    else:
        parts.append("<h2>Risks</h2>")
        for outcome in outcomes:
            rows = []
            for h in horizons:
                key = (outcome, h)
                rows.append([f"{outcome} by month {h}", f"{100 * scores.sums[key] / scores.n:.2f}%"]
                            + [f"{100 * scores.percentile(key, q):.2f}%" for q in (0.1, 0.5, 0.9)]
                            + [f"{100 * scores.maxima[key]:.2f}%"])
            parts += [_image(_risk_figure(scores, outcome, horizons), f"{outcome}: distribution of risks"),
                      _table(["", "mean", "10th percentile", "median", "90th percentile", "highest"], rows)]
        parts.append(f"<p class='muted'>Percentiles to within {100 / RISK_BINS / 2:g} percentage points. "
                     "Risks at horizons beyond a treatment's follow-up in training are extrapolated (see the "
                     "warnings column of the scores).</p>")

        values, found = _sample_values(input_path, scores.lines, allow_extra=allow_extra, chunk_rows=chunk_rows,
                                       sheet=sheet, il21_assay=il21_assay)
        parts.append(f"<h2>Explanations (SHAP, {html.escape(model.risk_model.explanation_scale)} scale, at month "
                     f"{shap_horizon})</h2>"
                     f"<p>The beeswarm shows {int(found.sum()):,} patients drawn at random from the "
                     f"{scores.n:,} scored (colour: the feature's value; grey: not provided, which the model "
                     "still credits with a part); the bars, the mean |SHAP| over all of them.</p>")
        for outcome in outcomes:
            mean_abs = dict(zip(FEATURE_NAMES, (scores.abs_sums[outcome] / scores.n).tolist()))
            parts += [f"<h3>{html.escape(outcome)}</h3>",
                      _image(beeswarm_figure(scores.shap[outcome][found], values, list(FEATURE_NAMES),
                                             f"{outcome}: SHAP values at month {shap_horizon}", seed=seed),
                             f"{outcome}: SHAP beeswarm"),
                      _image(importance_figure(mean_abs, f"{outcome}: mean |SHAP| at month {shap_horizon}, "
                                                         f"{scores.n:,} patients"), f"{outcome}: mean |SHAP|")]

    label = f"{model.name} v{model.version}"
    drift = markdown(to_markdown(summary.drift, model=label).replace("# Drift", "## Drift", 1),
                     extensions=["tables"])
    parts += [drift, f"<p class='notice'>{html.escape(RESEARCH_NOTICE)}</p></body></html>"]
    return "\n".join(parts)
