"""Risk over time: a relative hazard with a baseline cumulative hazard per treatment.

The risk of an outcome by month ``t`` is ``1 - exp(-H0_s(t) * exp(f(x)))``: ``f`` is a
family's log relative hazard (:mod:`models.estimators`), fitted on every training cohort's
whole follow-up, both arms, and ``H0_s`` the Breslow baseline cumulative hazard of the
patient's treatment ``s``. Each treatment has its own baseline because the hazard's shape
differs: after alemtuzumab onsets peak in year 3 (lymphocyte reconstitution), on interferon
they come at a steady rate. ``H0_s`` never falls, so no risk falls over time.

Beyond the longest follow-up the training cohorts had on a treatment, ``H0_s`` is
extrapolated by carrying the last 12 months' average hazard forward, and every such risk is
flagged. A baseline with no events would give a risk of exactly 0, whose explanation is
``-inf`` on the log cumulative hazard scale: every baseline carries a floor of one in a
million per month (0.005% by 48 months), far below any risk a trial cohort can observe.

Also here: status at a horizon with inverse-probability-of-censoring weights (IPCW), for
evaluation against observed, censored outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from features.outcomes import kaplan_meier_survival
from features.schema import (
    CATEGORY_CODES,
    COLUMN_FEATURE,
    EXPLANATION_SCALE,
    FEATURE_NAMES,
    MAX_HORIZON_MONTHS,
    MODEL_COLUMNS,
    TREATMENT_FEATURE,
    TREATMENTS,
)
from models.estimators import check_survival_target

MONTHS = np.arange(MAX_HORIZON_MONTHS + 1)
BASELINE_FLOOR_PER_MONTH = 1e-6
EXTRAPOLATION_WINDOW_MONTHS = 12
EXTRAPOLATION_RULE = (f"the average hazard of the last {EXTRAPOLATION_WINDOW_MONTHS} months of follow-up "
                      "on the treatment carried forward")
# The treatment's place among the model matrix's columns, and among the explained inputs.
TREATMENT_COLUMN = MODEL_COLUMNS.index(TREATMENT_FEATURE)
TREATMENT_INPUT = FEATURE_NAMES.index(TREATMENT_FEATURE)
# Where each explained input's columns start (an input's columns are contiguous).
_FEATURE_STARTS = np.flatnonzero(np.diff(np.concatenate([[-1], COLUMN_FEATURE])) != 0)
# Treatments by their code in the model matrix: index 0 = interferon_beta_1a, 1 = alemtuzumab.
TREATMENT_BY_CODE: tuple[str, ...] = tuple(sorted(TREATMENTS, key=lambda t: CATEGORY_CODES["treatment"][t]))


def survival_target(event, time) -> np.ndarray:
    """Structured survival target (scikit-survival's convention) from event flags and months."""
    from sksurv.util import Surv

    return Surv.from_arrays(np.asarray(event, dtype=bool), np.asarray(time, dtype=float))


def by_input(contributions: np.ndarray) -> np.ndarray:
    """SHAP values per model column, shape (n, n_columns), as SHAP values per explained input, shape
    (n, n_inputs): an input with several columns (IL-21, one per kit) gets their sum, so
    ``base + sum`` is unchanged."""
    return np.add.reduceat(contributions, _FEATURE_STARTS, axis=1) if len(contributions) else \
        np.empty((0, len(FEATURE_NAMES)))


def treatment_index(matrix: np.ndarray) -> np.ndarray:
    """Index into :data:`TREATMENT_BY_CODE` of each row's treatment, shape (n,)."""
    return matrix[:, TREATMENT_COLUMN].astype(int)


@dataclass(frozen=True)
class BaselineHazards:
    """Baseline cumulative hazard of each treatment on the whole months 0–72.

    Attributes
    ----------
    cumulative : ndarray of shape (n_treatments, 73)
        ``H0`` per treatment (rows in :data:`TREATMENT_BY_CODE` order) at months 0, 1, ..., 72,
        floor and extrapolation included; non-decreasing along each row.
    follow_up_months : ndarray of shape (n_treatments,)
        Longest follow-up of a training patient on each treatment; later months are extrapolated.
    events : ndarray of shape (n_treatments,)
        Onsets observed on each treatment in training.
    share : ndarray of shape (n_treatments,)
        Share of training patients on each treatment (the SHAP values' reference population).
    patients : ndarray of shape (n_treatments,)
        Training patients on each treatment (for the bound of a risk that no training onset shows).
    """

    cumulative: np.ndarray
    follow_up_months: np.ndarray
    events: np.ndarray
    share: np.ndarray
    patients: np.ndarray

    def extrapolated(self, months) -> np.ndarray:
        """Whether each month lies beyond each treatment's follow-up, shape (n_treatments, H)."""
        return np.asarray(months, dtype=float)[None, :] > self.follow_up_months[:, None]

    def extrapolated_share(self, months) -> np.ndarray:
        """The share of ``H0_s(t)`` that is carried forward beyond the follow-up (0 within it), shape
        (n_treatments, H): how much of a risk rests on the extrapolation rule."""
        months = np.asarray(months, dtype=int)
        last = np.minimum(np.floor(self.follow_up_months).astype(int), MAX_HORIZON_MONTHS)
        at_end = self.cumulative[np.arange(len(last)), last][:, None]
        total = self.cumulative[:, months]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, (total - at_end) / total, 0.0)
        return np.where(self.extrapolated(months), np.clip(share, 0.0, 1.0), 0.0)

    def log_at(self, months) -> np.ndarray:
        """``log H0`` per treatment at whole ``months``, shape (n_treatments, H)."""
        return np.log(self.cumulative[:, np.asarray(months, dtype=int)])

    def reference_log_at(self, months) -> np.ndarray:
        """The training population's mean ``log H0`` at ``months``, shape (H,): the SHAP base's share."""
        return self.share @ self.log_at(months)


