"""The one scoring function behind every front door (batch files, REST, the MLflow pyfunc)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import FEATURE_NAMES, ID_COLUMN, shap_column
from features.validation import ValidatedBatch


@dataclass(frozen=True)
class OutcomeScores:
    """Risk and SHAP explanation of one outcome for a batch of patients.

    Attributes
    ----------
    risk : ndarray of shape (n,)
        Probability of the outcome within the training cohorts' follow-up.
    base : ndarray of shape (n,)
        SHAP base value, log-odds.
    shap : ndarray of shape (n, n_features)
        SHAP value of each feature, log-odds; ``base + shap.sum(1) == logit(risk)``.
    """

    risk: np.ndarray
    base: np.ndarray
    shap: np.ndarray


class RiskModel:
    """One fitted classifier per outcome, all of the same family.

    Parameters
    ----------
    family : str
        Model family name (``logistic``, ``xgboost``).
    estimators : dict of str to classifier
        Fitted classifier per outcome, each with ``predict_proba`` and ``explain``.
    """

    def __init__(self, *, family: str, estimators: dict) -> None:
        self.family = family
        self.estimators = estimators

    @property
    def outcomes(self) -> tuple[str, ...]:
        return tuple(self.estimators)

    def use_threads(self, n_threads: int) -> RiskModel:
        """Let each model call use ``n_threads`` CPU threads (default: all cores).

        A server that runs one worker process per core gains nothing from threads inside a
        call and loses much to them: for a request of one patient, starting and joining
        threads costs more than the trees. Returns ``self``.
        """
        for estimator in self.estimators.values():
            inner = getattr(estimator, "estimator", estimator)  # PlattCalibrated wraps the model
            if hasattr(inner, "booster_"):
                inner.n_jobs = n_threads
                inner.booster_.set_param({"nthread": n_threads})
        return self

    def risks(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """Risk per endpoint, shape (n,) each, without SHAP values (for evaluation)."""
        return {endpoint: estimator.predict_proba(matrix)[:, 1] if len(matrix) else np.empty(0)
                for endpoint, estimator in self.estimators.items()}

    def explain(self, matrix: np.ndarray) -> dict[str, OutcomeScores]:
        """Risk and SHAP values per outcome for a model matrix of shape (n, n_features)."""
        scores = {}
        for outcome, estimator in self.estimators.items():
            if len(matrix) == 0:
                empty = np.empty(0)
                scores[outcome] = OutcomeScores(empty, empty, np.empty((0, len(FEATURE_NAMES))))
                continue
            base, shap = estimator.explain(matrix)
            # The risk is read off the explanation (one model pass, not two): the SHAP identity
            # then holds by construction, and it equals predict_proba to float32 rounding.
            risk = 1.0 / (1.0 + np.exp(-(base + shap.sum(axis=1))))
            scores[outcome] = OutcomeScores(risk=risk, base=base, shap=shap)
        return scores


def score_batch(model: RiskModel, batch: ValidatedBatch) -> pd.DataFrame:
    """Score the accepted records of a validated batch.

    Returns
    -------
    DataFrame of shape (n_accepted, ...)
        ``patient_id``, then per outcome ``risk_<outcome>``, ``base_<outcome>`` and
        ``shap_<outcome>__<feature>``, then ``warnings`` ("; "-joined, "" when none).
    """
    columns: dict[str, np.ndarray] = {ID_COLUMN: batch.patient_ids}
    for outcome, scores in model.explain(batch.matrix).items():
        columns[f"risk_{outcome}"] = scores.risk
        columns[f"base_{outcome}"] = scores.base
        for j, feature in enumerate(FEATURE_NAMES):
            columns[shap_column(outcome, feature)] = scores.shap[:, j]
    columns["warnings"] = batch.warnings
    return pd.DataFrame(columns)
