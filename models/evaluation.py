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


def calibration_slope_fast(y: np.ndarray, lp: np.ndarray, weight: np.ndarray, iterations: int = 25) -> float:
    """Calibration slope by Newton's method on the two-parameter weighted logistic regression of ``y`` on ``lp``.

    The same maximum-likelihood slope as :func:`weighted_calibration` (a test checks it), at
    a fraction of the cost, for bootstrap resamples. NaN where the likelihood has no maximum (a resample
    whose few onsets the predictor separates completely).

    Parameters
    ----------
    y, lp, weight : ndarray of shape (n,)
        Status (0/1), predicted log-odds and row weight.
    """
    beta = np.zeros(2)
    design = np.column_stack([np.ones(len(lp)), lp])
    for _ in range(iterations):
        p = expit(design @ beta)
        gradient = design.T @ (weight * (y - p))
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design
        step = np.linalg.solve(hessian + 1e-12 * np.eye(2), gradient)
        beta += step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e3:
            return float("nan")
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[1])


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


def log_loss_over_null(y: np.ndarray, risk: np.ndarray, weight: np.ndarray) -> float:
    """Weighted log loss of ``risk`` divided by that of the best constant risk on the same rows.

    The constant is the weighted incidence, so the ratio is 1 for a model that knows only the
    incidence and falls towards 0 as it separates events from non-events (one minus
    McFadden's R²). Unlike the log loss itself it does not grow with the incidence, so
    horizons and outcomes with few and with many events count alike.

    Parameters
    ----------
    y, risk, weight : ndarray of shape (n,)
        Status at the horizon (0/1), predicted risk and IPCW weight, all weights positive.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When ``y`` holds only events or only non-events (the constant risk has no loss).
    """
    incidence = float(np.average(y, weights=weight))
    if not 0.0 < incidence < 1.0:
        raise ValueError(f"log loss over null: needs events and non-events, got an incidence of {incidence:g}")
    null = weighted_log_loss(y, np.full(len(y), incidence), weight)
    return weighted_log_loss(y, risk, weight) / null


def evaluate_at_horizon(y: np.ndarray, risk: np.ndarray, weight: np.ndarray, true_risk: np.ndarray | None = None,
                        *, bootstrap: int = 0, seed: int = 0, detail: bool = True) -> dict[str, float]:
    """TRIPOD+AI metrics of risks at one horizon, on rows whose status is known (IPCW ``weight > 0``).

    Parameters
    ----------
    y, risk, weight : ndarray of shape (n,)
        Status at the horizon, predicted risk and IPCW weight (0 = status unknown) of the same n patients.
    true_risk : ndarray of shape (n,), optional
        The simulator's exact risk at the horizon; without it (a cohort of real patients) no figure
        against the truth is given.
    bootstrap : int
        Resamples for the 95% intervals of AUROC, AUPRC, the calibration slope and O/E (0: none).

    Returns
    -------
    dict
        ``auroc``, ``auprc`` (+ ``_lo``/``_hi``), ``brier`` (IPCW), ``log_loss`` (weighted),
        ``log_loss_over_null``, ``calibration_slope`` (+ ``_lo``/``_hi``), ``calibration_intercept``,
        ``observed_over_expected`` (+ ``_lo``/``_hi``), ``ici``, ``mean_risk``, ``known``, ``events``;
        with ``true_risk`` also ``oracle_auroc``, ``auroc_over_oracle``, ``oracle_calibration_slope`` (the
        true risk's slope on the same rows: what noise alone gives), ``mean_true_risk``,
        ``mean_abs_risk_error`` and, with ``bootstrap``, the 95% interval of the slope minus the oracle's on
        the same resamples (``slope_minus_oracle_lo`` / ``_hi``). With ``detail=False``, only the AUROC,
        calibration and O/E (for subgroups).
    """
    metrics = {"mean_risk": float(np.mean(risk))}
    if true_risk is not None:
        metrics |= {"mean_abs_risk_error": float(np.mean(np.abs(risk - true_risk))),
                    "mean_true_risk": float(np.mean(true_risk))}
    known = weight > 0
    y, risk_k, weight = y[known], risk[known], weight[known]
    truth = true_risk[known] if true_risk is not None else None
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
    metrics |= {"auprc": auprc, **_loss_metrics(y, risk_k, weight, len(known))}
    if truth is not None:
        metrics |= _oracle_metrics(y, truth, weight, auroc)
    if bootstrap:
        metrics |= _bootstrap_intervals(y, risk_k, weight, truth, ranked, bootstrap, seed)
    return metrics


