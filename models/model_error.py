"""The model's own error, from observed outcomes on the held-out split: the part of an interval refits cannot give.

Bootstrap refits show how much a risk depends on which patients happened to be in the data; a bias every refit
shares (a model form the truth does not have, the shrinkage of boosting) is not in their spread. Its size is
read from what a real study has, the held-out patients' observed, censored outcomes, as calibration residuals:

1. Per treatment and month of :data:`models.intervals.MONTH_GRID` within the treatment's held-out follow-up,
   the patients are cut into ``k`` groups of equal size by their predicted log cumulative hazard (up to
   :data:`MAX_GROUPS`, with at least :data:`MIN_EVENTS_PER_GROUP` onsets per group on average).
2. Each group's residual is its Kaplan–Meier risk against its mean predicted risk on the log cumulative hazard
   scale, ``y_g = cloglog(O_g) - cloglog(E_g)``, with Greenwood's variance by the delta method, ``v_g``.
3. A residual beyond its sampling variance is model error: ``y_g ~ N(0, v_g + tau²)``, a random-effects model
   of the residuals about 0 (a calibration-in-the-large error counts as error too). ``tau²`` is taken at the
   upper end of its 95% Q-profile interval (Viechtbauer W. Confidence intervals for the amount of heterogeneity
   in meta-analysis. *Stat Med* 2007): the largest model error the held-out outcomes do not rule out. With few
   onsets the interval is wide, and so is the risk's: the data cannot vouch for a smaller error.
4. Between the grid's months ``tau²`` is interpolated linearly; before the first it is the first's, beyond the
   treatment's held-out follow-up the last one's (the extrapolation has its own term).

A treatment with too few onsets for three groups gets no term (0); one without any training onset gets the rule
of three's interval anyway (:meth:`models.scoring.RiskModel.intervals`). What it gives every patient of a
treatment and month is the same variance: it widens every interval by the model's measured lack of fit,
on top of each patient's own sampling spread.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2

from models.intervals import LEVEL, MONTH_GRID
from models.survival import MONTHS, treatment_index
from models.validation import observed_risk

# Groups of the calibration residuals: at most ten (deciles of predicted risk), each with ten onsets on average.
MAX_GROUPS = 10
MIN_GROUPS = 3
MIN_EVENTS_PER_GROUP = 10


def cloglog(risk: np.ndarray | float) -> np.ndarray:
    """``log(-log(1 - risk))``, the log cumulative hazard of a risk."""
    return np.log(-np.log1p(-np.asarray(risk, dtype=float)))


def calibration_residuals(log_hazard: np.ndarray, event: np.ndarray, time: np.ndarray, month: float
                          ) -> tuple[np.ndarray, np.ndarray] | None:
    """Residuals of observed against predicted risk by ``month`` in groups of predicted risk, with their variance.

    Parameters
    ----------
    log_hazard : ndarray of shape (n,)
        Each patient's predicted log cumulative hazard by ``month``.
    event, time : ndarray of shape (n,)
        Onset observed, and onset or censoring month.
    month : float

    Returns
    -------
    (residuals, variances), each of shape (k,), or None where too few onsets came by ``month`` for
    :data:`MIN_GROUPS` groups.
    """
    onsets = int(np.sum(event & (time <= month)))
    k = min(MAX_GROUPS, onsets // MIN_EVENTS_PER_GROUP)
    if k < MIN_GROUPS:
        return None
    order = np.argsort(log_hazard, kind="stable")
    residuals, variances = [], []
    for members in np.array_split(order, k):
        observed = observed_risk(time[members], event[members], month)
        if not 0.0 < observed.risk < 1.0 or observed.se <= 0.0:
            continue
        survival = 1.0 - observed.risk
        predicted = float(np.mean(-np.expm1(-np.exp(log_hazard[members]))))
        residuals.append(float(cloglog(observed.risk) - cloglog(predicted)))
        variances.append((observed.se / (survival * abs(np.log(survival)))) ** 2)
    if len(residuals) < MIN_GROUPS:
        return None
    return np.asarray(residuals), np.asarray(variances)


def heterogeneity_upper(residuals: np.ndarray, variances: np.ndarray, level: float = LEVEL) -> float:
    """The upper end of the ``level`` Q-profile interval of ``tau²`` in ``y_g ~ N(0, v_g + tau²)``.

    The generalised statistic ``Q(tau²) = sum y_g² / (v_g + tau²)`` is chi-squared with ``k`` degrees of freedom
    (the mean is fixed at 0, so none is spent on it) and falls in ``tau²``; the upper end solves
    ``Q(tau²) = chi2.ppf((1 - level) / 2, k)``, and is 0 when even ``Q(0)`` is below that.
    """
    residuals, variances = np.asarray(residuals, dtype=float), np.asarray(variances, dtype=float)
    target = float(chi2.ppf((1.0 - level) / 2.0, len(residuals)))

    def excess(tau2: float) -> float:
        return float(np.sum(residuals ** 2 / (variances + tau2))) - target

    if excess(0.0) <= 0.0:
        return 0.0
    upper = max(float(np.max(residuals ** 2)), 1e-6)
    while excess(upper) > 0.0:  # Q falls to 0 as tau² grows: a bracket is always found
        upper *= 4.0
    return float(brentq(excess, 0.0, upper, xtol=1e-10))


def model_error_variance(log_hazard: np.ndarray, event: np.ndarray, time: np.ndarray, strata: np.ndarray,
                         n_treatments: int, months=MONTH_GRID) -> np.ndarray:
    """The model-error variance per treatment and month 0–72 on the log cumulative hazard scale.

    Parameters
    ----------
    log_hazard : ndarray of shape (n, len(months))
        The held-out patients' predicted log cumulative hazard by each of ``months``.
    event, time, strata : ndarray of shape (n,)
        Their observed outcome and treatment code.
    n_treatments : int
    months : sequence of int

    Returns
    -------
    ndarray of shape (n_treatments, len(MONTHS))
    """
    variance = np.zeros((n_treatments, len(MONTHS)))
    for s in range(n_treatments):
        rows = strata == s
        measured = {}
        for k, month in enumerate(months):
            if not np.any(time[rows] >= month):
                break  # past the treatment's held-out follow-up
            found = calibration_residuals(log_hazard[rows, k], event[rows], time[rows], month)
            if found is not None:
                measured[month] = heterogeneity_upper(*found)
        if measured:
            grid = np.array(sorted(measured), dtype=float)
            variance[s] = np.interp(np.asarray(MONTHS, dtype=float), grid, [measured[m] for m in grid])
    return variance


class ModelErrorSpread:
    """A spread widened by the model's error: the inner spread's variance plus :func:`model_error_variance`'s.

    Parameters
    ----------
    inner : Spread
        The refits' spread (:mod:`models.intervals`).
    variance : ndarray of shape (n_treatments, len(MONTHS))
        The model-error variance per treatment and month.
    """

    kind = "with-model-error"

    def __init__(self, inner, variance: np.ndarray) -> None:
        self.inner = inner
        self.variance = np.asarray(variance, dtype=float)

    @property
    def refits(self) -> int:
        return self.inner.refits

    def log_sd(self, X: np.ndarray, horizons) -> np.ndarray:
        months = np.minimum(np.asarray(horizons, dtype=int), len(MONTHS) - 1)
        return np.sqrt(self.inner.log_sd(X, horizons) ** 2 + self.variance[:, months][treatment_index(X)])


def sampling_spread(spread):
    """The refits' part of a served spread, without the model-error term."""
    return spread.inner if isinstance(spread, ModelErrorSpread) else spread
