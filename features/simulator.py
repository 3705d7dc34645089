"""Synthetic cohorts that match the published trials, with event times and censoring.

Every number comes from :class:`SimulatorConfig` (``experiments/cohorts.yaml``),
which cites its source in ``docs/clinical-evidence.md``. The functions here are pure:
config and seed in, DataFrame out.

Event model
-----------
Patient *i* develops an outcome at some point with probability ``p_i`` (a logistic
risk function of the baseline features); if so, the onset month is drawn from
the treatment's onset distribution ``G``. The risk by month *t* is therefore
``p_i * G(t)``, exactly. Observation ends at the profile's follow-up or at an
exponential drop-out time, whichever comes first; the outcome is observed when
onset comes before that. Each arm's intercept is solved so that its target is
met in expectation.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import brentq, least_squares
from scipy.special import expit
from scipy.stats import truncnorm

from features.schema import EVALUATION_HORIZONS_MONTHS, FEATURES, FEATURES_BY_NAME, ID_COLUMN, IL21_KITS, OUTCOMES

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "experiments" / "cohorts.yaml"
# Ages the trials enrolled (evidence §1.1), and the range of IL-21 a legacy-kit reading is clipped to.
AGE_RANGE_YEARS = (18.0, 55.0)
IL21_RANGE_PG_ML = (10.0, 5000.0)
BOOLEAN_FEATURES = tuple(f.name for f in FEATURES if f.kind == "boolean")


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


class ArmSpec(_Strict):
    n_randomised: int = Field(gt=0)
    baseline: BaselineSpec | None = None
    pool: list[PoolItem] | None = None
    dropout_by_follow_up: float = Field(ge=0, lt=1)
    targets: dict[str, float] | None = None
    intercept_from: ArmRef | None = None
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


Treatment = Literal["interferon_beta_1a", "alemtuzumab"]


class ProfileSpec(_Strict):
    trial: str
    follow_up_months: float = Field(gt=0)
    target_kind: Literal["observed", "cumulative", "none"]
    il21_assay: Literal["legacy_elisa", "current_elisa"]
    missing: dict[str, MissingSpec]
    source: str
    arms: dict[Treatment, ArmSpec]


class OnsetSpec(_Strict):
    """Piecewise-linear CDF of onset month among patients who develop the outcome."""

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


class AssaySpec(_Strict):
    legacy_elisa: float = Field(gt=0)
    current_elisa: float = Field(gt=0)
    source: str


class PopulationSpec(_Strict):
    relapses_second_prior_year_mean: float = Field(ge=0)
    relapses_source: str
    il21_median_pg_ml: float = Field(gt=0)
    il21_log_sd: float = Field(gt=0)
    il21_source: str
    smoker: float = Field(ge=0, le=1)
    family_history_autoimmunity: float = Field(ge=0, le=1)
    thyroid_antibodies: float = Field(ge=0, le=1)
    prevalence_source: str


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
    family_history_autoimmunity: OddsRatio
    smoker: OddsRatio
    thyroid_antibodies: OddsRatio
    female: OddsRatio
    il21: IL21Effect


class CalibrationSpec(_Strict):
    reference_n: int = Field(gt=1000)
    reference_seed: int
    source: str


class SimulatorConfig(_Strict):
    """All simulator assumptions; see ``experiments/cohorts.yaml``."""

    calibration: CalibrationSpec
    onset: dict[Treatment, OnsetSpec]
    il21_assays: AssaySpec
    population: PopulationSpec
    trial_missing: dict[str, MissingSpec]
    profiles: dict[str, ProfileSpec]
    risk: dict[str, OutcomeRisk]

    @model_validator(mode="after")
    def _references_resolve(self) -> SimulatorConfig:
        for name, profile in self.profiles.items():
            for feature in profile.missing:
                if feature not in FEATURES_BY_NAME or FEATURES_BY_NAME[feature].required:
                    raise ValueError(f"profiles.{name}.missing: {feature!r} is not an optional feature")
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
        return self

    def assumption_params(self) -> dict[str, str]:
        """Flat ``{key: value}`` of every numeric or boolean assumption, for MLflow params."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), item)
            elif isinstance(value, list):
                if all(isinstance(v, (int, float)) for v in value):
                    flat[prefix] = ",".join(f"{v:g}" for v in value)
                else:
                    for k, item in enumerate(value):
                        walk(f"{prefix}.{k}", item)
            elif isinstance(value, (int, float, bool)):
                flat[prefix] = str(value)

        walk("sim", self.model_dump(exclude_none=True, exclude={"trial_missing"}))
        return flat


