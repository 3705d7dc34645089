"""The ``autorisk`` command line: simulate, train, promote, score, serve, build, demo."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="autorisk: risk of secondary autoimmunity after alemtuzumab, with SHAP explanations. "
    "A research tool trained on synthetic trial cohorts; not for clinical decisions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@app.callback()
def _before_every_command() -> None:
    # OpenMP threads that spin while they wait steal the cores from each other and from any
    # neighbouring job: on a shared 2-core machine, xgboost training ran about 50 times slower
    # with spinning threads, so time-limited tuning saw fewer trials and chose another model.
    # Set before xgboost loads OpenMP; a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _months(text: str) -> list[float]:
    """``"12,24, 36"`` -> ``[12.0, 24.0, 36.0]``; ValueError naming a value that is not a number."""
    values = []
    for part in text.split(","):
        try:
            values.append(float(part.strip()))
        except ValueError:
            raise ValueError(f"horizons: {part.strip()!r} is not a number of months") from None
    return values


def _print_table(table: Table) -> None:
    """A wide table whole: at the terminal's width, or at 160 columns where the output is not a terminal
    (a pipe, a log), whose 80-column default would cut every cell."""
    target = console if console.is_terminal else Console(file=console.file, width=160)
    target.print(table)


def _fail(message: str, code: int = 1) -> typer.Exit:
    # Not wrapped to the terminal's width: an error names paths and values that scripts grep for.
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _registered_version(text: str | None, option: str = "--model-version") -> str | None:
    """A registered version as given (``"3"``); exit 2 for one that is not a whole number."""
    if text is None or text.strip().isdigit():
        return text.strip() if text is not None else None
    raise _fail(f"{option}: {text!r} is not a registered version; versions are whole numbers (1, 2, ...)", 2)


def _stop_on_signal(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """SIGTERM (kill, a scheduler's time limit) and Ctrl-C unwind like an error: locks released, and one line."""
    import signal

    errors.print(f"[bold red]error:[/] stopped by {signal.Signals(signum).name}: a run's outputs are put in "
                 "place only when it completes, so none of this run's is left half-written",
                 highlight=False, soft_wrap=True)
    raise SystemExit(128 + signum)


@app.command()
def simulate(
    profile: Annotated[str, typer.Option(help="Profile: camms223, care-ms1, care-ms2, extension or clinic.")],
    out: Annotated[Path, typer.Option(help="Output file, .csv or .parquet.")],
    n: Annotated[int, typer.Option(help="Number of randomised patients.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 0,
    il21_assay: Annotated[str | None, typer.Option(help="Measure IL-21 with this kit (legacy_elisa, current_elisa) instead of the profile's.")] = None,
    config: Annotated[Path | None, typer.Option(help="Simulator assumptions YAML.")] = None,
    world: Annotated[str, typer.Option(help="World of experiments/worlds/ (docs/worlds.md).")] = "default",
) -> None:
    """Simulate a synthetic cohort with event times, censoring and true risks."""
    from features.simulator import simulate_cohort, write_frame

    simulator = _world(world, config)
    try:
        frame = simulate_cohort(simulator, profile, n, seed, il21_assay=il21_assay)
        write_frame(frame, out)
    except ValueError as error:
        raise _fail(str(error), 2) from error
    by_arm = frame.groupby("treatment")[["thyroid_event", "itp_event"]].mean()
    console.print(f"wrote {len(frame):,} patients of {profile} to {out}")
    for arm, row in by_arm.iterrows():
        console.print(f"  {arm}: thyroid {row.thyroid_event:.1%}, ITP {row.itp_event:.2%}")


@app.command("cohort-report")
def cohort_report(
    profile: Annotated[list[str] | None, typer.Option(help="Profile(s) to validate (default: all).")] = None,
    n: Annotated[int, typer.Option(help="Patients simulated per profile.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the reports.")] = Path("outputs/cohort-reports"),
    config: Annotated[Path | None, typer.Option(help="Simulator assumptions YAML.")] = None,
    world: Annotated[str, typer.Option(help="World of experiments/worlds/ (docs/worlds.md).")] = "default",
) -> None:
    """Compare simulated cohorts with every published target; write and log the report. Exit 1 if any target fails."""
    from pipelines.cohort_report import run_cohort_report
    from models.tracking import configure_tracking

    configure_tracking()
    simulator = _world(world, config)
    profiles = profile or list(simulator.profiles)
    unknown = [p for p in profiles if p not in simulator.profiles]
    if unknown:
        raise _fail(f"profile: unknown {', '.join(unknown)}; choose from {', '.join(simulator.profiles)}", 2)
    failed = []
    for name in profiles:
        report, path, run_id = run_cohort_report(simulator, name, n, seed, out)
        checks = report.checks
        bad = checks[~checks["passed"]]
        console.print(f"{name}: {len(checks) - len(bad)}/{len(checks)} targets within tolerance -> {path} "
                      f"(MLflow run {run_id})")
        for row in bad.itertuples():
            console.print(f"  [red]FAIL[/] {row.arm}: {row.target}: simulated {row.simulated:.4g}, "
                          f"published {row.published:.4g} ({row.tolerance})")
        if len(bad):
            failed.append(name)
    if failed:
        raise _fail(f"targets outside tolerance in: {', '.join(failed)}")


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="Experiment YAML (default: experiments/baseline-comparison.yaml).")] = None,
) -> None:
    """Train every model family of an experiment, log it to MLflow and register the models."""
    from pipelines.config import DEFAULT_EXPERIMENT, load_experiment
    from models.tracking import configure_tracking
    from pipelines.train import run_experiment

    uri = configure_tracking()
    try:
        experiment = load_experiment(config or DEFAULT_EXPERIMENT)
    except (OSError, ValueError) as error:
        raise _fail(f"config: {error}", 2) from error
    console.print(f"experiment {experiment.name!r}, tracking at {uri}")
    started = time.perf_counter()
    # A store that is locked, damaged or out of reach: one line and the README's exit code.
    with _store_faults(uri, must_exist=False):
        run_experiment(experiment, log=console.print)
    console.print(f"trained in {time.perf_counter() - started:.0f} s")


