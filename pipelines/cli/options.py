"""Every command's options and help, one frozen dataclass per command: what ``autorisk --help`` and each
command's ``--help`` show, without loading what the commands run.

A field is declared as a Typer parameter is (``Annotated[type, typer.Option(...)]`` with its default) and a
class's docstring is its command's help; :func:`pipelines.cli.lazy_command` turns a class into the
command, which hands the command's module one instance of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import typer

from features.schema import FEATURES

EXPERIMENT_HELP = "Experiment YAML (default: experiments/baseline-comparison.yaml)."
KIT_HELP = "The IL-21 kit (legacy_elisa or current_elisa) of every IL-21 value in the file that names none."
MODEL_NAME_HELP = "Registered model name."
MODEL_VERSION_HELP = "Registered version: a number, or @alias (default: @champion)."
SHEET_HELP = "The sheet of an .xlsx workbook (default: the first)."
WORLD_HELP = "World of experiments/worlds/ (docs/worlds.md)."


@dataclass(frozen=True)
class SimulateOptions:
    """Simulate a synthetic cohort with event times, censoring and true risks."""

    profile: Annotated[str, typer.Option(help="Profile: camms223, care-ms1, care-ms2, extension or clinic.")]
    out: Annotated[Path, typer.Option(help="Output file, .csv or .parquet.")]
    n: Annotated[int, typer.Option(help="Number of randomised patients.")] = 1000
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 0
    il21_assay: Annotated[str | None, typer.Option(help="Measure IL-21 with this kit (legacy_elisa, current_elisa) instead of the profile's.")] = None
    config: Annotated[Path | None, typer.Option(help="Simulator assumptions YAML.")] = None
    world: Annotated[str, typer.Option(help=WORLD_HELP)] = "default"


@dataclass(frozen=True)
class CohortReportOptions:
    """Compare simulated cohorts with every published target; write and log the report. Exit 1 if any target fails."""

    profile: Annotated[list[str] | None, typer.Option(help="Profile(s) to validate (default: all).")] = None
    n: Annotated[int, typer.Option(help="Patients simulated per profile.")] = 200_000
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1
    out: Annotated[Path, typer.Option(help="Folder for the reports.")] = Path("outputs/cohort-reports")
    config: Annotated[Path | None, typer.Option(help="Simulator assumptions YAML.")] = None
    world: Annotated[str, typer.Option(help=WORLD_HELP)] = "default"


@dataclass(frozen=True)
class TrainOptions:
    """Train every model family of an experiment, log it to MLflow and register the models."""

    config: Annotated[Path | None, typer.Option(help=EXPERIMENT_HELP)] = None


@dataclass(frozen=True)
class WorldsOptions:
    """Train the experiment in every world and judge each world's champion against its truth (docs/worlds.md)."""

    quick: Annotated[bool, typer.Option("--quick", help="Every cohort a tenth of its size (at least 2,000), tuning 4 trials in 40 s, 5 interval refits: minutes, for tests and trial sweeps.")] = False
    world: Annotated[list[str] | None, typer.Option(help="World(s) to train in (default: every shipped world).")] = None
    config: Annotated[Path | None, typer.Option(help=EXPERIMENT_HELP)] = None
    out: Annotated[Path, typer.Option(help="Markdown file for the tables.")] = Path("outputs/worlds.md")


@dataclass(frozen=True)
class PromoteOptions:
    """Point the @champion alias at the best registered version, by a stated rule."""

    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the decision without making it.")] = False
    experiment: Annotated[str | None, typer.Option(help="Choose among this experiment's versions (default: the newest version's).")] = None
    model_name: Annotated[str, typer.Option(help=MODEL_NAME_HELP)] = "autoimmunity-risk"


@dataclass(frozen=True)
class ReportOptions:
    """Write the model card (Markdown and HTML) of a registered version."""

    version: Annotated[str | None, typer.Argument(help="Registered version (default: @champion).")] = None
    out: Annotated[Path, typer.Option(help="Folder for the model card.")] = Path("outputs")
    model_name: Annotated[str, typer.Option(help=MODEL_NAME_HELP)] = "autoimmunity-risk"


@dataclass(frozen=True)
class SampleSizeOptions:
    """Learning curves against the simulator's truth and Riley's minimum sample size: how many patients a real IL-21 study would need."""

    config: Annotated[Path | None, typer.Option(help="Experiment YAML: the simulated world, the training mix and the families (default: experiments/baseline-comparison.yaml).")] = None
    quick: Annotated[bool, typer.Option("--quick", help="Three sizes up to 6,000, two repeats, a 4,000-patient benchmark: seconds, for a first look.")] = False
    sizes: Annotated[str | None, typer.Option(help="Training sizes, comma-separated (default 500,1000,2000,5000,10000,20000,60000).")] = None
    repeats: Annotated[int | None, typer.Option(help="Fits per size on fresh samples (default 5).")] = None
    family: Annotated[list[str] | None, typer.Option(help="Family of the experiment to fit (repeatable; default: all).")] = None
    out: Annotated[Path, typer.Option(help="Folder for the report, its plots and tables.")] = Path("outputs/sample-size")