def breslow_baselines(log_relative_hazard: np.ndarray, event: np.ndarray, time: np.ndarray,
                      treatment: np.ndarray, *, fallback: BaselineHazards | None = None) -> BaselineHazards:
    """Breslow baseline cumulative hazard of each treatment, on whole months, with the stated extrapolation.

    Parameters
    ----------
    log_relative_hazard : ndarray of shape (n,)
        ``f(x)`` of each training patient.
    event, time : ndarray of shape (n,)
        Onset observed (bool) and onset or censoring month.
    treatment : ndarray of int, shape (n,)
        Index into :data:`TREATMENT_BY_CODE`.
    fallback : BaselineHazards, optional
        The baselines to keep for a treatment without patients here (a recalibration on a file of one arm).

    Returns
    -------
    BaselineHazards

    Raises
    ------
    ValueError
        When a treatment has no patients and no fallback: the model could not answer for it.
    """
    from sksurv.linear_model.coxph import BreslowEstimator

    n_treatments = len(TREATMENT_BY_CODE)
    cumulative = np.zeros((n_treatments, len(MONTHS)))
    follow_up = np.zeros(n_treatments)
    events = np.zeros(n_treatments)
    share = np.zeros(n_treatments)
    patients = np.zeros(n_treatments)
    for s, name in enumerate(TREATMENT_BY_CODE):
        members = treatment == s
        patients[s] = members.sum()
        if not members.any() and fallback is not None:
            cumulative[s] = fallback.cumulative[s] - BASELINE_FLOOR_PER_MONTH * MONTHS  # the floor is added below
            follow_up[s], events[s], patients[s] = fallback.follow_up_months[s], fallback.events[s], \
                fallback.patients[s]
            continue
        if not members.any():
            raise ValueError(f"the training cohorts have no patient on {name}: the model could not "
                             "answer for it; train on cohorts with both arms")
        share[s] = members.mean()
        events[s] = event[members].sum()
        follow_up[s] = time[members].max()
        if events[s] > 0:
            step = BreslowEstimator().fit(log_relative_hazard[members], event[members], time[members])
            steps = step.cum_baseline_hazard_
            position = np.searchsorted(steps.x, MONTHS, side="right") - 1
            cumulative[s] = np.where(position >= 0, steps.y[np.maximum(position, 0)], 0.0)
        last = int(np.floor(follow_up[s]))
        if last < MAX_HORIZON_MONTHS:
            window = max(min(EXTRAPOLATION_WINDOW_MONTHS, last), 1)
            hazard = (cumulative[s, last] - cumulative[s, max(last - window, 0)]) / window
            beyond = MONTHS > last
            cumulative[s, beyond] = cumulative[s, last] + hazard * (MONTHS[beyond] - last)
    cumulative += BASELINE_FLOOR_PER_MONTH * MONTHS[None, :]
    return BaselineHazards(cumulative, follow_up, events, share, patients)


