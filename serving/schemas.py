"""The REST request and response models of ``POST /predict`` (their OpenAPI schemas).

Kept apart from the service so that clients and tests can check an answer's shape without
starting BentoML.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.schema import (
    DEFAULT_HORIZONS_MONTHS,
    MAX_HORIZON_MONTHS,
    MIN_HORIZON_MONTHS,
    MONITORING_YEARS,
)
from features.validation import patient_model
from models.survival import EXTRAPOLATION_RULE

Patient = patient_model()
MAX_PATIENTS = 1000
Month = Annotated[int, Field(ge=MIN_HORIZON_MONTHS, le=MAX_HORIZON_MONTHS)]


# The server holds every value to its JSON type (serving.strict_json), and says so here.
STRICT_TYPES = ("Each value in the JSON type its schema states, checked before anything else: numbers as JSON "
                "numbers (a string such as \"34\", \"nan\" or \"inf\" is refused), booleans as true or false "
                "(not \"yes\", \"true\" or 1), categories as one of their strings, null or no key for unknown. "
                "A value of another type or a field not in the schema gets a 400 naming the field and the "
                "expected type.")


class PredictRequest(BaseModel):
    """Body of ``POST /predict``; unknown top-level fields are rejected too."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"description": STRICT_TYPES})
    patients: Annotated[list[Patient], Field(  # type: ignore[valid-type]
        min_length=1, max_length=MAX_PATIENTS,
        description=f"The patients to score, at most {MAX_PATIENTS}. {STRICT_TYPES}")]
    horizons_months: Annotated[list[Month], Field(
        min_length=1, max_length=MAX_HORIZON_MONTHS,
        description=f"Months after the first course to give each risk at, whole months "
                    f"{MIN_HORIZON_MONTHS}–{MAX_HORIZON_MONTHS}, as JSON integers (true is not a month, "
                    "and \"24\" is refused).")] = list(DEFAULT_HORIZONS_MONTHS)
    contrast: bool = Field(default=False, description="Add each patient's risks under both treatments and "
                                                      "the difference, alemtuzumab minus interferon beta-1a. "
                                                      "true or false only (not \"yes\" or 1).")


class HorizonRisk(BaseModel):
    horizon_months: int = Field(description="Months after the first course the risk is for.")
    risk: float = Field(description="Probability of onset by horizon_months, under the patient's treatment.", ge=0, le=1)
    risk_interval: tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]] | None = Field(
        description="95% interval of the risk, [lower, upper], on the log cumulative hazard scale: the spread of "
                    "bootstrap refits of the whole fitting procedure with Student's t for their number, widened where "
                    "the horizon is extrapolated; [0, the rule of three's bound] for a treatment without training "
                    "onsets. It always holds the risk. How often it held the simulator's true risk, where that was "
                    "measured, is the served version's own figure, in GET /model. Null for a version without refits.")
    extrapolated: bool = Field(description="Whether the horizon lies beyond the longest follow-up the training "
                                           "data had on the patient's treatment (" + EXTRAPOLATION_RULE + ").")
    scale: Literal["log cumulative hazard", "log-odds of the ever-risk (an onset within the treatment's timing window)"] \
        = Field(description="Scale of base_value and shap, the model family's: for the proportional-hazards families "
                            "base_value + sum(shap) = log(-log(1 - risk)); for the mixture-cure family base_value + "
                            "sum(shap) = logit(ever-risk), the same at every horizon, and risk = ever-risk × "
                            "timing_share within the treatment's window (1 - (1 - ever-risk)^timing_share beyond it).")
    base_value: float = Field(description="SHAP base value: the training population's mean on the scale.")
    reference_risk: float = Field(description="The risk base_value alone gives at this horizon (the reference "
                                              "patient's): each input's SHAP part moves the risk from it.", ge=0, le=1)
    timing_share: float | None = Field(default=None, description="Mixture-cure family only: the share of the "
                                       "treatment's onsets by this horizon (above 1: extrapolated).")
    shap: dict[str, float] = Field(description="SHAP value per input on the scale; for the proportional-hazards "
                                               "families the same at every horizon except the treatment's.")


class YearRisk(BaseModel):
    year: int = Field(description="Year after the first course, 1-based.")
    risk: float = Field(description="Probability of onset by the end of the year.", ge=0, le=1)
    onset_in_year: float = Field(description="Probability of onset within the year for a patient without onset "
                                             "before it (the year's hazard).", ge=0, le=1)
    extrapolated: bool


class ContrastAt(BaseModel):
    horizon_months: int
    risk_if_alemtuzumab: float = Field(ge=0, le=1)
    risk_if_interferon_beta_1a: float = Field(ge=0, le=1)
    excess: float = Field(description="risk_if_alemtuzumab minus risk_if_interferon_beta_1a.")
    extrapolated: bool = Field(description="Whether either risk is extrapolated beyond its treatment's follow-up.")


class OutcomePrediction(BaseModel):
    risks: list[HorizonRisk] = Field(description="At each requested horizon, in increasing order.")
    by_year: list[YearRisk] = Field(description=f"Risk by the end of years 1–{MONITORING_YEARS} after the first course.")
    peak_hazard_year: int = Field(description="The year with the highest hazard of onset (for monitoring).")
    peak_hazard_year_of: Literal["treatment", "patient"] = Field(
        description="Whose the peak year is: the treatment's (the model gives every patient on a treatment the "
                    "same shape of risk over time) or the patient's own.")
    contrast: list[ContrastAt] | None = Field(default=None, description="With \"contrast\": true.")


class Prediction(BaseModel):
    patient_id: str | None
    treatment: str = Field(description="The treatment the risks are for (alemtuzumab when not given).")
    outcomes: dict[str, OutcomePrediction] = Field(description="Keyed by outcome: thyroid, itp.")
    warnings: list[str] = Field(description="Values outside the training range (scored as the nearest training "
                                            "value) and extrapolated horizons.")
    not_provided: list[str] = Field(
        description="Model inputs not given for this patient (unknown). Their SHAP values are still there: "
                    "what the model credits an unknown value with, which differs from patient to patient.")


class ModelIdentity(BaseModel):
    name: str
    version: str
    run_id: str


class PredictResponse(BaseModel):
    model: ModelIdentity
    notice: str = Field(description="What these risks are and are not.")
    horizons_months: list[int]
    predictions: list[Prediction]