@dataclass(frozen=True)
class ScoreOptions:
    """Score a cohort file: risks and SHAP values per patient, outcome and horizon, rejects with reasons, and a drift report."""

    input: Annotated[Path, typer.Argument(help="Cohort file: .csv (comma, semicolon or tab), .tsv, .csv.gz, .tsv.gz, .xlsx or .parquet.")]
    out: Annotated[Path, typer.Option(help="Scores file, .csv or .parquet.")]
    rejects: Annotated[Path | None, typer.Option(help="Rejected records (default: OUT.rejects.EXT).")] = None
    ignore_extra_columns: Annotated[bool, typer.Option("--ignore-extra-columns", help="Ignore columns that are not features instead of failing.")] = False
    il21_assay: Annotated[str | None, typer.Option(help=KIT_HELP)] = None
    sheet: Annotated[str | None, typer.Option(help="The sheet of an .xlsx workbook to score (default: the first).")] = None
    model_version: Annotated[str | None, typer.Option(help=MODEL_VERSION_HELP)] = None
    chunk_rows: Annotated[int, typer.Option(help="Records per chunk.")] = 50_000
    engine: Annotated[str, typer.Option(help="Where to score: local (this process) or spark (Apache Spark; needs the spark extra).")] = "local"
    spark_master: Annotated[str, typer.Option(help="Spark master URL with --engine spark: local[*], local[4], spark://host:7077, yarn, ...")] = "local[*]"
    horizons: Annotated[str, typer.Option(help="Months after the first course to give the risks at, comma-separated, each 1-72.")] = "24,48"
    contrast: Annotated[bool, typer.Option("--contrast", help="Add each patient's risks under both treatments and the difference (alemtuzumab minus interferon beta-1a).")] = False


@dataclass(frozen=True)
class ValidateOptions:
    """Validate a registered version on a cohort's own observed, censored outcomes, per outcome, arm and horizon."""

    input: Annotated[Path, typer.Argument(help="A cohort with observed outcomes: per outcome <outcome>_event (1/0) and <outcome>_time_months; any format `score` reads.")]
    out: Annotated[Path, typer.Option(help="Folder for validation.json, validation.md, validation.html and rejects.csv.")]
    model_version: Annotated[str | None, typer.Option(help=MODEL_VERSION_HELP)] = None
    horizons: Annotated[str, typer.Option(help="Months after the first course to validate at, comma-separated, each 1-72.")] = "12,24,36,48"
    outcomes: Annotated[str | None, typer.Option(help="Outcomes to validate, comma-separated (default: every outcome of the model).")] = None
    il21_assay: Annotated[str | None, typer.Option(help=KIT_HELP)] = None
    sheet: Annotated[str | None, typer.Option(help=SHEET_HELP)] = None


@dataclass(frozen=True)
class RecalibrateOptions:
    """Recalibrate a registered version to a local population; register the result under --alias (never @champion)."""

    input: Annotated[Path, typer.Argument(help="The local cohort with observed outcomes (as for `validate`).")]
    alias: Annotated[str, typer.Option(help="Alias for the new version, e.g. registry-2026 (never champion or challenger).")]
    model_version: Annotated[str | None, typer.Option(help="Registered version to recalibrate: a number, or @alias (default: @champion).")] = None
    method: Annotated[str, typer.Option(help="baseline (each treatment's baseline risk over time) or baseline+slope (and a calibration slope).")] = "baseline"
    holdout_fraction: Annotated[float, typer.Option(help="Share of the file held out to validate before and after (0: fit on the whole file, no held-out check).")] = 0.25
    out: Annotated[Path | None, typer.Option(help="Folder for the held-out validations and the summary (default: outputs/recalibrate-<alias>).")] = None
    horizons: Annotated[str, typer.Option(help="Months to validate at, comma-separated, each 1-72.")] = "12,24,36,48"
    il21_assay: Annotated[str | None, typer.Option(help="The IL-21 kit of every IL-21 value in the file that names none.")] = None
    sheet: Annotated[str | None, typer.Option(help=SHEET_HELP)] = None
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and of the interval's resamples.")] = 0


@dataclass(frozen=True)
class ServeOptions:
    """Serve a registered version (default @champion) over REST (BentoML): POST /predict and the page at /."""

    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless told otherwise.")] = "127.0.0.1"
    model_version: Annotated[str | None, typer.Option(help="Registered version to serve: a number, or @alias (default: @champion).")] = None


@dataclass(frozen=True)
class BuildOptions:
    """Build a deployable Bento of the REST service with one model version pinned; print the Bento's tag."""

    version: Annotated[str | None, typer.Option(help="Registered version to pin: a number, or @alias (default: the one under @champion).")] = None


@dataclass(frozen=True)
class ExplainOptions:
    """One patient's risk explained input by input: a SHAP waterfall per outcome, as SVG or PNG, for letters and papers.

    autorisk explain [PATIENT.json] [--age-years 34 --sex female ...] --out waterfall.svg: the patient from a JSON
    file (one patient, as in POST /predict), from flags, or both.
    """

    # The patient file and the patient's values as flags come as extra arguments (the command gets them too).
    COMMAND: ClassVar[dict] = {
        "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
        "epilog": "The patient's values as flags: " + ", ".join("--" + f.name.replace("_", "-") for f in FEATURES)
                  + " (they override the file's).",
    }

    out: Annotated[Path, typer.Option(help="The picture: .svg or .png.")] = Path("waterfall.svg")
    month: Annotated[int, typer.Option(help="Months after the first course, 1-72.")] = 48
    outcome: Annotated[str | None, typer.Option(help="thyroid or itp (default: one panel each).")] = None
    model_version: Annotated[str | None, typer.Option(help="Registered version to use (default: @champion).")] = None


@dataclass(frozen=True)
class DemoOptions:
    """Simulate the trials, train and compare, promote a champion, score a clinic cohort."""

    outputs: Annotated[Path, typer.Option(help="Folder for the demo's files.")] = Path("outputs")
    config: Annotated[Path | None, typer.Option(help="Experiment YAML.")] = None
    clinic_n: Annotated[int, typer.Option(help="Patients in the simulated clinic cohort.")] = 500
