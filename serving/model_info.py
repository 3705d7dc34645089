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

from features.il21_kits import KIT_DETAILS
from features.schema import (
    CATEGORY_LABELS,
    DEFAULT_HORIZONS_MONTHS,
    EVALUATION_HORIZONS_MONTHS,
    FEATURES,
    IL21_FEATURE,
    MAX_HORIZON_MONTHS,
    MIN_HORIZON_MONTHS,
    RESEARCH_NOTICE,
    TREATMENTS,
    endpoint,
    kit_column,
)
from models.intervals import describe_spread
from models.names import (
    BENCHMARK_COHORT,
    EXPERIMENT_TAG,
    FAMILY_TAG,
    PROMOTION_METRIC,
    SERVED_METRICS,
    SERVED_TRUTH_METRICS,
    cohort_prefix,
    endpoint_metric,
    interval_metric,
    truth_metric,
)

# The routes are methods of the service class (see RiskService.describe); docs stay BentoML's.
MODEL_INFO_APP = FastAPI(title="autorisk", docs_url=None, redoc_url=None, openapi_url=None)


class ValueRange(BaseModel):
    low: float
    high: float
    low_inclusive: bool = Field(description="Whether low itself is allowed.")
    high_inclusive: bool = Field(description="Whether high itself is allowed.")


class CategoryDetail(BaseModel):
    printed_name: str = Field(description="The value as a laboratory report names it (an IL-21 kit).")
    evidence: str = Field(description="What is published about it, in one line.")


class FeatureInfo(BaseModel):
    name: str = Field(description="JSON field of a patient in POST /predict.")
    label: str = Field(description="Short name for people, e.g. a form's label.")
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
    category_labels: dict[str, str] | None = Field(description="Each category value as people read it.")
    category_details: dict[str, CategoryDetail] | None = Field(
        default=None, description="For the IL-21 kit: each kit's name as a laboratory report prints it and its evidence.")
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


class TruthMetrics(BaseModel):
    mean_risk: float | None = Field(description="Mean predicted risk of the arm's patients.")
    mean_true_risk: float | None = Field(description="Mean of the simulator's exact risks of the same patients.")
    auroc_over_oracle: float | None = Field(
        description="Expected time-dependent AUROC over the true risk's own (1 is the best possible).")
    calibration_slope: float | None = Field(description="Expected calibration slope against the true risks.")


class IntervalInfo(BaseModel):
    name: str = Field(description="What the interval is called wherever a risk is shown with it.")
    level: float = Field(description="Its nominal level, e.g. 0.95.")
    refits: int = Field(description="Bootstrap refits behind it.")
    method: str = Field(description="How it is made, in a sentence.")
    benchmark_coverage: dict[str, float | None] = Field(
        description="Per outcome and evaluation horizon (e.g. thyroid_48m): the share of the benchmark cohort's "
                    "patients, both arms, whose true risk the interval held (null where the run has no figure).")


class ModelInfo(BaseModel):
    """The served model version, its training data and evaluation, and the inputs it takes."""

    name: str
    version: str
    run_id: str = Field(description="The MLflow run that trained and evaluated this version.")
    family: str | None = Field(description="Model family, e.g. cox-linear or cox-xgboost.")
    experiment: str | None = Field(description="The experiment config the version was trained by.")
    notice: str = Field(description="What the served risks are and are not.")
    outcomes: list[str] = Field(description="Outcomes the model predicts, as keyed in POST /predict.")
    horizons_months: ValueRange = Field(description="Months after the first course a risk can be asked for.")
    default_horizons_months: list[int] = Field(description="The horizons answered when a request names none.")
    follow_up_months: dict[str, float] = Field(
        description="Per treatment, the longest follow-up in the training data; risks at later months are "
                    "extrapolated and flagged.")
    extrapolation_rule: str
    explanation_scale: str = Field(description="The scale of every SHAP value: base_value + sum(shap) = "
                                               "log(-log(1 - risk)).")
    interval: IntervalInfo | None = Field(default=None, description="The interval given with every risk; null for a "
                                                                     "version trained without refits.")
    datasets: list[DatasetDigest] = Field(description="Datasets logged with the training run.")
    promotion_metric: float | None = Field(
        description="Held-out IPCW log loss over the incidence's, averaged over outcomes and evaluation horizons: "
                    "the metric the champion is chosen by.")
    held_out: dict[str, EndpointMetrics] = Field(
        description="Headline metrics per outcome and evaluation horizon (e.g. thyroid_24m) on the held-out "
                    "split of the training cohorts, against observed outcomes.")
    benchmark_cohort: str | None = Field(
        description="The simulated cohort no model saw in training or selection (profile, size, seed).")
    benchmark: dict[str, EndpointMetrics] = Field(
        description="Headline metrics per outcome and horizon on the benchmark cohort (null beyond its follow-up).")
    benchmark_against_truth: dict[str, dict[str, TruthMetrics]] = Field(
        description="Per outcome and horizon, then per treatment arm: the benchmark cohort's risks against the "
                    "simulator's exact risks.")
    features: list[FeatureInfo] = Field(description="Inputs of POST /predict, with units and ranges.")