def _world(world: str, config: Path | None):
    """The simulator assumptions in a named world; exit 2 naming the shipped worlds for another."""
    from features.simulator import DEFAULT_CONFIG_PATH
    from pipelines.config import load_world

    try:
        return load_world(world, config or DEFAULT_CONFIG_PATH)
    except (OSError, ValueError) as error:
        raise _fail(str(error), 2) from error


@app.command()
def worlds(
    quick: Annotated[bool, typer.Option("--quick", help="Every cohort a tenth of its size (at least 2,000), tuning 4 trials in 40 s, 5 interval refits: minutes, for tests and trial sweeps.")] = False,
    world: Annotated[list[str] | None, typer.Option(help="World(s) to train in (default: every shipped world).")] = None,
    config: Annotated[Path | None, typer.Option(help="Experiment YAML (default: experiments/baseline-comparison.yaml).")] = None,
    out: Annotated[Path, typer.Option(help="Markdown file for the tables.")] = Path("outputs/worlds.md"),
) -> None:
    """Train the experiment in every world and judge each world's champion against its truth (docs/worlds.md)."""
    from mlflow import MlflowClient

    from pipelines.config import DEFAULT_EXPERIMENT, load_experiment, world_names, world_overrides
    from models.tracking import configure_tracking
    from pipelines.worlds import run_worlds, worlds_table

    uri = configure_tracking()
    try:
        experiment = load_experiment(config or DEFAULT_EXPERIMENT)
        names = world or world_names()
        for name in names:
            world_overrides(name)
    except (OSError, ValueError) as error:
        raise _fail(f"config: {error}", 2) from error
    started = time.perf_counter()
    with _store_faults(uri, must_exist=False):
        parent = run_worlds(experiment, names, quick=quick, log=console.print)
        table = worlds_table(MlflowClient(), parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table, encoding="utf-8")
    console.print(table, highlight=False, soft_wrap=True)
    console.print(f"{len(names)} worlds in {time.perf_counter() - started:.0f} s; MLflow run {parent} of experiment "
                  f"'worlds'; tables -> {out}")


@app.command()
def promote(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the decision without making it.")] = False,
    experiment: Annotated[str | None, typer.Option(help="Choose among this experiment's versions (default: the newest version's).")] = None,
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = "autoimmunity-risk",
) -> None:
    """Point the @champion alias at the best registered version, by a stated rule."""
    from mlflow import MlflowClient

    from models.registry import promote as promote_version
    from models.tracking import configure_tracking

    uri = configure_tracking()
    with _store_faults(uri):
        decision = promote_version(MlflowClient(), model_name, experiment=experiment, dry_run=dry_run)
    chosen = decision.chosen
    console.print(f"candidates: the versions of experiment {chosen.experiment!r}, config {chosen.config_digest}")
    table = Table("version", "family", "held-out calibration slope [95% interval]", "held-out O/E [95% interval]",
                  "log loss / null", "")
    for candidate in decision.candidates:
        mark = "chosen" if candidate.version == chosen.version else ("" if candidate.calibrated else "calibration off")
        found = (candidate.calibration or {}).items()
        slopes = "\n".join(f"{e} {c['slope']:.2f} [{c['slope_lo']:.2f}, {c['slope_hi']:.2f}]" for e, c in found)
        ratios = "\n".join(f"{e} {c['oe']:.2f} [{c['oe_lo']:.2f}, {c['oe_hi']:.2f}]" for e, c in found)
        table.add_row(candidate.version, candidate.family, slopes, ratios, f"{candidate.metric:.5f}", mark)
    _print_table(table)
    console.print(f"rule: {decision.rule}")
    verb = "would set" if dry_run else "set"
    console.print(f"{verb} {model_name}@champion -> version {decision.chosen.version} "
                  f"({decision.chosen.family}); previous champion: {decision.previous or 'none'}"
                  + (" -> @challenger" if decision.previous and decision.previous != decision.chosen.version else ""))
    if not dry_run:
        console.print("the decision is logged as a run of the MLflow experiment 'promotions'")


@app.command()
def report(
    version: Annotated[str | None, typer.Argument(help="Registered version (default: @champion).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the model card.")] = Path("outputs"),
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = "autoimmunity-risk",
) -> None:
    """Write the model card (Markdown and HTML) of a registered version."""
    import mlflow

    from models.registry import resolve_version
    from models.tracking import configure_tracking

    version = _registered_version(version, "VERSION")
    uri = configure_tracking()
    with _store_faults(uri):
        found = resolve_version(model_name, version=version)
    out.mkdir(parents=True, exist_ok=True)
    for suffix in ("md", "html"):
        text = mlflow.artifacts.load_text(f"runs:/{found.run_id}/model_card/model_card.{suffix}")
        path = out / f"model-card-{model_name}-v{found.version}.{suffix}"
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")


