"""The simulator's assumptions as typed, validated config (``experiments/cohorts.yaml``).

A *world* is one such config: the event form, the effects and the populations. Named worlds are
``experiments/worlds/<name>.yaml``, each a set of overrides of ``cohorts.yaml`` (applied by
:func:`pipelines.config.load_world`; ``docs/worlds.md`` describes them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import FEATURES_BY_NAME

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "experiments" / "cohorts.yaml"
# The kits a record can name (the schema's categories); the simulator says how each reads a patient.
KITS: tuple[str, ...] = FEATURES_BY_NAME["il21_assay"].categories
Treatment = Literal["interferon_beta_1a", "alemtuzumab"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormalSpec(_Strict):
    """A normal distribution truncated to ``[min, max]``, with the stated mean and SD *after* truncation."""

    mean: float
    sd: float = Field(gt=0)
    min: float | None = None
    max: float | None = None


class DurationSpec(_Strict):
    """Disease duration in years: from a mean and SD (truncated normal), or a median and range (log-normal)."""

    mean: float | None = None
    sd: float | None = None
    median: float | None = None
    low: float = 0.05
    high: float


class RelapseSpec(_Strict):
    """Relapses in the prior two years: from a prior-2-year mean, or a prior-year mean."""

    mean: float | None = None
    prior_year_mean: float | None = None
    min: int = 0
    max: int = 10


class BaselineSpec(_Strict):
    age_years: NormalSpec
    female: float = Field(ge=0, le=1)
    disease_duration_years: DurationSpec
    edss: NormalSpec
    relapses_prior_2y: RelapseSpec
    prior_dmt: float = Field(ge=0, le=1)


class ArmRef(_Strict):
    profile: str
    arm: str


class PoolItem(ArmRef):
    weight: float = Field(gt=0)


class InterceptRef(ArmRef):
    """Another arm's solved intercepts, each outcome's baseline odds (or hazard) times ``baseline_odds_ratio``."""

    baseline_odds_ratio: dict[str, float] = {}

    @model_validator(mode="after")
    def _positive(self) -> InterceptRef:
        if any(not value > 0 for value in self.baseline_odds_ratio.values()):
            raise ValueError("baseline_odds_ratio: every ratio must be positive")
        return self


class ArmSpec(_Strict):
    n_randomised: int = Field(gt=0)
    baseline: BaselineSpec | None = None
    pool: list[PoolItem] | None = None
    dropout_by_follow_up: float = Field(ge=0, lt=1)
    targets: dict[str, float] | None = None
    intercept_from: InterceptRef | None = None
    source: str

    @model_validator(mode="after")
    def _one_of_each(self) -> ArmSpec:
        if (self.baseline is None) == (self.pool is None):
            raise ValueError("an arm needs exactly one of 'baseline' and 'pool'")
        if (self.targets is None) == (self.intercept_from is None):
            raise ValueError("an arm needs exactly one of 'targets' and 'intercept_from'")
        return self


class MissingSpec(_Strict):
    """Share of values missing; ``depends_on`` adds log-odds per unit of other features (MAR)."""

    rate: float = Field(ge=0, lt=1)
    depends_on: dict[str, float] = {}


class OddsRatio(_Strict):
    odds_ratio: float = Field(gt=0)
    source: str


class IL21Effect(_Strict):
    max_odds_ratio: float = Field(gt=0)
    threshold_pg_ml: float = Field(gt=0)
    width_log: float = Field(gt=0)
    alemtuzumab_only: bool
    source: str


class OutcomeRisk(_Strict):
    """Log-odds effects on the ever-risk (hazard ratios in the proportional-hazards form)."""

    family_history_autoimmunity: OddsRatio
    smoker: OddsRatio
    thyroid_antibodies: OddsRatio
    female: OddsRatio
    il21: IL21Effect


class RiskOverride(_Strict):
    """A profile's own effects where its population differs from the trials' (each with its source)."""

    family_history_autoimmunity: OddsRatio | None = None
    smoker: OddsRatio | None = None
    thyroid_antibodies: OddsRatio | None = None
    female: OddsRatio | None = None
    il21: IL21Effect | None = None


class PopulationOverride(_Strict):
    """A profile's own distribution of the features the trial tables do not report."""

    il21_median_pg_ml: float | None = Field(default=None, gt=0)
    il21_log_sd: float | None = Field(default=None, gt=0)
    smoker: float | None = Field(default=None, ge=0, le=1)
    family_history_autoimmunity: float | None = Field(default=None, ge=0, le=1)
    thyroid_antibodies: float | None = Field(default=None, ge=0, le=1)
    source: str


class ProfileSpec(_Strict):
    trial: str
    follow_up_months: float = Field(gt=0)
    target_kind: Literal["observed", "cumulative", "none"]
    il21_assay: str
    missing: dict[str, MissingSpec]
    source: str
    arms: dict[Treatment, ArmSpec]
    population: PopulationOverride | None = None
    risk: dict[str, RiskOverride] = {}


