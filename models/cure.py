"""A mixture-cure family: who will have an onset (boosted), and when (per treatment, nonparametric).

Patient ``x`` on treatment ``s`` has an onset within the treatment's timing window (month 0 to ``τ_s``, the
longest follow-up the training data had on it) with probability ``p(x)``, the *ever-risk*, and then by month
``t`` with probability ``G_s(t)``, the treatment's *timing share* (``G_s(τ_s) = 1``):

    risk(t | x) = p(x) G_s(t),   logit p(x) = F(x),

so the ratio of two patients' risks is the same at every month, while their hazards are not proportional
(the cumulative hazards' ratio grows with time): the form of a population where some will never have an
onset after a course and the rest have it during lymphocyte reconstitution (docs/clinical-evidence.md §5).

- **Who.** ``F`` is gradient-boosted trees (xgboost) of the log-odds of an onset within the window, every
  input (the treatment too, so that IL-21 may act after alemtuzumab only) a feature. It is fitted to the
  mixture's own likelihood of the censored data: an onset at ``t`` contributes ``log p``; a patient censored
  at ``c`` without onset ``log(1 - p G_s(c))``. The gradient of that likelihood in ``F`` is ``p - w``, ``w``
  the probability that the patient is among those who will have an onset given what was observed (1 for an
  onset, ``p (1 - G_s(c)) / (1 - p G_s(c))`` for a censoring): the EM algorithm's E-step, recomputed at every
  boosting round, with the Hessian ``p (1 - p)`` of its M-step (Sy & Taylor 2000; Peng & Dear 2000, with a
  boosted incidence in place of their logistic one).
- **When.** ``G_s`` starts as the treatment's Kaplan–Meier cumulative incidence normalised to 1 at ``τ_s``
  (a consistent estimate when the timing depends on the treatment alone), then is re-estimated once the
  incidence is fitted: the Kaplan–Meier estimator of the onset times among the patients who will have an
  onset, each censored patient counted with its weight ``w`` (the M-step of Peng & Dear's nonparametric
  latency), and with ``em_rounds`` above 1 the incidence refitted on it.
- **Beyond the window** (``t > τ_s``; on interferon beyond the trials' 24 months) the treatment's timing share
  goes on growing at its average rate over the window's last 12 months, ``G_s(t) = 1 + (t - τ_s) ġ_s``, applied
  to the chance of remaining free: ``risk = 1 - (1 - p)^{G_s(t)}``, which equals ``p`` at ``τ_s``, rises with
  ``t`` and stays below 1. Every such risk is flagged extrapolated.
- **A treatment without onsets** in training (ITP on interferon in the trials) is held at the floor the Cox
  families use, one in a million per month on average, whatever the ever-risk says of it.
- **The explanation.** Exact SHAP of ``F`` on the log-odds scale of the ever-risk
  (:class:`models.treeshap.TreeShapTables`): ``base + sum(shap) = logit p(x)``, the same at every horizon;
  the timing share is the treatment's, given beside it. No Python package fits a mixture-cure model with
  covariates (lifelines has cure models without them): this module is the project's own, tested against
  hand-computed likelihoods and against the simulator, whose default world has exactly this form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import xgboost as xgb
from scipy.special import expit
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from features.schema import FEATURE_NAMES, MAX_HORIZON_MONTHS
from models.estimators import _RelativeHazard, check_survival_target
from models.survival import (
    BASELINE_FLOOR_PER_MONTH,
    MONTHS,
    TREATMENT_BY_CODE,
    OutcomeExplanation,
    by_input,
    treatment_index,
)
from models.treeshap import TreeShapTables

EXTRAPOLATION_WINDOW_MONTHS = 12
EXPLANATION_SCALE = "log-odds of the ever-risk (an onset within the treatment's timing window)"
EXTRAPOLATION_RULE = (f"the treatment's timing share goes on growing at its average rate over the last "
                      f"{EXTRAPOLATION_WINDOW_MONTHS} months of follow-up, applied to the chance of remaining free")
_EPS = 1e-12


@dataclass(frozen=True)
class TimingShares:
    """Each treatment's timing share ``G_s`` on the whole months 0–72, extrapolation included.

    Attributes
    ----------
    cumulative : ndarray of shape (n_treatments, 73)
        ``G_s(t)``: 0 at month 0, 1 at the end of the window, above 1 beyond it (extrapolated).
    follow_up_months : ndarray of shape (n_treatments,)
        ``τ_s``: the longest follow-up a training patient had on each treatment.
    events : ndarray of shape (n_treatments,)
        Onsets observed on each treatment in training.
    share : ndarray of shape (n_treatments,)
        Share of training patients on each treatment.
    patients : ndarray of shape (n_treatments,)
        Training patients on each treatment.
    """

    cumulative: np.ndarray
    follow_up_months: np.ndarray
    events: np.ndarray
    share: np.ndarray
    patients: np.ndarray

    def extrapolated(self, months) -> np.ndarray:
        """Whether each month lies beyond each treatment's window, shape (n_treatments, H)."""
        return np.asarray(months, dtype=float)[None, :] > self.follow_up_months[:, None]

    def at(self, months) -> np.ndarray:
        """``G_s`` at whole ``months``, shape (n_treatments, H)."""
        return self.cumulative[:, np.asarray(months, dtype=int)]

    def extrapolated_share(self, months) -> np.ndarray:
        """The share of the log cumulative hazard's argument that rests on the extrapolation, ``(G - 1) / G``
        beyond the window (0 within it), shape (n_treatments, H)."""
        shares = self.at(months)
        return np.where(shares > 1.0, (shares - 1.0) / np.maximum(shares, 1e-12), 0.0)