@app.command("sample-size")
def sample_size(
    config: Annotated[Path | None, typer.Option(help="Experiment YAML: the simulated world, the training mix and the families (default: experiments/baseline-comparison.yaml).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Three sizes up to 6,000, two repeats, a 4,000-patient benchmark: seconds, for a first look.")] = False,
    sizes: Annotated[str | None, typer.Option(help="Training sizes, comma-separated (default 500,1000,2000,5000,10000,20000,60000).")] = None,
    repeats: Annotated[int | None, typer.Option(help="Fits per size on fresh samples (default 5).")] = None,
    family: Annotated[list[str] | None, typer.Option(help="Family of the experiment to fit (repeatable; default: all).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the report, its plots and tables.")] = Path("outputs/sample-size"),
) -> None:
    """Learning curves against the simulator's truth and Riley's minimum sample size: how many patients a real IL-21 study would need."""
    from pipelines.config import DEFAULT_EXPERIMENT, load_experiment
    from pipelines.sample_size import DEFAULT_SETTINGS, QUICK_SETTINGS, run_sample_size, write_report
    from models.tracking import configure_tracking
    from pipelines.steps import load_simulator

    uri = configure_tracking()
    try:
        experiment = load_experiment(config or DEFAULT_EXPERIMENT)
        settings = QUICK_SETTINGS if quick else DEFAULT_SETTINGS
        changes = {"families": tuple(family or ())}
        if sizes is not None:
            changes["sizes"] = tuple(int(v) for v in _months(sizes))
        if repeats is not None:
            changes["repeats"] = repeats
        settings = dataclasses.replace(settings, **changes)
        if any(n < 10 for n in settings.sizes) or settings.repeats < 1:
            raise ValueError("sizes must be at least 10 patients and repeats at least 1")
        unknown = [f for f in settings.families if f not in experiment.families]
        if unknown:
            raise ValueError(f"family: {', '.join(unknown)} not in {experiment.name} ({', '.join(experiment.families)})")
    except (OSError, ValueError) as error:
        raise _fail(str(error), 2) from error
    console.print(f"learning curves of {experiment.name} ({', '.join(settings.families or experiment.families)}): "
                  f"{', '.join(f'{n:,}' for n in settings.sizes)} training patients, {settings.repeats} repeats; "
                  f"tracking at {uri}", soft_wrap=True, highlight=False)
    with _store_faults(uri, must_exist=False):
        result = run_sample_size(experiment, load_simulator(experiment), settings,
                                 log=lambda m: console.print(m, soft_wrap=True, highlight=False))
    paths = write_report(out, result.summary, result.riley, result.markdown)
    for r in result.riley.itertuples():
        console.print(f"{r.outcome} by month {r.horizon_months} ({100 * r.incidence:.1f}%), C {r.c_statistic:.3f} "
                      f"({r.c_source}): at least {r.n:,} patients ({r.events:,.0f} onsets); "
                      f"141 patients are {r.published_share_of_needed:.0%} of it", highlight=False, soft_wrap=True)
    console.print(f"report: {paths[0]} (MLflow run {result.run_id}, experiment 'sample-size'; {result.seconds:.0f} s)",
                  soft_wrap=True, highlight=False)


@app.command()
def score(
    input: Annotated[Path, typer.Argument(help="Cohort file: .csv (comma, semicolon or tab), .tsv, .csv.gz, .tsv.gz, .xlsx or .parquet.")],
    out: Annotated[Path, typer.Option(help="Scores file, .csv or .parquet.")],
    rejects: Annotated[Path | None, typer.Option(help="Rejected records (default: OUT.rejects.EXT).")] = None,
    ignore_extra_columns: Annotated[bool, typer.Option("--ignore-extra-columns", help="Ignore columns that are not features instead of failing.")] = False,
    il21_assay: Annotated[str | None, typer.Option(help="The IL-21 kit (legacy_elisa or current_elisa) of every IL-21 value in the file that names none.")] = None,
    sheet: Annotated[str | None, typer.Option(help="The sheet of an .xlsx workbook to score (default: the first).")] = None,
    model_version: Annotated[str | None, typer.Option(help="Registered version: a number, or @alias (default: @champion).")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Records per chunk.")] = 50_000,
    engine: Annotated[str, typer.Option(help="Where to score: local (this process) or spark (Apache Spark; needs the spark extra).")] = "local",
    spark_master: Annotated[str, typer.Option(help="Spark master URL with --engine spark: local[*], local[4], spark://host:7077, yarn, ...")] = "local[*]",
    horizons: Annotated[str, typer.Option(help="Months after the first course to give the risks at, comma-separated, each 1-72.")] = "24,48",
    contrast: Annotated[bool, typer.Option("--contrast", help="Add each patient's risks under both treatments and the difference (alemtuzumab minus interferon beta-1a).")] = False,
) -> None:
    """Score a cohort file: risks and SHAP values per patient, outcome and horizon, rejects with reasons, and a drift report."""
    import signal
    import threading

    from features.validation import InputSchemaError
    from models.registry import load_model, version_or_alias
    from pipelines.intake import check_kit
    from pipelines.outputs import lock_outputs
    from pipelines.score import ENGINES, InputFileError, OutputError, ScoringOptions, output_paths, score_file
    from models.tracking import configure_tracking

    try:
        options = ScoringOptions(horizons=tuple(_months(horizons)), contrast=contrast)
        version, alias = version_or_alias(model_version)
    except ValueError as error:
        raise _fail(str(error) if str(error).startswith("--") else f"--{error}", 2) from error

    if engine not in ENGINES:
        raise _fail(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}", 2)
    if engine == "spark":
        try:
            import pyspark  # noqa: F401
        except ImportError as error:
            raise _fail("--engine spark needs pyspark: pip install 'autorisk[spark]'", 2) from error
    # A run stopped with SIGTERM or Ctrl-C unwinds with one line, its locks released and no
    # partial output left behind.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {number: signal.signal(number, _stop_on_signal)
                for number in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
    started = time.perf_counter()
    try:
        # Everything about the files is checked, and the outputs locked, before the model loads:
        # a second run on the same output fails at once.
        paths = output_paths(input, out, rejects, chunk_rows)
        _check_input_options(paths["input"], sheet)
        kit = check_kit(il21_assay) if il21_assay is not None else None
        with lock_outputs([paths["--out"], paths["--rejects"]],
                          companions=[paths["drift report"], paths["drift data"], paths["report"]]):
            uri = configure_tracking()
            with _store_faults(uri):
                model = load_model(alias=alias, version=version)
            started = time.perf_counter()
            summary = _score_with_progress(lambda show: score_file(
                input, out, model, rejects_path=paths["--rejects"], allow_extra=ignore_extra_columns,
                chunk_rows=chunk_rows, on_progress=show, engine=engine, spark_master=spark_master,
                il21_assay=kit, sheet=sheet, lock=False, options=options))
    except (InputFileError, InputSchemaError) as error:
        raise _fail(f"{input}: {error}" if not str(error).startswith(str(input)) else str(error), 2) from error
    except OutputError as error:  # locked by another run, disk full: the message names the output
        raise _fail(str(error), 2) from error
    except OSError as error:  # the input cannot be read: nothing was written
        raise _fail(f"{error.strerror or error}: {error.filename or input}", 2) from error
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    elapsed = time.perf_counter() - started
    console.print(f"read {input} as {summary.source}", soft_wrap=True, highlight=False)
    console.print(f"model {model.name} v{model.version}: read {summary.read:,} records, "
                  f"scored {summary.scored:,}, rejected {summary.rejected:,} "
                  f"({elapsed:.1f} s, {summary.read / max(elapsed, 1e-9):,.0f} records/s, engine {engine})",
                  soft_wrap=True)
    _print_caveats(summary, model.risk_model.follow_up_months(), options)
    console.print(f"scores: {out}")
    if summary.rejected:
        console.print(f"rejects: {paths['--rejects']}")
    console.print(f"drift report: {summary.drift_paths[0]}")
    console.print(f"report: {summary.report_path}")


@app.command()
def validate(
    input: Annotated[Path, typer.Argument(help="A cohort with observed outcomes: per outcome <outcome>_event (1/0) and <outcome>_time_months; any format `score` reads.")],
    out: Annotated[Path, typer.Option(help="Folder for validation.json, validation.md, validation.html and rejects.csv.")],
    model_version: Annotated[str | None, typer.Option(help="Registered version: a number, or @alias (default: @champion).")] = None,
    horizons: Annotated[str, typer.Option(help="Months after the first course to validate at, comma-separated, each 1-72.")] = "12,24,36,48",
    outcomes: Annotated[str | None, typer.Option(help="Outcomes to validate, comma-separated (default: every outcome of the model).")] = None,
    il21_assay: Annotated[str | None, typer.Option(help="The IL-21 kit (legacy_elisa or current_elisa) of every IL-21 value in the file that names none.")] = None,
    sheet: Annotated[str | None, typer.Option(help="The sheet of an .xlsx workbook (default: the first).")] = None,
) -> None:
    """Validate a registered version on a cohort's own observed, censored outcomes, per outcome, arm and horizon."""
    from features.schema import check_horizons
    from features.validation import InputSchemaError
    from models.registry import load_model, version_or_alias
    from pipelines.intake import check_kit
    from pipelines.reading import InputFileError
    from models.tracking import configure_tracking
    from pipelines.validate import run_validation

    try:
        months = check_horizons(_months(horizons))
        version, alias = version_or_alias(model_version)
        kit = check_kit(il21_assay) if il21_assay is not None else None
        _check_input_options(input, sheet)
    except (ValueError, InputFileError) as error:
        raise _fail(str(error) if str(error).startswith("--") else f"--{error}", 2) from error
    _quiet_downloads()
    uri = configure_tracking()
    with _store_faults(uri):
        loaded = load_model(alias=alias, version=version)
        try:
            validation, files, run_id = run_validation(
                input, out, loaded, horizons=months, il21_assay=kit, sheet=sheet,
                outcomes=tuple(o.strip() for o in outcomes.split(",")) if outcomes else None)
        except (InputFileError, InputSchemaError, ValueError) as error:
            raise _fail(f"{input}: {error}" if not str(error).startswith(("--", str(input))) else str(error), 2) \
                from error
    _print_table(validation_table(validation))
    for warning in validation.report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning.removeprefix('WARNING: ')}", soft_wrap=True, highlight=False)
    console.print(f"reports: {files['validation.md']}, {files['validation.html']}, {files['validation.json']}; "
                  f"rejects: {files['rejects.csv']}; MLflow run {run_id} (experiment validations)", soft_wrap=True)


