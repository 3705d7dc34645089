"""Risk at a horizon from censored event times: inverse-probability-of-censoring weights (IPCW).

A patient's status at horizon ``h`` is known when the onset was observed by ``h`` (label 1)
or follow-up went past ``h`` without onset (label 0). Those censored earlier are left out,
and the known ones are weighted by ``1 / G(min(T, h))``, where ``G`` is the probability of
still being under observation (Kaplan–Meier of the censoring times). Any classifier fitted
with these weights estimates ``P(T <= h | x)``; the same weights give the time-dependent
AUROC and the IPCW Brier score. ``G`` is estimated within each source cohort, because
follow-up differs by cohort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def kaplan_meier_survival(time: np.ndarray, event: np.ndarray):
    """Kaplan–Meier survival function of ``time`` with ``event`` = 1 where the time is observed.

    Returns
    -------
    callable
        ``S(t)``, right-continuous step function, evaluated on arrays.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    order = np.argsort(time, kind="stable")
    times, first = np.unique(time[order], return_index=True)
    events = np.add.reduceat(event[order], first) if len(times) else np.empty(0)
    at_risk = len(time) - first
    survival = np.cumprod(1.0 - events / at_risk)

    def evaluate(t) -> np.ndarray:
        position = np.searchsorted(times, np.asarray(t, dtype=float), side="right") - 1
        return np.where(position >= 0, survival[np.maximum(position, 0)], 1.0)

    return evaluate


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
