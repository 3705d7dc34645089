"""Batch scoring of cohort files (delimited text, Excel, Parquet), chunk by chunk, with nothing lost.

Every input record ends up in the output (scored) or in the rejects file with its line
number and reason. Every output of a run (scores, rejects, drift report, HTML report) is written
to an unnamed file and all are put in place together at the end, under an exclusive lock on the
output's stem, so an interrupted run leaves nothing, a killed one never leaves one run's report
beside another's scores, and two runs never write one stem (:mod:`pipelines.outputs`). Memory is bounded
by the chunk, not the file. Beside the scores go a drift report (the cohort against the champion's
training data, aggregates only: :mod:`features.drift`) and an HTML report (:mod:`pipelines.batch_report`),
both counted from the chunk results as they are written, never from the written files.

The run is one :class:`pipelines.batch_job.ScoreJob`, checked when it was made. Two engines run the same
per-chunk code (:class:`ChunkScorer`: ``validate_frame`` then :func:`models.scoring.score_columns`):
``local`` in this process, ``spark`` in Spark tasks (:mod:`pipelines.spark_engine`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.drift import REFERENCE_ARTIFACT, DriftCounts, DriftReport, compare, empty_counts, to_markdown
from features.schema import MODEL_COLUMNS
from features.validation import check_columns
from models.registry import LoadedModel
from models.scoring import ScoringOptions
from pipelines.batch_job import ENGINES, BatchOutputs, ScoreJob
from pipelines.batch_report import ReportTally, build_report
from pipelines.chunks import REJECTS_SCHEMA, ChunkResult, ChunkScorer
from pipelines.duplicates import SeenIds, mark_repeats
from pipelines.intake import prepare
from pipelines.outputs import OutputError, OutputGroup, atomic_outputs, defuse_formulas, lock_outputs, write_error
from pipelines.reading import CHUNK_ROWS, InputFile, InputFileError, file_format, open_input

__all__ = [
    "CHUNK_ROWS", "ENGINES", "FROM_MODEL", "BatchOutputs", "ChunkResult", "ChunkScorer", "InputFileError",
    "OutputError", "ScoreJob", "ScoringOptions", "Summary", "load_reference", "locked", "score_batch",
    "score_locked",
]

# The drift reference of the model's own MLflow run (the default of score_batch's ``reference``).
FROM_MODEL = object()


@dataclass
class Summary:
    """Counts of a scoring run; ``read == scored + rejected``.

    Attributes
    ----------
    read, scored, rejected : int
        Records read, scored, and written to the rejects file.
    blank_lines : int
        Empty CSV lines skipped (not records).
    ignored_columns : list of str
        Input columns that are not features (with ``--ignore-extra-columns``).
    outside_training_range : int
        Scored records with at least one value outside the documented training range.
    repeated_ids : int
        Scored records whose patient id was scored on an earlier line of the file.
    source : str
        What was read: the format and separator (``CSV, separator semicolon``), or the sheet.
    drift : DriftReport, optional
        The cohort against the model's training data.
    drift_paths : tuple of Path
        Where the drift report was written (Markdown, JSON).
    report_path : Path, optional
        The run's HTML report (:mod:`pipelines.batch_report`).
    """

    read: int = 0
    scored: int = 0
    rejected: int = 0
    blank_lines: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    outside_training_range: int = 0
    repeated_ids: int = 0
    source: str = ""
    drift: DriftReport | None = None
    drift_paths: tuple[Path, ...] = ()
    report_path: Path | None = None


class _TableWriter:
    """Appends Arrow tables to one CSV or Parquet output with a fixed schema (header written at once).

    CSV outputs have spreadsheet formulas defused (:func:`pipelines.outputs.defuse_formulas`);
    write errors name ``path``.
    """

    def __init__(self, sink, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.path = path
        self.csv = file_format(path) == "csv"
        try:
            self._writer = pacsv.CSVWriter(sink, schema) if self.csv else pq.ParquetWriter(sink, schema)
        except OSError as error:
            raise write_error(path, error) from error

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            table = table.select(self.schema.names).cast(self.schema)
            try:
                self._writer.write_table(defuse_formulas(table) if self.csv else table)
            except OSError as error:
                raise write_error(self.path, error) from error

    def close(self) -> None:
        try:
            self._writer.close()
        except OSError as error:
            raise write_error(self.path, error) from error


def check_reference(reference: object) -> dict:
    """The drift reference if it fits this code's model matrix; ValueError naming the problem otherwise."""
    if not isinstance(reference, dict) or not isinstance(reference.get("features"), dict) or "n" not in reference:
        raise ValueError("not a feature profile (expected 'n' and 'features')")
    if list(reference["features"]) != list(MODEL_COLUMNS):
        raise ValueError(f"its features ({', '.join(reference['features'])}) are not this model matrix's")
    for name, spec in reference["features"].items():
        if not {"edges", "shares", "missing"} <= set(spec) or len(spec["edges"]) != len(spec["shares"]):
            raise ValueError(f"feature {name}: expected edges, shares (one per edge) and missing")
    return reference


