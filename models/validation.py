"""External validation of predicted risks against observed, censored outcomes: pure functions of arrays.

Everything a real study has: each patient's predicted risk by a horizon, and their onset or censoring
month. Nothing here knows any true risk. Methods, per horizon ``t``:

- **Observed risk**: one minus the Kaplan–Meier survival at ``t`` (scikit-survival's estimator), its
  95% interval on the log-log scale, and Greenwood's standard error.
- **O/E**: the observed risk over the mean predicted risk, its 95% interval from the observed risk's
  standard error on the log scale (the predictions taken as fixed), as Riley et al. (BMJ 2021,
  "Evaluation of clinical prediction models (part 2)") give it for time-to-event outcomes.
- **Calibration intercept and slope at t**: logistic recalibration of the status at ``t`` on
  ``logit(risk)`` with inverse probability of censoring weights (IPCW; Gerds & Schumacher 2006): the
  slope, and the intercept with the slope fixed at 1 (calibration-in-the-large).
- **ICI, E50, E90** (Austin, Harrell & van Klaveren, Stat Med 2020): the observed risk at ``t`` as a
  smooth function of the predicted risk, from a Cox model of the outcome on a restricted cubic spline
  (3 knots) of ``log(-log(1 - risk))``; the mean, median and 90th percentile of ``|predicted -
  smoothed observed|``.
- **Time-dependent AUROC at t**: the cumulative/dynamic AUC with IPCW (Uno et al. 2007; the same
  number as scikit-survival's ``cumulative_dynamic_auc``).
- **Brier score at t** with IPCW (Graf et al. 1999) and the **index of prediction accuracy**, IPA = 1 -
  Brier / Brier of the Kaplan–Meier risk given to everyone (Kattan & Gerds 2018).
- **Net benefit** over thresholds 5–30% (Vickers et al. 2008, for survival: the Kaplan–Meier risk
  among the patients above the threshold).

95% intervals of the slope and the intercept: Wald, from the robust (sandwich) variance of the weighted
logistic regression; of the AUROC: percentiles of patient-level bootstrap resamples (the censoring weights
kept in both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm

from models.cox_newton import cox_newton
from models.evaluation import RankedScores, calibration_slope_fast, percentile_interval
from models.survival import horizon_labels

LEVEL = 0.95
Z = float(norm.ppf(0.5 + LEVEL / 2))
BOOTSTRAP = 200
NET_BENEFIT_THRESHOLDS = np.round(np.arange(0.05, 0.301, 0.01), 2)
RISK_GROUPS = 10
# Fewest onsets by the horizon for discrimination and calibration to be estimated at all.
MIN_EVENTS = 5
_EPS = 1e-12
# The largest condition number of a calibration fit's information matrix at which its inverse is trusted.
MAX_CONDITION = 1e10


@dataclass(frozen=True)
class ObservedRisk:
    """The Kaplan–Meier risk by a horizon.

    Attributes
    ----------
    risk, lo, hi : float
        ``1 - S(t)`` and its 95% interval (log-log, as scikit-survival gives it).
    se : float
        Greenwood's standard error of ``S(t)``.
    at_risk : int
        Patients still followed, without onset, at ``t``.
    """

    risk: float
    lo: float
    hi: float
    se: float
    at_risk: int


def observed_risk(time: np.ndarray, event: np.ndarray, horizon: float) -> ObservedRisk:
    """Kaplan–Meier risk of onset by ``horizon`` with its 95% interval and Greenwood's standard error.

    Parameters
    ----------
    time : ndarray of shape (n,)
        Onset or censoring month.
    event : ndarray of shape (n,)
        1 where ``time`` is an onset.
    horizon : float
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    at_risk = int(np.sum(time >= horizon))
    if not event.any():
        return ObservedRisk(0.0, 0.0, 0.0, 0.0, at_risk)
    times, survival, bounds = kaplan_meier_estimator(event, time, conf_level=LEVEL, conf_type="log-log")
    position = np.searchsorted(times, horizon, side="right") - 1
    if position < 0:
        return ObservedRisk(0.0, 0.0, 0.0, 0.0, at_risk)
    s = float(survival[position])
    # Greenwood: var S(t) = S(t)² Σ d_i / (n_i (n_i - d_i)) over the onset times up to t.
    onsets, d = np.unique(time[event & (time <= horizon)], return_counts=True)
    n_at = (len(time) - np.searchsorted(np.sort(time), onsets, side="left")).astype(float)
    terms = np.where(n_at > d, d / np.maximum(n_at * (n_at - d), 1.0), 0.0)
    se = float(s * np.sqrt(terms.sum()))
    low_s, high_s = float(bounds[0, position]), float(bounds[1, position])
    return ObservedRisk(risk=1.0 - s, lo=1.0 - high_s, hi=1.0 - low_s, se=se, at_risk=at_risk)


