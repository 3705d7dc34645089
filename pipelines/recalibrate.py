"""``autorisk recalibrate``: a registered version updated to a local population, registered as a new version.

The file's patients (with their observed outcomes) are split into a part to recalibrate on and a held-out
part (``--holdout-fraction``, stratified by treatment); each treatment's baseline risk over time, and with
``baseline+slope`` a calibration slope, is re-estimated on the first with the model's patient effects held
fixed (:mod:`models.recalibration`); both versions are validated on the held-out part in the report format
of ``autorisk validate`` (:mod:`pipelines.validate`). The new version is registered with its lineage in
tags (the version it came from, the file's digest, the method, patients and onsets), under the alias the
user names; ``@champion`` never moves. Aggregates only go into MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from sklearn.model_selection import train_test_split

from features.drift import REFERENCE_ARTIFACT, reference_profile
from features.schema import EVALUATION_HORIZONS_MONTHS
from models.names import (
    MODEL_TAG,
    MODEL_VERSION_TAG,
    ORIGIN_RECALIBRATION,
    RECALIBRATIONS_EXPERIMENT,
    ROLE_RECALIBRATION,
    ROLE_TAG,
    VERSION_EXPERIMENT_TAG,
    VERSION_FAMILY_TAG,
    VERSION_FILE_TAG,
    VERSION_METHOD_TAG,
    VERSION_ORIGIN_TAG,
    VERSION_SOURCE_TAG,
    validation_metric,
)
from models.recalibration import METHODS, Recalibration, recalibrated_model
from models.registry import CHALLENGER, CHAMPION, LoadedModel
from pipelines.observed import ObservedCohort, ObservedFile
from pipelines.registration import register_risk_model
from pipelines.score import load_reference
from models.tracking import NOTE_TAG, ensure_experiment
from pipelines.validate import LOGGED, Validation, log_validation, validate_cohort, write_outputs

RESERVED_ALIASES = (CHAMPION, CHALLENGER)
RECALIBRATION_PROFILE_ARTIFACT = "reference/recalibration_profile.json"


@dataclass(frozen=True)
class RecalibrationResult:
    """What ``autorisk recalibrate`` did.

    Attributes
    ----------
    version : str
        The new registered version.
    alias : str
    done : dict of str to Recalibration
        Per outcome: the slope, and the local onsets and follow-up per treatment.
    fitted_on, held_out : int
        Patients recalibrated on, and held out.
    before, after : Validation or None
        The source and the new version on the held-out patients (None with no holdout).
    run_id : str
        The recalibration's MLflow run.
    """

    version: str
    alias: str
    done: dict[str, Recalibration]
    fitted_on: int
    held_out: int
    before: Validation | None
    after: Validation | None
    run_id: str


@dataclass(frozen=True)
class RecalibrationJob:
    """One recalibration, checked when it is made (before any model loads).

    Attributes
    ----------
    source : ObservedFile
        The local patients with their observed outcomes.
    alias : str
        The alias the new version is registered under (:func:`check_alias`; a leading ``@`` is dropped).
    out : Path
        Folder for the held-out validations and the summary.
    method : str
        One of :data:`models.recalibration.METHODS`.
    holdout_fraction : float
        Share of the file held out to validate before and after, in [0, 1) (0: no held-out check).
    horizons : tuple of int
        Months to validate at.
    seed : int
        Seed of the held-out split and of the interval's resamples.

    Raises
    ------
    ValueError
        For an alias that must not be set, a method or fraction out of range (naming the option).
    """

    source: ObservedFile
    alias: str
    out: Path
    method: str = "baseline"
    holdout_fraction: float = 0.25
    horizons: tuple[int, ...] = EVALUATION_HORIZONS_MONTHS
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alias", check_alias(self.alias))
        if self.method not in METHODS:
            raise ValueError(f"--method: {self.method!r} is not one of {', '.join(METHODS)}")
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(f"--holdout-fraction: {self.holdout_fraction:g} is not in [0, 1)")

    @property
    def name(self) -> str:
        """The file's name, as runs and reports give it."""
        return Path(self.source.path).name


def check_alias(alias: str) -> str:
    """The alias to register under; ValueError for one that must not move (champion, challenger) or that MLflow
    would refuse."""
    name = alias.strip().removeprefix("@")
    if name.lower() in RESERVED_ALIASES:
        raise ValueError(f"--alias: @{name} is set by `autorisk promote` only; a recalibrated version is for its "
                         "own population: name it after it (for example --alias registry-2026)")
    if not name or not name.replace("-", "").replace("_", "").isalnum() or name.lower() == "latest" \
            or (name[0] in "vV" and name[1:].isdigit()):
        raise ValueError(f"--alias: {alias!r} cannot be an alias: use letters, digits, '-' and '_' (not 'latest' "
                         "nor v<number>)")
    return name


