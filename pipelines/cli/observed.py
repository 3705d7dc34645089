"""``autorisk validate`` and ``autorisk recalibrate``: a registered version against a cohort's own observed
outcomes, and updated to that population."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from features.schema import check_horizons
from features.validation import InputSchemaError
from models.registry import LoadedModel, load_model, version_or_alias
from pipelines.cli.common import (
    check_input_options,
    console,
    fail,
    months,
    option_message,
    print_table,
    quiet_downloads,
    store_faults,
)
from pipelines.cli.options import RecalibrateOptions, ValidateOptions
from pipelines.intake import check_kit
from pipelines.observed import ObservedFile
from pipelines.reading import InputFileError
from pipelines.recalibrate import RecalibrationJob, RecalibrationResult, check_alias, comparison_rows, run_recalibration
from models.tracking import configure_tracking
from pipelines.validate import Validation, run_validation


def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _ratio(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _with_interval(m: dict, key: str, show=_ratio) -> str:
    if m.get(key) is None:
        return "—"
    lo, hi = m.get(f"{key}_lo"), m.get(f"{key}_hi")
    return show(m[key]) + ("" if lo is None else f" ({show(lo)}–{show(hi)})")


def validation_table(validation: Validation, title: str | None = None) -> Table:
    """Observed against predicted risk, O/E, calibration slope and AUROC per outcome, arm and horizon."""
    model = validation.report["model"]
    table = Table("outcome", "treatment", "month", "patients", "onsets", "observed (95% CI)", "predicted",
                  "O/E (95% CI)", "slope (95% CI)", "AUROC",
                  title=title or f"{model['name']} v{model['version']} against observed outcomes")
    for m in validation.metrics:
        observed = "—" if m["observed_risk"] is None else \
            f"{_percent(m['observed_risk'])} ({_percent(m['observed_lo'])}–{_percent(m['observed_hi'])})"
        table.add_row(m["outcome"], m["treatment"], str(m["horizon_months"]), f"{m['n']:,}", f"{m['events']:,}",
                      observed, _percent(m["mean_predicted"]), _with_interval(m, "o_e"),
                      _with_interval(m, "calibration_slope"), "—" if m["auroc"] is None else f"{m['auroc']:.3f}")
    return table


def _about_input(path: Path, error: Exception) -> str:
    """An error of the file's or of an option's, naming the file where the message does not start with either."""
    return str(error) if str(error).startswith(("--", str(path))) else f"{path}: {error}"


def validate(given: ValidateOptions) -> None:
    """The version against the file's outcomes: the table on the console, the reports in ``--out``, one run logged."""
    try:
        at = check_horizons(months(given.horizons))
        version, alias = version_or_alias(given.model_version)
        source = ObservedFile(given.input, check_kit(given.il21_assay) if given.il21_assay is not None else None,
                              given.sheet)
        check_input_options(given.input, given.sheet)
    except (ValueError, InputFileError) as error:
        raise fail(option_message(error), 2) from error
    quiet_downloads()
    with store_faults(configure_tracking()):
        loaded = load_model(alias=alias, version=version)
        try:
            validation, files, run_id = run_validation(
                source, given.out, loaded, horizons=at,
                outcomes=tuple(o.strip() for o in given.outcomes.split(",")) if given.outcomes else None)
        except (InputFileError, InputSchemaError, ValueError) as error:
            raise fail(_about_input(given.input, error), 2) from error
    print_table(validation_table(validation))
    for warning in validation.report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning.removeprefix('WARNING: ')}", soft_wrap=True, highlight=False)
    console.print(f"reports: {files['validation.md']}, {files['validation.html']}, {files['validation.json']}; "
                  f"rejects: {files['rejects.csv']}; MLflow run {run_id} (experiment validations)", soft_wrap=True)


def _recalibration_job(given: RecalibrateOptions) -> tuple[RecalibrationJob, str | None, str]:
    """The recalibration the options describe and the ``(version, alias)`` to recalibrate, checked before the
    model loads; exit 2 naming the problem."""
    try:
        at = check_horizons(months(given.horizons))
        version, alias = version_or_alias(given.model_version)
        kit = check_kit(given.il21_assay) if given.il21_assay is not None else None
        name = check_alias(given.alias)
        check_input_options(given.input, given.sheet)
        job = RecalibrationJob(ObservedFile(given.input, kit, given.sheet), name,
                               given.out or Path("outputs") / f"recalibrate-{name}", method=given.method,
                               holdout_fraction=given.holdout_fraction, horizons=at, seed=given.seed)
    except (ValueError, InputFileError) as error:
        raise fail(option_message(error), 2) from error
    return job, version, alias


def comparison_table(result: RecalibrationResult, loaded: LoadedModel) -> Table:
    """Observed and predicted risk and O/E on the held-out patients, before and after the recalibration."""
    table = Table("outcome", "treatment", "month", "observed", "predicted before", "predicted after",
                  "O/E before", "O/E after",
                  title=f"held-out {result.held_out:,} patients: v{loaded.version} before, v{result.version} after")
    for r in comparison_rows(result.before, result.after):
        table.add_row(r["outcome"], r["treatment"], str(r["horizon_months"]),
                      *[_percent(r[k]) for k in ("observed_risk", "before_predicted", "after_predicted")],
                      *[_ratio(r[k]) for k in ("before_o_e", "after_o_e")])
    return table


def recalibrate(given: RecalibrateOptions) -> None:
    """The version recalibrated on the file and registered under the alias; the held-out comparison shown."""
    job, version, alias = _recalibration_job(given)
    quiet_downloads()
    with store_faults(configure_tracking()):
        loaded = load_model(alias=alias, version=version)
        try:
            result = run_recalibration(job, loaded)
        except (InputFileError, InputSchemaError, ValueError) as error:
            raise fail(_about_input(given.input, error), 2) from error
    console.print(f"recalibrated {loaded.name} v{loaded.version} ({job.method}) on {result.fitted_on:,} patients: "
                  f"registered v{result.version} as @{result.alias} (MLflow run {result.run_id}); "
                  + "; ".join(f"{o} slope {d.slope:.3f}" for o, d in result.done.items()), soft_wrap=True)
    if result.after is not None:
        print_table(comparison_table(result, loaded))
    else:
        console.print("no held-out validation (--holdout-fraction 0): validate the new version on other patients "
                      f"with `autorisk validate FILE --model-version @{result.alias} --out DIR`", soft_wrap=True)
    console.print(f"summary: {job.out / 'recalibration.md'}; score with --model-version @{result.alias}", soft_wrap=True)
