"""Added value of a predictor at one horizon under censoring: ΔAUROC, NRI, IDI and Δ net benefit.

Two risk vectors for the same patients are compared: ``risk_new`` from a model with the
predictor and ``risk_old`` from the same model refitted without it. As everywhere in the
project (:mod:`models.survival`), the outcome is the status at the horizon ``y`` with inverse-
probability-of-censoring weights ``weight``, 0 where the status is unknown; every statistic
below is a weighted proportion or mean over the patients whose status is known, so a weight of
0 is the same as leaving the patient out.

Intervals come from a paired bootstrap: the patients with a known status are resampled once per
replicate and both models are evaluated on the same resample, so the interval is that of the
difference, not a combination of two separate intervals. The resamples depend only on the number
of such patients, ``bootstrap`` and ``seed``, so the functions here, given the same three, use the
same resamples. The censoring weights are held fixed across replicates (the censoring
distribution is not re-estimated), as in :func:`models.evaluation.evaluate_at_horizon`.

Definitions (Pencina et al., Stat Med 2008 and 2011), with ``P`` and ``E`` weighted:

- continuous NRI for events ``P(up | event) - P(down | event)``, for non-events
  ``P(down | non-event) - P(up | non-event)``, total their sum; "up" means ``risk_new > risk_old``,
  equal risks move neither way;
- IDI for events ``E(risk_new - risk_old | event)``, for non-events
  ``E(risk_old - risk_new | non-event)`` (positive when the new model lowers the risks of
  non-events), total their sum, which is the change in discrimination slope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from models.evaluation import RankedScores, net_benefit

DEFAULT_THRESHOLDS = np.round(np.arange(0.05, 0.3001, 0.01), 2)


@dataclass(frozen=True)
class Estimate:
    """A difference and its bootstrap interval.

    Attributes
    ----------
    value : float
        Estimate on the patients given.
    lo, hi : float
        Percentile bootstrap interval (NaN without bootstrap).
    """

    value: float
    lo: float
    hi: float

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the closed interval."""
        return bool(self.lo <= x <= self.hi)


@dataclass(frozen=True)
class AurocComparison:
    """Time-dependent AUROC of both models and their difference (new minus old)."""

    new: float
    old: float
    difference: Estimate


@dataclass(frozen=True)
class EventSplit:
    """A reclassification statistic for events, for non-events, and in total."""

    events: Estimate
    nonevents: Estimate
    total: Estimate


@dataclass(frozen=True)
class NetBenefitDifference:
    """Net benefit of both models per threshold and their difference with pointwise intervals.

    Attributes
    ----------
    threshold, new, old, difference, lo, hi : ndarray of shape (t,)
        Threshold risk; net benefit of each model; new minus old; its bootstrap interval.
    """

    threshold: np.ndarray
    new: np.ndarray
    old: np.ndarray
    difference: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass(frozen=True)
class AddedValue:
    """All measures of :func:`added_value`, on the same bootstrap resamples."""

    auroc: AurocComparison
    nri: EventSplit
    idi: EventSplit
    net_benefit: NetBenefitDifference


# --------------------------------------------------------------------------- the statistics