def split_cohort(cohort: ObservedCohort, fraction: float, seed: int) -> tuple[ObservedCohort, ObservedCohort | None]:
    """The part to recalibrate on and the held-out part (``fraction`` of the patients, stratified by treatment)."""
    if fraction == 0:
        return cohort, None
    if not 0 < fraction < 1:
        raise ValueError(f"--holdout-fraction: {fraction:g} is not in [0, 1)")
    rows = np.arange(len(cohort.frame))
    strata = cohort.frame["treatment"].fillna("alemtuzumab").astype(str).to_numpy()
    fit, held = train_test_split(rows, test_size=fraction, random_state=seed, stratify=strata)

    def part(index: np.ndarray) -> ObservedCohort:
        index = np.sort(index)
        return dataclasses.replace(cohort, frame=cohort.frame.iloc[index].reset_index(drop=True),
                                   matrix=cohort.matrix[index], lines=cohort.lines[index])

    return part(fit), part(held)


def _outcomes(cohort: ObservedCohort, outcomes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {o: (cohort.frame[f"{o}_event"].to_numpy(dtype=int), cohort.frame[f"{o}_time_months"].to_numpy(dtype=float))
            for o in outcomes}


def run_recalibration(job: RecalibrationJob, loaded: LoadedModel) -> RecalibrationResult:
    """Recalibrate ``loaded`` on ``job``'s file, validate before and after, register and alias the result.

    Raises
    ------
    ValueError
        For a file too small to recalibrate on or to split.
    InputFileError, features.validation.InputSchemaError
        When the file cannot be used at all (nothing is registered then).
    """
    outcomes = loaded.risk_model.outcome_names
    cohort = job.source.read(outcomes)
    if len(cohort.frame) < 20:
        raise ValueError(f"{job.source.path}: {len(cohort.frame)} usable records; too few to recalibrate on")
    fit, held = split_cohort(cohort, job.holdout_fraction, job.seed)
    updated, done = recalibrated_model(loaded.risk_model, fit.matrix, _outcomes(fit, outcomes), job.method,
                                       seed=job.seed)
    before = after = None
    if held is not None:  # validated before anything is registered: a failure leaves no version behind
        reference, note = load_reference(loaded)  # drift against the source's training data, both times
        unregistered = LoadedModel(name=loaded.name, version="(new)", run_id="", risk_model=updated)
        before, after = (validate_cohort(model, held, job.source.path, job.horizons, reference=reference,
                                         why_no_reference=note, seed=job.seed) for model in (loaded, unregistered))
    new = _register(job, loaded, updated, fit, done, cohort.digest)
    if held is not None:
        after.report["model"] |= {"version": new.version, "run_id": new.run_id}
        for name, validation, model in (("holdout-before", before, loaded), ("holdout-after", after, new)):
            files = write_outputs(validation, held, job.out / name, title=f"{model.name} v{model.version} on the "
                                  f"held-out {len(held.frame):,} patients of {job.name} ({name.split('-')[1]} "
                                  "recalibration)")
            log_validation(validation, files, registered_name=model.name)
        _log_comparison(new.run_id, before, after)
    result = RecalibrationResult(new.version, job.alias, done, len(fit.frame), 0 if held is None else len(held.frame),
                                 before, after, new.run_id)
    write_summary(job, loaded, new, result)
    return result


def _register(job: RecalibrationJob, loaded: LoadedModel, updated, fit: ObservedCohort,
              done: dict[str, Recalibration], digest: str) -> LoadedModel:
    """The recalibration's run (experiment ``recalibrations``) with the new version registered from it."""
    client = mlflow.MlflowClient()
    source = client.get_model_version(loaded.name, loaded.version)
    ensure_experiment(RECALIBRATIONS_EXPERIMENT, description=(
        "Each `autorisk recalibrate`: a registered version's baseline risk (and slope) re-estimated on a local "
        "population's observed outcomes, registered as a new version with its lineage."))
    events = {o: int(fit.frame[f"{o}_event"].sum()) for o in done}
    params = {"source_model": loaded.name, "source_version": loaded.version, "method": job.method,
              "file": job.name, "file_sha256": digest, "patients": len(fit.frame),
              "holdout_fraction": job.holdout_fraction, "seed": job.seed} | {f"onsets_{o}": n for o, n in events.items()}
    note = (f"{loaded.name} v{loaded.version} recalibrated ({job.method}) on {len(fit.frame):,} patients of "
            f"`{job.name}`; " + "; ".join(f"{o}: {events[o]:,} onsets, slope {d.slope:.3f}" for o, d in done.items()))
    with mlflow.start_run(run_name=f"recalibrate/{loaded.name}/v{loaded.version}/{job.alias}",
                          tags={ROLE_TAG: ROLE_RECALIBRATION, MODEL_TAG: loaded.name,
                                MODEL_VERSION_TAG: loaded.version, NOTE_TAG: note}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics({f"{o}_slope": d.slope for o, d in done.items()})
        # Aggregates only. The new version's patient effects and training range are the source's, so drift is
        # judged against the source's training data, as before; the local population's profile is kept beside it.
        reference, _ = load_reference(loaded)
        if reference is not None:
            mlflow.log_dict(reference, REFERENCE_ARTIFACT)
        mlflow.log_dict(reference_profile(fit.matrix), RECALIBRATION_PROFILE_ARTIFACT)
        version = register_risk_model(updated, loaded.name, {
            VERSION_ORIGIN_TAG: ORIGIN_RECALIBRATION, VERSION_SOURCE_TAG: loaded.version, VERSION_FILE_TAG: digest,
            VERSION_METHOD_TAG: job.method, VERSION_FAMILY_TAG: source.tags.get(VERSION_FAMILY_TAG, updated.family),
            VERSION_EXPERIMENT_TAG: RECALIBRATIONS_EXPERIMENT, "patients": str(len(fit.frame)),
            **{f"onsets_{o}": str(n) for o, n in events.items()}})
    client.set_registered_model_alias(loaded.name, job.alias, version)
    return LoadedModel(name=loaded.name, version=version, run_id=run.info.run_id, risk_model=updated)


def _log_comparison(run_id: str, before: Validation, after: Validation) -> None:
    """The held-out figures before and after, on the recalibration's run (``before_`` / ``after_`` metrics)."""
    values = {}
    for prefix, validation in (("before_", before), ("after_", after)):
        values |= {validation_metric(m["outcome"], m["treatment"], m["horizon_months"], key, prefix): float(m[key])
                   for m in validation.metrics for key in LOGGED if m.get(key) is not None}
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in values.items()])


