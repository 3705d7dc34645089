"""``GET /model``: what the service serves, read once at start-up.

The served version's MLflow run gives the training data digests and the headline metrics;
:mod:`features.schema` gives the inputs with their units and ranges. BentoML's own APIs answer
``POST`` only, so the route lives in a small FastAPI app that the service mounts; BentoML adds its
paths to the service's OpenAPI document.
"""

from __future__ import annotations

import math
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

# The routes are methods of the service class (see RiskService.describe); docs stay BentoML's.
MODEL_INFO_APP = FastAPI(title="autorisk", docs_url=None, redoc_url=None, openapi_url=None)
# Headline metrics per endpoint: run metrics ``<endpoint>_<name>`` (held-out split) and
# ``bench_<endpoint>_<name>`` (benchmark cohort).
HEADLINE_METRICS = ("auroc", "auroc_lo", "auroc_hi", "calibration_slope", "calibration_intercept",
                     "observed_over_expected")


class ValueRange(BaseModel):
    low: float
    high: float
    low_inclusive: bool = Field(description="Whether low itself is allowed.")
    high_inclusive: bool = Field(description="Whether high itself is allowed.")


class FeatureInfo(BaseModel):
    name: str = Field(description="JSON field of a patient in POST /predict.")
    kind: Literal["number", "integer", "boolean", "category"]
    unit: str | None = Field(description="Unit of measurement; null for booleans and categories.")
    required: bool = Field(description="Whether the value must be given; a missing optional value means unknown.")
    description: str
    possible: ValueRange | None = Field(description="Physically possible values; others are rejected.")
    training: ValueRange | None = Field(
        description="Values covered by the training cohorts; others are scored with a warning.")
    training_by_assay: dict[str, ValueRange] | None = Field(
        description="Training range per IL-21 kit (il21_assay), for il21_pg_ml, whose scale depends on the kit.")
    categories: list[str] | None = Field(description="Allowed values of a category.")
    default: str | None = Field(description="Value used when a category is missing.")
    model_input: bool = Field(
        description="Whether the value is a model input with a SHAP value; il21_assay only sets the scale of il21_pg_ml.")


class DatasetDigest(BaseModel):
    name: str
    digest: str = Field(description="MLflow's digest of the dataset's contents.")
    context: str | None = Field(description="Its use in the run: training or evaluation (the held-out split).")


class EndpointMetrics(BaseModel):
    auroc: float | None = Field(
        description="Time-dependent AUROC (IPCW); this and the others are null when the cohort has too few "
        "events with known status by the horizon, e.g. when its follow-up is shorter than the horizon.")
    auroc_lo: float | None = Field(description="Lower end of the AUROC's 95% bootstrap interval.")
    auroc_hi: float | None = Field(description="Upper end of the AUROC's 95% bootstrap interval.")
    calibration_slope: float | None = Field(description="1 when risks are neither too extreme nor too timid.")
    calibration_intercept: float | None = Field(description="Calibration-in-the-large; 0 when the mean risk is right.")
    observed_over_expected: float | None = Field(description="Observed over predicted events; 1 is ideal.")


class ModelInfo(BaseModel):
    """The served model version, its training data and evaluation, and the inputs it takes."""

    name: str
    version: str
    run_id: str = Field(description="The MLflow run that trained and evaluated this version.")
    family: str | None = Field(description="Model family, e.g. logistic or xgboost.")
    experiment: str | None = Field(description="The experiment config the version was trained by.")
    endpoints: list[str] = Field(description="Outcome and horizon pairs the model predicts, as in POST /predict.")
    datasets: list[DatasetDigest] = Field(description="Datasets logged with the training run.")
    mean_log_loss: float | None = Field(
        description="Held-out log loss averaged over endpoints: the metric the champion is chosen by.")
    held_out: dict[str, EndpointMetrics] = Field(
        description="Headline metrics per endpoint on the held-out split of the training cohorts.")
    benchmark_cohort: str | None = Field(
        description="The simulated cohort no model saw in training or selection (profile, size, seed).")
    benchmark: dict[str, EndpointMetrics] = Field(description="Headline metrics per endpoint on the benchmark cohort.")
    features: list[FeatureInfo] = Field(description="Inputs of POST /predict, with units and ranges.")


def _range(low: float, high: float, *, low_exclusive: bool = False) -> ValueRange:
    return ValueRange(low=low, high=high, low_inclusive=not low_exclusive, high_inclusive=True)


def feature_info() -> list[FeatureInfo]:
    """Every input of :data:`features.schema.FEATURES`, as ``GET /model`` describes it."""
    from features.schema import FEATURES, IL21_ASSAYS

    described = []
    for f in FEATURES:
        by_assay = ({name: _range(*a.training) for name, a in IL21_ASSAYS.items()}
                    if f.name == "il21_pg_ml" else None)
        described.append(FeatureInfo(
            name=f.name, kind=f.kind, unit=f.unit or None, required=f.required, description=f.description,
            possible=_range(*f.possible, low_exclusive=f.low_exclusive) if f.possible else None,
            training=_range(*f.training) if f.training else None, training_by_assay=by_assay,
            categories=list(f.categories) or None, default=f.default, model_input=f.model_input,
        ))
    return described


def describe_model(name: str, version: str, run_id: str, endpoints: tuple[str, ...]) -> ModelInfo:
    """Read the description of a registered version from its MLflow run.

    Parameters
    ----------
    name, version, run_id : str
        The served registered version and the run that logged it.
    endpoints : tuple of str
        The endpoints the loaded model predicts.

    Returns
    -------
    ModelInfo
        Metrics the run lacks (an endpoint with too few events has no AUROC) are null.
    """
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    run = mlflow.get_run(run_id)
    metrics = run.data.metrics

    def metric(key: str) -> float | None:
        value = metrics.get(key)
        return value if value is not None and math.isfinite(value) else None

    datasets = [
        DatasetDigest(name=d.dataset.name, digest=d.dataset.digest,
                      context=next((t.value for t in d.tags if t.key == MLFLOW_DATASET_CONTEXT), None))
        for d in run.inputs.dataset_inputs
    ]
    return ModelInfo(
        name=name, version=version, run_id=run_id,
        family=run.data.tags.get("autorisk.family"),
        experiment=run.data.tags.get("autorisk.experiment"),
        endpoints=list(endpoints),
        datasets=datasets,
        mean_log_loss=metric("mean_log_loss"),
        held_out={e: EndpointMetrics(**{m: metric(f"{e}_{m}") for m in HEADLINE_METRICS}) for e in endpoints},
        benchmark_cohort=run.data.params.get("benchmark_cohort"),
        benchmark={e: EndpointMetrics(**{m: metric(f"bench_{e}_{m}") for m in HEADLINE_METRICS})
                   for e in endpoints},
        features=feature_info(),
    )
