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


def test_logistic_contributions_match_shap_linear_explainer(training):
    matrix, y, _ = training
    model = LogisticRiskClassifier().fit(matrix, y)
    standardised_train = model._standardised(matrix)
    background = shap.maskers.Independent(standardised_train, max_samples=len(standardised_train))
    explainer = shap.LinearExplainer((model.logistic_.coef_[0], model.logistic_.intercept_[0]), background)
    per_column = explainer.shap_values(standardised_train[:300])
    expected = np.zeros((300, matrix.shape[1]))
    np.add.at(expected.T, model.column_feature_, per_column.T)
    base, contributions = model.explain(matrix[:300])
    np.testing.assert_allclose(contributions, expected, atol=1e-6)
    np.testing.assert_allclose(base, explainer.expected_value, atol=1e-6)
