"""Batch scoring of cohort files (delimited text, Excel, Parquet), chunk by chunk, with nothing lost.

Every input record ends up in the output (scored) or in the rejects file with its line
number and reason. Every output of a run (scores, rejects, drift report, HTML report) is written
to an unnamed file and all are put in place together at the end, under an exclusive lock on the
output's stem, so an interrupted run leaves nothing, a killed one never leaves one run's report
beside another's scores, and two runs never write one stem (:mod:`pipelines.outputs`). Memory is bounded
by the chunk, not the file. Beside the scores goes a drift report: the cohort against the
champion's training data, aggregates only (:mod:`features.drift`).

Two engines run the same per-chunk code (:class:`ChunkScorer`: ``validate_frame`` then
:func:`models.scoring.score_columns`): ``local`` in this process, ``spark`` in Spark tasks
(:mod:`pipelines.spark_engine`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.drift import (
    REFERENCE_ARTIFACT,
    DriftReport,
    compare,
    empty_counts,
    to_markdown,
)
from features.schema import MODEL_COLUMNS
from features.validation import check_columns
from models.registry import LoadedModel
from models.scoring import ScoringOptions
from pipelines.batch_report import build_report, report_path
from pipelines.chunks import REJECTS_SCHEMA, ChunkResult, ChunkScorer
from pipelines.duplicates import SeenIds, mark_repeats
from pipelines.intake import prepare
from pipelines.outputs import (
    OutputError,
    atomic_outputs,
    defuse_formulas,
    journal_path,
    lock_outputs,
    write_error,
)
from pipelines.reading import CHUNK_ROWS, InputFileError, check_input_name, file_format, open_input

__all__ = [
    "CHUNK_ROWS", "ENGINES", "ChunkResult", "ChunkScorer", "InputFileError", "OutputError", "ScoringOptions",
    "Summary", "default_rejects_path", "drift_report_paths", "file_format", "load_reference", "score_file",
]

ENGINES = ("local", "spark")


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


def _write_text(sink, path: Path, text: str) -> None:
    try:
        sink.write(text.encode("utf-8"))
    except OSError as error:
        raise write_error(path, error) from error


def default_rejects_path(output: Path) -> Path:
    """``scores.csv`` -> ``scores.rejects.csv``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.rejects{output.suffix}")