def _range(low: float, high: float, *, low_exclusive: bool = False) -> ValueRange:
    return ValueRange(low=low, high=high, low_inclusive=not low_exclusive, high_inclusive=True)


def feature_info(domain) -> list[FeatureInfo]:
    """Every input of :data:`features.schema.FEATURES`, as ``GET /model`` describes it, with the training
    ranges of the served version's :class:`models.domain.InputDomain`."""
    ranges = domain.input_ranges()
    described = []
    for f in FEATURES:
        by_assay = ({kit: _range(*ranges[kit_column(kit)]) for kit in domain.kits if kit_column(kit) in ranges}
                    if f.name == IL21_FEATURE else None)
        described.append(FeatureInfo(
            name=f.name, label=f.label, kind=f.kind, unit=f.unit or None, required=f.required, description=f.description,
            possible=_range(*f.possible, low_exclusive=f.low_exclusive) if f.possible else None,
            training=_range(*ranges[f.name]) if f.name in ranges else None, training_by_assay=by_assay,
            categories=list(f.categories) or None, default=f.default, model_input=f.model_input,
            category_labels={c: CATEGORY_LABELS.get(c, c) for c in f.categories} or None,
            category_details={c: CategoryDetail(printed_name=KIT_DETAILS[c].printed_name,
                                                evidence=KIT_DETAILS[c].evidence)
                              for c in f.categories if c in KIT_DETAILS} if f.name == "il21_assay" else None,
        ))
    return described


def describe_model(name: str, version: str, run_id: str, risk_model) -> ModelInfo:
    """Read the description of a registered version from its MLflow run.

    Parameters
    ----------
    name, version, run_id : str
        The served registered version and the run that logged it.
    risk_model : models.scoring.RiskModel
        The loaded model (its outcomes and follow-up per treatment).

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
    endpoints = [endpoint(o, h) for o in risk_model.outcome_names for h in EVALUATION_HORIZONS_MONTHS]
    described = describe_spread(next(iter(risk_model.spreads.values()), None))
    interval = IntervalInfo(**described, benchmark_coverage={
        e: metric(interval_metric(BENCHMARK_COHORT, "all", e, "coverage")) for e in endpoints}) if described else None
    return ModelInfo(
        name=name, version=version, run_id=run_id,
        family=run.data.tags.get(FAMILY_TAG),
        experiment=run.data.tags.get(EXPERIMENT_TAG),
        notice=RESEARCH_NOTICE,
        outcomes=list(risk_model.outcome_names),
        horizons_months=_range(MIN_HORIZON_MONTHS, MAX_HORIZON_MONTHS),
        default_horizons_months=list(DEFAULT_HORIZONS_MONTHS),
        follow_up_months=risk_model.follow_up_months(),
        extrapolation_rule=risk_model.extrapolation_rule,
        explanation_scale=risk_model.explanation_scale,
        interval=interval,
        datasets=datasets,
        promotion_metric=metric(PROMOTION_METRIC),
        held_out={e: EndpointMetrics(**{m: metric(endpoint_metric(e, m)) for m in SERVED_METRICS}) for e in endpoints},
        benchmark_cohort=run.data.params.get("benchmark_cohort"),
        benchmark={e: EndpointMetrics(**{m: metric(endpoint_metric(e, m, cohort_prefix(BENCHMARK_COHORT)))
                                           for m in SERVED_METRICS})
                   for e in endpoints},
        benchmark_against_truth={e: {t: TruthMetrics(**{m: metric(truth_metric(BENCHMARK_COHORT, t, e, m))
                                                        for m in SERVED_TRUTH_METRICS})
                                     for t in TREATMENTS} for e in endpoints},
        features=feature_info(risk_model.domain),
    )
