"""Ridge-penalised Cox regression with Breslow's ties by vectorised Newton steps (:func:`cox_newton`).

The same coefficients as scikit-survival's ``CoxPHSurvivalAnalysis(alpha, ties="breslow")`` (a test checks
the two), at a fraction of its time, and started where the caller likes: a bootstrap refit from the fitted
coefficients converges in a few steps (:func:`models.intervals.refit_linear`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _RiskSets:
    """The penalised Breslow partial likelihood of :func:`cox_newton`, on rows sorted by descending time so
    that every risk set is a prefix; ``last_of`` and ``first_of`` are the ends of each row's tie group."""

    Z: np.ndarray
    event: np.ndarray
    last_of: np.ndarray
    first_of: np.ndarray
    Z_events: np.ndarray
    alpha: float

    @classmethod
    def of(cls, Z: np.ndarray, event: np.ndarray, time: np.ndarray, alpha: float) -> _RiskSets:
        n = Z.shape[0]
        order = np.argsort(-time, kind="mergesort")  # descending: a risk set is a prefix
        Z, event, time = Z[order], event[order].astype(bool), time[order]
        new_group = np.concatenate([[True], time[1:] != time[:-1]])
        group = np.cumsum(new_group) - 1
        starts = np.flatnonzero(new_group)
        ends = np.concatenate([starts[1:], [n]]) - 1
        return cls(Z, event, ends[group], starts[group], Z[event], alpha)

    def loss_terms(self, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The loss at ``w``, each row's relative risk (shifted) and its risk set's sum of them."""
        n = self.Z.shape[0]
        eta = self.Z @ w
        shift = eta.max()  # exp of the shifted predictor cannot overflow; the shift cancels in every ratio
        r = np.exp(eta - shift)
        s0 = np.cumsum(r)[self.last_of]
        loss = -(np.sum(eta[self.event]) - np.sum(np.log(s0[self.event]) + shift)) / n + self.alpha * w @ w / (2 * n)
        return loss, r, s0

    def newton_step(self, w: np.ndarray, r: np.ndarray, s0: np.ndarray) -> np.ndarray:
        """The full Newton step from ``w``, given :meth:`loss_terms` there."""
        Z, event = self.Z, self.event
        n, q = Z.shape
        s1 = np.cumsum(r[:, None] * Z, axis=0)[self.last_of]
        z_bar = s1[event] / s0[event, None]
        gradient = -(self.Z_events.sum(axis=0) - z_bar.sum(axis=0)) / n + self.alpha * w / n
        # Σ_events S2_i / S0_i = Σ_j r_j z_j z_jᵀ A_j, A_j summing 1 / S0_i over the events at or after
        # row j's time (in descending order: from the start of j's tie group to the end).
        per_event = np.where(event, 1.0 / s0, 0.0)
        tail = np.cumsum(per_event[::-1])[::-1]
        a = tail[self.first_of]
        hessian = ((Z * (r * a)[:, None]).T @ Z - z_bar.T @ z_bar) / n + self.alpha * np.eye(q) / n
        return np.linalg.solve(hessian, gradient)


def cox_newton(Z: np.ndarray, event: np.ndarray, time: np.ndarray, alpha: float, start: np.ndarray | None = None,
               *, tol: float = 1e-9, max_iter: int = 100) -> np.ndarray:
    """Ridge-penalised Cox regression with Breslow's ties: the coefficients scikit-survival's
    ``CoxPHSurvivalAnalysis(alpha, ties="breslow")`` finds, by vectorised Newton steps.

    Minimises ``-(1/n) Σ_events [z_i·w - log Σ_{t_j >= t_i} exp(z_j·w)] + alpha ||w||² / (2n)``,
    halving a step that does not lower it, until the loss changes by less than ``tol`` relatively.

    Parameters
    ----------
    Z : ndarray of shape (n, q)
        Standardised design.
    event, time : ndarray of shape (n,)
        Onset observed (bool) and onset or censoring time.
    alpha : float
        Ridge penalty.
    start : ndarray of shape (q,), optional
        Starting coefficients (zeros by default); a nearby fit converges in a few steps.

    Returns
    -------
    ndarray of shape (q,)
    """
    risk_sets = _RiskSets.of(Z, event, time, alpha)
    w = np.zeros(Z.shape[1]) if start is None else np.array(start, dtype=float)
    loss, r, s0 = risk_sets.loss_terms(w)
    for _ in range(max_iter):
        step = risk_sets.newton_step(w, r, s0)
        candidate = w - step
        new_loss, new_r, new_s0 = risk_sets.loss_terms(candidate)
        halvings = 0
        while new_loss > loss and halvings < 30:
            step /= 2
            candidate = w - step
            new_loss, new_r, new_s0 = risk_sets.loss_terms(candidate)
            halvings += 1
        converged = abs(1 - new_loss / loss) < tol
        w, loss, r, s0 = candidate, new_loss, new_r, new_s0
        if converged:
            break
    return w