def load_reference(model: LoadedModel) -> tuple[dict | None, str]:
    """The training reference logged with ``model``'s run, or None and why not.

    Reads the MLflow run artifact :data:`features.drift.REFERENCE_ARTIFACT`; a model
    trained before references were logged has none, which the drift report then says.
    """
    import mlflow
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
    from mlflow.exceptions import MlflowException

    where = f"model {model.name} v{model.version} (run {model.run_id})"
    previous = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    try:
        reference = mlflow.artifacts.load_dict(f"runs:/{model.run_id}/{REFERENCE_ARTIFACT}")
    except MlflowException:
        return None, f"{where} has no training reference ({REFERENCE_ARTIFACT}); it was trained before " \
                     "references were logged — retrain to get drift checks"
    except (OSError, ValueError) as error:
        return None, f"the training reference of {where} could not be read ({type(error).__name__})"
    finally:
        if previous is None:
            os.environ.pop(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, None)
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = previous
    try:
        return check_reference(reference), ""
    except ValueError as error:
        return None, f"the training reference of {where} does not fit: {error}"


@contextmanager
def locked(job: ScoreJob) -> Iterator[None]:
    """Hold the locks of ``job``'s outputs (their folders are created): a second run on them fails at once.

    Raises
    ------
    pipelines.outputs.OutputLockedError
        When another run holds one.
    """
    with lock_outputs(job.outputs.locked, companions=job.outputs.companions):
        yield


def score_batch(job: ScoreJob, model: LoadedModel, *, on_progress: Callable[[int], None] = lambda rows: None,
                spark=None, reference=FROM_MODEL) -> Summary:
    """Score every record of ``job``'s input with ``model``, holding the outputs' locks for the run.

    Parameters
    ----------
    job : ScoreJob
        What to read, write and how; checked when it was made.
    model : LoadedModel
        The registered model version to score with.
    on_progress : callable
        Called with the number of lines done (records and blank lines) after each chunk.
    spark : pyspark.sql.SparkSession, optional
        With ``job.engine == "spark"``, a running session to use (left running); by default one is started
        on ``job.spark_master`` and stopped.
    reference : dict or None, optional
        Drift reference; by default the one logged with ``model``'s MLflow run.

    Returns
    -------
    Summary

    Raises
    ------
    InputFileError, features.validation.InputSchemaError
        When the file cannot be scored at all; nothing is written then.
    OutputError
        When an output is locked by another run or cannot be written (its name in the message).
    """
    with locked(job):
        return score_locked(job, model, on_progress=on_progress, spark=spark, reference=reference)


def score_locked(job: ScoreJob, model: LoadedModel, *, on_progress: Callable[[int], None] = lambda rows: None,
                 spark=None, reference=FROM_MODEL) -> Summary:
    """:func:`score_batch` for a caller that already holds the outputs' locks (:func:`locked`)."""
    with _opened(job) as source:
        summary = Summary(ignored_columns=check_columns(source.columns, allow_extra=job.allow_extra),
                          source=source.description)
        note = ""
        if reference is FROM_MODEL:
            reference, note = load_reference(model)
        scorer = ChunkScorer(model.risk_model, model.version, job.options, job.allow_extra, reference)
        with _chunk_results(job, source, scorer, spark) as results, atomic_outputs(job.outputs.journal) as group:
            batch = _BatchWriter(group, job.outputs, scorer.schema())
            tally = ReportTally(model.risk_model.outcome_names, job.options.horizons)
            for result in results:
                batch.write(result, summary)
                tally.add(result)
                on_progress(summary.read + summary.blank_lines)
            batch.close(summary)
            summary.drift = compare(reference, batch.drift_counts(reference), why_no_reference=note)
            batch.write_drift(summary.drift, model)
            # Put in place with the scores, or none of them is.
            batch.write_text(job.outputs.report, build_report(tally, job, summary, model))
        summary.drift_paths = (job.outputs.drift_md, job.outputs.drift_json)
        summary.report_path = job.outputs.report
    return summary


