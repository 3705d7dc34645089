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


def calibration_figure(y: np.ndarray, risks: dict[str, np.ndarray], title: str, bins: int = 10,
                       weight: np.ndarray | None = None):
    """Observed incidence against mean predicted risk, by quantile of predicted risk (IPCW-weighted)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    top = 0.0
    for label, risk in risks.items():
        edges = np.unique(np.quantile(risk, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, risk, side="right") - 1, 0, len(edges) - 2)
        w = np.ones(len(y)) if weight is None else weight
        groups = [b for b in np.unique(which) if w[which == b].sum() > 0]
        predicted = np.array([np.average(risk[which == b], weights=w[which == b]) for b in groups])
        observed = np.array([np.average(y[which == b], weights=w[which == b]) for b in groups])
        axes.plot(predicted, observed, marker="o", label=label)
        top = max(top, predicted.max(), observed.max())
    axes.plot([0, top], [0, top], color="grey", linestyle=":", label="ideal")
    axes.set(xlabel="mean predicted risk", ylabel="observed incidence", title=title)
    axes.legend(loc="upper left")
    return figure


# --------------------------------------------------------------------------- at a horizon, with IPCW


def weighted_calibration(y: np.ndarray, risk: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Calibration slope and intercept (calibration-in-the-large) with IPCW weights."""
    lp = logit(np.clip(risk, _EPS, 1 - _EPS))
    slope = LogisticRegression(C=np.inf, max_iter=1000).fit(lp[:, None], y, sample_weight=weight).coef_[0, 0]
    intercept = brentq(lambda a: float(np.sum(weight * (y - expit(a + lp)))), -30.0, 30.0)
    return float(slope), float(intercept)


def integrated_calibration_index(y: np.ndarray, risk: np.ndarray, weight: np.ndarray) -> float:
    """ICI: weighted mean |risk - smoothed observed risk|, the smoother a weighted logistic
    regression on a cubic spline of logit(risk) (Austin & Steyerberg use loess; splines behave alike)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer

    lp = logit(np.clip(risk, _EPS, 1 - _EPS))[:, None]
    smoother = make_pipeline(SplineTransformer(n_knots=5, degree=3), LogisticRegression(C=1e4, max_iter=2000))
    smoother.fit(lp, y, logisticregression__sample_weight=weight)
    observed = smoother.predict_proba(lp)[:, 1]
    return float(np.average(np.abs(risk - observed), weights=weight))


def net_benefit(y: np.ndarray, risk: np.ndarray, weight: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Decision curve: net benefit of the model, of treating all and of treating none, per threshold."""
    total = weight.sum()
    prevalence = np.sum(weight * y) / total
    odds = thresholds / (1 - thresholds)
    model = np.array([
        (np.sum(weight * y * (risk >= t)) - np.sum(weight * (1 - y) * (risk >= t)) * o) / total
        for t, o in zip(thresholds, odds)
    ])
    return {"threshold": thresholds, "model": model,
            "treat_all": prevalence - (1 - prevalence) * odds, "treat_none": np.zeros(len(thresholds))}


class RankedScores:
    """Risks sorted once, so that AUROC and average precision under any row weights are O(n).

    The same numbers as scikit-learn's ``roc_auc_score`` and ``average_precision_score`` with
    ``sample_weight`` (ties included), at a fraction of the cost for bootstrap resamples.
    """

    def __init__(self, y: np.ndarray, risk: np.ndarray) -> None:
        self.order = np.argsort(-risk, kind="stable")
        ranked = risk[self.order]
        self.starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
        self.y = y[self.order].astype(float)

    def auroc_auprc(self, weight: np.ndarray) -> tuple[float, float]:
        w = weight[self.order]
        positive = np.add.reduceat(w * self.y, self.starts)
        negative = np.add.reduceat(w * (1 - self.y), self.starts)
        total_pos, total_neg = positive.sum(), negative.sum()
        above = np.cumsum(positive) - positive
        auroc = float(np.sum(negative * (above + 0.5 * positive)) / (total_pos * total_neg))
        true_pos, false_pos = np.cumsum(positive), np.cumsum(negative)
        precision = true_pos / np.maximum(true_pos + false_pos, 1e-300)
        auprc = float(np.sum(positive / total_pos * precision))
        return auroc, auprc


