"""Baseline draws: each simulated patient's true (complete) features, before anything is measured.

Pure functions of the config, the profile and a random generator; the event model
(:mod:`features.event_model`) and the cohort simulator (:mod:`features.simulator`) build on them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.stats import truncnorm

from features.simulator_config import BaselineSpec, DurationSpec, NormalSpec, RelapseSpec, SimulatorConfig


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
    age = _truncated_normal(rng, spec.age_years, *config.population.age_range_years, n)
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
        ``sex`` and ``treatment`` as text, ``il21_pg_ml`` the true level on the legacy-ELISA
        scale), plus ``relapses_prior_year`` (NaN where the profile reports prior-2-year
        counts). No value is missing.
    """
    spec = config.profiles[profile]
    population = config.population_of(profile)
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

    il21 = rng.lognormal(np.log(population.il21_median_pg_ml), population.il21_log_sd, n)
    return pd.DataFrame({
        "age_years": columns["age_years"],
        "sex": np.where(columns["female"] > 0, "female", "male"),
        "disease_duration_years": columns["disease_duration_years"],
        "edss": columns["edss"],
        "relapses_prior_2y": columns["relapses_prior_2y"],
        "prior_dmt": columns["prior_dmt"],
        "il21_pg_ml": np.clip(il21, *population.il21_range_pg_ml),
        "smoker": (rng.random(n) < population.smoker).astype(float),
        "family_history_autoimmunity": (rng.random(n) < population.family_history_autoimmunity
                                        ).astype(float),
        "thyroid_antibodies": (rng.random(n) < population.thyroid_antibodies).astype(float),
        "treatment": np.asarray(arms, dtype=object)[arm_index],
        "relapses_prior_year": columns["relapses_prior_year"],
    })
