"""The model families: Cox regressions of the relative hazard that explain themselves.

Each family follows scikit-survival's contract: ``fit(X, y)`` with ``y`` a structured array of
``event`` (bool) and ``time`` (months), ``predict(X)`` the log relative hazard ``f(x)``, and
:meth:`explain` its exact SHAP values, ``base + contributions.sum(axis=1) == predict(X)``.
The risk by a month follows from ``f`` and a baseline cumulative hazard per treatment
(:class:`models.survival.StratifiedCox`).
"""

from __future__ import annotations

import os

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from models.treeshap import TreeShapTables


def check_survival_target(y) -> tuple[np.ndarray, np.ndarray]:
    """``(event, time)`` of a structured survival target; ValueError naming the problem otherwise.

    Parameters
    ----------
    y : structured ndarray of shape (n,)
        Fields ``event`` (bool: the time is an onset) and ``time`` (months, onset or censoring),
        as :func:`sksurv.util.Surv.from_arrays` makes.
    """
    names = getattr(getattr(y, "dtype", None), "names", None) or ()
    if set(names) != {"event", "time"}:
        raise ValueError("y: expected a structured array with fields 'event' and 'time' "
                         "(sksurv.util.Surv.from_arrays(event, time))")
    event = np.asarray(y["event"], dtype=bool)
    time = np.asarray(y["time"], dtype=float)
    if not np.all(np.isfinite(time)) or np.any(time < 0):
        raise ValueError("y: times must be finite and not negative")
    if not event.any():
        raise ValueError("y: needs at least one event to fit a hazard")
    return event, time


