"""The event model: how a patient's features and time make their true risk, in every event form.

Each patient has, per outcome and arm, a linear predictor ``lp = a + eta`` (``a`` the arm's solved
intercept, ``eta`` the effects of :func:`linear_predictor`) and, in the ever-risk form with patient
timing, an onset shift ``k``. The arm's *curve* ``c(t)`` is piecewise linear over the onset months:

- ``ever-risk``: ``risk(t) = expit(lp) * T(c(t), k)``, ``c`` the onset CDF and
  ``T(u, k) = u + k u (1 - u)`` (the identity where ``k = 0``);
- ``proportional-hazards``: ``risk(t) = 1 - exp(-exp(lp) * c(t))``, ``c`` the baseline cumulative hazard.

Every probability here is computed in closed form (no numerical integration): risk by any month, the
probability of an *observed* onset under exponential drop-out, and onset times drawn by inversion.
Intercepts are solved so that each arm's published target holds in expectation over a fixed
reference sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from features.baseline import draw_baseline
from features.simulator_config import IL21Effect, ProfileSpec, SimulatorConfig


@dataclass(frozen=True)
class ArmCurve:
    """The piecewise-linear curve of one arm and outcome: onset CDF (ever-risk) or cumulative hazard."""

    form: str
    months: np.ndarray
    values: np.ndarray

    def at(self, months) -> np.ndarray:
        return np.interp(np.asarray(months, dtype=float), self.months, self.values)


# --------------------------------------------------------------------------- effects


def il21_step(effect: IL21Effect, il21_pg_ml: np.ndarray) -> np.ndarray:
    """The IL-21 effect's threshold step, 0 (low IL-21) to 1 (high), on the log scale."""
    return expit((np.log(il21_pg_ml) - np.log(effect.threshold_pg_ml)) / effect.width_log)


def linear_predictor(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame) -> np.ndarray:
    """Effects on ``outcome`` relative to the arm intercept, per patient (log-odds, or log hazard ratio).

    The IL-21 term is non-linear (a logistic threshold on log IL-21) and, by default, interacts
    with treatment (it acts only after alemtuzumab). ``profile`` selects the profile's own effects
    where it has them.
    """
    risk = config.effects(profile, outcome)
    eta = np.zeros(len(baseline))
    for name in ("family_history_autoimmunity", "smoker", "thyroid_antibodies"):
        eta += np.log(getattr(risk, name).odds_ratio) * baseline[name].to_numpy(dtype=float)
    eta += np.log(risk.female.odds_ratio) * (baseline["sex"].to_numpy() == "female")
    il21_term = np.log(risk.il21.max_odds_ratio) * il21_step(risk.il21, baseline["il21_pg_ml"].to_numpy(dtype=float))
    if risk.il21.alemtuzumab_only:
        il21_term *= baseline["treatment"].to_numpy() == "alemtuzumab"
    return eta + il21_term


def timing_score(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame) -> np.ndarray:
    """``s``: the weighted features that bring onset forward (0 without patient timing)."""
    timing = config.event_model.patient_timing
    score = np.zeros(len(baseline))
    if timing is None:
        return score
    for name, weight in timing.weights.items():
        if name == "il21":
            values = il21_step(config.effects(profile, outcome).il21, baseline["il21_pg_ml"].to_numpy(dtype=float))
        else:
            values = baseline[name].to_numpy(dtype=float)
        score += weight * values
    return score


# --------------------------------------------------------------------------- closed forms


