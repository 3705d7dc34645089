"""Synthetic trial cohorts whose incidences match the published trials.

Every number comes from :class:`SimulatorConfig` (``experiments/cohorts.yaml``),
which cites its source in ``clinical-facts.md``. The functions here are pure:
config and seed in, DataFrame out.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import brentq
from scipy.special import expit

from features.schema import FEATURES, FEATURES_BY_NAME, ID_COLUMN, OUTCOMES

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "experiments" / "cohorts.yaml"
BOOLEAN_FEATURES = tuple(f.name for f in FEATURES if f.kind == "boolean")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormalSpec(_Strict):
    mean: float
    sd: float = Field(gt=0)
    max: float | None = None


class DurationSpec(_Strict):
    """Disease duration in years: log-normal from a mean and SD, or a median and range."""

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


class ArmSpec(_Strict):
    n_randomised: int = Field(gt=0)
    age_years: NormalSpec
    female: float = Field(ge=0, le=1)
    disease_duration_years: DurationSpec
    edss: NormalSpec
    relapses_prior_2y: RelapseSpec
    prior_dmt: float = Field(ge=0, le=1)
    incidence: dict[str, float]
    source: str


class ProfileSpec(_Strict):
    trial: str
    follow_up_months: int = Field(gt=0)
    source: str
    arms: dict[Literal["interferon_beta_1a", "alemtuzumab"], ArmSpec]


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
    missing_rate: dict[str, float]
    missing_source: str


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
    profiles: dict[str, ProfileSpec]
    population: PopulationSpec
    risk: dict[str, OutcomeRisk]

    def assumption_params(self) -> dict[str, str]:
        """Flat ``{key: value}`` of every numeric or boolean assumption, for MLflow params."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), item)
            elif isinstance(value, (int, float, bool)) and value is not None:
                flat[prefix] = str(value)

        walk("sim", self.model_dump(exclude_none=True))
        return flat


def load_simulator_config(path: Path | str = DEFAULT_CONFIG_PATH) -> SimulatorConfig:
    """Read and validate a simulator config YAML."""
    with open(path, encoding="utf-8") as handle:
        return SimulatorConfig.model_validate(yaml.safe_load(handle))


# --------------------------------------------------------------------------- baseline draws


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, low: float, high: float,
                      n: int) -> np.ndarray:
    from scipy.stats import truncnorm

    a, b = (low - mean) / sd, (high - mean) / sd
    return truncnorm.rvs(a, b, loc=mean, scale=sd, size=n, random_state=rng)


def _durations(rng: np.random.Generator, spec: DurationSpec, n: int) -> np.ndarray:
    if spec.median is not None:
        mu = np.log(spec.median)
        # The reported range spans roughly the 1st–99th percentile of the trial sample.
        sigma = (np.log(spec.high) - np.log(spec.low)) / (2 * 2.326)
    else:
        sigma = np.sqrt(np.log1p((spec.sd / spec.mean) ** 2))
        mu = np.log(spec.mean) - sigma**2 / 2
    values = rng.lognormal(mu, sigma, n)
    return np.clip(values, spec.low, spec.high)


def _relapses(rng: np.random.Generator, spec: RelapseSpec, second_year_mean: float,
              n: int) -> np.ndarray:
    if spec.mean is not None:
        counts = 1 + rng.poisson(max(spec.mean - 1, 0), n)
    else:
        # Trials enrolled patients with at least one relapse in the prior year.
        prior_year = 1 + rng.poisson(max(spec.prior_year_mean - 1, 0), n)
        counts = prior_year + rng.poisson(second_year_mean, n)
    return np.clip(counts, spec.min, spec.max).astype(float)


def draw_baseline(config: SimulatorConfig, profile: str, n: int,
                  rng: np.random.Generator) -> pd.DataFrame:
    """Draw true (complete) baseline features of ``n`` randomised patients.

    Returns
    -------
    DataFrame of shape (n, 11)
        Feature columns named as in :mod:`features.schema`; booleans as 0/1 floats,
        ``sex`` and ``treatment`` as text. No value is missing.
    """
    spec = config.profiles[profile]
    population = config.population
    arms = list(spec.arms)
    weights = np.array([spec.arms[a].n_randomised for a in arms], dtype=float)
    arm_index = rng.choice(len(arms), size=n, p=weights / weights.sum())
    age_range = FEATURES_BY_NAME["age_years"].training

    columns: dict[str, np.ndarray] = {
        name: np.empty(n) for name in ("age_years", "disease_duration_years", "edss",
                                       "relapses_prior_2y", "female", "prior_dmt")
    }
    for k, arm in enumerate(arms):
        members = arm_index == k
        m = int(members.sum())
        arm_spec = spec.arms[arm]
        age = _truncated_normal(rng, arm_spec.age_years.mean, arm_spec.age_years.sd, *age_range, m)
        duration = np.minimum(_durations(rng, arm_spec.disease_duration_years, m), age - 1)
        edss_max = arm_spec.edss.max if arm_spec.edss.max is not None else 10.0
        edss = np.clip(np.round(rng.normal(arm_spec.edss.mean, arm_spec.edss.sd, m) * 2) / 2,
                       0.0, edss_max)
        columns["age_years"][members] = np.round(age, 1)
        columns["disease_duration_years"][members] = np.round(duration, 2)
        columns["edss"][members] = edss
        columns["relapses_prior_2y"][members] = _relapses(
            rng, arm_spec.relapses_prior_2y, population.relapses_second_prior_year_mean, m)
        columns["female"][members] = rng.random(m) < arm_spec.female
        columns["prior_dmt"][members] = rng.random(m) < arm_spec.prior_dmt

    il21_range = FEATURES_BY_NAME["il21_pg_ml"].training
    il21 = rng.lognormal(np.log(population.il21_median_pg_ml), population.il21_log_sd, n)
    return pd.DataFrame({
        "age_years": columns["age_years"],
        "sex": np.where(columns["female"] > 0, "female", "male"),
        "disease_duration_years": columns["disease_duration_years"],
        "edss": columns["edss"],
        "relapses_prior_2y": columns["relapses_prior_2y"],
        "prior_dmt": columns["prior_dmt"],
        "il21_pg_ml": np.round(np.clip(il21, *il21_range), 1),
        "smoker": (rng.random(n) < population.smoker).astype(float),
        "family_history_autoimmunity": (rng.random(n) < population.family_history_autoimmunity
                                        ).astype(float),
        "thyroid_antibodies": (rng.random(n) < population.thyroid_antibodies).astype(float),
        "treatment": np.asarray(arms, dtype=object)[arm_index],
    })