@app.command()
def recalibrate(
    input: Annotated[Path, typer.Argument(help="The local cohort with observed outcomes (as for `validate`).")],
    alias: Annotated[str, typer.Option(help="Alias for the new version, e.g. registry-2026 (never champion or challenger).")],
    model_version: Annotated[str | None, typer.Option(help="Registered version to recalibrate: a number, or @alias (default: @champion).")] = None,
    method: Annotated[str, typer.Option(help="baseline (each treatment's baseline risk over time) or baseline+slope (and a calibration slope).")] = "baseline",
    holdout_fraction: Annotated[float, typer.Option(help="Share of the file held out to validate before and after (0: fit on the whole file, no held-out check).")] = 0.25,
    out: Annotated[Path | None, typer.Option(help="Folder for the held-out validations and the summary (default: outputs/recalibrate-<alias>).")] = None,
    horizons: Annotated[str, typer.Option(help="Months to validate at, comma-separated, each 1-72.")] = "12,24,36,48",
    il21_assay: Annotated[str | None, typer.Option(help="The IL-21 kit of every IL-21 value in the file that names none.")] = None,
    sheet: Annotated[str | None, typer.Option(help="The sheet of an .xlsx workbook (default: the first).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and of the interval's resamples.")] = 0,
) -> None:
    """Recalibrate a registered version to a local population; register the result under --alias (never @champion)."""
    from features.schema import check_horizons
    from features.validation import InputSchemaError
    from models.registry import load_model, version_or_alias
    from pipelines.intake import check_kit
    from pipelines.reading import InputFileError
    from pipelines.recalibrate import check_alias, comparison_rows, run_recalibration
    from models.tracking import configure_tracking

    try:
        months = check_horizons(_months(horizons))
        version, source_alias = version_or_alias(model_version)
        kit = check_kit(il21_assay) if il21_assay is not None else None
        name = check_alias(alias)
        _check_input_options(input, sheet)
    except (ValueError, InputFileError) as error:
        raise _fail(str(error) if str(error).startswith("--") else f"--{error}", 2) from error
    folder = out or Path("outputs") / f"recalibrate-{name}"
    _quiet_downloads()
    uri = configure_tracking()
    with _store_faults(uri):
        loaded = load_model(alias=source_alias, version=version)
        try:
            result = run_recalibration(input, name, loaded, out=folder, method=method,
                                       holdout_fraction=holdout_fraction, il21_assay=kit, sheet=sheet,
                                       horizons=months, seed=seed)
        except (InputFileError, InputSchemaError, ValueError) as error:
            raise _fail(f"{input}: {error}" if not str(error).startswith(("--", str(input))) else str(error), 2) \
                from error
    console.print(f"recalibrated {loaded.name} v{loaded.version} ({method}) on {result.fitted_on:,} patients: "
                  f"registered v{result.version} as @{result.alias} (MLflow run {result.run_id}); "
                  + "; ".join(f"{o} slope {d.slope:.3f}" for o, d in result.done.items()), soft_wrap=True)
    if result.after is not None:
        table = Table("outcome", "treatment", "month", "observed", "predicted before", "predicted after",
                      "O/E before", "O/E after",
                      title=f"held-out {result.held_out:,} patients: v{loaded.version} before, v{result.version} after")
        for r in comparison_rows(result.before, result.after):
            table.add_row(r["outcome"], r["treatment"], str(r["horizon_months"]),
                          *[("—" if r[k] is None else f"{100 * r[k]:.1f}%") for k in
                            ("observed_risk", "before_predicted", "after_predicted")],
                          *[("—" if r[k] is None else f"{r[k]:.2f}") for k in ("before_o_e", "after_o_e")])
        _print_table(table)
    else:
        console.print("no held-out validation (--holdout-fraction 0): validate the new version on other patients "
                      f"with `autorisk validate FILE --model-version @{result.alias} --out DIR`", soft_wrap=True)
    console.print(f"summary: {folder / 'recalibration.md'}; score with --model-version @{result.alias}", soft_wrap=True)


