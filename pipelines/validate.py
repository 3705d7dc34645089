"""``autorisk validate``: a registered version against a cohort's own observed, censored outcomes.

Per outcome, treatment (each arm, and all) and horizon, every figure of :mod:`models.validation`, with
the warnings a reader needs (few onsets, horizons beyond the cohort's follow-up or the model's, drift
from the training data, rejected records). Written as ``validation.json``, ``validation.md`` and a
self-contained ``validation.html`` (:mod:`pipelines.validation_report`), with the rejected records in
``rejects.csv``; logged as a run of the MLflow experiment ``validations`` linked both ways to the
version. Aggregates only leave the output folder: no patient's row goes into MLflow.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import mlflow

from features.drift import bin_counts, compare
from features.schema import EVALUATION_HORIZONS_MONTHS, ID_COLUMN, TREATMENTS
from models.names import (
    MODEL_TAG,
    MODEL_VERSION_TAG,
    ROLE_TAG,
    ROLE_VALIDATION,
    VALIDATIONS_EXPERIMENT,
    VERSION_VALIDATIONS_TAG,
    validation_metric,
)
from models.scoring import RiskModel
from models.validation import BOOTSTRAP, validate_at_horizon
from pipelines.chunks import REJECTS_SCHEMA
from pipelines.observed import ObservedCohort, ObservedFile
from pipelines.outputs import defuse_formulas
from pipelines.score import load_reference
from models.tracking import NOTE_TAG, ensure_experiment
from pipelines.validation_report import to_html, to_markdown

ALL_ARMS = "all"
# The usual minimum of onsets for an external validation (Collins, Ogundimu & Altman 2016; Riley et al. 2021).
MIN_VALIDATION_EVENTS = 100
METRIC_KEYS = ("outcome", "treatment", "horizon_months", "n", "events", "observed_risk", "observed_lo",
               "observed_hi", "mean_predicted", "o_e", "o_e_lo", "o_e_hi", "calibration_intercept",
               "calibration_intercept_lo", "calibration_intercept_hi", "calibration_slope", "calibration_slope_lo",
               "calibration_slope_hi", "ici", "e50", "e90", "auroc", "auroc_lo", "auroc_hi", "brier", "ipa",
               "at_risk", "o_e_se", "observed_se")
# Figures logged to MLflow per outcome, treatment and horizon (the rest stay in the report).
LOGGED = ("observed_risk", "mean_predicted", "o_e", "o_e_lo", "o_e_hi", "calibration_slope", "calibration_slope_lo",
          "calibration_slope_hi", "calibration_intercept", "ici", "e90", "auroc", "brier", "ipa", "events")


@dataclass(frozen=True)
class Validation:
    """A validation's figures, as the report and MLflow take them.

    Attributes
    ----------
    report : dict
        ``{"model", "cohort", "warnings", "metrics", "curves"}`` (docs/validation.md).
    """

    report: dict

    @property
    def metrics(self) -> list[dict]:
        return self.report["metrics"]

    def find(self, outcome: str, treatment: str, horizon: int) -> dict | None:
        return next((m for m in self.metrics if (m["outcome"], m["treatment"], m["horizon_months"])
                     == (outcome, treatment, horizon)), None)


def _finite(value):
    return None if isinstance(value, float) and not np.isfinite(value) else value


def arms_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks of each arm the cohort has, and of all patients."""
    treatment = frame["treatment"].fillna("alemtuzumab").to_numpy() if "treatment" in frame else \
        np.full(len(frame), "alemtuzumab", dtype=object)
    arms = {t: treatment == t for t in TREATMENTS if np.any(treatment == t)}
    return arms | {ALL_ARMS: np.ones(len(frame), dtype=bool)}