def _loss_metrics(y: np.ndarray, risk: np.ndarray, weight: np.ndarray, n: int) -> dict[str, float]:
    """Log loss (over the incidence's and weighted), IPCW Brier score over all ``n`` patients, and ICI."""
    return {
        "log_loss_over_null": log_loss_over_null(y, risk, weight),
        "brier": float(np.sum(weight * (y - risk) ** 2) / n),
        "log_loss": weighted_log_loss(y, risk, weight),
        "ici": integrated_calibration_index(y, risk, weight),
    }


def _oracle_metrics(y: np.ndarray, truth: np.ndarray, weight: np.ndarray, auroc: float) -> dict[str, float]:
    """The true risk's own AUROC and calibration slope on the same rows, and the model's AUROC over the oracle's."""
    oracle_auroc = RankedScores(y, truth).auroc_auprc(weight)[0]
    return {"oracle_auroc": oracle_auroc, "oracle_calibration_slope": weighted_calibration(y, truth, weight)[0],
            "auroc_over_oracle": auroc / oracle_auroc}


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Per column of bootstrap draws (B, k), the percentile interval over the finite draws (NaN where none)."""
    draws = np.asarray(draws, dtype=float)
    lo, hi = np.full(draws.shape[1], np.nan), np.full(draws.shape[1], np.nan)
    for k in range(draws.shape[1]):
        finite = draws[np.isfinite(draws[:, k]), k]
        if len(finite):
            lo[k], hi[k] = np.percentile(finite, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return lo, hi


def _bootstrap_intervals(y: np.ndarray, risk: np.ndarray, weight: np.ndarray, truth: np.ndarray | None,
                         ranked: RankedScores, bootstrap: int, seed: int) -> dict[str, float]:
    """Percentile 95% intervals over patient resamples (IPCW weights kept) of the AUROC, AUPRC, calibration
    slope and O/E, and with the truth of the slope minus the oracle's (paired on the same resamples)."""
    rng = np.random.default_rng(seed)
    lp_model = logit(np.clip(risk, _EPS, 1 - _EPS))
    lp_oracle = logit(np.clip(truth, _EPS, 1 - _EPS)) if truth is not None else None
    draws = []
    for _ in range(bootstrap):
        resampled = weight * rng.multinomial(len(y), np.full(len(y), 1.0 / len(y)))
        if 0 < np.sum(resampled * y) < np.sum(resampled):
            slope = calibration_slope_fast(y, lp_model, resampled)
            gap = slope - calibration_slope_fast(y, lp_oracle, resampled) if truth is not None else np.nan
            draws.append((*ranked.auroc_auprc(resampled), slope,
                          np.sum(resampled * y) / np.sum(resampled * risk), gap))
    lo, hi = percentile_interval(np.array(draws))
    intervals = {f"{name}_{end}": float(value[k]) for k, name in
                 enumerate(("auroc", "auprc", "calibration_slope", "observed_over_expected"))
                 for end, value in (("lo", lo), ("hi", hi))}
    if truth is not None:
        intervals |= {"slope_minus_oracle_lo": float(lo[4]), "slope_minus_oracle_hi": float(hi[4])}
    return intervals


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


# --------------------------------------------------------------------------- against the simulator's truth


def _expected_outcomes(risk: np.ndarray, true_risk: np.ndarray):
    """Each patient twice: as an onset with weight ``p`` and as none with weight ``1 - p``.

    Any weighted metric of these rows is that metric's expectation over the outcomes the
    simulator could draw for the same patients (up to each patient's pair with itself, a
    1/n effect): AUROC and calibration without sampling noise and without censoring, at any
    horizon and on any arm.
    """
    n = len(risk)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    weight = np.concatenate([true_risk, 1.0 - true_risk])
    return y, np.concatenate([risk, risk]), np.concatenate([true_risk, true_risk]), weight


def evaluate_against_truth(risk: np.ndarray, true_risk: np.ndarray) -> dict[str, float]:
    """Predicted risks of patients against the simulator's exact risks of the same patients.

    Parameters
    ----------
    risk, true_risk : ndarray of shape (n,)
        Predicted and true probability of onset by one horizon, one arm.

    Returns
    -------
    dict
        ``mean_risk``, ``mean_true_risk``, ``mean_risk_over_true``, ``mean_abs_risk_error``,
        and where the true risk is not zero throughout: the expected time-dependent
        ``auroc``, the oracle's (``oracle_auroc``, the true risk's own), their ratio
        ``auroc_over_oracle`` and the expected ``calibration_slope`` (1 for the true risk).
    """
    risk = np.asarray(risk, dtype=float)
    true_risk = np.asarray(true_risk, dtype=float)
    metrics = {"mean_risk": float(risk.mean()), "mean_true_risk": float(true_risk.mean()),
               "mean_abs_risk_error": float(np.mean(np.abs(risk - true_risk)))}
    if metrics["mean_true_risk"] > 0:
        metrics["mean_risk_over_true"] = metrics["mean_risk"] / metrics["mean_true_risk"]
    if not 0 < true_risk.sum() < len(true_risk) or len(np.unique(risk)) < 2:
        return metrics
    y, risks, truth, weight = _expected_outcomes(risk, true_risk)
    keep = weight > 0
    y, risks, truth, weight = y[keep], risks[keep], truth[keep], weight[keep]
    auroc = RankedScores(y, risks).auroc_auprc(weight)[0]
    oracle = RankedScores(y, truth).auroc_auprc(weight)[0]
    metrics |= {"auroc": auroc, "oracle_auroc": oracle, "auroc_over_oracle": auroc / oracle,
                "calibration_slope": calibration_slope_fast(y, logit(np.clip(risks, _EPS, 1 - _EPS)), weight)}
    return metrics