class OnsetSpec(_Strict):
    """Piecewise-linear CDF of onset month among patients who develop the outcome (the ever-risk form),
    or the shape of the baseline cumulative hazard (the proportional-hazards form)."""

    months: list[float]
    cdf: list[float]
    source: str

    @model_validator(mode="after")
    def _is_a_cdf(self) -> OnsetSpec:
        months, cdf = np.array(self.months), np.array(self.cdf)
        if len(months) != len(cdf) or len(months) < 2 or months[0] != 0 or np.any(np.diff(months) <= 0):
            raise ValueError("onset.months must start at 0 and increase, one per cdf value")
        if cdf[0] != 0 or cdf[-1] != 1 or np.any(np.diff(cdf) < 0):
            raise ValueError("onset.cdf must rise from 0 to 1")
        return self


class KitSpec(_Strict):
    """How one IL-21 kit reads a patient's true serum IL-21 ``x`` (on the legacy-ELISA scale).

    ``ln reading = ln median + log_sd * (correlation * z + sqrt(1 - correlation**2) * e)``, with
    ``z = (ln x - ln m) / s`` over the trials' population (``population.il21_median_pg_ml``, ``il21_log_sd``)
    and ``e`` standard normal noise; reported within ``range_pg_ml``. A kit that gives neither median nor
    spread, with correlation 1, reads the true level itself.
    """

    correlation: float = Field(ge=0, le=1)
    median_pg_ml: float | None = Field(default=None, gt=0)
    log_sd: float | None = Field(default=None, gt=0)
    range_pg_ml: tuple[float, float]
    source: str

    @model_validator(mode="after")
    def _range(self) -> KitSpec:
        low, high = self.range_pg_ml
        if not 0 < low < high:
            raise ValueError(f"range_pg_ml: needs 0 < low < high, got {list(self.range_pg_ml)}")
        return self


class PopulationSpec(_Strict):
    relapses_second_prior_year_mean: float = Field(ge=0)
    relapses_source: str
    age_range_years: tuple[float, float]
    age_source: str
    il21_median_pg_ml: float = Field(gt=0)
    il21_log_sd: float = Field(gt=0)
    il21_range_pg_ml: tuple[float, float]
    il21_source: str
    smoker: float = Field(ge=0, le=1)
    family_history_autoimmunity: float = Field(ge=0, le=1)
    thyroid_antibodies: float = Field(ge=0, le=1)
    prevalence_source: str


TIMING_FEATURES = ("thyroid_antibodies", "family_history_autoimmunity", "smoker", "il21")


class PatientTiming(_Strict):
    """Onset timing that depends on the patient (ever-risk form).

    A patient's share of onsets by month t is ``T(G(t)) = G + k G (1 - G)``, with ``G`` the arm's
    onset CDF and ``k = strength * (s - s_ref)``: ``s`` is the weighted sum of ``weights`` over the
    patient's features (``il21``: the IL-21 effect's threshold step, 0 to 1), ``s_ref`` its mean over
    the eventual cases of the arm's timing reference. ``k > 0`` brings onset forward; over the
    reference's cases the timing is ``G`` exactly, so the published timing still holds.
    """

    strength: float = Field(gt=0)
    weights: dict[Literal["thyroid_antibodies", "family_history_autoimmunity", "smoker", "il21"], float]
    arms: tuple[Treatment, ...] = ("alemtuzumab",)
    source: str

    @model_validator(mode="after")
    def _monotone(self) -> PatientTiming:
        if any(w < 0 for w in self.weights.values()) or not self.weights:
            raise ValueError("weights: give at least one, none negative")
        if self.strength * sum(self.weights.values()) > 1:
            raise ValueError(f"strength: {self.strength:g} times the weights' sum "
                             f"{sum(self.weights.values()):g} exceeds 1, so some patients' risk would fall over time")
        return self


class EventModel(_Strict):
    """The event form: how features and time make a patient's risk by month t.

    ``ever-risk``: ``p_i * T_i(G(t))``, ``p_i`` logistic in the features (``T_i`` the identity unless
    ``patient_timing``). ``proportional-hazards``: ``1 - exp(-exp(a + eta_i) * L(t))``, the same effects
    as log hazard ratios; ``L`` follows the arm's onset CDF, and where the arm has a ``timing_reference``
    (a profile with a cumulative target), ``L`` is solved at the CDF's months so that the reference's
    cumulative incidence keeps the published timing.
    """

    form: Literal["ever-risk", "proportional-hazards"] = "ever-risk"
    timing_reference: dict[Treatment, str] = {}
    patient_timing: PatientTiming | None = None
    source: str


class CalibrationSpec(_Strict):
    reference_n: int = Field(gt=1000)
    reference_seed: int
    source: str