def kaplan_meier_risk(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    """``1 - S(horizon)`` of the Kaplan–Meier estimator, without its interval: the product over onset times of
    ``1 - d / n``, as scikit-survival computes it (a test checks them), for the many small groups of a report."""
    time = np.asarray(time, dtype=float)
    onsets, d = np.unique(time[(np.asarray(event) == 1) & (time <= horizon)], return_counts=True)
    if not len(onsets):
        return 0.0
    at_risk = len(time) - np.searchsorted(np.sort(time), onsets, side="left")
    return float(1.0 - np.prod(1.0 - d / at_risk))


def ratio_interval(observed: ObservedRisk, expected: float) -> tuple[float, float, float, float]:
    """O/E with its standard error and 95% interval: ``(ratio, se, lo, hi)`` (log scale, predictions fixed)."""
    if expected <= 0 or observed.risk <= 0:
        return (observed.risk / expected if expected > 0 else float("nan")), float("nan"), float("nan"), \
            float("nan")
    ratio = observed.risk / expected
    log_se = observed.se / observed.risk
    return ratio, ratio * log_se, ratio * float(np.exp(-Z * log_se)), ratio * float(np.exp(Z * log_se))


def calibration_in_the_large(y: np.ndarray, lp: np.ndarray, weight: np.ndarray, iterations: int = 50) -> float:
    """``a`` in ``logit P(y) = a + lp`` (offset, slope fixed at 1), weighted: Newton's method in one dimension."""
    a = 0.0
    for _ in range(iterations):
        p = expit(a + lp)
        gradient = np.sum(weight * (y - p))
        curvature = np.sum(weight * p * (1 - p))
        if curvature <= 1e-300 or abs(a) > 1e3:
            return float("nan")
        step = gradient / curvature
        a += step
        if abs(step) < 1e-12:
            break
    return float(a)


def restricted_cubic_spline(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Harrell's restricted cubic spline basis of ``x`` with 3 knots: ``[x, s(x)]``, shape (n, 2).

    Linear beyond the outer knots; the second column is
    ``((x-k1)+³ - (x-k2)+³ (k3-k1)/(k3-k2) + (x-k3)+³ (k2-k1)/(k3-k2)) / (k3-k1)²``.
    """
    k1, k2, k3 = knots

    def cube(v: np.ndarray) -> np.ndarray:
        return np.maximum(v, 0.0) ** 3

    spline = (cube(x - k1) - cube(x - k2) * (k3 - k1) / (k3 - k2) + cube(x - k3) * (k2 - k1) / (k3 - k2)) \
        / (k3 - k1) ** 2
    return np.column_stack([x, spline])


@dataclass(frozen=True)
class SmoothedCalibration:
    """Austin, Harrell & van Klaveren's calibration at one horizon.

    Attributes
    ----------
    observed : ndarray of shape (n,)
        Each patient's smoothed observed risk at the horizon.
    ici, e50, e90 : float
        Mean, median and 90th percentile of ``|risk - observed|``.
    curve_risk, curve_observed : ndarray of shape (m,)
        The smoothed curve on a grid of predicted risks, for the plot.
    """

    observed: np.ndarray
    ici: float
    e50: float
    e90: float
    curve_risk: np.ndarray
    curve_observed: np.ndarray


def smoothed_calibration(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float
                         ) -> SmoothedCalibration | None:
    """The observed risk at ``horizon`` as a smooth function of the predicted risk; None with too few onsets.

    A Cox model of the outcome, censored at the horizon, on a restricted cubic spline
    with knots at the 10th, 50th and 90th percentiles of ``log(-log(1 - risk))``; the observed risk of a
    patient is ``1 - exp(-H0(t) exp(lp))`` with Breslow's ``H0``.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    censored_time = np.minimum(time, horizon)
    onset = event & (time <= horizon)
    if onset.sum() < MIN_EVENTS or onset.all():
        return None
    cll = np.log(-np.log1p(-np.clip(risk, _EPS, 1 - _EPS)))
    knots = np.quantile(cll, [0.1, 0.5, 0.9])
    if not np.all(np.diff(knots) > 1e-9):
        return None
    basis = restricted_cubic_spline(cll, knots)
    centre, scale = basis.mean(axis=0), basis.std(axis=0)
    scale[scale == 0] = 1.0
    # Cox's partial likelihood (Breslow's ties) by Newton's method, as scikit-survival's CoxPHSurvivalAnalysis
    # finds it (models.cox_newton.cox_newton; a test checks the two); a negligible ridge keeps it defined.
    coef = cox_newton((basis - centre) / scale, onset, censored_time, alpha=1e-6)
    lp_fit = ((basis - centre) / scale) @ coef
    # Breslow's baseline cumulative hazard at the horizon: Σ over onsets of 1 / Σ_{at risk} exp(lp)
    order = np.argsort(censored_time)
    at_risk = np.cumsum(np.exp(lp_fit[order])[::-1])[::-1]  # Σ exp(lp) of those with time >= each sorted time
    first = np.searchsorted(censored_time[order], censored_time[order], side="left")
    h0 = float(np.sum(onset[order] / at_risk[first]))

    def observed_at(values: np.ndarray) -> np.ndarray:
        lp = ((restricted_cubic_spline(values, knots) - centre) / scale) @ coef
        return -np.expm1(-h0 * np.exp(lp))

    observed = observed_at(cll)
    error = np.abs(risk - observed)
    grid_risk = np.quantile(risk, np.linspace(0.01, 0.99, 60))
    grid = np.log(-np.log1p(-np.clip(grid_risk, _EPS, 1 - _EPS)))
    return SmoothedCalibration(observed=observed, ici=float(error.mean()), e50=float(np.median(error)),
                               e90=float(np.quantile(error, 0.9)), curve_risk=grid_risk,
                               curve_observed=observed_at(grid))


def net_benefit(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float,
                thresholds: np.ndarray = NET_BENEFIT_THRESHOLDS) -> dict[str, list[float]]:
    """Net benefit at ``horizon`` of acting on the model above each threshold, of acting on everyone and on none.

    ``NB(p) = π F - π (1 - F) p / (1 - p)``, ``π`` the share of patients with a risk of at least ``p`` and
    ``F`` their Kaplan–Meier risk by the horizon.
    """
    overall = kaplan_meier_risk(time, event, horizon)
    model = []
    for p in thresholds:
        above = risk >= p
        share = float(above.mean())
        risk_above = kaplan_meier_risk(time[above], event[above], horizon) if above.any() else 0.0
        model.append(share * risk_above - share * (1 - risk_above) * p / (1 - p))
    treat_all = [overall - (1 - overall) * p / (1 - p) for p in thresholds]
    return {"threshold": thresholds.tolist(), "model": model, "treat_all": treat_all,
            "treat_none": [0.0] * len(thresholds)}


def risk_groups(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float,
                groups: int = RISK_GROUPS) -> list[dict[str, float]]:
    """Per group of predicted risk (equal-sized, by quantile): patients, mean predicted and Kaplan–Meier
    observed risk with its 95% interval."""
    groups = max(1, min(groups, len(risk) // 50))
    edges = np.unique(np.quantile(risk, np.linspace(0, 1, groups + 1)))
    which = np.clip(np.searchsorted(edges, risk, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for g in np.unique(which):
        members = which == g
        km = observed_risk(time[members], event[members], horizon)
        rows.append({"n": int(members.sum()), "mean_predicted": float(risk[members].mean()),
                     "observed_risk": km.risk, "observed_lo": km.lo, "observed_hi": km.hi})
    return rows


def calibration_with_intervals(y: np.ndarray, lp: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """The IPCW calibration slope and intercept at a horizon with 95% Wald intervals from the robust (sandwich)
    variance of the weighted logistic regression, the censoring weights taken as known.

    Slope: ``logit P(y) = b0 + b1 lp``, ``var(b) = H⁻¹ (Σ w² (y - p)² x xᵀ) H⁻¹``. Intercept (slope fixed at 1):
    ``logit P(y) = a + lp``, ``var(a) = Σ w² (y - p)² / (Σ w p (1 - p))²``. NaN where a fit does not converge.
    """
    nan = float("nan")
    # One prediction for every patient (a treatment the model does not tell apart) has no slope to estimate.
    slope = calibration_slope_fast(y, lp, weight) if np.ptp(lp) > 1e-9 else nan
    intercept = calibration_in_the_large(y, lp, weight)
    result = {"calibration_slope": slope, "calibration_intercept": intercept}
    if np.isfinite(slope):
        design = np.column_stack([np.ones(len(lp)), lp])
        b0 = calibration_in_the_large(y, slope * lp, weight)  # the slope's own intercept, given the slope
        p = expit(b0 + slope * lp)
        information = (design * (weight * p * (1 - p))[:, None]).T @ design
        scores = design * (weight * (y - p))[:, None]
        # Where the predictions barely vary (one treatment's patients all alike) the information is singular,
        # and where the slope's own intercept did not converge it is not finite: no interval rather than one
        # from rounding.
        variance = nan
        if np.all(np.isfinite(information)) and np.linalg.cond(information) < MAX_CONDITION:
            bread = np.linalg.inv(information)
            variance = float((bread @ (scores.T @ scores) @ bread)[1, 1])
        se = np.sqrt(variance) if variance > 0 else nan
        result |= {"calibration_slope_lo": slope - Z * se, "calibration_slope_hi": slope + Z * se}
    else:
        result |= {"calibration_slope_lo": nan, "calibration_slope_hi": nan}
    if np.isfinite(intercept):
        p = expit(intercept + lp)
        se = float(np.sqrt(np.sum((weight * (y - p)) ** 2)) / np.sum(weight * p * (1 - p)))
        result |= {"calibration_intercept_lo": intercept - Z * se, "calibration_intercept_hi": intercept + Z * se}
    else:
        result |= {"calibration_intercept_lo": nan, "calibration_intercept_hi": nan}
    return result


def auroc_interval(y: np.ndarray, weight: np.ndarray, risk: np.ndarray, resamples: int, seed: int
                   ) -> tuple[float, float]:
    """Percentile 95% interval of the IPCW AUROC over patient resamples (the censoring weights kept)."""
    rng = np.random.default_rng(seed)
    ranked = RankedScores(y, risk)
    draws = []
    for counts in rng.multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=resamples):
        w = weight * counts
        if 0 < np.sum(w * y) < np.sum(w):
            draws.append(ranked.auroc_auprc(w)[0])
    if len(draws) < 10:
        return float("nan"), float("nan")
    lo, hi = percentile_interval(np.array(draws)[:, None], LEVEL)
    return float(lo[0]), float(hi[0])


def validate_at_horizon(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float, *,
                        bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Every validation figure of predicted risks by ``horizon`` against observed, censored outcomes.

    Parameters
    ----------
    time, event : ndarray of shape (n,)
        Onset or censoring month; 1 where it is an onset.
    risk : ndarray of shape (n,)
        Each patient's predicted risk of onset by ``horizon``.
    horizon : float
    bootstrap : int
        Resamples behind the AUROC's interval.

    Returns
    -------
    dict
        ``n``, ``events`` (onsets observed by the horizon), ``at_risk``, ``followed_to_horizon``,
        ``observed_risk`` / ``_lo`` / ``_hi`` / ``_se``, ``mean_predicted``, ``o_e`` / ``_se`` / ``_lo`` /
        ``_hi``, ``calibration_intercept`` / ``_lo`` / ``_hi``, ``calibration_slope`` / ``_lo`` / ``_hi``,
        ``ici``, ``e50``, ``e90``, ``auroc`` / ``_lo`` / ``_hi``, ``brier``, ``ipa``; NaN where a figure
        cannot be estimated (no patient followed to the horizon, fewer than :data:`MIN_EVENTS` onsets).
        With ``"curves"``: the smoothed calibration curve, the risk groups and the net benefit.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    risk = np.asarray(risk, dtype=float)
    nan = float("nan")
    followed = bool(len(time) and time.max() >= horizon)
    km = observed_risk(time, event, horizon)
    mean_predicted = float(risk.mean()) if len(risk) else nan
    result = {"n": int(len(time)), "events": int(np.sum((event == 1) & (time <= horizon))),
              "at_risk": km.at_risk, "followed_to_horizon": followed, "mean_predicted": mean_predicted}
    figures = ("observed_risk", "observed_lo", "observed_hi", "observed_se", "o_e", "o_e_se", "o_e_lo", "o_e_hi",
               "calibration_intercept", "calibration_intercept_lo", "calibration_intercept_hi",
               "calibration_slope", "calibration_slope_lo", "calibration_slope_hi", "ici", "e50", "e90",
               "auroc", "auroc_lo", "auroc_hi", "brier", "ipa")
    result |= dict.fromkeys(figures, nan) | {"curves": None}
    if not followed:
        return result
    ratio = ratio_interval(km, mean_predicted)
    result |= {"observed_risk": km.risk, "observed_lo": km.lo, "observed_hi": km.hi, "observed_se": km.se,
               "o_e": ratio[0], "o_e_se": ratio[1], "o_e_lo": ratio[2], "o_e_hi": ratio[3]}
    labels = horizon_labels(time, event, horizon)
    brier = float(np.sum(labels.weight * (labels.y - risk) ** 2) / len(time))
    null = float(np.sum(labels.weight * (labels.y - km.risk) ** 2) / len(time))
    result |= {"brier": brier, "ipa": 1.0 - brier / null if null > 0 else nan}
    curves = {"groups": risk_groups(time, event, risk, horizon), "net_benefit": net_benefit(time, event, risk, horizon)}
    known = labels.known
    y, w, r = labels.y[known], labels.weight[known], risk[known]
    if y.sum() >= MIN_EVENTS and y.sum() < len(y):
        result |= calibration_with_intervals(y, logit(np.clip(r, _EPS, 1 - _EPS)), w)
        result["auroc"] = RankedScores(y, r).auroc_auprc(w)[0]
        result["auroc_lo"], result["auroc_hi"] = auroc_interval(y, w, r, bootstrap, seed)
        smooth = smoothed_calibration(time, event, risk, horizon)
        if smooth is not None:
            result |= {"ici": smooth.ici, "e50": smooth.e50, "e90": smooth.e90}
            curves |= {"smoothed": {"risk": smooth.curve_risk.tolist(), "observed": smooth.curve_observed.tolist()}}
    return result | {"curves": curves}