def evaluate_contrast(predicted: dict[str, np.ndarray], truth: dict[str, np.ndarray], treatment: np.ndarray,
                      own_true_risk: np.ndarray, own_risk: np.ndarray) -> dict[str, float]:
    """The alemtuzumab-minus-interferon contrast at one horizon against the simulator's truth.

    Parameters
    ----------
    predicted, truth : dict of str to ndarray of shape (n,)
        Each patient's predicted and true risk under ``alemtuzumab`` and ``interferon_beta_1a``.
    treatment : ndarray of shape (n,)
        The arm each patient was randomised to.
    own_true_risk, own_risk : ndarray of shape (n,)
        True and predicted risk under the patient's own arm.

    Returns
    -------
    dict
        ``predicted_between_arms`` and ``true_between_arms`` (mean risk of the alemtuzumab arm
        minus that of the interferon arm, as a randomised trial would compare them) and their
        ratio; per patient ``mean_predicted_excess``, ``mean_true_excess``, the correlation
        ``excess_correlation`` and ``excess_mean_abs_error``.
    """
    alemtuzumab = treatment == "alemtuzumab"
    interferon = treatment == "interferon_beta_1a"
    metrics: dict[str, float] = {}
    if alemtuzumab.any() and interferon.any():
        between = float(own_risk[alemtuzumab].mean() - own_risk[interferon].mean())
        true_between = float(own_true_risk[alemtuzumab].mean() - own_true_risk[interferon].mean())
        metrics |= {"predicted_between_arms": between, "true_between_arms": true_between}
        if true_between != 0:
            metrics["between_arms_over_true"] = between / true_between
    excess = predicted["alemtuzumab"] - predicted["interferon_beta_1a"]
    true_excess = truth["alemtuzumab"] - truth["interferon_beta_1a"]
    metrics |= {"mean_predicted_excess": float(excess.mean()), "mean_true_excess": float(true_excess.mean()),
                "excess_mean_abs_error": float(np.mean(np.abs(excess - true_excess)))}
    if np.std(excess) > 0 and np.std(true_excess) > 0:
        metrics["excess_correlation"] = float(np.corrcoef(excess, true_excess)[0, 1])
    return metrics


def population_curve_figure(curves: dict[str, dict[str, np.ndarray]], published: list[tuple], title: str):
    """Mean predicted and true cumulative risk by month, per treatment, beside the published points.

    Parameters
    ----------
    curves : dict of str to dict
        Per treatment: ``months`` (H,), ``predicted`` (H,), ``true`` (H,) and ``extrapolated`` (H,) bool.
    published : list of (treatment, month, risk, label)
        Published figures to mark.
    title : str
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    colours = {"alemtuzumab": "#b2182b", "interferon_beta_1a": "#2166ac"}
    for treatment, c in curves.items():
        colour = colours.get(treatment, "black")
        inside = ~c["extrapolated"]
        last_inside = int(np.flatnonzero(inside).max()) if inside.any() else 0
        axes.plot(c["months"][:last_inside + 1], 100 * c["predicted"][:last_inside + 1], color=colour,
                  label=f"{treatment}: model")
        if (~inside).any():
            axes.plot(c["months"][last_inside:], 100 * c["predicted"][last_inside:], color=colour,
                      linestyle="--", label=f"{treatment}: model, extrapolated")
        axes.plot(c["months"], 100 * c["true"], color=colour, linestyle=":", alpha=0.7,
                  label=f"{treatment}: simulator's truth")
    for treatment, month, risk, label in published:
        axes.plot([month], [100 * risk], marker="o", color=colours.get(treatment, "black"), linestyle="none")
        axes.annotate(label, (month, 100 * risk), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set(xlabel="months after the first course", ylabel="cumulative risk (%)", title=title)
    axes.legend(fontsize=7, loc="upper left")
    return figure
