"""A 95% interval on every risk: the spread of bootstrap refits of the whole fitting procedure.

Prediction instability, as Riley and Collins describe it for clinical prediction models (Riley &
Collins, Biometrical Journal 2023): the model is fitted again on ``B`` bootstrap resamples of its
training data (every step: imputation, scaling, the relative hazard, each treatment's Breslow
baseline; the hyperparameters as chosen, tuning not repeated), and a patient's risk from each refit
shows how much the answer depends on which patients happened to be in the data. The interval is
normal on the log cumulative hazard scale, where the model is additive:

    log H(t | x) ± 1.96 · sd_b[log H_b(t | x) - log H(t | x)],   risk = 1 - exp(-H),

so it always contains the risk itself and never leaves (0, 1). It is the model's sampling
uncertainty only: a bias that every refit shares (a model form the truth does not have) is not in
it, which is why its coverage of the simulator's true risk is measured, not assumed.

What a scored patient costs is kept to a fraction of the explanation itself:

- **Linear family, closed form.** Every refit is affine in one design of the patient
  (:func:`affine_design`: each value where known, each missing indicator, a constant), so the
  refits' variance of a patient's log hazard is a quadratic form in that design
  (:class:`LinearSpread`): exact, at the cost of a few linear predictions. The refits themselves are cheap too: Newton's method on the
  same penalised partial likelihood as scikit-survival's, vectorised, started from the fitted
  coefficients (:func:`models.cox_newton.cox_newton`).
- **Tree family, learned spread.** ``B`` boosters cost ``B`` passes over every tree, several times
  the explanation. The refits' spread is measured instead on the training patients at months
  :data:`MONTH_GRID` and a small booster learns its logarithm from the patient's inputs and the
  month (:class:`LearnedSpread`): one small pass per horizon. How closely it follows the refits'
  own spread on patients it never saw is measured with the coverage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from models.cox_newton import cox_newton
from models.estimators import LinearCoxRegression
from models.survival import StratifiedCox, breslow_baselines, survival_target, treatment_index
from models.treeshap import TreeShapTables

LEVEL = 0.95
Z = float(norm.ppf(0.5 + LEVEL / 2))
# Beyond a treatment's follow-up the risk rests on the stated extrapolation rule, which the data cannot check:
# the part of the cumulative hazard it adds is taken to be within a factor of two of the rule's value, 95% of
# the time, and that uncertainty is added to the interval (on the log cumulative hazard scale, times the
# share of the cumulative hazard that is extrapolated).
EXTRAPOLATION_LOG_SD = float(np.log(2.0) / Z)
# The bound of a risk no training onset shows: the rule of three (Hanley & Lippman-Hand 1983), 3/n over the
# treatment's training patients, by the end of its follow-up; beyond it, growing in proportion to the month.
RULE_OF_THREE = 3.0
# Months at which the tree family's spread is measured and learned (it is smooth in time).
MONTH_GRID = (1, 3, 6, 12, 18, 24, 30, 36, 42, 48, 60, 72)
# The learned spread's booster: small, because it runs for every patient and horizon (40 trees of depth 3
# follow the refits' spread with a correlation of about 0.85 on unseen patients, 150 of depth 4 with 0.89
# at three times the cost), and smoothed, because each target is itself an estimate from B refits.
SPREAD_PARAMS = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.25, "min_child_weight": 50.0,
                 "subsample": 0.8, "lambda": 5.0, "seed": 0, "tree_method": "hist"}
SPREAD_ROUNDS = 40
REFERENCE_ROWS = 20_000


def risk_from_log_hazard(log_hazard: np.ndarray) -> np.ndarray:
    """``1 - exp(-exp(log H))``, elementwise (1 where ``H`` overflows: an interval's top end can)."""
    with np.errstate(over="ignore"):
        return -np.expm1(-np.exp(log_hazard))


def quantile(refits: int | None) -> float:
    """The 97.5% quantile for an interval from ``refits`` bootstrap refits: Student's t with ``refits - 1``
    degrees of freedom (2.09 for 20), the normal's where the spread is known exactly (``None``)."""
    return Z if refits is None else float(student_t.ppf(0.5 + LEVEL / 2, max(int(refits) - 1, 1)))


def refit_log_sd(spread, X: np.ndarray, horizons) -> np.ndarray:
    """The refits' part of a spread's SD as it enters the whole, shape (n, H): the innermost spread, the one
    learned from the refits, times the slope of each recalibration wrapped around it."""
    scale = 1.0
    while hasattr(spread, "inner"):
        scale *= getattr(spread, "slope", 1.0)
        spread = spread.inner
    return scale * spread.log_sd(X, horizons)


def interval_variance(spread, X: np.ndarray, horizons) -> np.ndarray:
    """The variance on the log cumulative hazard scale that the normal's quantile turns into the interval.

    Only the refits' part is estimated from a few draws, so only it takes Student's t for their number:
    it enters as ``(t / z)²`` times its variance. The other parts (a recalibration's local variance, the
    model's own error) are estimated from all the held-out or local patients and enter as they are.
    """
    refit = refit_log_sd(spread, X, horizons)
    return spread.log_sd(X, horizons) ** 2 + ((quantile(spread.refits) / Z) ** 2 - 1.0) * refit ** 2


def interval(log_hazard: np.ndarray, log_sd: np.ndarray, refits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper risk of the 95% interval, from ``log H`` and its bootstrap SD over ``refits`` refits."""
    q = quantile(refits)
    return risk_from_log_hazard(log_hazard - q * log_sd), risk_from_log_hazard(log_hazard + q * log_sd)


# --------------------------------------------------------------------------- the linear family, in closed form


def affine_design(X: np.ndarray) -> np.ndarray:
    """``[x_j where known else 0 ..., 1 where x_j is missing else 0 ..., 1]``, shape (n, 2p + 1).

    Median imputation, missing indicators and standardisation are affine in this design, so every
    fitted :class:`models.estimators.LinearCoxRegression` is ``affine_design(X) @ θ``
    (:func:`affine_coefficients`), whatever medians and scales its training data gave.
    """
    missing = np.isnan(X)
    return np.hstack([np.where(missing, 0.0, X), missing.astype(float), np.ones((len(X), 1))])


def affine_coefficients(estimator: LinearCoxRegression) -> np.ndarray:
    """``θ`` of shape (2p + 1,) with ``affine_design(X) @ θ == estimator.predict(X)``.

    ``f(x) = Σ_c coef_c (column_c - mean_c) / scale_c`` over the value columns (``x_j``, or the
    median where missing) and the indicator columns of the features that had missing values.
    """
    p = estimator.n_features_in_
    weight = estimator.coef_ / estimator.scale_
    values, indicators = weight[:p], weight[p:]
    theta = np.zeros(2 * p + 1)
    theta[:p] = values
    theta[p:2 * p] = values * estimator.medians_
    theta[p + estimator.indicated_] += indicators
    theta[-1] = -np.sum(weight * estimator.mean_)
    return theta


def refit_linear(fitted: LinearCoxRegression, X: np.ndarray, event: np.ndarray, time: np.ndarray
                 ) -> LinearCoxRegression:
    """``fitted``'s whole procedure on new data (imputation, indicators, scaling, the penalised Cox
    fit), by :func:`cox_newton` started from its coefficients: the model
    ``LinearCoxRegression(alpha).fit(X, y)`` gives (a test checks it), faster."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True).fit(X)
    imputed = imputer.transform(X)
    scaler = StandardScaler().fit(imputed)
    indicator = imputer.indicator_
    indicated = np.array(indicator.features_ if indicator is not None else [], dtype=int)
    same_columns = np.array_equal(indicated, fitted.indicated_)
    coef = cox_newton(scaler.transform(imputed), event, time, fitted.alpha, fitted.coef_ if same_columns else None)
    refit = LinearCoxRegression(alpha=fitted.alpha, n_iter=fitted.n_iter)
    refit.n_features_in_ = X.shape[1]
    refit.indicated_, refit.medians_ = indicated, imputer.statistics_.astype(float)
    refit.mean_, refit.scale_, refit.coef_ = scaler.mean_.astype(float), scaler.scale_.astype(float), coef
    return refit


# --------------------------------------------------------------------------- the refits


@dataclass
class BootstrapRefits:
    """One outcome's model and its refits on bootstrap resamples of the training data.

    Attributes
    ----------
    original : StratifiedCox
        The fitted model.
    refits : list of StratifiedCox
        The same procedure on each resample.
    """

    original: StratifiedCox
    refits: list[StratifiedCox] = field(default_factory=list)

    def log_hazard_deviations(self, X: np.ndarray, horizons) -> np.ndarray:
        """``log H_b(t | x) - log H(t | x)`` for every refit, patient and horizon, shape (B, n, H).

        ``X`` is a bounded model matrix; each refit uses its own baseline for the patient's treatment.
        """
        strata = treatment_index(X)
        own = self.original.log_cumulative_hazard(self.original.log_relative_hazard(X), strata, horizons)
        return np.stack([refit.log_cumulative_hazard(refit.log_relative_hazard(X), strata, horizons) - own
                         for refit in self.refits])


def bootstrap_refits(original: StratifiedCox, X: np.ndarray, event: np.ndarray, time: np.ndarray, *,
                     refits: int, seed: int) -> BootstrapRefits:
    """Refit ``original``'s whole procedure on ``refits`` bootstrap resamples of its training rows.

    Parameters
    ----------
    original : StratifiedCox
        Fitted on ``X``, ``event``, ``time``.
    X : ndarray of shape (n, n_features)
        Its training model matrix.
    event, time : ndarray of shape (n,)
    refits : int
        Resamples ``B``.
    seed : int

    Returns
    -------
    BootstrapRefits
    """
    from sklearn.base import clone

    rng = np.random.default_rng(seed)
    fitted = []
    for _ in range(refits):
        rows = rng.integers(0, len(X), len(X))
        Xb, eb, tb = X[rows], event[rows], time[rows]
        if isinstance(original, StratifiedCox) and isinstance(original.estimator_, LinearCoxRegression):
            refit = StratifiedCox(estimator=original.estimator)
            refit.estimator_ = refit_linear(original.estimator_, Xb, eb, tb)
            refit.baseline_ = breslow_baselines(refit.estimator_.predict(Xb), eb.astype(bool), tb,
                                                treatment_index(Xb))
        else:  # the whole procedure again: any family
            refit = clone(original).fit(Xb, survival_target(eb, tb))
        fitted.append(refit)
    return BootstrapRefits(original, fitted)


# --------------------------------------------------------------------------- what a scored patient costs


class LinearSpread:
    """The linear family's refits in closed form: the bootstrap variance of ``log H(t | x)`` as a quadratic form.

    Refit ``b`` gives ``log H_b(t | x) - log H(t | x) = d(x)·θ_b + a_b(s, t)`` with ``d``
    :func:`affine_design`, ``θ_b`` its coefficients minus the model's and ``a_b(s, t)`` its log
    baseline minus the model's. Over the refits, with both centred on their mean,

        var(x, t) = d(x)ᵀ C d(x) + 2 d(x)·c(s, t) + v(s, t),

    ``C`` the covariance of ``θ_b`` (q × q), ``c(s, t)`` its covariance with ``a_b(s, t)`` and
    ``v(s, t)`` the variance of ``a_b(s, t)``: the refits' own spread (``ddof=1``), exactly, at the cost
    of ``q²`` products per patient whatever the number of refits.

    Parameters
    ----------
    theta : ndarray of shape (B, q)
        Each refit's :func:`affine_coefficients` minus the model's.
    log_baseline : ndarray of shape (B, n_treatments, 73)
        Each refit's ``log H0`` minus the model's, per treatment and month 0–72.
    """

    kind = "linear"

    def __init__(self, theta: np.ndarray, log_baseline: np.ndarray) -> None:
        self.theta = np.asarray(theta, dtype=float)
        self.log_baseline = np.asarray(log_baseline, dtype=float)
        refits = len(self.theta)
        theta_c = self.theta - self.theta.mean(axis=0)
        baseline_c = self.log_baseline - self.log_baseline.mean(axis=0)
        self._covariance = theta_c.T @ theta_c / (refits - 1)  # (q, q)
        self._cross = np.einsum("bq,bst->stq", theta_c, baseline_c) / (refits - 1)  # (S, 73, q)
        self._baseline_variance = (baseline_c ** 2).sum(axis=0) / (refits - 1)  # (S, 73)

    @property
    def refits(self) -> int:
        return len(self.theta)

    @classmethod
    def from_refits(cls, refits: BootstrapRefits) -> LinearSpread:
        theta0 = affine_coefficients(refits.original.estimator_)

        def log_after_month_0(cumulative: np.ndarray) -> np.ndarray:
            # Every baseline is 0 at month 0 (no risk is asked for there): its deviation is set to 0.
            return np.concatenate([np.zeros((len(cumulative), 1)), np.log(cumulative[:, 1:])], axis=1)

        log0 = log_after_month_0(refits.original.baseline_.cumulative)
        return cls(np.stack([affine_coefficients(r.estimator_) - theta0 for r in refits.refits]),
                   np.stack([log_after_month_0(r.baseline_.cumulative) - log0 for r in refits.refits]))

    def log_sd(self, X: np.ndarray, horizons) -> np.ndarray:
        """Bootstrap SD of ``log H(t | x)`` per patient and horizon, shape (n, H), for a bounded matrix."""
        design = affine_design(X)
        strata = treatment_index(X)
        months = np.asarray(horizons, dtype=int)
        variance = np.einsum("nq,nq->n", design @ self._covariance, design)[:, None]
        cross = self._cross[:, months]  # (S, H, q)
        variance = variance + 2 * np.einsum("nq,nhq->nh", design, cross[strata]) + self._baseline_variance[:, months][strata]
        return np.sqrt(np.maximum(variance, 0.0))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able description, arrays) to store beside the model."""
        return {"kind": self.kind, "refits": self.refits}, {"theta": self.theta, "log_baseline": self.log_baseline}


def spread_inputs(X: np.ndarray, months: np.ndarray) -> np.ndarray:
    """The learned spread's input rows: every patient at every month, ``[x..., month]``, shape (n * H, p + 1)."""
    months = np.asarray(months, dtype=np.float32)
    rows = np.empty((len(X), len(months), X.shape[1] + 1), dtype=np.float32)
    rows[:, :, :-1] = X[:, None, :]
    rows[:, :, -1] = months[None, :]
    return rows.reshape(-1, X.shape[1] + 1)