def _integral0(rate: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``∫_0^D exp(-r t) dt`` for ``r >= 0``."""
    rate, length = np.broadcast_arrays(np.asarray(rate, dtype=float), np.asarray(length, dtype=float))
    out = length.copy()
    positive = rate > 0
    out[positive] = -np.expm1(-rate[positive] * length[positive]) / rate[positive]
    return out


def _integral1(rate: float, length: np.ndarray) -> np.ndarray:
    """``∫_0^D t exp(-r t) dt`` for ``r >= 0`` (a series where ``r D`` is small, free of cancellation)."""
    x = rate * length
    small = x < 1e-2
    safe = np.where(small, 1.0, x)
    exact = (-np.expm1(-safe) - safe * np.exp(-safe)) / safe**2
    series = 0.5 - x / 3 + x**2 / 8 - x**3 / 30 + x**4 / 144
    return length**2 * np.where(small, series, exact)


def shift_transform(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``T(u, k) = u + k u (1 - u)``: the share of a patient's onsets by the time a share ``u`` of all have come."""
    return u + k * u * (1 - u)


def risk_by_month(curve: ArmCurve, lp: np.ndarray, shift: np.ndarray, months) -> np.ndarray:
    """True risk of onset by each of ``months``: array of shape (n, len(months)); no drop-out."""
    values = curve.at(np.atleast_1d(months))[None, :]
    lp = np.asarray(lp, dtype=float)[:, None]
    with np.errstate(over="ignore"):
        if curve.form == "proportional-hazards":
            return -np.expm1(-np.exp(lp) * values)
        return expit(lp) * shift_transform(values, np.asarray(shift, dtype=float)[:, None])


def observed_share(curve: ArmCurve, shift: np.ndarray, dropout_rate: float, follow_up: float) -> np.ndarray:
    """Ever-risk form: the share of a patient's onsets observed within ``follow_up`` months under drop-out
    at ``dropout_rate`` per month, ``∫_0^F exp(-mu t) dT(G(t), k)``, piece by piece in closed form."""
    shift = np.atleast_1d(np.asarray(shift, dtype=float))
    total = np.zeros(len(shift))
    for a, b, va, vb in _pieces(curve, follow_up):
        slope, length = (vb - va) / (b - a), min(b, follow_up) - a
        # On the piece G = va + slope (t - a), so dT/dt = slope (1 + k (1 - 2 va) - 2 k slope (t - a)).
        alpha = 1 + shift * (1 - 2 * va)
        total += np.exp(-dropout_rate * a) * slope * (alpha * _integral0(dropout_rate, length)
                                                      - 2 * shift * slope * _integral1(dropout_rate, length))
    return total


def observed_probability(curve: ArmCurve, lp: np.ndarray, shift: np.ndarray, dropout_rate: float,
                         follow_up: float) -> np.ndarray:
    """Probability of an onset observed within ``follow_up`` months, drop-out at ``dropout_rate`` per month:
    ``∫_0^F exp(-mu t) d risk(t)``, in closed form."""
    lp = np.atleast_1d(np.asarray(lp, dtype=float))
    if curve.form == "ever-risk":
        return expit(lp) * observed_share(curve, np.broadcast_to(shift, lp.shape), dropout_rate, follow_up)
    total = np.zeros(len(lp))
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.exp(lp)
        for a, b, va, vb in _pieces(curve, follow_up):
            hazard = scale * (vb - va) / (b - a)
            # On the piece H = scale va + hazard (t - a): density hazard exp(-H), times exp(-mu t).
            piece = np.exp(-scale * va - dropout_rate * a) * hazard * _integral0(hazard + dropout_rate,
                                                                                 min(b, follow_up) - a)
            total += np.where(scale > 0, piece, 0.0)
    return total


def _pieces(curve: ArmCurve, follow_up: float):
    """The curve's rising pieces ``(a, b, value at a, value at b)`` that start before ``follow_up``."""
    for a, b, va, vb in zip(curve.months[:-1], curve.months[1:], curve.values[:-1], curve.values[1:]):
        if a < follow_up and vb > va:
            yield float(a), float(b), float(va), float(vb)


def onset_months(curve: ArmCurve, lp: np.ndarray, shift: np.ndarray, u_ever: np.ndarray,
                 u_time: np.ndarray) -> np.ndarray:
    """Onset month of each patient from two uniforms (``inf``: no onset by the curve's last month)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if curve.form == "proportional-hazards":
            scale = np.exp(lp)
            needed = -np.log1p(-u_ever) / scale  # the cumulative hazard at which this patient's onset comes
            onset = np.interp(needed, curve.values, curve.months)
            return np.where(needed < curve.values[-1], onset, np.inf)
        ever = u_ever < expit(lp)
        # T(v, k) = u solved for v (the root in [0, 1]), in a form exact at k = 0.
        root = 2 * u_time / ((1 + shift) + np.sqrt((1 + shift) ** 2 - 4 * shift * u_time))
        return np.where(ever, np.interp(root, curve.values, curve.months), np.inf)


# --------------------------------------------------------------------------- solving


def dropout_rate(profile: ProfileSpec, arm: str) -> float:
    """Exponential drop-out rate per month that loses ``dropout_by_follow_up`` by the end of follow-up."""
    return -np.log1p(-profile.arms[arm].dropout_by_follow_up) / profile.follow_up_months


def solve_intercept(eta: np.ndarray, target: float) -> float:
    """Intercept ``a`` such that ``mean(expit(a + eta)) == target`` (``-inf`` for a zero target)."""
    return solve_monotone(lambda a: expit(a + eta).mean(), target)


def solve_monotone(mean_at, target: float) -> float:
    """``a`` with ``mean_at(a) == target`` for an increasing ``mean_at`` (``-inf`` for a zero target)."""
    if target <= 0:
        return -np.inf
    if target >= 1:
        raise ValueError(f"target mean risk {target:.3f} is not below 1: the targets and onset "
                         "distribution are inconsistent")
    return brentq(lambda a: mean_at(a) - target, -40.0, 40.0, xtol=1e-12)


@lru_cache(maxsize=2)
def _reference(config_json: str, profile: str) -> pd.DataFrame:
    config = SimulatorConfig.model_validate_json(config_json)
    return draw_baseline(config, profile, config.calibration.reference_n,
                         np.random.default_rng(config.calibration.reference_seed))


def _reference_arm(config_json: str, profile: str, arm: str) -> pd.DataFrame:
    reference = _reference(config_json, profile)
    return reference[reference["treatment"].to_numpy() == arm]


@lru_cache(maxsize=64)
def _curve_values(config_json: str, arm: str, outcome: str) -> tuple[float, ...]:
    """The curve's value at each onset month; in the proportional-hazards form with a timing
    reference, solved so that the reference's cumulative incidence is ``target * G(t)`` there."""
    config = SimulatorConfig.model_validate_json(config_json)
    onset = config.onset[arm]
    reference = config.event_model.timing_reference.get(arm)
    if config.event_model.form != "proportional-hazards" or reference is None:
        return tuple(onset.cdf)
    members = _reference_arm(config_json, reference, arm)
    scale = np.exp(linear_predictor(config, reference, outcome, members))
    target = config.profiles[reference].arms[arm].targets[outcome]
    values = [0.0]
    for share in onset.cdf[1:]:
        wanted = target * share
        values.append(values[-1] if wanted <= 0 else
                      float(np.exp(solve_monotone(lambda v: (-np.expm1(-scale * np.exp(v))).mean(), wanted))))
    return tuple(values)


def arm_curve(config: SimulatorConfig, arm: str, outcome: str, config_json: str | None = None) -> ArmCurve:
    """The arm's curve for ``outcome`` (onset CDF, or baseline cumulative hazard) in this world."""
    values = _curve_values(config_json or config.model_dump_json(), arm, outcome)
    return ArmCurve(config.event_model.form, np.array(config.onset[arm].months, dtype=float), np.array(values))


@lru_cache(maxsize=64)
def _timing_centre(config_json: str, arm: str, outcome: str) -> float:
    """``s_ref``: the mean timing score over the eventual cases of the arm's timing reference."""
    config = SimulatorConfig.model_validate_json(config_json)
    reference = config.event_model.timing_reference[arm]
    members = _reference_arm(config_json, reference, arm)
    eta = linear_predictor(config, reference, outcome, members)
    # The reference targets the cumulative incidence at the end of the onset curve, where T(1, k) = 1
    # for every k: its intercept does not depend on the timing, so there is no circle.
    intercept = solve_intercept(eta, config.profiles[reference].arms[arm].targets[outcome])
    weights = expit(intercept + eta)
    return float(np.sum(weights * timing_score(config, reference, outcome, members)) / np.sum(weights))


def onset_shift(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame,
                config_json: str | None = None) -> np.ndarray:
    """``k`` per patient: how far the patient's onsets come before (``> 0``) or after the arm's timing."""
    timing = config.event_model.patient_timing
    shift = np.zeros(len(baseline))
    if timing is None:
        return shift
    config_json = config_json or config.model_dump_json()
    score = timing_score(config, profile, outcome, baseline)
    treatment = baseline["treatment"].to_numpy()
    for arm in timing.arms:
        members = treatment == arm
        shift[members] = timing.strength * (score[members] - _timing_centre(config_json, arm, outcome))
    return shift


def _solve_arm(config: SimulatorConfig, config_json: str, profile: str, arm: str, outcome: str) -> float:
    spec = config.profiles[profile]
    members = _reference_arm(config_json, profile, arm)
    eta = linear_predictor(config, profile, outcome, members)
    shift = onset_shift(config, profile, outcome, members, config_json)
    curve = arm_curve(config, arm, outcome, config_json)
    target = spec.arms[arm].targets[outcome]
    if spec.target_kind == "observed":
        rate = dropout_rate(spec, arm)
        if curve.form == "ever-risk":  # the observed share of onsets does not depend on the intercept
            share = observed_share(curve, shift, rate, spec.follow_up_months)
            return solve_monotone(lambda a: (expit(a + eta) * share).mean(), target)
        return solve_monotone(lambda a: observed_probability(curve, a + eta, shift, rate,
                                                             spec.follow_up_months).mean(), target)
    # Cumulative incidence at the follow-up (Kaplan-Meier estimates it whatever the drop-out).
    if curve.form == "ever-risk":
        share = shift_transform(curve.at(spec.follow_up_months), shift)
        return solve_monotone(lambda a: (expit(a + eta) * share).mean(), target)
    level = curve.at(spec.follow_up_months)
    return solve_monotone(lambda a: (-np.expm1(-np.exp(a + eta) * level)).mean(), target)


@lru_cache(maxsize=64)
def _intercepts_cached(config_json: str, profile: str) -> tuple[tuple[str, str, float], ...]:
    config = SimulatorConfig.model_validate_json(config_json)
    solved = []
    for arm, arm_spec in config.profiles[profile].arms.items():
        source = arm_spec.intercept_from
        if source is not None:
            ratios = source.baseline_odds_ratio
            solved += [(arm, o, a + np.log(ratios.get(o, 1.0)))
                       for ref_arm, o, a in _intercepts_cached(config_json, source.profile) if ref_arm == source.arm]
            continue
        solved += [(arm, outcome, _solve_arm(config, config_json, profile, arm, outcome)) for outcome in config.risk]
    return tuple(solved)


def arm_intercepts(config: SimulatorConfig, profile: str) -> dict[tuple[str, str], float]:
    """Solved intercept per ``(arm, outcome)`` of a profile."""
    solved = _intercepts_cached(config.model_dump_json(), profile)
    return {(arm, outcome): value for arm, outcome, value in solved}


def patient_parameters(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame,
                       config_json: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(lp, k)`` per patient under their own treatment: linear predictor with the arm's intercept, onset shift."""
    intercepts = arm_intercepts(config, profile)
    offset = baseline["treatment"].map(
        {arm: intercepts[(arm, outcome)] for arm in config.profiles[profile].arms}).to_numpy(dtype=float)
    return (offset + linear_predictor(config, profile, outcome, baseline),
            onset_shift(config, profile, outcome, baseline, config_json))
