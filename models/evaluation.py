"""Held-out evaluation of predicted risks: pure functions of labels and probabilities."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

_EPS = 1e-12


def calibration_slope_intercept(y: np.ndarray, risk: np.ndarray) -> tuple[float, float]:
    """Calibration slope and intercept (calibration-in-the-large).

    The slope is the coefficient of ``logit(risk)`` in a logistic regression of ``y``;
    the intercept is ``a`` in ``logit P(y) = a + logit(risk)`` (offset fixed at 1),
    so that 0 means the mean risk matches the observed incidence.
    """
    lp = logit(np.clip(risk, _EPS, 1 - _EPS))
    slope = LogisticRegression(C=np.inf, max_iter=1000).fit(lp[:, None], y).coef_[0, 0]
    intercept = brentq(lambda a: float(np.sum(y - expit(a + lp))), -30.0, 30.0)
    return float(slope), float(intercept)


def evaluate(y: np.ndarray, risk: np.ndarray, true_risk: np.ndarray) -> dict[str, float]:
    """Discrimination, calibration and the oracle's AUROC on the same rows.

    Parameters
    ----------
    y : ndarray of shape (n,)
        Observed outcome, 0/1.
    risk : ndarray of shape (n,)
        Predicted probability.
    true_risk : ndarray of shape (n,)
        The simulator's true probability (the best possible model).

    Returns
    -------
    dict
        ``auroc``, ``auprc``, ``brier``, ``log_loss``, ``calibration_slope``,
        ``calibration_intercept``, ``oracle_auroc``, ``auroc_over_oracle``,
        ``mean_abs_risk_error``, ``events``, ``incidence``, ``mean_risk``.
    """
    y = np.asarray(y, dtype=int)
    metrics = {
        "events": float(y.sum()),
        "incidence": float(y.mean()),
        "mean_risk": float(np.mean(risk)),
        "brier": float(brier_score_loss(y, risk)),
        "log_loss": float(log_loss(y, np.clip(risk, _EPS, 1 - _EPS), labels=[0, 1])),
        "mean_abs_risk_error": float(np.mean(np.abs(risk - true_risk))),
    }
    if 0 < y.sum() < len(y):
        slope, intercept = calibration_slope_intercept(y, risk)
        metrics |= {
            "auroc": float(roc_auc_score(y, risk)),
            "auprc": float(average_precision_score(y, risk)),
            "oracle_auroc": float(roc_auc_score(y, true_risk)),
            "calibration_slope": slope,
            "calibration_intercept": intercept,
        }
        metrics["auroc_over_oracle"] = metrics["auroc"] / metrics["oracle_auroc"]
    return metrics


def roc_figure(y: np.ndarray, risks: dict[str, np.ndarray], title: str):
    """ROC curves of several risk vectors (for example the model's and the oracle's)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    for label, risk in risks.items():
        fpr, tpr, _ = roc_curve(y, risk)
        axes.plot(fpr, tpr, label=f"{label} (AUROC {roc_auc_score(y, risk):.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    axes.legend(loc="lower right")
    return figure


def calibration_figure(y: np.ndarray, risks: dict[str, np.ndarray], title: str, bins: int = 10):
    """Observed incidence against mean predicted risk, by quantile of predicted risk."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    top = 0.0
    for label, risk in risks.items():
        edges = np.unique(np.quantile(risk, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, risk, side="right") - 1, 0, len(edges) - 2)
        predicted = np.array([risk[which == b].mean() for b in np.unique(which)])
        observed = np.array([y[which == b].mean() for b in np.unique(which)])
        axes.plot(predicted, observed, marker="o", label=label)
        top = max(top, predicted.max(), observed.max())
    axes.plot([0, top], [0, top], color="grey", linestyle=":", label="ideal")
    axes.set(xlabel="mean predicted risk", ylabel="observed incidence", title=title)
    axes.legend(loc="upper left")
    return figure