@contextmanager
def _opened(job: ScoreJob) -> Iterator[InputFile]:
    """``job``'s input, opened as it asks (sheet, IL-21 kit) and closed at the end."""
    source = open_input(job.input, job.chunk_rows, sheet=job.sheet)
    try:
        prepared = prepare(source, il21_assay=job.il21_assay)
        unnamed = [str(i) for i, name in enumerate(prepared.columns, start=1) if not name]
        if unnamed and not job.allow_extra:
            raise InputFileError(f"column {', '.join(unnamed)} of the header has no name (an index written "
                                 "without a name?); name it, remove it, or pass --ignore-extra-columns")
        yield prepared
    finally:
        source.close()


@contextmanager
def _chunk_results(job: ScoreJob, source: InputFile, scorer: ChunkScorer, spark) -> Iterator[Iterator[ChunkResult]]:
    """The chunk results of ``job``'s engine, in file order; a Spark session started here stops at the end."""
    if job.engine == "local":
        yield map(scorer.score_chunk, source.chunks)
        return
    from pipelines import spark_engine  # pyspark is optional (the spark extra): loaded for --engine spark only

    with nullcontext(spark) if spark is not None else spark_engine.session(job.spark_master) as session:
        yield spark_engine.score_chunks(session, source, scorer)


class _BatchWriter:
    """The outputs of one run, opened together in the order they are put in place (scores first, report
    last), written as the chunk results come."""

    def __init__(self, group: OutputGroup, outputs: BatchOutputs, schema: pa.Schema) -> None:
        self.outputs = outputs
        self.sinks = {path: group.open(path) for path in outputs.in_order}
        self.scores = _TableWriter(self.sinks[outputs.scores], outputs.scores, schema)
        self.rejects = _TableWriter(self.sinks[outputs.rejects], outputs.rejects, REJECTS_SCHEMA)
        self.seen = SeenIds()
        self.counts: DriftCounts | None = None

    def write(self, result: ChunkResult, summary: Summary) -> None:
        """One chunk result's scores (repeated ids marked) and rejects, counted into ``summary``."""
        self.scores.write(mark_repeats(result.scores, self.seen))
        self.rejects.write(result.rejects)
        summary.read += result.read
        summary.scored += result.scores.num_rows
        summary.rejected += result.rejects.num_rows
        summary.blank_lines += result.blank_lines
        summary.outside_training_range += result.outside_training_range
        if result.drift is not None:
            self.counts = result.drift if self.counts is None else self.counts + result.drift

    def close(self, summary: Summary) -> None:
        """The scores and rejects complete; RuntimeError if any record went uncounted (a bug, never the input's)."""
        self.scores.close()
        self.rejects.close()
        summary.repeated_ids = self.seen.repeats
        if summary.read != summary.scored + summary.rejected:
            raise RuntimeError(f"internal error: read {summary.read} records but scored {summary.scored} "
                               f"and rejected {summary.rejected}")

    def drift_counts(self, reference: dict | None) -> DriftCounts | None:
        """The accepted records on the reference's bins (empty ones when nothing was scored)."""
        if reference is not None and self.counts is None:
            return empty_counts(reference)
        return self.counts

    def write_drift(self, drift: DriftReport, model: LoadedModel) -> None:
        """The drift report as Markdown and as JSON."""
        self.write_text(self.outputs.drift_md, to_markdown(drift, model=f"{model.name} v{model.version}"))
        identity = {"name": model.name, "version": model.version, "run_id": model.run_id}
        self.write_text(self.outputs.drift_json, json.dumps({"model": identity, **drift.to_json()}, indent=2) + "\n")

    def write_text(self, path: Path, text: str) -> None:
        try:
            self.sinks[path].write(text.encode("utf-8"))
        except OSError as error:
            raise write_error(path, error) from error