def validation_table(validation, title: str | None = None) -> Table:
    """Observed against predicted risk, O/E, calibration slope and AUROC per outcome, arm and horizon."""
    model = validation.report["model"]
    table = Table("outcome", "treatment", "month", "patients", "onsets", "observed (95% CI)", "predicted",
                  "O/E (95% CI)", "slope (95% CI)", "AUROC",
                  title=title or f"{model['name']} v{model['version']} against observed outcomes")

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    def ci(m, key, fmt=lambda v: f"{v:.2f}"):
        if m.get(key) is None:
            return "—"
        lo, hi = m.get(f"{key}_lo"), m.get(f"{key}_hi")
        return fmt(m[key]) + ("" if lo is None else f" ({fmt(lo)}–{fmt(hi)})")

    for m in validation.metrics:
        observed = "—" if m["observed_risk"] is None else f"{pct(m['observed_risk'])} ({pct(m['observed_lo'])}–" \
                                                            f"{pct(m['observed_hi'])})"
        table.add_row(m["outcome"], m["treatment"], str(m["horizon_months"]), f"{m['n']:,}", f"{m['events']:,}",
                      observed, pct(m["mean_predicted"]), ci(m, "o_e"), ci(m, "calibration_slope"),
                      "—" if m["auroc"] is None else f"{m['auroc']:.3f}")
    return table


def _check_input_options(path: Path, sheet: str | None) -> None:
    """The input exists, has a name autorisk reads, and takes --sheet only when it is a workbook."""
    from pipelines.reading import InputFileError, check_input_name

    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if sheet is not None and check_input_name(path).format != "xlsx":
        raise InputFileError(f"--sheet: {path} is not an Excel workbook; --sheet applies to .xlsx files only")


def _score_with_progress(run):
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


def _print_caveats(summary, follow_up: dict[str, float], options) -> None:
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
    for treatment, months in follow_up.items():
        beyond = [h for h in options.horizons if h > months]
        if beyond:
            console.print(f"[yellow]risks at {', '.join(map(str, beyond))} months on {treatment} are extrapolated "
                          f"beyond the {months:g} months of follow-up on it in the training data "
                          "(flagged in the warnings column)[/]", soft_wrap=True, highlight=False)
    drift = summary.drift
    console.print(drift.headline, style="yellow" if drift.differs else None, soft_wrap=True, highlight=False)
    for detail in drift.details:
        console.print(f"  {detail}", soft_wrap=True, highlight=False)


@contextmanager
def _store_faults(uri: str, *, must_exist: bool = True):
    """Faults of the MLflow store and of the model as one line and the exit code of the README's table."""
    from models.store import StoreFault, diagnose, quiet_store_logs, require_store

    quiet_store_logs()
    try:
        require_store(uri, must_exist=must_exist)
        yield
    except StoreFault as fault:
        raise _fail(str(fault), fault.code) from fault
    except typer.Exit:
        raise
    except Exception as error:  # classified below; anything unknown is re-raised unchanged
        fault = diagnose(error, uri)
        if fault is None:
            raise
        raise _fail(str(fault), fault.code) from error


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless told otherwise.")] = "127.0.0.1",
    model_version: Annotated[str | None, typer.Option(help="Registered version to serve: a number, or @alias (default: @champion).")] = None,
) -> None:
    """Serve a registered version (default @champion) over REST (BentoML): POST /predict and the page at /."""
    from models.registry import load_model, version_or_alias
    from models.tracking import PROJECT_ROOT, configure_tracking
    from models.settings import SettingsError, load_settings as server_settings

    try:  # the server's settings before anything loads: a bad one is one line and exit 2
        server_settings()
        version, alias = version_or_alias(model_version)
    except (SettingsError, ValueError) as error:
        raise _fail(str(error), 2) from error
    uri = os.environ["MLFLOW_TRACKING_URI"] = configure_tracking()
    # The model is loaded here once before the server starts: a model that cannot load stops
    # the command with its exit code, instead of BentoML restarting workers that fail forever.
    with _store_faults(uri):
        served = load_model(alias=alias, version=version)
    # The service loads exactly the version printed here, even if the alias moves meanwhile.
    os.environ["AUTORISK_MODEL_VERSION"] = str(served.version)
    named = "" if version else f" (@{alias})"
    console.print(f"serving autoimmunity-risk version {served.version}{named} on http://{host}:{port}")
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:RiskService",
               "--host", host, "--port", str(port), "--working-dir", str(PROJECT_ROOT)]
    os.execv(sys.executable, command)