def weighted_log_loss(y: np.ndarray, risk: np.ndarray, weight: np.ndarray) -> float:
    """Weighted mean log loss over rows with positive weight."""
    clipped = np.clip(risk, _EPS, 1 - _EPS)
    return float(-np.average(y * np.log(clipped) + (1 - y) * np.log(1 - clipped), weights=weight))


def evaluate_at_horizon(y: np.ndarray, risk: np.ndarray, weight: np.ndarray, true_risk: np.ndarray,
                        *, bootstrap: int = 0, seed: int = 0, detail: bool = True) -> dict[str, float]:
    """TRIPOD+AI metrics of risks at one horizon, on rows whose status is known (IPCW ``weight > 0``).

    Parameters
    ----------
    y, risk, weight, true_risk : ndarray of shape (n,)
        Status at the horizon, predicted risk, IPCW weight (0 = status unknown) and the
        simulator's exact risk at the horizon, for the same n patients.
    bootstrap : int
        Resamples for the 95% intervals of AUROC and AUPRC (0: none).

    Returns
    -------
    dict
        ``auroc``, ``auprc`` (+ ``_lo``/``_hi``), ``oracle_auroc``, ``auroc_over_oracle``,
        ``brier`` (IPCW), ``log_loss`` (weighted), ``calibration_slope``,
        ``calibration_intercept``, ``observed_over_expected``, ``ici``,
        ``mean_abs_risk_error`` (all rows, against the exact risk), ``known``, ``events``.
        With ``detail=False``, only the AUROC, calibration and O/E (for subgroups).
    """
    metrics = {"mean_abs_risk_error": float(np.mean(np.abs(risk - true_risk))),
               "mean_risk": float(np.mean(risk)), "mean_true_risk": float(np.mean(true_risk))}
    known = weight > 0
    y, risk_k, weight, truth = y[known], risk[known], weight[known], true_risk[known]
    metrics |= {"known": float(known.sum()), "events": float(y.sum())}
    if y.sum() < 5 or y.sum() == len(y):
        return metrics
    slope, intercept = weighted_calibration(y, risk_k, weight)
    ranked = RankedScores(y, risk_k)
    auroc, auprc = ranked.auroc_auprc(weight)
    metrics |= {
        "auroc": auroc,
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "observed_over_expected": float(np.sum(weight * y) / np.sum(weight * risk_k)),
    }
    if not detail:
        return metrics
    metrics |= {
        "auprc": auprc,
        "oracle_auroc": RankedScores(y, truth).auroc_auprc(weight)[0],
        "brier": float(np.sum(weight * (y - risk_k) ** 2) / len(known)),
        "log_loss": weighted_log_loss(y, risk_k, weight),
        "ici": integrated_calibration_index(y, risk_k, weight),
    }
    metrics["auroc_over_oracle"] = metrics["auroc"] / metrics["oracle_auroc"]
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(bootstrap):
            counts = rng.multinomial(len(y), np.full(len(y), 1.0 / len(y)))
            resampled = weight * counts
            if 0 < np.sum(resampled * y) < np.sum(resampled):
                draws.append(ranked.auroc_auprc(resampled))
        lo, hi = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
        metrics |= {"auroc_lo": float(lo[0]), "auroc_hi": float(hi[0]),
                    "auprc_lo": float(lo[1]), "auprc_hi": float(hi[1])}
    return metrics


def decision_curve_figure(curves: dict[str, dict[str, np.ndarray]], title: str):
    """Net benefit against threshold for each model, with treat-all and treat-none."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4))
    axes = figure.subplots()
    first = next(iter(curves.values()))
    for label, curve in curves.items():
        axes.plot(100 * curve["threshold"], curve["model"], label=label)
    axes.plot(100 * first["threshold"], first["treat_all"], color="grey", linestyle="--", label="treat all")
    axes.axhline(0, color="black", linewidth=0.8, label="treat none")
    top = max(max(c["model"].max() for c in curves.values()), first["treat_all"].max())
    axes.set(xlabel="threshold risk (%)", ylabel="net benefit", title=title, ylim=(-0.02, top * 1.1 + 0.01))
    axes.legend(fontsize=7)
    return figure
