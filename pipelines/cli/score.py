"""``autorisk score``: a cohort file scored into scores, rejects, a drift report and an HTML report."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from features.validation import InputSchemaError
from models.scoring import ScoringOptions
from pipelines.batch_job import BatchOutputs, ScoreJob
from pipelines.cli.common import console, errors, fail, load_registered, months, option_message
from pipelines.cli.options import ScoreOptions
from pipelines.reading import InputFileError
from pipelines.score import OutputError, Summary, locked, score_locked


def _stop_on_signal(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """SIGTERM (kill, a scheduler's time limit) and Ctrl-C unwind like an error: locks released, and one line."""
    errors.print(f"[bold red]error:[/] stopped by {signal.Signals(signum).name}: a run's outputs are put in "
                 "place only when it completes, so none of this run's is left half-written",
                 highlight=False, soft_wrap=True)
    raise SystemExit(128 + signum)


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and Ctrl-C unwind the block with one line, its locks released and no partial output left."""
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    previous = {number: signal.signal(number, _stop_on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _with_progress(run: Callable[[Callable[[int], None]], Summary]) -> Summary:
    """``run(show)`` with a transient progress line on stderr; ``show(rows)`` updates it."""
    started = time.perf_counter()
    progress = Progress(TextColumn("scoring"), BarColumn(bar_width=None), TextColumn("{task.completed:,} rows"),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=errors,
                        transient=True)
    with progress:
        task = progress.add_task("score", total=None, rate="")

        def show(rows: int) -> None:
            rate = rows / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=rows, rate=f"{rate:,.0f} rows/s")

        return run(show)


def print_caveats(summary: Summary, follow_up: dict[str, float], options: ScoringOptions) -> None:
    """What a reader of the scores must know, in plain words: skipped lines, repeats, range,
    extrapolated horizons, drift."""
    if summary.blank_lines:
        console.print(f"skipped {summary.blank_lines:,} blank lines")
    if summary.ignored_columns:
        console.print(f"ignored columns: {', '.join(summary.ignored_columns)}")
    # Whole lines, not wrapped to the terminal: a script or a log reader greps for them.
    if summary.repeated_ids:
        console.print(f"[yellow]{summary.repeated_ids:,} scored records repeat a patient_id scored on an "
                      "earlier line; each is scored, and its warnings name that line[/]", soft_wrap=True)
    if summary.outside_training_range:
        console.print(f"[yellow]{summary.outside_training_range:,} of {summary.scored:,} scored patients have "
                      "values outside the training range; they are scored as the nearest training value and "
                      "their risks may be unreliable (see the warnings column)[/]", soft_wrap=True)
    for treatment, follow_up_months in follow_up.items():
        beyond = [h for h in options.horizons if h > follow_up_months]
        if beyond:
            console.print(f"[yellow]risks at {', '.join(map(str, beyond))} months on {treatment} are extrapolated "
                          f"beyond the {follow_up_months:g} months of follow-up on it in the training data "
                          "(flagged in the warnings column)[/]", soft_wrap=True, highlight=False)
    drift = summary.drift
    console.print(drift.headline, style="yellow" if drift.differs else None, soft_wrap=True, highlight=False)
    for detail in drift.details:
        console.print(f"  {detail}", soft_wrap=True, highlight=False)


def _job(given: ScoreOptions) -> ScoreJob:
    """The run the options describe, checked before anything is locked, loaded or read; exit 2 naming the problem."""
    try:
        return ScoreJob(input=given.input, outputs=BatchOutputs.beside(given.out, given.rejects),
                        options=ScoringOptions(horizons=tuple(months(given.horizons)), contrast=given.contrast),
                        sheet=given.sheet, il21_assay=given.il21_assay, allow_extra=given.ignore_extra_columns,
                        chunk_rows=given.chunk_rows, engine=given.engine, spark_master=given.spark_master,
                        model_version=given.model_version)
    except InputFileError as error:
        raise fail(_about_input(given.input, error), 2) from error
    except ValueError as error:
        raise fail(option_message(error), 2) from error


def _about_input(path: Path, error: Exception) -> str:
    """An error of the input's, naming the input first."""
    return str(error) if str(error).startswith(str(path)) else f"{path}: {error}"


def score(given: ScoreOptions) -> None:
    """The job the options describe, scored with the version they name; what was done, and where it went."""
    job = _job(given)
    try:
        # Everything about the files was checked, and the outputs are locked, before the model loads:
        # a second run on the same output fails at once.
        with _stopped_by_signals(), locked(job):
            model = load_registered(*job.model)
            started = time.perf_counter()
            summary = _with_progress(lambda show: score_locked(job, model, on_progress=show))
    except (InputFileError, InputSchemaError) as error:
        raise fail(_about_input(job.input, error), 2) from error
    except OutputError as error:  # locked by another run, disk full: the message names the output
        raise fail(str(error), 2) from error
    except OSError as error:  # the input cannot be read: nothing was written
        raise fail(f"{error.strerror or error}: {error.filename or job.input}", 2) from error
    elapsed = time.perf_counter() - started
    console.print(f"read {job.input} as {summary.source}", soft_wrap=True, highlight=False)
    console.print(f"model {model.name} v{model.version}: read {summary.read:,} records, "
                  f"scored {summary.scored:,}, rejected {summary.rejected:,} "
                  f"({elapsed:.1f} s, {summary.read / max(elapsed, 1e-9):,.0f} records/s, engine {job.engine})",
                  soft_wrap=True)
    print_caveats(summary, model.risk_model.follow_up_months(), job.options)
    console.print(f"scores: {job.outputs.scores}")
    if summary.rejected:
        console.print(f"rejects: {job.outputs.rejects}")
    console.print(f"drift report: {summary.drift_paths[0]}")
    console.print(f"report: {summary.report_path}")