def load_simulator_config(path: Path | str = DEFAULT_CONFIG_PATH) -> SimulatorConfig:
    """Read and validate a simulator config YAML."""
    with open(path, encoding="utf-8") as handle:
        return SimulatorConfig.model_validate(yaml.safe_load(handle))


# --------------------------------------------------------------------------- baseline draws


@lru_cache(maxsize=256)
def _truncated_normal_params(mean: float, sd: float, low: float, high: float) -> tuple[float, float]:
    """Location and scale of a normal on ``[low, high]`` whose truncated mean and SD are ``mean``, ``sd``."""

    def moments(params: np.ndarray) -> np.ndarray:
        loc, scale = params[0], np.exp(params[1])
        m, v = truncnorm.stats((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale, moments="mv")
        return np.array([m - mean, np.sqrt(v) - sd])

    solved = least_squares(moments, x0=[mean, np.log(sd)], xtol=1e-10, ftol=1e-10)
    return float(solved.x[0]), float(np.exp(solved.x[1]))


def _truncated_normal(rng: np.random.Generator, spec: NormalSpec, low: float, high: float, n: int) -> np.ndarray:
    low = spec.min if spec.min is not None else low
    high = spec.max if spec.max is not None else high
    loc, scale = _truncated_normal_params(spec.mean, spec.sd, low, high)
    return truncnorm.rvs((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale, size=n,
                         random_state=rng)


def _durations(rng: np.random.Generator, spec: DurationSpec, n: int) -> np.ndarray:
    if spec.median is None:
        # Trials report mean ± SD within their inclusion limit: a normal truncated to
        # [low, high] whose truncated moments are the published ones.
        return _truncated_normal(rng, NormalSpec(mean=spec.mean, sd=spec.sd), spec.low, spec.high, n)
    # Only a median and range: log-normal, the range spanning about the 1st–99th percentile.
    sigma = (np.log(spec.high) - np.log(spec.low)) / (2 * 2.326)
    return np.clip(rng.lognormal(np.log(spec.median), sigma, n), spec.low, spec.high)


def _relapses(rng: np.random.Generator, spec: RelapseSpec, second_year_mean: float,
              n: int) -> tuple[np.ndarray, np.ndarray]:
    """(relapses in the prior 2 years, relapses in the prior year)."""
    if spec.mean is not None:
        counts = 1 + rng.poisson(max(spec.mean - 1, 0), n)
        prior_year = np.full(n, np.nan)
    else:
        # Trials enrolled patients with at least one relapse in the prior year.
        prior_year = (1 + rng.poisson(max(spec.prior_year_mean - 1, 0), n)).astype(float)
        counts = prior_year + rng.poisson(second_year_mean, n)
    return np.clip(counts, spec.min, spec.max).astype(float), prior_year


def _baseline_components(config: SimulatorConfig, profile: str, arm: str) -> list[tuple[BaselineSpec, float]]:
    spec = config.profiles[profile].arms[arm]
    if spec.baseline is not None:
        return [(spec.baseline, 1.0)]
    return [(config.profiles[p.profile].arms[p.arm].baseline, p.weight) for p in spec.pool]


def _draw_arm(config: SimulatorConfig, spec: BaselineSpec, n: int, rng: np.random.Generator) -> dict:
    age = _truncated_normal(rng, spec.age_years, *AGE_RANGE_YEARS, n)
    duration = np.minimum(_durations(rng, spec.disease_duration_years, n), age - 1)
    edss_max = spec.edss.max if spec.edss.max is not None else 10.0
    edss = np.round(_truncated_normal(rng, spec.edss, 0.0, edss_max, n) * 2) / 2
    relapses, prior_year = _relapses(rng, spec.relapses_prior_2y,
                                     config.population.relapses_second_prior_year_mean, n)
    return {
        "age_years": np.round(age, 1),
        "female": rng.random(n) < spec.female,
        "disease_duration_years": np.round(duration, 2),
        "edss": edss,
        "relapses_prior_2y": relapses,
        "relapses_prior_year": prior_year,
        "prior_dmt": rng.random(n) < spec.prior_dmt,
    }


def draw_baseline(config: SimulatorConfig, profile: str, n: int,
                  rng: np.random.Generator) -> pd.DataFrame:
    """Draw true (complete) baseline features of ``n`` randomised patients.

    Returns
    -------
    DataFrame of shape (n, 12)
        Feature columns named as in :mod:`features.schema` (booleans as 0/1 floats,
        ``sex`` and ``treatment`` as text, ``il21_pg_ml`` on the legacy-ELISA scale),
        plus ``relapses_prior_year`` (NaN where the profile reports prior-2-year counts).
        No value is missing.
    """
    spec = config.profiles[profile]
    population = config.population
    arms = list(spec.arms)
    weights = np.array([spec.arms[a].n_randomised for a in arms], dtype=float)
    arm_index = rng.choice(len(arms), size=n, p=weights / weights.sum())

    names = ("age_years", "female", "disease_duration_years", "edss", "relapses_prior_2y",
             "relapses_prior_year", "prior_dmt")
    columns = {name: np.empty(n) for name in names}
    for k, arm in enumerate(arms):
        members = np.flatnonzero(arm_index == k)
        components = _baseline_components(config, profile, arm)
        shares = np.array([w for _, w in components]) / sum(w for _, w in components)
        which = rng.choice(len(components), size=len(members), p=shares)
        for c, (baseline, _) in enumerate(components):
            rows = members[which == c]
            for name, values in _draw_arm(config, baseline, len(rows), rng).items():
                columns[name][rows] = values

    il21_range = IL21_RANGE_PG_ML  # the risk function's scale
    il21 = rng.lognormal(np.log(population.il21_median_pg_ml), population.il21_log_sd, n)
    return pd.DataFrame({
        "age_years": columns["age_years"],
        "sex": np.where(columns["female"] > 0, "female", "male"),
        "disease_duration_years": columns["disease_duration_years"],
        "edss": columns["edss"],
        "relapses_prior_2y": columns["relapses_prior_2y"],
        "prior_dmt": columns["prior_dmt"],
        "il21_pg_ml": np.clip(il21, *il21_range),
        "smoker": (rng.random(n) < population.smoker).astype(float),
        "family_history_autoimmunity": (rng.random(n) < population.family_history_autoimmunity
                                        ).astype(float),
        "thyroid_antibodies": (rng.random(n) < population.thyroid_antibodies).astype(float),
        "treatment": np.asarray(arms, dtype=object)[arm_index],
        "relapses_prior_year": columns["relapses_prior_year"],
    })


# --------------------------------------------------------------------------- risk and timing


def linear_predictor(config: SimulatorConfig, outcome: str, baseline: pd.DataFrame) -> np.ndarray:
    """Log-odds of ever developing ``outcome``, relative to the arm intercept, per patient.

    The IL-21 term is non-linear (a logistic threshold on log IL-21) and, by
    default, interacts with treatment (it acts only after alemtuzumab).
    """
    risk = config.risk[outcome]
    eta = np.zeros(len(baseline))
    for name in ("family_history_autoimmunity", "smoker", "thyroid_antibodies"):
        eta += np.log(getattr(risk, name).odds_ratio) * baseline[name].to_numpy(dtype=float)
    eta += np.log(risk.female.odds_ratio) * (baseline["sex"].to_numpy() == "female")
    il21 = risk.il21
    step = expit((np.log(baseline["il21_pg_ml"].to_numpy(dtype=float))
                  - np.log(il21.threshold_pg_ml)) / il21.width_log)
    il21_term = np.log(il21.max_odds_ratio) * step
    if il21.alemtuzumab_only:
        il21_term *= baseline["treatment"].to_numpy() == "alemtuzumab"
    return eta + il21_term


def onset_cdf(config: SimulatorConfig, treatment: str, months) -> np.ndarray:
    """``G(t)``: share of eventual cases with onset by ``months`` after the first course."""
    spec = config.onset[treatment]
    return np.interp(np.asarray(months, dtype=float), spec.months, spec.cdf)


def dropout_rate(profile: ProfileSpec, arm: str) -> float:
    """Exponential drop-out rate per month that loses ``dropout_by_follow_up`` by the end of follow-up."""
    return -np.log1p(-profile.arms[arm].dropout_by_follow_up) / profile.follow_up_months


def observed_share(config: SimulatorConfig, profile: str, arm: str) -> float:
    """Share of eventual cases whose onset is observed: ``∫ g(t) exp(-λ t) dt`` over follow-up."""
    spec = config.profiles[profile]
    rate = dropout_rate(spec, arm)
    onset = config.onset[arm]
    months, cdf = np.array(onset.months), np.array(onset.cdf)
    total = 0.0
    for a, b, mass in zip(months[:-1], months[1:], np.diff(cdf)):
        b_cut = min(b, spec.follow_up_months)
        if b_cut <= a or mass == 0:
            continue
        density = mass / (b - a)
        total += density * ((np.exp(-rate * a) - np.exp(-rate * b_cut)) / rate if rate > 0 else b_cut - a)
    return float(total)


def _target_share(config: SimulatorConfig, profile: str, arm: str) -> float:
    """What ``mean(p_i)`` must be for the arm's targets to hold, per unit of target."""
    spec = config.profiles[profile]
    if spec.target_kind == "observed":
        return observed_share(config, profile, arm)
    return float(onset_cdf(config, arm, spec.follow_up_months))


def solve_intercept(eta: np.ndarray, target: float) -> float:
    """Intercept ``a`` such that ``mean(expit(a + eta)) == target`` (``-inf`` for a zero target)."""
    if target <= 0:
        return -np.inf
    if target >= 1:
        raise ValueError(f"target mean risk {target:.3f} is not below 1: the targets and onset "
                         "distribution are inconsistent")
    return brentq(lambda a: expit(a + eta).mean() - target, -40.0, 40.0, xtol=1e-12)


@lru_cache(maxsize=64)
def _intercepts_cached(config_json: str, profile: str) -> tuple[tuple[str, str, float], ...]:
    config = SimulatorConfig.model_validate_json(config_json)
    spec = config.profiles[profile]
    solved = []
    for arm, arm_spec in spec.arms.items():
        if arm_spec.intercept_from is not None:
            source = _intercepts_cached(config_json, arm_spec.intercept_from.profile)
            solved += [(arm, o, a) for ref_arm, o, a in source if ref_arm == arm_spec.intercept_from.arm]
            continue
        rng = np.random.default_rng(config.calibration.reference_seed)
        reference = draw_baseline(config, profile, config.calibration.reference_n, rng)
        members = reference["treatment"].to_numpy() == arm
        share = _target_share(config, profile, arm)
        for outcome in OUTCOMES:
            eta = linear_predictor(config, outcome, reference[members])
            solved.append((arm, outcome, solve_intercept(eta, arm_spec.targets[outcome] / share)))
    return tuple(solved)


def arm_intercepts(config: SimulatorConfig, profile: str) -> dict[tuple[str, str], float]:
    """Solved intercept per ``(arm, outcome)`` of a profile."""
    solved = _intercepts_cached(config.model_dump_json(), profile)
    return {(arm, outcome): value for arm, outcome, value in solved}


def ever_risk(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame) -> np.ndarray:
    """``p_i``: each patient's probability of ever developing ``outcome``."""
    intercepts = arm_intercepts(config, profile)
    offset = baseline["treatment"].map(
        {arm: intercepts[(arm, outcome)] for arm in config.profiles[profile].arms}
    ).to_numpy(dtype=float)
    with np.errstate(over="ignore"):
        return expit(offset + linear_predictor(config, outcome, baseline))


def true_risk(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame,
              horizon_months: float | None = None) -> np.ndarray:
    """Each patient's true probability of ``outcome``.

    With ``horizon_months``: of onset by that month (``p_i * G(t)``, no drop-out).
    Without: of an *observed* event within the profile's follow-up (drop-out included),
    which is the probability of the ``<outcome>_event`` label.
    """
    p = ever_risk(config, profile, outcome, baseline)
    treatment = baseline["treatment"].to_numpy()
    share = np.empty(len(baseline))
    for arm in config.profiles[profile].arms:
        members = treatment == arm
        share[members] = (onset_cdf(config, arm, horizon_months) if horizon_months is not None
                          else observed_share(config, profile, arm))
    return p * share


# --------------------------------------------------------------------------- cohorts


def _feature_matrix(baseline: pd.DataFrame, names) -> np.ndarray:
    columns = []
    for name in names:
        values = baseline[name]
        if name == "sex":
            values = values == "female"
        elif name == "treatment":
            values = values == "alemtuzumab"
        columns.append(values.to_numpy(dtype=float))
    return np.column_stack(columns) if columns else np.zeros((len(baseline), 0))


def missing_mask(spec: MissingSpec, baseline: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Which values to hide: share ``spec.rate``, more often where ``depends_on`` says (MAR)."""
    n = len(baseline)
    if not spec.depends_on:
        return rng.random(n) < spec.rate
    names = list(spec.depends_on)
    x = _feature_matrix(baseline, names)
    eta = (x - x.mean(axis=0)) @ np.array([spec.depends_on[k] for k in names])
    intercept = solve_intercept(eta, spec.rate) if spec.rate > 0 else -np.inf
    return rng.random(n) < expit(intercept + eta)


def simulate_cohort(config: SimulatorConfig, profile: str, n: int, seed: int,
                    il21_assay: str | None = None) -> pd.DataFrame:
    """Simulate one synthetic cohort.

    Parameters
    ----------
    config : SimulatorConfig
        Simulator assumptions.
    profile : str
        One of ``config.profiles`` (``camms223``, ``care-ms1``, ``care-ms2``, ``extension``, ``clinic``).
    n : int
        Number of patients.
    seed : int
        Random seed; the same seed gives the same cohort.
    il21_assay : str, optional
        Measure IL-21 with this kit instead of the profile's own.

    Returns
    -------
    DataFrame
        ``patient_id``; the features as observed (missing values as configured, IL-21 on the
        assay's scale); per outcome ``<outcome>_event`` (1 = onset observed before censoring)
        and ``<outcome>_time_months`` (onset, or censoring); per outcome the true
        probabilities ``true_risk_<outcome>`` (of the event label within follow-up) and
        ``true_risk_<outcome>_<h>m`` (of onset by month h, for h in
        :data:`features.schema.EVALUATION_HORIZONS_MONTHS`); per outcome and arm of the profile,
        ``true_ever_risk_<outcome>_if_<arm>`` (of ever developing it under that arm, the
        counterfactual for the other arm; :func:`true_risk_at` turns it into a risk by any month).
    """
    if profile not in config.profiles:
        raise ValueError(f"profile: unknown {profile!r}; choose from {', '.join(config.profiles)}")
    if n < 1:
        raise ValueError(f"n: must be at least 1, got {n}")
    spec = config.profiles[profile]
    assay = il21_assay or spec.il21_assay
    if assay not in IL21_KITS:
        raise ValueError(f"il21_assay: unknown {assay!r}; choose legacy_elisa or current_elisa")
    rng = np.random.default_rng(seed)
    baseline = draw_baseline(config, profile, n, rng)
    treatment = baseline["treatment"].to_numpy()

    rate = np.zeros(n)
    for arm in spec.arms:
        rate[treatment == arm] = dropout_rate(spec, arm)
    with np.errstate(divide="ignore"):
        dropout = np.where(rate > 0, rng.exponential(1.0, n) / np.where(rate > 0, rate, 1.0), np.inf)
    censored_at = np.minimum(dropout, spec.follow_up_months)

    outcomes: dict[str, np.ndarray] = {}
    for outcome in OUTCOMES:
        p = ever_risk(config, profile, outcome, baseline)
        ever = rng.random(n) < p
        u = rng.random(n)
        onset = np.full(n, np.inf)
        for arm in spec.arms:
            members = treatment == arm
            onset[members] = np.interp(u[members], config.onset[arm].cdf, config.onset[arm].months)
        onset = np.where(ever, onset, np.inf)
        event = onset <= censored_at
        outcomes[f"{outcome}_event"] = event.astype(np.int8)
        outcomes[f"{outcome}_time_months"] = np.round(np.where(event, onset, censored_at), 3)

    observed = baseline.drop(columns="relapses_prior_year")
    observed["il21_pg_ml"] = np.round(observed["il21_pg_ml"] * getattr(config.il21_assays, assay), 2)
    observed.insert(observed.columns.get_loc("il21_pg_ml") + 1, "il21_assay", assay)
    for name in BOOLEAN_FEATURES:
        # object dtype (True / False / None): what MLflow's boolean schema accepts with missing values
        observed[name] = pd.Series(baseline[name].to_numpy() > 0, dtype=object)
    for name, missing in spec.missing.items():
        hidden = missing_mask(missing, baseline, rng)
        if name in BOOLEAN_FEATURES:
            observed[name] = observed[name].where(~hidden, None)
        else:
            observed[name] = observed[name].mask(hidden)
    observed["il21_assay"] = observed["il21_assay"].where(observed["il21_pg_ml"].notna(), None)

    width = len(str(n))
    observed.insert(0, ID_COLUMN, [f"{profile}-{seed}-{i:0{width}d}" for i in range(n)])
    for outcome in OUTCOMES:
        observed[f"{outcome}_event"] = outcomes[f"{outcome}_event"]
        observed[f"{outcome}_time_months"] = outcomes[f"{outcome}_time_months"]
    for outcome in OUTCOMES:
        observed[f"true_risk_{outcome}"] = true_risk(config, profile, outcome, baseline)
        for horizon in EVALUATION_HORIZONS_MONTHS:
            observed[f"true_risk_{outcome}_{horizon}m"] = true_risk(config, profile, outcome, baseline, horizon)
    for outcome in OUTCOMES:
        for arm in spec.arms:
            counterfactual = baseline.assign(treatment=arm)
            observed[ever_risk_column(outcome, arm)] = ever_risk(config, profile, outcome, counterfactual)
    return observed


def ever_risk_column(outcome: str, treatment: str) -> str:
    """Cohort column of each patient's true probability of ever developing ``outcome`` under ``treatment``."""
    return f"true_ever_risk_{outcome}_if_{treatment}"


def true_risk_at(config: SimulatorConfig, cohort: pd.DataFrame, outcome: str, months,
                 treatment: str | None = None) -> np.ndarray:
    """Each patient's true risk of onset by each of ``months``, under their own or another treatment.

    Parameters
    ----------
    config : SimulatorConfig
        The assumptions the cohort was simulated with.
    cohort : DataFrame of shape (n, ...)
        A frame from :func:`simulate_cohort` (it carries each patient's ever-risk per arm of its profile).
    outcome : str
        ``thyroid`` or ``itp``.
    months : sequence of float, length H
        Months after the first course.
    treatment : str, optional
        The counterfactual treatment for everyone; by default each patient's own.

    Returns
    -------
    ndarray of shape (n, H)
        ``p_i * G(t)``: the probability of ever developing the outcome times the share of onsets by ``t``.

    Raises
    ------
    KeyError
        When the cohort's profile has no arm of ``treatment`` (its intercept is unknown).
    """
    months = np.atleast_1d(np.asarray(months, dtype=float))
    own = cohort["treatment"].to_numpy()
    arms = [treatment] if treatment is not None else list(dict.fromkeys(own))
    risk = np.empty((len(cohort), len(months)))
    for arm in arms:
        members = np.ones(len(cohort), dtype=bool) if treatment is not None else own == arm
        column = ever_risk_column(outcome, arm)
        if column not in cohort:
            raise KeyError(f"{column}: the cohort has no arm {arm!r}, so its true risk under it is unknown")
        p = cohort[column].to_numpy(dtype=float)[members]
        risk[members] = p[:, None] * onset_cdf(config, arm, months)[None, :]
    return risk


def write_frame(frame: pd.DataFrame, path: Path | str) -> None:
    """Write a frame as CSV or Parquet, by the file's extension."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"out: unsupported extension {path.suffix!r}; use .csv or .parquet")