def comparison_rows(before: Validation, after: Validation) -> list[dict]:
    """Per outcome, treatment and horizon: observed risk, and each version's mean predicted risk and O/E."""
    rows = []
    for m in after.metrics:
        b = before.find(m["outcome"], m["treatment"], m["horizon_months"])
        rows.append({"outcome": m["outcome"], "treatment": m["treatment"], "horizon_months": m["horizon_months"],
                     "n": m["n"], "observed_risk": m["observed_risk"], "before_predicted": b["mean_predicted"],
                     "after_predicted": m["mean_predicted"], "before_o_e": b["o_e"], "after_o_e": m["o_e"],
                     "before_auroc": b["auroc"], "after_auroc": m["auroc"]})
    return rows


def write_summary(job: RecalibrationJob, loaded: LoadedModel, new: LoadedModel, result: RecalibrationResult) -> Path:
    """``recalibration.json`` and ``recalibration.md`` in ``job.out``: what was done and the held-out comparison."""
    out, before, after = job.out, result.before, result.after
    out.mkdir(parents=True, exist_ok=True)
    summary = {"source": {"name": loaded.name, "version": loaded.version}, "new": {"version": new.version,
               "alias": job.alias}, "method": job.method, "recalibrated_on": result.fitted_on,
               "held_out": result.held_out,
               "slopes": {o: d.slope for o, d in result.done.items()},
               "follow_up_months": new.risk_model.follow_up_months(),
               "comparison": comparison_rows(before, after) if after is not None else None}
    (out / "recalibration.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    lines = [f"# {loaded.name} v{loaded.version} recalibrated ({job.method}) as v{new.version} (@{job.alias})", "",
             f"Recalibrated on {result.fitted_on:,} patients; " + (
                 "no held-out validation (--holdout-fraction 0)." if before is None else
                 f"validated on {result.held_out:,} held-out patients (holdout-before/, holdout-after/)."), ""]
    if after is not None:
        lines += ["| outcome | treatment | month | observed risk | predicted before | predicted after | O/E before | "
                  "O/E after | AUROC before | AUROC after |", "|" + "---|" * 10]
        for r in summary["comparison"]:
            cell = [(f"{100 * r[k]:.1f}%" if r[k] is not None else "—") for k in
                    ("observed_risk", "before_predicted", "after_predicted")]
            ratios = [(f"{r[k]:.2f}" if r[k] is not None else "—") for k in ("before_o_e", "after_o_e")]
            aurocs = [(f"{r[k]:.3f}" if r[k] is not None else "—") for k in ("before_auroc", "after_auroc")]
            lines.append(f"| {r['outcome']} | {r['treatment']} | {r['horizon_months']} | " + " | ".join(
                [*cell, *ratios, *aurocs]) + " |")
    (out / "recalibration.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
