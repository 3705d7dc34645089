"""The model families, as scikit-learn classifiers that also explain themselves.

Each family exposes :meth:`explain`, returning per-row SHAP values on the
log-odds scale such that ``base + contributions.sum(axis=1) == decision_function(X)``.
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data


def _binary_codes(estimator: BaseEstimator, y: np.ndarray) -> np.ndarray:
    y_type = type_of_target(y, input_name="y", raise_unknown=True)
    if y_type != "binary":
        raise ValueError(
            "Only binary classification is supported. The type of the target "
            f"is {y_type}."
        )
    estimator.classes_, codes = np.unique(y, return_inverse=True)
    if len(estimator.classes_) < 2:
        raise ValueError(f"y: needs two classes to fit, got one class ({estimator.classes_[0]!r})")
    return codes


class _RiskClassifier(ClassifierMixin, BaseEstimator):
    """Shared prediction logic: probabilities from the log-odds decision function."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each class, shape (n_samples, 2)."""
        positive = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X) -> np.ndarray:
        """Most probable class, shape (n_samples,)."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]


class LogisticRiskClassifier(_RiskClassifier):
    """Regularised logistic regression that imputes and explains itself.

    Missing values are imputed inside the model (median, plus a missing-indicator
    column for each feature that had missing values in training); features are
    standardised, so the SHAP value of a feature is ``coef * standardised value``
    summed over its value and indicator columns, and the base value is the intercept.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength.
    max_iter : int
        Solver iterations.
    """

    def __init__(self, *, C: float = 1.0, max_iter: int = 1000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X, y, sample_weight=None) -> LogisticRiskClassifier:
        """Fit on ``X`` of shape (n_samples, n_features), NaN where unknown, and binary ``y``.

        ``sample_weight`` (n_samples,) weights the regression (IPCW at a horizon); imputation
        and scaling use the rows with positive weight.
        """
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan")
        sample_weight = _check_sample_weight(sample_weight, X)
        used = sample_weight > 0
        X, y, sample_weight = X[used], y[used], sample_weight[used]
        codes = _binary_codes(self, y)
        self.imputer_ = SimpleImputer(strategy="median", add_indicator=True,
                                      keep_empty_features=True).fit(X)
        imputed = self.imputer_.transform(X)
        self.scaler_ = StandardScaler().fit(imputed)
        self.logistic_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(
            self.scaler_.transform(imputed), codes, sample_weight=sample_weight)
        self.n_iter_ = self.logistic_.n_iter_
        indicator = self.imputer_.indicator_
        indicated = list(indicator.features_) if indicator is not None else []
        # Which input feature each transformed column belongs to.
        self.column_feature_ = np.array(list(range(X.shape[1])) + indicated, dtype=int)
        return self

    def _standardised(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        return self.scaler_.transform(self.imputer_.transform(X))

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the positive class, shape (n_samples,)."""
        standardised = self._standardised(X)
        return self.logistic_.decision_function(standardised)

    def explain(self, X) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values on the log-odds scale.

        Returns
        -------
        base : ndarray of shape (n_samples,)
        contributions : ndarray of shape (n_samples, n_features)
        """
        standardised = self._standardised(X)
        terms = standardised * self.logistic_.coef_[0]
        contributions = np.zeros((terms.shape[0], self.n_features_in_))
        np.add.at(contributions.T, self.column_feature_, terms.T)
        base = np.full(terms.shape[0], self.logistic_.intercept_[0])
        return base, contributions


class XGBoostRiskClassifier(_RiskClassifier):
    """Gradient-boosted trees (xgboost, ``binary:logistic``); missing values handled natively.

    SHAP values are xgboost's exact TreeSHAP (``pred_contribs``).

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

    def fit(self, X, y, sample_weight=None) -> XGBoostRiskClassifier:
        """Fit on ``X`` of shape (n_samples, n_features), NaN where unknown, and binary ``y``;
        ``sample_weight`` (n_samples,) weights the loss (IPCW at a horizon)."""
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan")
        sample_weight = _check_sample_weight(sample_weight, X)
        used = sample_weight > 0
        X, y, sample_weight = X[used], y[used], sample_weight[used]
        codes = _binary_codes(self, y)
        params = {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
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
        train = xgb.DMatrix(X, label=codes, weight=sample_weight, missing=np.nan)
        self.booster_ = xgb.train(params, train, num_boost_round=self.n_estimators)
        return self

    def _matrix(self, X) -> xgb.DMatrix:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        return xgb.DMatrix(X, missing=np.nan, nthread=self.n_jobs or -1)

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the positive class, shape (n_samples,)."""
        matrix = self._matrix(X)
        return self.booster_.predict(matrix, output_margin=True).astype(float)

    def explain(self, X) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values on the log-odds scale.

        Returns
        -------
        base : ndarray of shape (n_samples,)
        contributions : ndarray of shape (n_samples, n_features)
        """
        matrix = self._matrix(X)
        contributions = self.booster_.predict(matrix, pred_contribs=True).astype(float)
        return contributions[:, -1], contributions[:, :-1]


FAMILIES: dict[str, type[_RiskClassifier]] = {
    "logistic": LogisticRiskClassifier,
    "xgboost": XGBoostRiskClassifier,
}


class PlattCalibrated:
    """A fitted classifier recalibrated on a held-out fold: ``logit p' = a + b * logit p``.

    Affine in log-odds, so SHAP stays exact: ``base' = a + b * base`` and ``shap' = b * shap``.

    Parameters
    ----------
    estimator : classifier
        Fitted, with ``decision_function`` and ``explain``.
    intercept, slope : float
        ``a`` and ``b``.
    """

    def __init__(self, estimator, intercept: float, slope: float) -> None:
        self.estimator = estimator
        self.intercept = intercept
        self.slope = slope

    @classmethod
    def fit(cls, estimator, X, y, sample_weight=None) -> PlattCalibrated:
        """Fit ``a`` and ``b`` by (weighted) logistic regression of ``y`` on the estimator's log-odds."""
        margin = estimator.decision_function(X)[:, None]
        platt = LogisticRegression(C=np.inf, max_iter=1000).fit(margin, y, sample_weight=sample_weight)
        return cls(estimator, float(platt.intercept_[0]), float(platt.coef_[0, 0]))

    def decision_function(self, X) -> np.ndarray:
        return self.intercept + self.slope * self.estimator.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        positive = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - positive, positive])

    def explain(self, X) -> tuple[np.ndarray, np.ndarray]:
        base, contributions = self.estimator.explain(X)
        return self.intercept + self.slope * base, self.slope * contributions
