"""Contract tests, parametrised over every model family."""

import numpy as np
import pytest
import shap
from sklearn.utils.estimator_checks import parametrize_with_checks

from features.schema import FEATURE_NAMES
from features.validation import FEATURE_INDEX, encode
from models.estimators import FAMILIES, LogisticRiskClassifier, XGBoostRiskClassifier
from pipelines.train import make_estimator


@parametrize_with_checks([LogisticRiskClassifier(), XGBoostRiskClassifier(n_estimators=10)])
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def training(make_cohort):
    cohort = make_cohort("care-ms1", 6000, 3)
    return encode(cohort), cohort["thyroid_event"].to_numpy(), cohort


FAMILY_PARAMS = {
    "logistic": {"C": 1.0},
    "xgboost": {"n_estimators": 40, "max_depth": 3, "n_jobs": 2},
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def fitted(request, training):
    matrix, y, _ = training
    return make_estimator(request.param, FAMILY_PARAMS[request.param]).fit(matrix, y)


def test_risk_is_a_probability(fitted, training):
    risk = fitted.predict_proba(training[0])[:, 1]
    assert np.all((risk >= 0) & (risk <= 1))


def test_shap_identity_on_log_odds(fitted, training):
    matrix = training[0]
    assert np.isnan(matrix).any()  # the identity must hold with unknown values too
    base, contributions = fitted.explain(matrix)
    assert contributions.shape == (len(matrix), len(FEATURE_NAMES))
    risk = fitted.predict_proba(matrix)[:, 1]
    logit = np.log(risk / (1 - risk))
    np.testing.assert_allclose(base + contributions.sum(axis=1), logit, atol=1e-4)


def test_explaining_does_not_modify_input(fitted, training):
    matrix = training[0]
    before = matrix.copy()
    fitted.explain(matrix)
    fitted.predict_proba(matrix)
    np.testing.assert_array_equal(matrix, before)


def test_unknown_optional_features_are_scored(fitted, training):
    matrix = training[0][:50].copy()
    optional = [FEATURE_INDEX[n] for n in ("edss", "il21_pg_ml", "smoker", "thyroid_antibodies")]
    matrix[:, optional] = np.nan
    risk = fitted.predict_proba(matrix)[:, 1]
    assert np.isfinite(risk).all()


def test_xgboost_contributions_match_shap_tree_explainer(training):
    matrix, y, _ = training
    model = XGBoostRiskClassifier(n_estimators=40, n_jobs=2).fit(matrix, y)
    base, contributions = model.explain(matrix[:300])
    explanation = shap.TreeExplainer(model.booster_)(matrix[:300])
    np.testing.assert_allclose(contributions, explanation.values, atol=1e-4)
    np.testing.assert_allclose(base, explanation.base_values, atol=1e-4)


def test_logistic_contributions_are_exact_shapley_values(training):
    """Checked against shap's model-agnostic Exact explainer on the decision function as a black box."""
    matrix, y, _ = training
    model = LogisticRiskClassifier().fit(matrix, y)
    background, rows = matrix[:100], matrix[100:110]
    assert np.isnan(rows).any() and np.isnan(background).any()  # imputation and indicators are exercised
    explainer = shap.explainers.Exact(model.decision_function,
                                      shap.maskers.Independent(background, max_samples=len(background)))
    exact = explainer(rows)
    _, ours = model.explain(rows)
    _, on_background = model.explain(background)
    # Shapley values against a background are ours minus the background's mean contribution.
    np.testing.assert_allclose(exact.values, ours - on_background.mean(axis=0), atol=1e-6)