@dataclass(frozen=True)
class OutcomeExplanation:
    """Risk of one outcome at several horizons with its exact SHAP explanation.

    On the log cumulative hazard scale, at horizon ``k``:
    ``base[k] + shap_at(k).sum(axis=1) == log(-log(1 - risk[:, k]))``. Every feature's
    contribution is the same at every horizon but the treatment's, which also carries the
    difference between its baseline hazard and the training population's.

    Attributes
    ----------
    horizons : tuple of int, length H
        Months after the first course.
    risk : ndarray of shape (n, H)
        Probability of onset by each horizon.
    base : ndarray of shape (H,)
        SHAP base value per horizon: the training population's mean log cumulative hazard.
    shap : ndarray of shape (n, n_inputs)
        Contributions of each explained input (:data:`features.schema.FEATURE_NAMES`) to the log relative
        hazard ``f`` (the same at every horizon).
    treatment_shift : ndarray of shape (n, H)
        What the treatment adds at each horizon through its baseline hazard.
    extrapolated : ndarray of bool, shape (n, H)
        Whether the horizon lies beyond the follow-up the training data had on the patient's treatment.
    log_relative_hazard : ndarray of shape (n,)
        ``f(x)`` (bias plus contributions): the risk at any other horizon follows from it without a
        second model call (:meth:`StratifiedCox.risk_from`).
    strata : ndarray of int, shape (n,)
        Each patient's treatment, as an index into :data:`TREATMENT_BY_CODE`.
    scale : str
        What ``base + sum(shap)`` is (:data:`features.schema.EXPLANATION_SCALE` for the proportional-hazards
        families; the log-odds of the ever-risk for :class:`models.cure.MixtureCure`).
    timing : ndarray of shape (n, H), optional
        The treatment's timing share by each horizon, for a family whose risk is the ever-risk times it.
    """

    horizons: tuple[int, ...]
    risk: np.ndarray
    base: np.ndarray
    shap: np.ndarray
    treatment_shift: np.ndarray
    extrapolated: np.ndarray
    log_relative_hazard: np.ndarray
    strata: np.ndarray
    scale: str = EXPLANATION_SCALE
    timing: np.ndarray | None = None

    def reference_risk(self) -> np.ndarray:
        """The risk ``base`` alone gives at each horizon, shape (n, H): the reference patient's, from which each
        input's SHAP part moves this patient's (for the mixture-cure family, with the patient's treatment's
        timing share)."""
        if self.timing is None:
            return np.broadcast_to(-np.expm1(-np.exp(self.base))[None, :], self.risk.shape)
        ever = 1.0 / (1.0 + np.exp(-self.base))
        return np.where(self.timing <= 1.0, ever[None, :] * self.timing,
                        -np.expm1(self.timing * np.log1p(-np.minimum(ever[None, :], 1 - 1e-16))))

    def shap_at(self, k: int) -> np.ndarray:
        """Every input's SHAP value at horizon index ``k``, shape (n, n_inputs)."""
        values = self.shap.copy()
        values[:, TREATMENT_INPUT] += self.treatment_shift[:, k]
        return values