class SimulatorConfig(_Strict):
    """All simulator assumptions (one world); see ``experiments/cohorts.yaml``."""

    world: str = "default"
    world_source: str = "experiments/cohorts.yaml as written"
    evidence_departures: dict[str, str] = {}
    calibration: CalibrationSpec
    event_model: EventModel
    onset: dict[Treatment, OnsetSpec]
    il21_assays: dict[str, KitSpec]
    population: PopulationSpec
    trial_missing: dict[str, MissingSpec]
    profiles: dict[str, ProfileSpec]
    risk: dict[str, OutcomeRisk]

    @model_validator(mode="after")
    def _references_resolve(self) -> SimulatorConfig:
        if set(self.il21_assays) != set(KITS):
            raise ValueError(f"il21_assays: give exactly the kits {list(KITS)}")
        for name, profile in self.profiles.items():
            if profile.il21_assay not in KITS:
                raise ValueError(f"profiles.{name}.il21_assay: unknown {profile.il21_assay!r}; choose from {list(KITS)}")
            for feature in profile.missing:
                if feature not in FEATURES_BY_NAME or FEATURES_BY_NAME[feature].required:
                    raise ValueError(f"profiles.{name}.missing: {feature!r} is not an optional feature")
            unknown = set(profile.risk) - set(self.risk)
            if unknown:
                raise ValueError(f"profiles.{name}.risk: unknown outcomes {sorted(unknown)}")
            for arm, spec in profile.arms.items():
                refs = [*(spec.pool or []), *([spec.intercept_from] if spec.intercept_from else [])]
                for ref in refs:
                    target = self.profiles.get(ref.profile)
                    if target is None or ref.arm not in target.arms:
                        raise ValueError(f"profiles.{name}.arms.{arm}: no arm {ref.profile}/{ref.arm}")
                    if spec.pool and target.arms[ref.arm].baseline is None:
                        raise ValueError(f"profiles.{name}.arms.{arm}: pooled arms need a baseline")
                    if spec.intercept_from and target.arms[ref.arm].targets is None:
                        raise ValueError(f"profiles.{name}.arms.{arm}: intercept_from needs targets")
        self._check_event_model()
        return self

    def _check_event_model(self) -> None:
        model = self.event_model
        if model.patient_timing is not None and model.form != "ever-risk":
            raise ValueError("event_model.patient_timing: only in the ever-risk form")
        needed = set(model.timing_reference)
        if model.patient_timing is not None:
            missing = set(model.patient_timing.arms) - needed
            if missing:
                raise ValueError(f"event_model.patient_timing: arms {sorted(missing)} need a timing_reference")
        for arm, profile_name in model.timing_reference.items():
            profile = self.profiles.get(profile_name)
            if profile is None or arm not in profile.arms or profile.arms[arm].targets is None:
                raise ValueError(f"event_model.timing_reference.{arm}: {profile_name!r} is not a profile "
                                 f"with targets for {arm}")
            if profile.target_kind != "cumulative" or profile.follow_up_months < self.onset[arm].months[-1]:
                raise ValueError(f"event_model.timing_reference.{arm}: {profile_name!r} must target the "
                                 f"cumulative incidence to month {self.onset[arm].months[-1]:g} or later")

    def effects(self, profile: str, outcome: str) -> OutcomeRisk:
        """The effects on ``outcome`` in ``profile``: the world's, with the profile's own where it gives them."""
        override = self.profiles[profile].risk.get(outcome)
        base = self.risk[outcome]
        if override is None:
            return base
        return base.model_copy(update={k: v for k, v in override if v is not None})

    def population_of(self, profile: str) -> PopulationSpec:
        """The population features of ``profile``: the trials', with the profile's own where it gives them."""
        override = self.profiles[profile].population
        if override is None:
            return self.population
        return self.population.model_copy(update={k: v for k, v in override if v is not None and k != "source"})

    def assumption_params(self) -> dict[str, str]:
        """Flat ``{key: value}`` of every numeric or boolean assumption, for MLflow params."""
        flat: dict[str, str] = {"sim.world": self.world}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), item)
            elif isinstance(value, (list, tuple)):
                if all(isinstance(v, (int, float)) for v in value):
                    flat[prefix] = ",".join(f"{v:g}" for v in value)
                else:
                    for k, item in enumerate(value):
                        walk(f"{prefix}.{k}", item)
            elif isinstance(value, (int, float, bool)):
                flat[prefix] = str(value)
            elif prefix.endswith(".form"):
                flat[prefix] = str(value)

        walk("sim", self.model_dump(exclude_none=True, exclude={"trial_missing", "world", "world_source",
                                                                "evidence_departures"}))
        return flat


def load_simulator_config(path: Path | str = DEFAULT_CONFIG_PATH) -> SimulatorConfig:
    """Read and validate a simulator config YAML (a world's overrides: :func:`pipelines.config.load_world`)."""
    with open(path, encoding="utf-8") as handle:
        return SimulatorConfig.model_validate(yaml.safe_load(handle))