def delta_auroc(y: np.ndarray, risk_new: np.ndarray, risk_old: np.ndarray, weight: np.ndarray, *,
                bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> AurocComparison:
    """Difference in IPCW time-dependent AUROC, new minus old, with a paired bootstrap interval.

    Parameters
    ----------
    y : ndarray of shape (n,)
        Status at the horizon, 0/1.
    risk_new, risk_old : ndarray of shape (n,)
        Risk at the horizon from the model with and without the predictor.
    weight : ndarray of shape (n,)
        IPCW weight, 0 where the status is unknown.
    bootstrap : int
        Paired resamples (0: no interval).
    seed : int
        Seed of the resamples.
    level : float
        Coverage of the percentile interval.

    Returns
    -------
    AurocComparison
    """
    y, risk_new, risk_old, weight = _known(y, risk_new, risk_old, weight)
    # Sorting once per model makes each resample O(n).
    ranked_new, ranked_old = RankedScores(y, risk_new), RankedScores(y, risk_old)

    def statistic(w: np.ndarray) -> float:
        return ranked_new.auroc_auprc(w)[0] - ranked_old.auroc_auprc(w)[0]

    new, old = ranked_new.auroc_auprc(weight)[0], ranked_old.auroc_auprc(weight)[0]
    draws = _replicates(statistic, y, weight, bootstrap, seed)
    return AurocComparison(new=new, old=old, difference=_estimate(new - old, draws, level))


def net_reclassification(y: np.ndarray, risk_new: np.ndarray, risk_old: np.ndarray, weight: np.ndarray, *,
                         bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> EventSplit:
    """Continuous (category-free) NRI for events, for non-events and in total, IPCW-weighted.

    Parameters and resampling as in :func:`delta_auroc`.

    Returns
    -------
    EventSplit
        Each part in [-1, 1]; the total in [-2, 2].
    """
    y, risk_new, risk_old, weight = _known(y, risk_new, risk_old, weight)
    move = np.sign(risk_new - risk_old)  # +1 up, -1 down, 0 unchanged

    def statistic(w: np.ndarray) -> np.ndarray:
        events = np.sum(w * y * move) / np.sum(w * y)
        nonevents = -np.sum(w * (1 - y) * move) / np.sum(w * (1 - y))
        return np.array([events, nonevents, events + nonevents])

    return _split(statistic(weight), _replicates(statistic, y, weight, bootstrap, seed), level)


def integrated_discrimination(y: np.ndarray, risk_new: np.ndarray, risk_old: np.ndarray, weight: np.ndarray, *,
                              bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> EventSplit:
    """IDI for events, for non-events and in total, IPCW-weighted.

    Parameters and resampling as in :func:`delta_auroc`.

    Returns
    -------
    EventSplit
        ``events``: rise in mean risk among events; ``nonevents``: fall in mean risk among
        non-events; ``total``: their sum (the change in discrimination slope).
    """
    y, risk_new, risk_old, weight = _known(y, risk_new, risk_old, weight)
    change = risk_new - risk_old

    def statistic(w: np.ndarray) -> np.ndarray:
        events = np.sum(w * y * change) / np.sum(w * y)
        nonevents = -np.sum(w * (1 - y) * change) / np.sum(w * (1 - y))
        return np.array([events, nonevents, events + nonevents])

    return _split(statistic(weight), _replicates(statistic, y, weight, bootstrap, seed), level)


def net_benefit_difference(y: np.ndarray, risk_new: np.ndarray, risk_old: np.ndarray, weight: np.ndarray,
                           thresholds: np.ndarray = DEFAULT_THRESHOLDS, *, bootstrap: int = 1000, seed: int = 0,
                           level: float = 0.95) -> NetBenefitDifference:
    """Net benefit of each model over a range of threshold risks and its difference, new minus old.

    Parameters
    ----------
    y, risk_new, risk_old, weight : ndarray of shape (n,)
        As in :func:`delta_auroc`.
    thresholds : ndarray of shape (t,)
        Threshold risks in (0, 1); by default 5% to 30% by 1%.
    bootstrap, seed, level
        As in :func:`delta_auroc`; the interval is pointwise, per threshold.

    Returns
    -------
    NetBenefitDifference
    """
    y, risk_new, risk_old, weight = _known(y, risk_new, risk_old, weight)
    thresholds = np.asarray(thresholds, dtype=float)

    def curves(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return net_benefit(y, risk_new, w, thresholds)["model"], net_benefit(y, risk_old, w, thresholds)["model"]

    def statistic(w: np.ndarray) -> np.ndarray:
        new, old = curves(w)
        return new - old

    new, old = curves(weight)
    draws = _replicates(statistic, y, weight, bootstrap, seed)
    lo, hi = _percentiles(draws, level, shape=thresholds.shape)
    return NetBenefitDifference(threshold=thresholds, new=new, old=old, difference=new - old, lo=lo, hi=hi)


def added_value(y: np.ndarray, risk_new: np.ndarray, risk_old: np.ndarray, weight: np.ndarray,
                thresholds: np.ndarray = DEFAULT_THRESHOLDS, *, bootstrap: int = 1000, seed: int = 0,
                level: float = 0.95) -> AddedValue:
    """ΔAUROC, NRI, IDI and Δ net benefit of one predictor, all on the same bootstrap resamples.

    Parameters and returns as in the four functions it calls.
    """
    options = {"bootstrap": bootstrap, "seed": seed, "level": level}
    return AddedValue(
        auroc=delta_auroc(y, risk_new, risk_old, weight, **options),
        nri=net_reclassification(y, risk_new, risk_old, weight, **options),
        idi=integrated_discrimination(y, risk_new, risk_old, weight, **options),
        net_benefit=net_benefit_difference(y, risk_new, risk_old, weight, thresholds, **options),
    )


# --------------------------------------------------------------------------- paired bootstrap


def bootstrap_weights(weight: np.ndarray, bootstrap: int, seed: int) -> Iterator[np.ndarray]:
    """Weights of each paired bootstrap resample: ``weight`` times how often each patient is drawn.

    Parameters
    ----------
    weight : ndarray of shape (m,)
        Weights of the patients with a known status (all positive).
    bootstrap : int
        Number of resamples.
    seed : int
        Seed; the same seed and ``m`` give the same resamples.

    Yields
    ------
    ndarray of shape (m,)
        ``weight * counts``, ``counts`` multinomial with ``m`` draws (sampling with replacement).
    """
    rng = np.random.default_rng(seed)
    uniform = np.full(len(weight), 1.0 / len(weight))
    for _ in range(bootstrap):
        yield weight * rng.multinomial(len(weight), uniform)


def _replicates(statistic: Callable[[np.ndarray], float | np.ndarray], y: np.ndarray, weight: np.ndarray,
                bootstrap: int, seed: int) -> np.ndarray:
    """The statistic on every resample that still has events and non-events, stacked on axis 0."""
    draws = [statistic(w) for w in bootstrap_weights(weight, bootstrap, seed)
             if np.sum(w * y) > 0 and np.sum(w * (1 - y)) > 0]
    return np.array(draws, dtype=float)


def _percentiles(draws: np.ndarray, level: float, shape: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    if len(draws) == 0:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail], axis=0)
    return lo, hi


def _estimate(value: float, draws: np.ndarray, level: float) -> Estimate:
    lo, hi = _percentiles(draws, level)
    return Estimate(float(value), float(lo), float(hi))


def _split(values: np.ndarray, draws: np.ndarray, level: float) -> EventSplit:
    lo, hi = _percentiles(draws, level, shape=(3,))
    parts = [Estimate(float(values[i]), float(lo[i]), float(hi[i])) for i in range(3)]
    return EventSplit(events=parts[0], nonevents=parts[1], total=parts[2])


def _known(y: np.ndarray, risk_new: np.ndarray, risk_old: np.ndarray,
           weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The patients whose status is known (positive weight), after checking the inputs."""
    y = np.asarray(y)
    arrays = [np.asarray(a, dtype=float) for a in (risk_new, risk_old, weight)]
    if y.ndim != 1 or any(a.shape != y.shape for a in arrays):
        raise ValueError("y, risk_new, risk_old and weight must be 1-D arrays of the same length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must be 0/1")
    risk_new, risk_old, weight = arrays
    if not (np.isfinite(weight).all() and (weight >= 0).all()):
        raise ValueError("weight must be finite and non-negative")
    known = weight > 0
    y = y[known].astype(float)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("need at least one event and one non-event with a known status")
    return y, risk_new[known], risk_old[known], weight[known]