def validation_table(risk_model, cohort: ObservedCohort, horizons: tuple[int, ...], *, bootstrap: int = BOOTSTRAP,
                     seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Every figure per outcome, treatment and horizon, and the curves behind the plots."""
    risks = risk_model.risks(cohort.matrix, horizons)
    metrics, curves = [], []
    for outcome, risk in risks.items():
        time = cohort.frame[f"{outcome}_time_months"].to_numpy(dtype=float)
        event = cohort.frame[f"{outcome}_event"].to_numpy(dtype=int)
        for arm, members in arms_of(cohort.frame).items():
            for k, horizon in enumerate(horizons):
                values = validate_at_horizon(time[members], event[members], risk[members, k], horizon,
                                             bootstrap=bootstrap, seed=seed)
                entry = {"outcome": outcome, "treatment": arm, "horizon_months": int(horizon)}
                entry |= {key: _finite(values[key]) for key in METRIC_KEYS if key in values}
                metrics.append(entry)
                if values["curves"] is not None:
                    curves.append({"outcome": outcome, "treatment": arm, "horizon_months": int(horizon)}
                                  | values["curves"])
    return metrics, curves


def validation_warnings(risk_model, cohort: ObservedCohort, metrics: list[dict], horizons: tuple[int, ...],
                        drift_headline: str | None) -> list[str]:
    """What a reader must know before reading the figures, in words."""
    warnings = []
    for outcome in risk_model.outcome_names:
        events = cohort.events(outcome)
        if events < MIN_VALIDATION_EVENTS:
            warnings.append(f"{outcome}: {events} onsets in the cohort, fewer than the {MIN_VALIDATION_EVENTS} "
                            "usually needed for a validation (Collins et al. 2016): its intervals are wide and its "
                            "calibration estimates unstable; read them as a first look, not a verdict")
    beyond = {}
    for m in metrics:
        if m["n"] and m["observed_risk"] is None:
            beyond.setdefault((m["outcome"], m["treatment"]), []).append(m["horizon_months"])
    for (outcome, arm), months in beyond.items():
        warnings.append(f"{outcome}, {arm}: no figure at {', '.join(map(str, months))} months: no patient of "
                        "the cohort was followed that long")
    follow_up = risk_model.follow_up_months()
    arms = [a for a in arms_of(cohort.frame) if a != ALL_ARMS]
    for arm in arms:
        late = [h for h in horizons if h > follow_up[arm]]
        if late:
            warnings.append(f"the model extrapolates its risks at {', '.join(map(str, late))} months on {arm}: its "
                            f"training data followed {arm} for {follow_up[arm]:g} months")
    if drift_headline:
        warnings.append(drift_headline)
    outside = int(risk_model.domain.outside(cohort.matrix).sum())
    if outside:
        warnings.append(f"{outside:,} of {len(cohort.frame):,} patients have values outside the model's training "
                        "range; they were scored as the nearest training value")
    if len(cohort.rejects):
        warnings.append(f"{len(cohort.rejects):,} of {cohort.read:,} records were rejected (rejects.csv, with "
                        "their lines and reasons) and are not in the figures")
    return warnings


def cohort_summary(cohort: ObservedCohort, path: Path, outcomes) -> dict:
    """The cohort in aggregates: which file (name and digest), how many, how long followed, how many onsets."""
    summary = {"file": Path(path).name, "sha256": cohort.digest, "read_as": cohort.source, "records": cohort.read,
               "used": int(len(cohort.frame)), "rejected": int(len(cohort.rejects))}
    arms = arms_of(cohort.frame)
    summary["patients"] = {arm: int(mask.sum()) for arm, mask in arms.items()}
    for outcome in outcomes:
        time = cohort.frame[f"{outcome}_time_months"].to_numpy(dtype=float)
        summary[f"{outcome}_onsets"] = {arm: int(cohort.frame[f"{outcome}_event"].to_numpy()[m].sum())
                                        for arm, m in arms.items()}
        summary[f"{outcome}_follow_up_months"] = {arm: {"median": float(np.median(time[m])) if m.any() else None,
                                                        "longest": float(time[m].max()) if m.any() else None}
                                                  for arm, m in arms.items()}
    return summary


def validate_cohort(loaded, cohort: ObservedCohort, path: Path, horizons: tuple[int, ...] = EVALUATION_HORIZONS_MONTHS,
                    *, reference: dict | None = None, why_no_reference: str = "", bootstrap: int = BOOTSTRAP,
                    seed: int = 0) -> Validation:
    """Validate a loaded registered version (:class:`models.registry.LoadedModel`) on an observed cohort."""
    risk_model = loaded.risk_model
    metrics, curves = validation_table(risk_model, cohort, horizons, bootstrap=bootstrap, seed=seed)
    drift = compare(reference, bin_counts(cohort.matrix, reference) if reference is not None else None,
                    why_no_reference=why_no_reference)
    warnings = validation_warnings(risk_model, cohort, metrics, horizons,
                                   drift.headline if drift.differs or drift.status != "compared" else None)
    model = {"name": loaded.name, "version": loaded.version, "run_id": loaded.run_id, "family": risk_model.family,
             "follow_up_months": risk_model.follow_up_months()}
    report = {"model": model, "cohort": cohort_summary(cohort, path, risk_model.outcome_names),
              "horizons_months": list(horizons), "warnings": warnings, "metrics": metrics, "curves": curves,
              "drift": drift.to_json()}
    return Validation(report)


def write_outputs(validation: Validation, cohort: ObservedCohort, out: Path, *, title: str) -> dict[str, Path]:
    """``validation.json``, ``validation.md``, ``validation.html`` and ``rejects.csv`` in ``out``, each put in
    place whole (written beside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {"validation.json": json.dumps(validation.report, indent=1, allow_nan=False) + "\n",
             "validation.md": to_markdown(validation.report, title=title),
             "validation.html": to_html(validation.report, title=title)}
    rejects = defuse_formulas(pa.table({
        "line": pa.array(cohort.rejects["line"].to_numpy(dtype=np.int64), pa.int64()),
        ID_COLUMN: pa.array(cohort.rejects[ID_COLUMN].to_numpy(dtype=object), pa.string()),
        "reason": pa.array(cohort.rejects["reason"].to_numpy(dtype=object), pa.string())}, schema=REJECTS_SCHEMA))
    written = {}
    for name, text in texts.items():
        written[name] = _replace(out / name, text.encode("utf-8"))
    with tempfile.NamedTemporaryFile(dir=out, prefix=".rejects.", suffix=".csv", delete=False) as handle:
        pacsv.write_csv(rejects, handle.name)
    os.replace(handle.name, out / "rejects.csv")
    written["rejects.csv"] = out / "rejects.csv"
    return written


def _replace(path: Path, data: bytes) -> Path:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)
    return path


def log_validation(validation: Validation, files: dict[str, Path], *, registered_name: str) -> str:
    """One run of the MLflow experiment ``validations``: the cohort in aggregates, the figures, the reports; tagged
    with the version, whose tag lists its validations. Returns the run id."""
    model, cohort = validation.report["model"], validation.report["cohort"]
    ensure_experiment(VALIDATIONS_EXPERIMENT, description=(
        "Each `autorisk validate` (and each recalibration's held-out check): a registered version against a "
        "cohort's own observed outcomes, per outcome, treatment and horizon."))
    tags = {ROLE_TAG: ROLE_VALIDATION, MODEL_TAG: registered_name, MODEL_VERSION_TAG: str(model["version"]),
            NOTE_TAG: "\n".join(f"- {w}" for w in validation.report["warnings"]) or "No warnings."}
    with mlflow.start_run(run_name=f"validate/{registered_name}/v{model['version']}/{cohort['file']}",
                          tags=tags) as run:
        mlflow.log_params({"model": registered_name, "model_version": model["version"], "file": cohort["file"],
                           "file_sha256": cohort["sha256"], "records": cohort["records"], "used": cohort["used"],
                           "rejected": cohort["rejected"],
                           "horizons_months": ",".join(map(str, validation.report["horizons_months"]))})
        values = {validation_metric(m["outcome"], m["treatment"], m["horizon_months"], key): float(m[key])
                  for m in validation.metrics for key in LOGGED if m.get(key) is not None}
        mlflow.log_metrics(values)
        for name in ("validation.json", "validation.md", "validation.html"):
            mlflow.log_artifact(str(files[name]), "validation")
    client = mlflow.MlflowClient()
    version = client.get_model_version(registered_name, str(model["version"]))
    listed = [v for v in version.tags.get(VERSION_VALIDATIONS_TAG, "").split(",") if v]
    client.set_model_version_tag(registered_name, str(model["version"]), VERSION_VALIDATIONS_TAG,
                                 ",".join([*listed, run.info.run_id]))
    return run.info.run_id


def run_validation(source: ObservedFile, out: Path, loaded, *,
                   horizons: tuple[int, ...] = EVALUATION_HORIZONS_MONTHS, outcomes: tuple[str, ...] | None = None,
                   bootstrap: int = BOOTSTRAP, seed: int = 0) -> tuple[Validation, dict[str, Path], str]:
    """Read ``source``, validate ``loaded`` on it, write the outputs into ``out`` and log the run.

    Returns
    -------
    validation, files, run_id

    Raises
    ------
    InputFileError, features.validation.InputSchemaError
        When the file cannot be used at all (nothing is written then).
    """
    outcomes = outcomes or loaded.risk_model.outcome_names
    unknown = [o for o in outcomes if o not in loaded.risk_model.outcome_names]
    if unknown:
        raise ValueError(f"--outcomes: the model has no outcome {', '.join(unknown)}; it has "
                         f"{', '.join(loaded.risk_model.outcome_names)}")
    cohort = source.read(tuple(outcomes))
    reference, note = load_reference(loaded)
    validation = validate_cohort(_only(loaded, outcomes), cohort, source.path, horizons, reference=reference,
                                 why_no_reference=note, bootstrap=bootstrap, seed=seed)
    files = write_outputs(validation, cohort, out, title=f"Validation of {loaded.name} v{loaded.version} on "
                                                         f"{Path(source.path).name}")
    return validation, files, log_validation(validation, files, registered_name=loaded.name)


def _only(loaded, outcomes):
    """``loaded`` answering for ``outcomes`` only."""
    model = loaded.risk_model
    kept = RiskModel(family=model.family, outcomes={o: model.outcomes[o] for o in outcomes}, domain=model.domain,
                     spreads={o: s for o, s in model.spreads.items() if o in outcomes})
    return replace(loaded, risk_model=kept)