def drift_report_paths(output: Path) -> tuple[Path, Path]:
    """``scores.csv`` -> ``scores.drift.md``, ``scores.drift.json``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.drift.md"), output.with_name(f"{output.stem}.drift.json")


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


_FROM_MODEL = object()


def _check_paths(paths: dict[str, Path], chunk_rows: int) -> None:
    for role, path in paths.items():
        if role == "input":
            check_input_name(path)
        elif role in ("--out", "--rejects"):
            file_format(path, role)
    resolved = [p.resolve() for p in paths.values()]
    if len(set(resolved)) < len(resolved):
        raise InputFileError("the input, --out and --rejects must be three different files "
                             "(and different from the drift report beside --out)")
    for role, path in paths.items():
        if role != "input" and path.is_dir():
            raise InputFileError(f"{role} {path} is a folder; name a file")
    if chunk_rows < 1:
        raise InputFileError(f"--chunk-rows must be at least 1, got {chunk_rows}")


def output_paths(input_path: Path, output_path: Path, rejects_path: Path | None = None,
                 chunk_rows: int = CHUNK_ROWS) -> dict[str, Path]:
    """Every file a run reads or writes, by role, checked: names, formats and that they differ.

    Raises
    ------
    InputFileError
        When a name is not one autorisk reads or writes, or two roles share a file.
    """
    output_path = Path(output_path)
    drift_md, drift_json = drift_report_paths(output_path)
    paths = {"input": Path(input_path), "--out": output_path,
             "--rejects": Path(rejects_path) if rejects_path else default_rejects_path(output_path),
             "drift report": drift_md, "drift data": drift_json, "report": report_path(output_path)}
    _check_paths(paths, chunk_rows)
    return paths


def score_file(
    input_path: Path,
    output_path: Path,
    model: LoadedModel,
    *,
    rejects_path: Path | None = None,
    allow_extra: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    on_progress: Callable[[int], None] = lambda rows: None,
    engine: str = "local",
    spark_master: str = "local[*]",
    spark=None,
    reference=_FROM_MODEL,
    options: ScoringOptions = ScoringOptions(),
    il21_assay: str | None = None,
    sheet: str | None = None,
    lock: bool = True,
) -> Summary:
    """Score every record of ``input_path`` with ``model``.

    Parameters
    ----------
    input_path : Path
        ``.csv`` (comma, semicolon or tab), ``.tsv``, ``.csv.gz``, ``.tsv.gz``, ``.xlsx`` or
        ``.parquet``.
    output_path : Path
        ``.csv`` or ``.parquet``.
    model : LoadedModel
        The registered model version to score with.
    rejects_path : Path, optional
        Where rejected records go; ``<output>.rejects.<ext>`` by default.
    allow_extra : bool
        Ignore columns that are not features instead of failing.
    chunk_rows : int
        Records per chunk; memory is bounded by the chunk, not the file.
    on_progress : callable
        Called with the number of lines done (records and blank lines) after each chunk.
    engine : {"local", "spark"}
        Where the chunks are scored: this process, or Spark tasks.
    spark_master : str
        Spark master URL when ``engine="spark"`` and no ``spark`` session is given.
    spark : pyspark.sql.SparkSession, optional
        A running session to use (left running); by default one is started and stopped.
    reference : dict or None, optional
        Drift reference; by default the one logged with ``model``'s MLflow run.
    options : ScoringOptions
        Horizons (default 24 and 48 months) and whether to add the treatment contrast.
    il21_assay : str, optional
        The IL-21 kit of every IL-21 value without one of its own.
    sheet : str, optional
        The sheet of an ``.xlsx`` input (default: the first).
    lock : bool
        Take the outputs' locks here; False when the caller already holds them
        (:func:`pipelines.outputs.lock_outputs`).

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
    if engine not in ENGINES:
        raise InputFileError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    paths = output_paths(input_path, output_path, rejects_path, chunk_rows)
    input_path, output_path, rejects_path = paths["input"], paths["--out"], paths["--rejects"]
    drift_md, drift_json = paths["drift report"], paths["drift data"]
    with ExitStack() as stack:
        if lock:
            stack.enter_context(lock_outputs([output_path, rejects_path],
                                             companions=[drift_md, drift_json, paths["report"]]))
        source = open_input(input_path, chunk_rows, sheet=sheet)
        stack.callback(source.close)
        source = prepare(source, il21_assay=il21_assay)
        unnamed = [str(i) for i, name in enumerate(source.columns, start=1) if not name]
        if unnamed and not allow_extra:
            raise InputFileError(f"column {', '.join(unnamed)} of the header has no name (an index written "
                                 "without a name?); name it, remove it, or pass --ignore-extra-columns")
        summary = Summary(ignored_columns=check_columns(source.columns, allow_extra=allow_extra),
                          source=source.description)
        note = ""
        if reference is _FROM_MODEL:
            reference, note = load_reference(model)
        scorer = ChunkScorer(model.risk_model, model.version, options, allow_extra, reference)
        if engine == "spark":
            from pipelines import spark_engine

            session = spark or stack.enter_context(spark_engine.session(spark_master))
            results = spark_engine.score_chunks(session, source, scorer)
        else:
            results = map(scorer.score_chunk, source.chunks)
        # Entered last, so left first: the outputs are put in place while the lock is still held.
        group = stack.enter_context(atomic_outputs(journal_path(output_path)))
        report = paths["report"]
        sinks = [group.open(p) for p in (output_path, rejects_path, drift_md, drift_json, report)]
        scores = _TableWriter(sinks[0], output_path, scorer.schema())
        rejects = _TableWriter(sinks[1], rejects_path, REJECTS_SCHEMA)
        seen = SeenIds()
        counts = None
        for result in results:
            scores.write(mark_repeats(result.scores, seen))
            rejects.write(result.rejects)
            summary.read += result.read
            summary.scored += result.scores.num_rows
            summary.rejected += result.rejects.num_rows
            summary.blank_lines += result.blank_lines
            summary.outside_training_range += result.outside_training_range
            if result.drift is not None:
                counts = result.drift if counts is None else counts + result.drift
            on_progress(summary.read + summary.blank_lines)
        scores.close()
        rejects.close()
        summary.repeated_ids = seen.repeats
        if summary.read != summary.scored + summary.rejected:  # a bug, never the input's fault
            raise RuntimeError(f"internal error: read {summary.read} records but scored {summary.scored} "
                               f"and rejected {summary.rejected}")
        if reference is not None and counts is None:
            counts = empty_counts(reference)
        summary.drift = compare(reference, counts, why_no_reference=note)
        label = f"{model.name} v{model.version}"
        _write_text(sinks[2], drift_md, to_markdown(summary.drift, model=label))
        _write_text(sinks[3], drift_json, json.dumps({"model": {"name": model.name, "version": model.version,
                                                                "run_id": model.run_id},
                                                      **summary.drift.to_json()}, indent=2) + "\n")
        summary.drift_paths = (drift_md, drift_json)
        # Built from the scores and rejects as written, before anything is in place: the report
        # is put in place with them, or none of them is.
        text = build_report(summary=summary, input_path=input_path, output_path=output_path,
                            rejects_path=rejects_path, model=model, options=options, allow_extra=allow_extra,
                            chunk_rows=chunk_rows, sheet=sheet, il21_assay=il21_assay,
                            read_from={p: group.readable(p) for p in (output_path, rejects_path)})
        _write_text(sinks[4], report, text)
        summary.report_path = report
    return summary