class LearnedSpread:
    """The tree family's refits' spread, learned: ``log sd`` of ``log H(t | x)`` from ``x`` and ``t``.

    Parameters
    ----------
    booster : xgboost.Booster
        Regression of the log bootstrap SD on :func:`spread_inputs`.
    refits : int
        Refits behind it.
    """

    kind = "learned"

    def __init__(self, booster, refits: int) -> None:
        self.booster = booster
        self.refits = int(refits)
        self.n_threads = os.cpu_count() or 1  # as the relative hazard's; RiskModel.use_threads sets it
        # The small booster read through tables, as the relative hazard is: xgboost's own call
        # costs a fixed few hundred microseconds, more than a one-patient request's whole model.
        self.tables_ = TreeShapTables.from_booster(booster, booster.num_features())

    @classmethod
    def from_refits(cls, refits: BootstrapRefits, X: np.ndarray, months=MONTH_GRID, *,
                    seed: int = 0) -> LearnedSpread:
        """Measure the refits' spread on the patients of ``X`` (a bounded matrix) at ``months`` and learn it."""
        import xgboost as xgb

        rows = np.random.default_rng(seed).permutation(len(X))[:REFERENCE_ROWS]
        X = X[rows]
        sd = refits.log_hazard_deviations(X, months).std(axis=0, ddof=1)  # (n, H)
        target = np.log(np.maximum(sd, 1e-6)).reshape(-1)
        train = xgb.DMatrix(spread_inputs(X, np.asarray(months)), label=target, missing=np.nan)
        booster = xgb.train(SPREAD_PARAMS | {"seed": seed}, train, num_boost_round=SPREAD_ROUNDS)
        return cls(booster, len(refits.refits))

    def log_sd(self, X: np.ndarray, horizons) -> np.ndarray:
        """Learned bootstrap SD of ``log H(t | x)``, shape (n, H), for a bounded matrix."""
        if len(X) == 0:
            return np.empty((0, len(horizons)))
        months = np.asarray(horizons, dtype=float)
        predicted = self.tables_.margin(spread_inputs(X, months), n_threads=self.n_threads)
        return np.exp(predicted).reshape(len(X), len(months))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"kind": self.kind, "refits": self.refits}, {}