class _RelativeHazard(BaseEstimator):
    """Shared tags (NaN means unknown; the target is a survival time) and input checks."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.required = True
        return tags

    def _checked(self, X) -> np.ndarray:
        """``X`` as a float array of the fitted width; NaN allowed, infinity refused.

        A model matrix from :mod:`features.validation` is already that: it is only checked for
        its width and for infinity here, because scikit-learn's full check costs more than the
        trees themselves for a request of one patient.
        """
        check_is_fitted(self)
        if (isinstance(X, np.ndarray) and X.dtype == np.float64 and X.ndim == 2 and len(X)
                and X.shape[1] == self.n_features_in_ and not np.isinf(X).any()):
            return X
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan")


class LinearCoxRegression(_RelativeHazard):
    """Ridge-penalised Cox proportional-hazards regression that imputes and explains itself.

    Missing values are imputed inside the model (median, plus a missing-indicator column for
    each feature that had missing values in training); features are standardised, so the
    SHAP value of a feature is ``coef * standardised value`` summed over its value and
    indicator columns (exact for a linear model), and the base value is 0, the mean of
    ``f`` over the training rows. Fitted by scikit-survival's ``CoxPHSurvivalAnalysis``
    (Breslow's handling of tied times) after scikit-learn's ``SimpleImputer`` and
    ``StandardScaler``, whose fitted values it keeps as arrays (``medians_``, ``indicated_``,
    ``mean_``, ``scale_``, ``coef_``).

    Parameters
    ----------
    alpha : float
        Ridge penalty on the coefficients.
    n_iter : int
        Newton-Raphson iterations at most.
    """

    def __init__(self, *, alpha: float = 1.0, n_iter: int = 100):
        self.alpha = alpha
        self.n_iter = n_iter

    def fit(self, X, y) -> LinearCoxRegression:
        """Fit on ``X`` of shape (n_samples, n_features), NaN where unknown, and a survival target ``y``."""
        from sksurv.linear_model import CoxPHSurvivalAnalysis
        from sksurv.util import Surv

        X = validate_data(self, X, ensure_all_finite="allow-nan")
        event, time = check_survival_target(y)
        imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True).fit(X)
        imputed = imputer.transform(X)
        scaler = StandardScaler().fit(imputed)
        cox = CoxPHSurvivalAnalysis(alpha=self.alpha, ties="breslow", n_iter=self.n_iter).fit(
            scaler.transform(imputed), Surv.from_arrays(event, time))
        # The fitted transforms kept as plain arrays: predictions apply them with numpy (the same
        # arithmetic as scikit-learn's transforms, without their per-call checks), and a model
        # version stores them as numbers, not as pickled objects.
        indicator = imputer.indicator_
        self.indicated_ = np.array(indicator.features_ if indicator is not None else [], dtype=int)
        self.medians_ = imputer.statistics_.astype(float)
        self.mean_ = scaler.mean_.astype(float)
        self.scale_ = scaler.scale_.astype(float)
        self.coef_ = np.asarray(cox.coef_, dtype=float)
        return self

    @property
    def column_feature_(self) -> np.ndarray:
        """Which input feature each standardised column (values, then indicators) belongs to."""
        return np.concatenate([np.arange(self.n_features_in_), self.indicated_]).astype(int)

    def _standardised(self, X) -> np.ndarray:
        """Median-imputed values with the missing indicators, standardised."""
        X = self._checked(X)
        missing = np.isnan(X)
        columns = np.hstack([np.where(missing, self.medians_, X), missing[:, self.indicated_].astype(float)])
        return (columns - self.mean_) / self.scale_

    def predict(self, X) -> np.ndarray:
        """Log relative hazard ``f(x)``, shape (n_samples,)."""
        return self._standardised(X) @ self.coef_

    def explain(self, X) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values of :meth:`predict`.

        Returns
        -------
        base : ndarray of shape (n_samples,)
        contributions : ndarray of shape (n_samples, n_features)
        """
        terms = self._standardised(X) * self.coef_
        contributions = np.zeros((terms.shape[0], self.n_features_in_))
        np.add.at(contributions.T, self.column_feature_, terms.T)
        return np.zeros(terms.shape[0]), contributions


class XGBoostCoxRegression(_RelativeHazard):
    """Gradient-boosted trees of the log relative hazard (xgboost, ``survival:cox``).

    Missing values are handled natively. The log relative hazard and its exact
    (path-dependent) TreeSHAP values come from tables built once, when the model is fitted
    (:class:`models.treeshap.TreeShapTables`): a row's explanation costs what its prediction
    costs, and the two agree exactly (``base + sum(shap) == predict`` in float64). Trees too
    deep for the tables are explained by xgboost's ``pred_contribs`` instead.

    Parameters
    ----------
    n_estimators : int
        Boosting rounds.
    max_depth : int
        Maximum tree depth.
    learning_rate : float
        Shrinkage per round.
    min_child_weight : float
        Minimum hessian sum in a leaf.
    subsample : float
        Row subsampling per tree.
    reg_lambda : float
        L2 regularisation of leaf weights.
    n_jobs : int, optional
        Threads; all cores when None.
    random_state : int
        Seed of the subsampling.
    device : str
        ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, *, n_estimators: int = 300, max_depth: int = 3, learning_rate: float = 0.05,
                 min_child_weight: float = 1.0, subsample: float = 1.0, reg_lambda: float = 1.0,
                 n_jobs: int | None = None, random_state: int = 0, device: str = "cpu"):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.device = device

    def fit(self, X, y) -> XGBoostCoxRegression:
        """Fit on ``X`` of shape (n_samples, n_features), NaN where unknown, and a survival target ``y``."""
        X = validate_data(self, X, ensure_all_finite="allow-nan")
        event, time = check_survival_target(y)
        params = {
            "objective": "survival:cox",
            "eval_metric": "cox-nloglik",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "lambda": self.reg_lambda,
            "seed": self.random_state,
            "device": self.device,
            "tree_method": "hist",
        }
        if self.n_jobs is not None:
            params["nthread"] = self.n_jobs
        # xgboost's Cox label: the time, negative where it is a censoring time. A censoring at
        # month 0 would read as an onset, so it is moved to the smallest positive float.
        label = np.where(event, time, -np.maximum(time, np.finfo(float).tiny))
        train = xgb.DMatrix(X, label=label, missing=np.nan)
        self.booster_ = xgb.train(params, train, num_boost_round=self.n_estimators)
        self.shap_tables_ = TreeShapTables.from_booster(self.booster_, X.shape[1])
        return self

    def _threads(self) -> int:
        return self.n_jobs or os.cpu_count() or 1

    def predict(self, X) -> np.ndarray:
        """Log relative hazard ``f(x)`` (the trees' margin), shape (n_samples,)."""
        X = self._checked(X)
        return self.shap_tables_.margin(X, n_threads=self._threads())

    def explain(self, X) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values of :meth:`predict`.

        Returns
        -------
        base : ndarray of shape (n_samples,)
        contributions : ndarray of shape (n_samples, n_features)
        """
        X = self._checked(X)
        contributions = self.shap_tables_.contributions(X, n_threads=self._threads())
        return contributions[:, -1], contributions[:, :-1]


FAMILIES: dict[str, type[_RelativeHazard]] = {
    "cox-linear": LinearCoxRegression,
    "cox-xgboost": XGBoostCoxRegression,
}