@app.command()
def build(
    version: Annotated[str | None, typer.Option(help="Registered version to pin: a number, or @alias (default: the one under @champion).")] = None,
) -> None:
    """Build a deployable Bento of the REST service with one model version pinned; print the Bento's tag."""
    import subprocess

    from models.registry import MODEL_NAME, resolve_version, version_or_alias
    from models.tracking import PROJECT_ROOT, configure_tracking
    from serving.bento import MODEL_NAME_ARG, MODEL_VERSION_ARG

    try:
        number, alias = version_or_alias(version)
    except ValueError as error:
        raise _fail(str(error).replace("--model-version", "--version"), 2) from error
    uri = os.environ["MLFLOW_TRACKING_URI"] = configure_tracking()
    with _store_faults(uri):
        found = resolve_version(alias=alias, version=number)
    pinned = str(found.version)
    # The version travels as a Bento argument, which every process serving the Bento receives
    # (serving/bento.py); the labels make it visible in `bentoml list` and `bentoml get`.
    command = [sys.executable, "-m", "bentoml", "build", str(PROJECT_ROOT),
               "--bentofile", str(PROJECT_ROOT / "bentofile.yaml"), "--output", "tag",
               "--arg", f"{MODEL_NAME_ARG}={MODEL_NAME}", "--arg", f"{MODEL_VERSION_ARG}={pinned}",
               "--label", f"model_name={MODEL_NAME}", "--label", f"model_version={pinned}",
               "--label", f"model_run_id={found.run_id}"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    tags = [line.removeprefix("__tag__:").strip() for line in result.stdout.splitlines()
            if line.startswith("__tag__:")]
    if result.returncode != 0 or not tags:
        raise _fail(f"bentoml build failed:\n{result.stderr.strip() or result.stdout.strip()}")
    # The tag alone on stdout, for scripts (`TAG=$(autorisk build)`); the explanation on stderr.
    errors.print(f"built Bento {tags[-1]} serving {MODEL_NAME} version {pinned}"
                 f"{'' if number else f' (@{alias} now)'}; it reads the model from the registry at "
                 "MLFLOW_TRACKING_URI when it starts", highlight=False, soft_wrap=True)
    typer.echo(tags[-1])


def _explain_epilog() -> str:
    from features.schema import FEATURES

    flags = ", ".join(f"--{f.name.replace('_', '-')}" for f in FEATURES)
    return f"The patient's values as flags: {flags} (they override the file's)."


def _flag_values(args: list[str]) -> tuple[Path | None, dict[str, str]]:
    """``["p.json", "--age-years", "34", "--sex=female"]`` -> ``(Path("p.json"), {"age_years": "34", "sex": "female"})``.

    Raises
    ------
    ValueError
        Naming an unknown flag, a flag without a value, or a second file.
    """
    from features.schema import ID_COLUMN, INPUT_NAMES

    known = {name.replace("_", "-"): name for name in (ID_COLUMN, *INPUT_NAMES)}
    path, values, tokens = None, {}, list(args)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--"):
            if path is not None:
                raise ValueError(f"unexpected argument {token!r} after the patient file {path}; give the patient's "
                                 "values as flags, e.g. --age-years 34")
            path = Path(token)
            continue
        flag, has_value, value = token[2:].partition("=")
        if flag not in known:
            raise ValueError(f"unknown option --{flag}; the patient's values are {', '.join('--' + k for k in known)}")
        if not has_value:
            if not tokens or tokens[0].startswith("--"):
                raise ValueError(f"--{flag} needs a value")
            value = tokens.pop(0)
        values[known[flag]] = value
    return path, values


def _patient_file(path: Path) -> dict:
    """One patient from a JSON file: an object, a list of one, or a request body with one patient."""
    import json

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read ({error})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    if isinstance(document, dict) and "patients" in document:
        document = document["patients"]
    if isinstance(document, list):
        if len(document) != 1:
            raise ValueError(f"{path}: holds {len(document)} patients; explain takes one")
        document = document[0]
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object with the patient's values")
    return document


def _shown_values(record: dict, matrix_row) -> dict[str, str | None]:
    """Each model input as the picture shows it: value and unit, or None where not provided."""
    import math

    from features.schema import CATEGORY_CODES, CATEGORY_LABELS, FEATURE_NAMES, FEATURES_BY_NAME

    shown = {}
    for name, value in zip(FEATURE_NAMES, matrix_row):
        feature = FEATURES_BY_NAME[name]
        if math.isnan(value):
            shown[name] = None
        elif feature.kind == "boolean":
            shown[name] = "yes" if value else "no"
        elif feature.kind == "category":
            category = next(k for k, code in CATEGORY_CODES[name].items() if code == value)
            shown[name] = CATEGORY_LABELS.get(category, category)
        else:  # the value as given: the matrix holds IL-21 as ln pg/mL
            shown[name] = f"{float(record[name]):g} {feature.unit}".strip()
            if name == "il21_pg_ml":
                assay = str(record["il21_assay"]).strip().lower()
                shown[name] += f", {CATEGORY_LABELS.get(assay, assay)}"
    return shown


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog=_explain_epilog())
def explain(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="The picture: .svg or .png.")] = Path("waterfall.svg"),
    month: Annotated[int, typer.Option(help="Months after the first course, 1-72.")] = 48,
    outcome: Annotated[str | None, typer.Option(help="thyroid or itp (default: one panel each).")] = None,
    model_version: Annotated[str | None, typer.Option(help="Registered version to use (default: @champion).")] = None,
) -> None:
    """One patient's risk explained input by input: a SHAP waterfall per outcome, as SVG or PNG, for letters and papers.

    autorisk explain [PATIENT.json] [--age-years 34 --sex female ...] --out waterfall.svg: the patient from a JSON
    file (one patient, as in POST /predict), from flags, or both.
    """
    import matplotlib
    import pandas as pd

    from features.schema import FEATURE_NAMES, FEATURES, ID_COLUMN, INPUT_NAMES, OUTCOME_DESCRIPTIONS, RESEARCH_NOTICE
    from features.validation import InputSchemaError, input_values, validate_frame
    from models.explanation_figures import waterfall_figure
    from models.registry import load_model, version_or_alias
    from models.scoring import ScoringOptions
    from models.tracking import configure_tracking

    kind = out.suffix.lower().lstrip(".")
    if kind not in ("svg", "png"):
        raise _fail(f"--out {out}: unsupported extension {out.suffix!r}; use .svg or .png", 2)
    try:
        patient, flags = _flag_values(ctx.args)
        record = (_patient_file(patient) if patient is not None else {}) | flags
        options = ScoringOptions(horizons=(month,))
    except ValueError as error:
        raise _fail(str(error).replace("horizons:", "--month:"), 2) from error
    unknown = sorted(set(record) - {ID_COLUMN, *INPUT_NAMES})
    if unknown:
        raise _fail(f"unknown field {', '.join(unknown)}; the patient's values are {', '.join(INPUT_NAMES)}", 2)
    missing = [f.name for f in FEATURES if f.required and record.get(f.name) in (None, "")]
    if missing:
        raise _fail(", ".join(f"{name}: required (in the file or as --{name.replace('_', '-')})" for name in missing), 2)
    try:
        batch = validate_frame(pd.DataFrame([{k: v for k, v in record.items() if k != ID_COLUMN}], dtype=object))
    except InputSchemaError as error:
        raise _fail(str(error), 2) from error
    if len(batch.rejects):
        raise _fail(f"patient: {batch.rejects['reason'].iloc[0]}", 2)

    try:
        version, alias = version_or_alias(model_version)
    except ValueError as error:
        raise _fail(str(error), 2) from error
    uri = configure_tracking()
    with _store_faults(uri):
        model = load_model(alias=alias, version=version)
    outcomes = model.risk_model.outcome_names
    if outcome is not None and outcome not in outcomes:
        raise _fail(f"--outcome must be one of {', '.join(outcomes)}, got {outcome!r}", 2)
    explained = model.risk_model.explain(batch.matrix, options.horizons)
    notes = "; ".join(n for n in (batch.warnings[0], model.risk_model.input_warnings(batch.matrix)[0],
                                  model.risk_model.extrapolation_notes(batch.matrix, options.horizons)[0]) if n)
    values = _shown_values(record, input_values(batch.matrix)[0])
    treatment = values["treatment"]
    panels = []
    for name in [outcome] if outcome else outcomes:
        scores = explained[name]
        panels.append({"title": f"{OUTCOME_DESCRIPTIONS.get(name, name)}: risk by month {month} on {treatment}",
                       "base_value": float(scores.base[0]), "shap": dict(zip(FEATURE_NAMES, scores.shap_at(0)[0].tolist())),
                       "risk": float(scores.risk[0, 0]), "values": values,
                       "reference_risk": float(scores.reference_risk()[0, 0]), "scale": scores.scale,
                       "extrapolated": bool(scores.extrapolated[0, 0])})
        console.print(f"{name}: {100 * scores.risk[0, 0]:.2g}% by month {month} on {treatment} "
                      f"(reference patient {100 * scores.reference_risk()[0, 0]:.2g}%)"
                      + (" — extrapolated" if scores.extrapolated[0, 0] else ""), highlight=False)
    figure = waterfall_figure(panels)
    out.parent.mkdir(parents=True, exist_ok=True)
    # SVG text stays text, to be edited in a paper; no creation date, so the same patient and model
    # give the same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "autorisk"}):
        figure.savefig(out, format=kind, dpi=200, metadata={"Date": None} if kind == "svg" else {"Software": None})
    if notes:
        console.print(f"[yellow]warnings: {notes}[/]", highlight=False, soft_wrap=True)
    console.print(f"model {model.name} v{model.version}; wrote {out}")
    console.print(RESEARCH_NOTICE)