Spread = LinearSpread | LearnedSpread


def served_spread(refits: BootstrapRefits, X: np.ndarray, *, seed: int = 0) -> Spread:
    """What scoring uses: the closed form for the linear family, the learned spread for trees."""
    if isinstance(refits.original.estimator_, LinearCoxRegression):
        return LinearSpread.from_refits(refits)
    return LearnedSpread.from_refits(refits, X, seed=seed)


def save_spread(spread: Spread, folder: Path, outcome: str) -> dict:
    """Write ``spread``'s files for ``outcome`` into ``folder``; return its manifest entry."""
    description, arrays = spread.state()
    if arrays:
        np.savez(folder / f"{outcome}.intervals.npz", **arrays)
    if isinstance(spread, LearnedSpread):
        spread.booster.save_model(folder / f"{outcome}.intervals.ubj")
    return description


def load_spread(entry: dict, folder: Path, outcome: str) -> Spread:
    """Read what :func:`save_spread` wrote."""
    if entry["kind"] == LinearSpread.kind:
        with np.load(folder / f"{outcome}.intervals.npz") as arrays:
            return LinearSpread(arrays["theta"], arrays["log_baseline"])
    if entry["kind"] == LearnedSpread.kind:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(folder / f"{outcome}.intervals.ubj")
        return LearnedSpread(booster, entry["refits"])
    raise ValueError(f"intervals of outcome {outcome}: unknown kind {entry['kind']!r}")