# --------------------------------------------------------------------------- risk function


def linear_predictor(config: SimulatorConfig, outcome: str, baseline: pd.DataFrame) -> np.ndarray:
    """Log-odds of ``outcome`` relative to the arm intercept, per patient.

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


def solve_intercept(eta: np.ndarray, target: float) -> float:
    """Intercept ``a`` such that ``mean(expit(a + eta)) == target`` (``-inf`` for a zero target)."""
    if target <= 0:
        return -np.inf
    return brentq(lambda a: expit(a + eta).mean() - target, -40.0, 40.0, xtol=1e-12)


@lru_cache(maxsize=64)
def _intercepts_cached(config_json: str, profile: str) -> tuple[tuple[str, str, float], ...]:
    config = SimulatorConfig.model_validate_json(config_json)
    rng = np.random.default_rng(config.calibration.reference_seed)
    reference = draw_baseline(config, profile, config.calibration.reference_n, rng)
    solved = []
    for arm, arm_spec in config.profiles[profile].arms.items():
        members = reference["treatment"].to_numpy() == arm
        for outcome in OUTCOMES:
            eta = linear_predictor(config, outcome, reference[members])
            solved.append((arm, outcome, solve_intercept(eta, arm_spec.incidence[outcome])))
    return tuple(solved)


def arm_intercepts(config: SimulatorConfig, profile: str) -> dict[tuple[str, str], float]:
    """Solved intercept per ``(arm, outcome)`` of a profile."""
    solved = _intercepts_cached(config.model_dump_json(), profile)
    return {(arm, outcome): value for arm, outcome, value in solved}


def true_risk(config: SimulatorConfig, profile: str, outcome: str,
              baseline: pd.DataFrame) -> np.ndarray:
    """Each patient's true probability of ``outcome`` within the profile's follow-up."""
    intercepts = arm_intercepts(config, profile)
    offset = baseline["treatment"].map(
        {arm: intercepts[(arm, outcome)] for arm in config.profiles[profile].arms}
    ).to_numpy(dtype=float)
    with np.errstate(over="ignore"):
        return expit(offset + linear_predictor(config, outcome, baseline))


# --------------------------------------------------------------------------- cohorts


def simulate_cohort(config: SimulatorConfig, profile: str, n: int, seed: int) -> pd.DataFrame:
    """Simulate one synthetic trial cohort.

    Parameters
    ----------
    config : SimulatorConfig
        Simulator assumptions.
    profile : str
        One of ``config.profiles`` (``camms223``, ``care-ms1``, ``care-ms2``).
    n : int
        Number of randomised patients.
    seed : int
        Random seed; the same seed gives the same cohort.

    Returns
    -------
    DataFrame of shape (n, 17)
        ``patient_id``, the features (observed: with missing values as configured),
        ``thyroid_event`` and ``itp_event`` (0/1 within follow-up), and
        ``true_risk_thyroid`` and ``true_risk_itp`` (probabilities from the simulator's
        risk function, computed on the complete features).
    """
    if profile not in config.profiles:
        raise ValueError(f"profile: unknown {profile!r}; choose from {', '.join(config.profiles)}")
    if n < 1:
        raise ValueError(f"n: must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    baseline = draw_baseline(config, profile, n, rng)
    risks = {outcome: true_risk(config, profile, outcome, baseline) for outcome in OUTCOMES}
    events = {outcome: (rng.random(n) < risks[outcome]).astype(np.int8) for outcome in OUTCOMES}

    observed = baseline.copy()
    for name in BOOLEAN_FEATURES:
        # object dtype (True / False / None): what MLflow's boolean schema accepts with missing values
        observed[name] = pd.Series(baseline[name].to_numpy() > 0, dtype=object)
    for name, rate in config.population.missing_rate.items():
        hidden = rng.random(n) < rate
        observed[name] = observed[name].astype(object).where(~hidden, None) \
            if name in BOOLEAN_FEATURES else observed[name].mask(hidden)

    width = len(str(n))
    observed.insert(0, ID_COLUMN, [f"{profile}-{seed}-{i:0{width}d}" for i in range(n)])
    for outcome in OUTCOMES:
        observed[f"{outcome}_event"] = events[outcome]
    for outcome in OUTCOMES:
        observed[f"true_risk_{outcome}"] = risks[outcome]
    return observed


def write_frame(frame: pd.DataFrame, path: Path | str) -> None:
    """Write a frame as CSV or Parquet, by the file's extension."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"out: unsupported extension {path.suffix!r}; use .csv or .parquet")