# A typical candidate for alemtuzumab with high IL-21 on the original kit and thyroid antibodies.
DEMO_PATIENT = {"patient_id": "demo", "age_years": 34, "sex": "female", "disease_duration_years": 2.5, "edss": 2.0,
                "relapses_prior_2y": 2, "prior_dmt": False, "il21_pg_ml": 620.0, "il21_assay": "legacy_elisa",
                "smoker": False, "family_history_autoimmunity": False, "thyroid_antibodies": True}


def patient_risk_table(model, record: dict) -> Table:
    """One patient's risk by year under each treatment and the difference, as a console table."""
    from features.schema import MONITORING_YEARS, RESEARCH_NOTICE, TREATMENTS
    from features.validation import validate_records

    batch = validate_records([record])
    months = tuple(12 * year for year in range(1, MONITORING_YEARS + 1))
    contrast = model.risk_model.contrast(batch.matrix, months)
    follow_up = model.risk_model.follow_up_months()
    peaks = {o: int(v.peak_year[0]) for o, v in model.risk_model.monitoring(batch.matrix).items()}
    treatment = record.get("treatment") or "alemtuzumab"
    table = Table("outcome", "year", "on alemtuzumab", "on interferon beta-1a", "excess (alemtuzumab minus interferon)",
                  title=f"patient {record.get('patient_id', '')}: risk of onset by the end of each year after the "
                        f"first course (model v{model.version})",
                  caption=f"* extrapolated beyond the training data's follow-up on that treatment "
                          f"({', '.join(f'{t}: {m:g} months' for t, m in follow_up.items())}). "
                          f"On {treatment}, onsets are likeliest in year "
                          f"{', '.join(f'{y} ({o})' for o, y in peaks.items())}. " + RESEARCH_NOTICE)
    for outcome, by_treatment in contrast.items():
        for k, month in enumerate(months):
            cells = [f"{100 * by_treatment[t][0, k]:.1f}%" + ("*" if month > follow_up[t] else "") for t in TREATMENTS]
            excess = by_treatment["alemtuzumab"][0, k] - by_treatment["interferon_beta_1a"][0, k]
            table.add_row(outcome if k == 0 else "", str(month // 12), *cells, f"{100 * excess:+.1f} points")
    return table


@app.command()
def demo(
    outputs: Annotated[Path, typer.Option(help="Folder for the demo's files.")] = Path("outputs"),
    config: Annotated[Path | None, typer.Option(help="Experiment YAML.")] = None,
    clinic_n: Annotated[int, typer.Option(help="Patients in the simulated clinic cohort.")] = 500,
) -> None:
    """Simulate the trials, train and compare, promote a champion, score a clinic cohort."""
    from mlflow import MlflowClient

    from features.schema import ID_COLUMN, INPUT_NAMES
    from features.simulator import simulate_cohort, write_frame
    from models.registry import load_model, promote as promote_version
    from pipelines.config import DEFAULT_EXPERIMENT, load_experiment
    from pipelines.observed_loop import run_loop
    from pipelines.score import ScoringOptions, score_file
    from models.tracking import configure_tracking
    from pipelines.train import load_simulator, run_experiment

    started = time.perf_counter()
    _quiet_downloads()
    uri = configure_tracking()
    experiment = load_experiment(config or DEFAULT_EXPERIMENT)
    simulator = load_simulator(experiment)
    cohorts_dir = outputs / "cohorts"
    cohorts_dir.mkdir(parents=True, exist_ok=True)

    console.rule("1. synthetic trial cohorts")
    for cohort, path in _cohort_files(experiment, cohorts_dir):
        frame = simulate_cohort(simulator, cohort.profile, cohort.n, cohort.seed, il21_assay=cohort.il21_assay)
        write_frame(frame, path)
        rates = frame.groupby("treatment")[["thyroid_event", "itp_event"]].mean()
        text = "; ".join(f"{arm}: thyroid {r.thyroid_event:.1%}, ITP {r.itp_event:.2%}"
                         for arm, r in rates.iterrows())
        console.print(f"{path} ({len(frame):,} patients) {text}")

    console.rule("2. check the simulator against the published targets")
    from pipelines.cohort_report import run_cohort_report

    for profile in simulator.profiles:
        validation, path, _ = run_cohort_report(simulator, profile, 200_000, 1, outputs / "cohort-reports")
        passed = int(validation.checks["passed"].sum())
        console.print(f"{profile}: {passed}/{len(validation.checks)} targets within tolerance -> {path}")

    console.rule("3. train and compare model families")
    run_experiment(experiment, log=console.print)

    console.rule("4. promote a champion")
    decision = promote_version(MlflowClient(), experiment.registered_model_name)
    console.print(f"rule: {decision.rule}")
    console.print(f"champion: version {decision.chosen.version} ({decision.chosen.family}, held-out log loss over "
                  f"the incidence's {decision.chosen.metric:.4f}); challenger: {decision.previous or 'none'}")
    report(decision.chosen.version, outputs, experiment.registered_model_name)

    console.rule("5. score a simulated real-world clinic cohort")
    clinic = simulate_cohort(simulator, "clinic", clinic_n, 2026)[[ID_COLUMN, *INPUT_NAMES]]
    clinic_path, scores_path = outputs / "clinic.csv", outputs / "clinic_scores.csv"
    write_frame(clinic, clinic_path)
    model = load_model(experiment.registered_model_name)
    options = ScoringOptions()
    summary = score_file(clinic_path, scores_path, model, options=options)
    console.print(f"scored {summary.scored:,} of {summary.read:,} patients "
                  f"({summary.rejected} rejected) -> {scores_path}")
    _print_caveats(summary, model.risk_model.follow_up_months(), options)

    console.rule("6. a registry's own patients: validate the champion, recalibrate it, validate again")
    loop = run_loop(model, simulator, outputs / "registry", log=console.print)
    _print_table(loop_table(loop))

    console.rule("7. one patient's risks over time, under alemtuzumab and under interferon beta-1a")
    console.print(patient_risk_table(model, DEMO_PATIENT))

    console.rule("done")
    console.print(f"finished in {time.perf_counter() - started:.0f} s")
    console.print(f"MLflow store: {uri}")
    console.print(f"open the MLflow UI:   .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000")
    console.print("start the REST server: .venv/bin/autorisk serve --port 3000")
    console.print("score a file:          .venv/bin/autorisk score outputs/clinic.csv --out scores.csv")
    console.print("validate on outcomes:  .venv/bin/autorisk validate outputs/registry/registry-test.csv --out outputs/v")
    console.print("other experiments:     .venv/bin/autorisk train --config experiments/il21-no-effect.yaml")
    console.print("Research tool on synthetic data: not for clinical decisions.")


def loop_table(loop: dict) -> Table:
    """The registry loop's figures: true, observed and predicted risk before and after the recalibration."""
    table = Table("outcome", "treatment", "month", "true risk", "observed (Kaplan-Meier)",
                  f"predicted, v{loop['champion']}", f"predicted, v{loop['recalibrated']} (@{loop['alias']})",
                  "O/E before", "O/E after",
                  title=f"registry test file ({loop['test']['patients']:,} patients): champion against its "
                        f"recalibration on {loop['development']['patients']:,} others")
    for r in loop["rows"]:
        table.add_row(r["outcome"], r["treatment"], str(r["horizon_months"]),
                      *[("—" if r[k] is None else f"{100 * r[k]:.1f}%") for k in ("true", "observed", "before", "after")],
                      *[("—" if r[k] is None else f"{r[k]:.2f}") for k in ("before_o_e", "after_o_e")])
    return table


def _cohort_files(experiment, folder: Path) -> list[tuple[object, Path]]:
    """Each simulated cohort of an experiment with a file of its own: training, external and benchmark cohorts.

    Named by role and name (``train-care-ms1.parquet``, ``external-current-assay.parquet``,
    ``benchmark-care-ms1.parquet``), with the seed added where two would share a name, so that no
    cohort's file replaces another's.
    """
    from collections import Counter

    from pipelines.config import CohortSpec

    named = [("train", c.profile, c) for c in experiment.train_cohorts if isinstance(c, CohortSpec)]
    named += [("external", c.name, c) for c in experiment.external_cohorts if isinstance(c, CohortSpec)]
    if experiment.benchmark_cohort is not None:
        named.append(("benchmark", experiment.benchmark_cohort.profile, experiment.benchmark_cohort))
    counts = Counter(f"{role}-{name}" for role, name, _ in named)
    return [(cohort, folder / (f"{role}-{name}" + (f"-seed{cohort.seed}" if counts[f"{role}-{name}"] > 1 else "")
                               + ".parquet")) for role, name, cohort in named]


def _quiet_downloads() -> None:
    """No artifact download bars from MLflow (a value the user set wins), and none of its INFO
    notes (validating an input example, creating tables): the demo's own lines say what happens."""
    import logging

    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


if __name__ == "__main__":
    app()