# --------------------------------------------------------------------------- how every front door names it

INTERVAL_NAME = f"{LEVEL:.0%} bootstrap interval"


def describe_spread(spread: Spread | None) -> dict | None:
    """The served interval in words, for ``GET /model`` and what derives from it (FHIR, CDS Hooks, the page).

    Returns
    -------
    dict or None
        ``name``, ``level``, ``refits`` and ``method`` (a sentence); None without refits.
    """
    if spread is None:
        return None
    kinds, inner = [], spread
    while hasattr(inner, "inner"):  # a recalibration's, the model error's: wrapped around the refits' own
        kinds.append(inner.kind)
        inner = inner.inner
    how = ("their variance in closed form" if isinstance(inner, LinearSpread)
           else "their spread learned by a small booster")
    local = " and of the recalibration on local patients" if "recalibrated" in kinds else ""
    error = (", with the model's own error measured on the held-out split's observed outcomes"
             if "with-model-error" in kinds else "")
    return {"name": INTERVAL_NAME, "level": LEVEL, "refits": spread.refits,
            "method": f"± {Z:.2f} SDs of the log cumulative hazard: its SD over bootstrap refits of the whole "
                      f"fitting procedure taken at Student's t for {spread.refits} refits "
                      f"({quantile(spread.refits):.2f}){local} (prediction instability; {how}){error}, widened "
                      "where a horizon is extrapolated and for inputs not provided; from 0 to the "
                      "rule of three's bound for a treatment without training onsets"}
