"""Updating a model to a local population: its patient effects kept, its baseline risk over time re-estimated.

The model's log relative hazard ``f(x)`` is held fixed and each treatment's Breslow baseline cumulative
hazard ``H0_s(t)`` is estimated again on the local patients' observed, censored outcomes: the risk at
every month is recalibrated in the large (the "updating" methods of Steyerberg, *Clinical Prediction
Models*, ch. 20, and Van Houwelingen 2000; for survival models, Riley et al. 2021). With
``baseline+slope``, a calibration slope ``b`` on ``f`` is also estimated, by the partial likelihood
stratified by treatment, and the model becomes ``H0_s(t) exp(b f(x))``.

The explanation identity stays exact: with the baseline alone the SHAP base value moves (it is the
local population's mean log baseline) and every patient's contributions are unchanged; with a slope
every contribution is multiplied by ``b``. Beyond the local follow-up on a treatment the model's stated
extrapolation rule applies (:data:`models.survival.EXTRAPOLATION_RULE`), flagged like any other; a
treatment without local patients keeps the model's own baseline.

The risks' intervals add, to the model's own bootstrap spread, the spread of the re-estimated baseline
over bootstrap resamples of the local patients (:class:`RecalibratedSpread`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from scipy.special import expit

from models.cure import MixtureCure, floor_arms_without_onsets, timing_shares
from models.scoring import RiskModel
from models.survival import TREATMENT_BY_CODE, TREATMENT_COLUMN, StratifiedCox, breslow_baselines, treatment_index

METHODS = ("baseline", "baseline+slope")
LOCAL_REFITS = 50


class ScaledRelativeHazard(BaseEstimator):
    """A fitted score times a calibration slope, plus an offset per treatment: ``b f(x) + a_s``, explained as
    ``b`` times its parts, the offset (a function of the treatment alone) credited to the treatment.

    Parameters
    ----------
    inner : estimator
        A fitted relative hazard or ever-risk score (:mod:`models.estimators`, :mod:`models.cure`).
    slope : float
        ``b``.
    offsets : ndarray of shape (n_treatments,), optional
        ``a_s`` per treatment (the mixture-cure family's recalibrated intercepts; none for a Cox family, whose
        baseline takes them).
    reference : float
        The offsets' mean over the local patients: the SHAP base value's share of them.
    """

    def __init__(self, *, inner, slope: float = 1.0, offsets=None, reference: float = 0.0):
        self.inner = inner
        self.slope = slope
        self.offsets = offsets
        self.reference = reference

    @property
    def n_features_in_(self) -> int:
        return self.inner.n_features_in_

    def _offsets(self, X) -> np.ndarray:
        return np.zeros(len(X)) if self.offsets is None else np.asarray(self.offsets)[treatment_index(X)]

    def predict(self, X) -> np.ndarray:
        return self.slope * self.inner.predict(X) + self._offsets(X)

    def explain(self, X) -> tuple[np.ndarray, np.ndarray]:
        base, contributions = self.inner.explain(X)
        contributions = self.slope * contributions
        if self.offsets is None:
            return self.slope * base, contributions
        contributions[:, TREATMENT_COLUMN] += self._offsets(X) - self.reference
        return self.slope * base + self.reference, contributions


def stratified_slope(f: np.ndarray, event: np.ndarray, time: np.ndarray, strata: np.ndarray, *,
                     iterations: int = 50) -> float:
    """The ``b`` maximising the Cox partial likelihood of ``b f`` stratified by ``strata`` (Breslow's ties), by
    Newton's method from ``b = 1`` (the log likelihood is concave in ``b``).

    Parameters
    ----------
    f : ndarray of shape (n,)
        The model's log relative hazard of each local patient.
    event, time : ndarray of shape (n,)
    strata : ndarray of int, shape (n,)
    """
    groups = []
    for s in np.unique(strata):
        members = strata == s
        order = np.argsort(-time[members], kind="mergesort")
        fs, es, ts = f[members][order], event[members][order].astype(bool), time[members][order]
        last = np.searchsorted(-ts, -ts, side="right") - 1  # each row's last tied row, in descending order
        groups.append((fs, es, last))

    def terms(b: float) -> tuple[float, float, float]:
        loglik = gradient = curvature = 0.0
        for fs, es, last in groups:
            eta = b * fs
            r = np.exp(eta - eta.max())
            s0, s1, s2 = (np.cumsum(r * fs ** k)[last][es] for k in (0, 1, 2))
            loglik += np.sum(eta[es] - eta.max() - np.log(s0))
            gradient += np.sum(fs[es] - s1 / s0)
            curvature -= np.sum(s2 / s0 - (s1 / s0) ** 2)
        return loglik, gradient, curvature

    b = 1.0
    loglik, gradient, curvature = terms(b)
    for _ in range(iterations):
        if curvature >= 0:
            break
        step = -gradient / curvature
        while True:
            candidate = terms(b + step)
            if candidate[0] >= loglik - 1e-12 or abs(step) < 1e-12:
                break
            step /= 2
        b += step
        loglik, gradient, curvature = candidate
        if abs(step) < 1e-10:
            break
    return float(b)


@dataclass(frozen=True)
class Recalibration:
    """What a recalibration did, per outcome.

    Attributes
    ----------
    slope : float
        ``b`` (1 with the baseline alone).
    events : ndarray of shape (n_treatments,)
        Local onsets per treatment.
    follow_up_months : ndarray of shape (n_treatments,)
        Local follow-up per treatment (0 where the file has no patient on it).
    """

    slope: float
    events: np.ndarray
    follow_up_months: np.ndarray


def recalibrate_outcome(model: StratifiedCox, X: np.ndarray, event: np.ndarray, time: np.ndarray, method: str
                        ) -> tuple[StratifiedCox, Recalibration]:
    """``model`` with its baseline (and with ``baseline+slope`` its slope) re-estimated on local patients.

    Parameters
    ----------
    model : StratifiedCox
        Fitted.
    X : ndarray of shape (n, n_columns)
        The local patients' prepared model matrix.
    event, time : ndarray of shape (n,)
    method : {"baseline", "baseline+slope"}
    """
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    if isinstance(model, MixtureCure):
        return recalibrate_cure(model, X, event, time, method)
    strata = treatment_index(X)
    f = model.log_relative_hazard(X)
    slope = stratified_slope(f, event, time, strata) if method == "baseline+slope" else 1.0
    updated = StratifiedCox(estimator=model.estimator)
    updated.estimator_ = model.estimator_ if slope == 1.0 else ScaledRelativeHazard(inner=model.estimator_,
                                                                                     slope=slope)
    updated.baseline_ = breslow_baselines(slope * f, event.astype(bool), time, strata, fallback=model.baseline_)
    local_follow_up = np.array([time[strata == s].max() if np.any(strata == s) else 0.0
                                for s in range(len(TREATMENT_BY_CODE))])
    return updated, Recalibration(slope, updated.baseline_.events, local_follow_up)


def _mixture_fit(score: np.ndarray, event: np.ndarray, timing: np.ndarray, strata: np.ndarray, slope: bool,
                 iterations: int = 50) -> tuple[float, np.ndarray]:
    """``(b, a)`` maximising the mixture likelihood of ``p = expit(b score + a_s)`` given each row's timing share,
    by EM: the posterior chance of an onset (1 for an onset), then a weighted logistic fit (Newton)."""
    n_treatments = len(TREATMENT_BY_CODE)
    design = np.column_stack([np.eye(n_treatments)[strata], score])
    beta = np.zeros(n_treatments + 1)
    beta[-1] = 1.0
    present = np.array([np.any(strata == s) for s in range(n_treatments)] + [slope])
    for _ in range(iterations):
        p = expit(design @ beta)
        w = np.where(event == 1, 1.0, p * (1 - timing) / np.maximum(1 - p * timing, 1e-12))
        for _ in range(5):  # the M-step's logistic regression of w, the slope fixed at 1 without `slope`
            p = expit(design @ beta)
            gradient = design.T @ (w - p)
            hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(len(beta))
            step = np.zeros(len(beta))
            step[present] = np.linalg.solve(hessian[np.ix_(present, present)], gradient[present])
            beta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[-1]), beta[:-1]


def recalibrate_cure(model: MixtureCure, X: np.ndarray, event: np.ndarray, time: np.ndarray, method: str
                     ) -> tuple[MixtureCure, Recalibration]:
    """A mixture-cure model recalibrated on local patients: each treatment's timing shares and intercept on the
    ever-risk's log-odds (with ``baseline+slope`` also a slope on the score), the score ``F(x)`` held fixed."""
    strata = treatment_index(X)
    score = model.log_relative_hazard(X)
    shares = timing_shares(time, event.astype(bool), strata, fallback=model.baseline_)
    for _ in range(3):  # alternate: intercepts (and slope) given the timing shares, then the shares given them
        timing = np.where(event == 1, 1.0, MixtureCure._row_shares(shares, time, strata))
        slope, offsets = _mixture_fit(score, event, timing, strata, method == "baseline+slope")
        p = expit(slope * score + offsets[strata])
        weight = np.where(event == 1, 1.0, p * (1 - timing) / np.maximum(1 - p * timing, 1e-12))
        shares = timing_shares(time, event.astype(bool), strata, weight, fallback=model.baseline_)
    reference = float(np.mean(offsets[strata]))
    shares = floor_arms_without_onsets(shares, p, strata)
    updated = MixtureCure(estimator=model.estimator, em_rounds=model.em_rounds)
    updated.estimator_ = ScaledRelativeHazard(inner=model.estimator_, slope=slope, offsets=offsets, reference=reference)
    updated.baseline_ = shares
    local_follow_up = np.array([time[strata == s].max() if np.any(strata == s) else 0.0
                                for s in range(len(TREATMENT_BY_CODE))])
    return updated, Recalibration(slope, shares.events, local_follow_up)


def local_baseline_variance(model, X: np.ndarray, event: np.ndarray, time: np.ndarray, *,
                            refits: int = LOCAL_REFITS, seed: int = 0) -> np.ndarray:
    """The spread of the re-estimated ``log H0_s(t)`` over bootstrap resamples of the local patients, with the
    recalibrated model's ``f`` held fixed: the variance per treatment and month 0–72, shape (n_treatments, 73).
    For a mixture-cure model, the spread of its log cumulative hazard for each treatment's mean patient over
    resamples of its recalibration (intercepts and timing shares)."""
    rng = np.random.default_rng(seed)
    if isinstance(model, MixtureCure):
        return _cure_local_variance(model, X, event, time, refits, rng)
    strata = treatment_index(X)
    f = model.log_relative_hazard(X)
    logs = []
    for _ in range(refits):
        rows = rng.integers(0, len(X), len(X))
        baseline = breslow_baselines(f[rows], event[rows].astype(bool), time[rows], strata[rows],
                                     fallback=model.baseline_)
        logs.append(np.log(np.maximum(baseline.cumulative[:, 1:], 1e-300)))
    variance = np.var(np.stack(logs), axis=0, ddof=1)
    return np.concatenate([np.zeros((variance.shape[0], 1)), variance], axis=1)


def _cure_local_variance(model: MixtureCure, X: np.ndarray, event: np.ndarray, time: np.ndarray, refits: int,
                         rng: np.random.Generator) -> np.ndarray:
    strata = treatment_index(X)
    n_treatments = len(TREATMENT_BY_CODE)
    source = model.estimator_.inner
    score = source.predict(X)
    typical = np.array([score[strata == s].mean() if np.any(strata == s) else score.mean() for s in range(n_treatments)])
    months = np.arange(1, 73)
    logs = []
    source_model = MixtureCure(estimator=model.estimator, em_rounds=model.em_rounds)
    source_model.estimator_, source_model.baseline_ = source, model.baseline_
    for _ in range(refits):
        rows = rng.integers(0, len(X), len(X))
        refit, _ = recalibrate_cure(source_model, X[rows], event[rows], time[rows],
                                    "baseline+slope" if model.estimator_.slope != 1.0 else "baseline")
        adjusted = refit.estimator_.slope * typical + refit.estimator_.offsets
        logs.append(np.stack([refit.log_cumulative_hazard(np.array([adjusted[s]]), np.array([s]), months)[0]
                              for s in range(n_treatments)]))
    variance = np.var(np.stack(logs), axis=0, ddof=1)
    return np.concatenate([np.zeros((n_treatments, 1)), variance], axis=1)


class RecalibratedSpread:
    """A recalibrated model's spread: the model's own (scaled by the slope) and the local baseline's, added
    as independent variances on the log cumulative hazard scale.

    Parameters
    ----------
    inner : Spread
        The source model's spread (:mod:`models.intervals`).
    slope : float
        The recalibration's slope.
    local_variance : ndarray of shape (n_treatments, 73)
        :func:`local_baseline_variance`.
    """

    kind = "recalibrated"

    def __init__(self, inner, slope: float, local_variance: np.ndarray) -> None:
        self.inner = inner
        self.slope = float(slope)
        self.local_variance = np.asarray(local_variance, dtype=float)

    @property
    def refits(self) -> int:
        return self.inner.refits

    def log_sd(self, X: np.ndarray, horizons) -> np.ndarray:
        inner = self.slope * self.inner.log_sd(X, horizons)
        local = self.local_variance[:, np.asarray(horizons, dtype=int)][treatment_index(X)]
        return np.sqrt(inner ** 2 + local)


def recalibrated_model(risk_model: RiskModel, X: np.ndarray, outcomes: dict[str, tuple[np.ndarray, np.ndarray]],
                       method: str, *, seed: int = 0) -> tuple[RiskModel, dict[str, Recalibration]]:
    """A :class:`models.scoring.RiskModel` recalibrated on local patients, and what was done per outcome.

    Parameters
    ----------
    risk_model : RiskModel
    X : ndarray of shape (n, n_columns)
        The local patients' model matrix as validation encodes it (prepared here).
    outcomes : dict of str to (event, time)
        Per outcome of the model.
    method : {"baseline", "baseline+slope"}
    """
    prepared = risk_model.prepare(X)
    survival, spreads, done = {}, {}, {}
    for outcome, model in risk_model.outcomes.items():
        event, time = outcomes[outcome]
        survival[outcome], done[outcome] = recalibrate_outcome(model, prepared, event, time, method)
        if outcome in risk_model.spreads:
            variance = local_baseline_variance(survival[outcome], prepared, event, time, seed=seed)
            spreads[outcome] = RecalibratedSpread(risk_model.spreads[outcome], done[outcome].slope, variance)
    return RiskModel(family=risk_model.family, outcomes=survival, domain=risk_model.domain, spreads=spreads), done