def _step_at(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A right-continuous step function (``values`` from each of ``times``; 0 before the first) at ``at``."""
    position = np.searchsorted(times, at, side="right") - 1
    return np.where(position >= 0, values[np.maximum(position, 0)], 0.0)


def onset_distribution(time: np.ndarray, event: np.ndarray, weight: np.ndarray, window: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The distribution of onset times within ``[0, window]``: Kaplan–Meier with each patient counted with its
    weight in the risk sets (an onset with weight 1), normalised to reach 1 at the window's end.

    Returns
    -------
    times, cdf : ndarray of shape (k,)
        The onset times and ``G`` just after each (a right-continuous step function); empty without onsets.
    """
    onset = event & (time <= window)
    times = np.unique(time[onset])
    if not len(times):
        return times, times.astype(float)
    order = np.argsort(time)
    sorted_time, sorted_weight = time[order], weight[order]
    at_risk = np.cumsum(sorted_weight[::-1])[::-1]  # Σ weights of those with time >= each sorted time
    first = np.searchsorted(sorted_time, times, side="left")
    deaths = np.bincount(np.searchsorted(times, time[onset]), minlength=len(times)).astype(float)
    survival = np.cumprod(1.0 - np.minimum(deaths / np.maximum(at_risk[first], _EPS), 1.0))
    cdf = 1.0 - survival
    return times, cdf / cdf[-1] if cdf[-1] > 0 else cdf


def timing_shares(time: np.ndarray, event: np.ndarray, strata: np.ndarray, weight: np.ndarray | None = None, *,
                  fallback: TimingShares | None = None) -> TimingShares:
    """Each treatment's timing share on the whole months 0–72, with the stated extrapolation beyond its window.

    Parameters
    ----------
    time, event : ndarray of shape (n,)
    strata : ndarray of int, shape (n,)
        Treatment, as an index into :data:`models.survival.TREATMENT_BY_CODE`.
    weight : ndarray of shape (n,), optional
        Each patient's weight in the risk sets (1 for all: the plain Kaplan–Meier estimate).
    fallback : TimingShares, optional
        Shares to keep for a treatment without patients here (a recalibration on a file of one arm).

    Raises
    ------
    ValueError
        When a treatment has no patients and no fallback.
    """
    weight = np.ones(len(time)) if weight is None else weight
    n_treatments = len(TREATMENT_BY_CODE)
    cumulative = np.zeros((n_treatments, len(MONTHS)))
    follow_up, events, share, patients = (np.zeros(n_treatments) for _ in range(4))
    for s, name in enumerate(TREATMENT_BY_CODE):
        members = strata == s
        patients[s] = members.sum()
        if not members.any() and fallback is not None:
            cumulative[s], follow_up[s], events[s], patients[s] = fallback.cumulative[s], \
                fallback.follow_up_months[s], fallback.events[s], fallback.patients[s]
            continue
        if not members.any():
            raise ValueError(f"the training cohorts have no patient on {name}: the model could not answer for it; "
                             "train on cohorts with both arms")
        follow_up[s], events[s], share[s] = time[members].max(), event[members].sum(), members.mean()
        window = follow_up[s]
        times, cdf = onset_distribution(time[members], event[members].astype(bool), weight[members], window)
        inside = MONTHS <= window
        # Without onsets on the treatment, nothing says when they come: evenly over the window.
        cumulative[s, inside] = _step_at(times, cdf, MONTHS[inside]) if len(times) else MONTHS[inside] / window
        if window < MONTHS[-1]:
            last = int(np.floor(window))
            start = max(last - EXTRAPOLATION_WINDOW_MONTHS, 0)
            rate = (1.0 - cumulative[s, start]) / max(window - start, 1.0)
            beyond = ~inside
            cumulative[s, beyond] = 1.0 + rate * (MONTHS[beyond] - window)
            cumulative[s, last] = min(cumulative[s, last], 1.0)
    return TimingShares(cumulative, follow_up, events, share, patients)


def floor_arms_without_onsets(shares: TimingShares, ever_risk: np.ndarray, strata: np.ndarray) -> TimingShares:
    """Shares that hold the risk of a treatment no training patient had an onset on at the floor the Cox
    families use (:data:`models.survival.BASELINE_FLOOR_PER_MONTH` per month, on average over its patients),
    rather than at whatever the boosted ever-risk gives a treatment it has only seen without onsets."""
    cumulative = shares.cumulative.copy()
    for s in np.flatnonzero(shares.events == 0):
        members = strata == s
        if not members.any():
            continue
        mean = float(np.mean(ever_risk[members]))
        window = shares.follow_up_months[s]
        scale = min(BASELINE_FLOOR_PER_MONTH * window / max(mean, 1e-300), 1.0)
        cumulative[s] = MONTHS / max(window, 1.0) * scale
    return TimingShares(cumulative, shares.follow_up_months, shares.events, shares.share, shares.patients)


def risk_from_ever_risk(p: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """``p G`` within the window (``G <= 1``), ``1 - (1 - p)^G`` beyond it (``G > 1``); elementwise."""
    with np.errstate(divide="ignore"):
        beyond = -np.expm1(shares * np.log1p(-np.minimum(p, 1 - 1e-16)))
    return np.where(shares <= 1.0, p * shares, beyond)


class CureXGBoost(_RelativeHazard):
    """Gradient-boosted log-odds of the ever-risk, fitted to the mixture-cure likelihood (see the module).

    The estimator of :class:`MixtureCure`: ``fit(X, y, timing=...)`` takes each training row's timing share
    at its own time. Exact SHAP by tables, as :class:`models.estimators.XGBoostCoxRegression`.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, min_child_weight, subsample, reg_lambda, n_jobs, random_state, device
        As :class:`models.estimators.XGBoostCoxRegression`.
    """

    def __init__(self, *, n_estimators: int = 300, max_depth: int = 3, learning_rate: float = 0.05,
                 min_child_weight: float = 1.0, subsample: float = 1.0, reg_lambda: float = 1.0,
                 n_jobs: int | None = None, random_state: int = 0, device: str = "cpu"):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.device = device

    def fit(self, X, y, *, timing: np.ndarray) -> CureXGBoost:
        """Fit on ``X`` (n, n_features), NaN where unknown, a survival target ``y`` and each row's timing share
        ``G_s`` at its own time (its onset's or its censoring's)."""
        X = validate_data(self, X, ensure_all_finite="allow-nan")
        event, _ = check_survival_target(y)
        timing = np.clip(np.asarray(timing, dtype=float), 0.0, 1.0)
        # The mixture's likelihood at its E-step weights: an onset counts 1, a censoring the posterior chance
        # of an onset still to come; the starting margin is the log-odds of their mean.
        start = float(np.clip(np.mean(np.where(event, 1.0, 0.5 * (1 - timing))), 1e-4, 1 - 1e-4))

        def objective(margin: np.ndarray, _: xgb.DMatrix) -> tuple[np.ndarray, np.ndarray]:
            p = expit(margin)
            w = np.where(event, 1.0, p * (1.0 - timing) / np.maximum(1.0 - p * timing, _EPS))
            return p - w, np.maximum(p * (1.0 - p), 1e-16)

        params = {"max_depth": self.max_depth, "eta": self.learning_rate, "min_child_weight": self.min_child_weight,
                  "subsample": self.subsample, "lambda": self.reg_lambda, "seed": self.random_state,
                  "device": self.device, "tree_method": "hist", "objective": "binary:logistic",
                  "base_score": start}
        if self.n_jobs is not None:
            params["nthread"] = self.n_jobs
        train = xgb.DMatrix(X, label=event.astype(float), missing=np.nan)
        self.booster_ = xgb.train(params, train, num_boost_round=self.n_estimators, obj=objective)
        self.shap_tables_ = TreeShapTables.from_booster(self.booster_, X.shape[1])
        return self

    def _threads(self) -> int:
        return self.n_jobs or os.cpu_count() or 1

    def predict(self, X) -> np.ndarray:
        """Log-odds of the ever-risk ``F(x)``, shape (n_samples,)."""
        return self.shap_tables_.margin(self._checked(X), n_threads=self._threads())

    def explain(self, X) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values of :meth:`predict`: ``base`` (n,) and ``contributions`` (n, n_features)."""
        contributions = self.shap_tables_.contributions(self._checked(X), n_threads=self._threads())
        return contributions[:, -1], contributions[:, :-1]


class MixtureCure(BaseEstimator):
    """Risk at any month 1–72 from a boosted ever-risk and a timing share per treatment (see the module).

    The same interface as :class:`models.survival.StratifiedCox`, whose ``log_relative_hazard`` here is the
    explained score ``F(x)``, the log-odds of the ever-risk.

    Parameters
    ----------
    estimator : CureXGBoost
        The ever-risk's estimator; cloned when fitted.
    em_rounds : int
        Fits of the ever-risk, each followed by a re-estimate of the timing shares (at least 1). One by default:
        the normalised Kaplan–Meier shares it starts from are consistent when the timing depends on the
        treatment alone, and a second round changed the simulator's risks by under a point in a thousand.
    """

    explanation_scale = EXPLANATION_SCALE
    extrapolation_rule = EXTRAPOLATION_RULE
    timing_varies_by_patient = False
    gives_timing_share = True

    def __init__(self, *, estimator, em_rounds: int = 1):
        self.estimator = estimator
        self.em_rounds = em_rounds

    def fit(self, X, y) -> MixtureCure:
        """Fit on ``X`` of shape (n, n_features) and the survival target ``y``: timing shares, ever-risk, and
        ``em_rounds`` alternations of the two."""
        event, time = check_survival_target(y)
        strata = treatment_index(X)
        shares = timing_shares(time, event, strata)
        for _ in range(max(int(self.em_rounds), 1)):
            timing = self._row_shares(shares, time, strata)
            self.estimator_ = clone(self.estimator).fit(X, y, timing=np.where(event, 1.0, timing))
            p = expit(self.estimator_.predict(X))
            weight = np.where(event, 1.0, p * (1 - timing) / np.maximum(1 - p * timing, _EPS))
            shares = timing_shares(time, event, strata, weight)
        self.baseline_ = floor_arms_without_onsets(shares, p, strata)
        return self

    @staticmethod
    def _row_shares(shares: TimingShares, time: np.ndarray, strata: np.ndarray) -> np.ndarray:
        """Each row's timing share at its own time, within its treatment's window (capped at 1)."""
        month = np.clip(np.floor(time).astype(int), 0, MAX_HORIZON_MONTHS)
        return np.minimum(shares.cumulative[strata, month], 1.0)

    def log_relative_hazard(self, X) -> np.ndarray:
        """The explained score ``F(x)``, the log-odds of the ever-risk, shape (n,)."""
        check_is_fitted(self)
        return self.estimator_.predict(X) if len(X) else np.empty(0)

    def risk_from(self, score: np.ndarray, strata: np.ndarray, horizons) -> np.ndarray:
        """Probability of onset by each horizon from ``F(x)`` and the treatment, shape (n, H)."""
        return risk_from_ever_risk(expit(score)[:, None], self.baseline_.at(horizons)[strata])

    def log_cumulative_hazard(self, score: np.ndarray, strata: np.ndarray, horizons) -> np.ndarray:
        """``log(-log(1 - risk))`` by each horizon, shape (n, H): the scale of the risks' intervals."""
        risk = np.clip(self.risk_from(score, strata, horizons), 1e-300, 1 - 1e-15)  # finite at either end
        return np.log(-np.log1p(-risk))

    def risk(self, X, horizons) -> np.ndarray:
        """Probability of onset by each horizon, shape (n, H)."""
        return self.risk_from(self.log_relative_hazard(X), treatment_index(X), horizons)

    def explain(self, X, horizons):
        """Risks with their exact SHAP values on the ever-risk's log-odds scale, the same at every horizon."""
        check_is_fitted(self)
        horizons = tuple(int(h) for h in horizons)
        if len(X) == 0:
            empty = np.empty((0, len(horizons)))
            return OutcomeExplanation(horizons, empty, np.zeros(len(horizons)), np.empty((0, len(FEATURE_NAMES))),
                                      empty, empty.astype(bool), np.empty(0), np.empty(0, dtype=int),
                                      scale=EXPLANATION_SCALE, timing=empty)
        bias, contributions = self.estimator_.explain(X)
        strata = treatment_index(X)
        score = bias + contributions.sum(axis=1)
        shares = self.baseline_.at(horizons)[strata]
        return OutcomeExplanation(horizons=horizons, risk=risk_from_ever_risk(expit(score)[:, None], shares),
                                  base=np.full(len(horizons), bias[0]), shap=by_input(contributions),
                                  treatment_shift=np.zeros((len(X), len(horizons))),
                                  extrapolated=self.baseline_.extrapolated(horizons)[strata],
                                  log_relative_hazard=score, strata=strata, scale=EXPLANATION_SCALE, timing=shares)