class StratifiedCox(BaseEstimator):
    """A family's relative hazard with a Breslow baseline per treatment: risk at any month 1–72.

    Parameters
    ----------
    estimator : estimator
        A relative-hazard model with ``fit(X, y)``, ``predict(X)`` (log relative hazard) and
        ``explain(X)`` (:mod:`models.estimators`); cloned when fitted.
    """

    explanation_scale = EXPLANATION_SCALE
    extrapolation_rule = EXTRAPOLATION_RULE
    timing_varies_by_patient = False  # one relative hazard: every patient's hazard has the treatment's shape

    def __init__(self, *, estimator):
        self.estimator = estimator

    def fit(self, X, y) -> StratifiedCox:
        """Fit the relative hazard on ``X`` of shape (n, n_features) and the survival target ``y``,
        then each treatment's baseline on the same rows."""
        event, time = check_survival_target(y)
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.baseline_ = breslow_baselines(self.estimator_.predict(X), event, time, treatment_index(X))
        return self

    def log_relative_hazard(self, X) -> np.ndarray:
        """``f(x)``, shape (n,)."""
        check_is_fitted(self)
        return self.estimator_.predict(X) if len(X) else np.empty(0)

    def risk_from(self, log_relative_hazard: np.ndarray, strata: np.ndarray, horizons) -> np.ndarray:
        """Probability of onset by each horizon from ``f(x)`` and the treatment, shape (n, H).

        Parameters
        ----------
        log_relative_hazard : ndarray of shape (n,)
            ``f(x)`` of each patient.
        strata : ndarray of int, shape (n,)
            Treatment of each patient, as an index into :data:`TREATMENT_BY_CODE`.
        horizons : sequence of int, length H
            Whole months.
        """
        log_hazard = self.baseline_.log_at(horizons)[strata] + log_relative_hazard[:, None]
        return -np.expm1(-np.exp(log_hazard))

    def log_cumulative_hazard(self, log_relative_hazard: np.ndarray, strata: np.ndarray, horizons) -> np.ndarray:
        """``log H(t | x) = log H0_s(t) + f(x)`` by each horizon, shape (n, H): the scale of the risks' intervals."""
        return self.baseline_.log_at(horizons)[strata] + log_relative_hazard[:, None]

    def risk(self, X, horizons) -> np.ndarray:
        """Probability of onset by each horizon, shape (n, H)."""
        return self.risk_from(self.log_relative_hazard(X), treatment_index(X), horizons)

    def explain(self, X, horizons) -> OutcomeExplanation:
        """Risks with their exact SHAP values on the log cumulative hazard scale (see :class:`OutcomeExplanation`)."""
        check_is_fitted(self)
        horizons = tuple(int(h) for h in horizons)
        if len(X) == 0:
            empty = np.empty((0, len(horizons)))
            return OutcomeExplanation(horizons, empty, self.baseline_.reference_log_at(horizons),
                                      np.empty((0, len(FEATURE_NAMES))), empty, empty.astype(bool),
                                      np.empty(0), np.empty(0, dtype=int))
        bias, contributions = self.estimator_.explain(X)
        strata = treatment_index(X)
        log_baseline = self.baseline_.log_at(horizons)
        reference = self.baseline_.reference_log_at(horizons)
        # Exact SHAP of log H0_s(t): a function of the treatment alone, so its SHAP value is its
        # difference from the training population's mean, credited to the treatment.
        shift = log_baseline[strata] - reference[None, :]
        base = reference + bias[0]
        log_hazard = base[None, :] + contributions.sum(axis=1)[:, None] + shift
        # The risk is read off the explanation (one model pass): the identity holds by construction.
        risk = -np.expm1(-np.exp(log_hazard))
        return OutcomeExplanation(horizons=horizons, risk=risk, base=base, shap=by_input(contributions),
                                  treatment_shift=shift, extrapolated=self.baseline_.extrapolated(horizons)[strata],
                                  log_relative_hazard=bias + contributions.sum(axis=1), strata=strata)


# --------------------------------------------------------------------------- IPCW, for evaluation


@dataclass(frozen=True)
class HorizonLabels:
    """Binary status at a horizon with IPCW weights.

    Attributes
    ----------
    y : ndarray of shape (n,)
        1 if onset was observed by the horizon, else 0 (also 0 where unknown).
    weight : ndarray of shape (n,)
        ``1 / G(min(T, h)-)`` where the status is known, 0 where censored before the horizon.
    """

    y: np.ndarray
    weight: np.ndarray

    @property
    def known(self) -> np.ndarray:
        return self.weight > 0


def horizon_labels(time: np.ndarray, event: np.ndarray, horizon: float,
                   groups: np.ndarray | None = None) -> HorizonLabels:
    """Status at ``horizon`` months and IPCW weights, with censoring estimated per group.

    A patient's status at ``horizon`` is known when the onset was observed by then (1) or
    follow-up went past it without onset (0); the known ones are weighted by ``1 / G(min(T, h)-)``,
    ``G`` the probability of still being under observation (Kaplan–Meier of the censoring times).

    Parameters
    ----------
    time : ndarray of shape (n,)
        Onset or censoring month.
    event : ndarray of shape (n,)
        1 where ``time`` is an onset.
    horizon : float
        Months since the first course.
    groups : ndarray of shape (n,), optional
        Source cohort of each patient; censoring is estimated within each, and a cohort
        whose follow-up ends before the horizon gets weight 0 throughout (its cases alone
        would bias the risk upwards).
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    groups = np.zeros(len(time)) if groups is None else np.asarray(groups)
    case = (event == 1) & (time <= horizon)
    control = time >= horizon
    control &= ~case
    weight = np.zeros(len(time))
    for group in np.unique(groups):
        members = groups == group
        if time[members].max() < horizon:
            continue  # nobody in this cohort was followed to the horizon: its status there is unknowable
        still_observed = kaplan_meier_survival(time[members], 1 - event[members])
        # G just before the time that decides the status: an onset, or the horizon itself.
        at = np.minimum(time[members], horizon) - 1e-9
        g = still_observed(at)
        known = (case | control)[members]
        weight[members] = np.where(known & (g > 0), 1.0 / np.where(g > 0, g, 1.0), 0.0)
    return HorizonLabels(y=case.astype(int), weight=weight)
