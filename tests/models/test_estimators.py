"""Contract tests, parametrised over every model family."""

import numpy as np
import pytest
import shap
from sklearn.utils.estimator_checks import parametrize_with_checks

from features.schema import FEATURE_NAMES
from features.validation import FEATURE_INDEX, encode
from models.estimators import FAMILIES, LogisticRiskClassifier, XGBoostRiskClassifier


# Weights of 2 are not the same as repeating a row for these two, by design: the median imputation
# and scaling use the rows with positive weight unweighted, and xgboost's histogram bins are
# built from the distinct rows. IPCW only needs weights to scale each row's loss, which they do.
WEIGHT_NOT_REPETITION = {
    "check_sample_weight_equivalence_on_dense_data":
        "weights scale the loss; imputation/binning are not weight-aware",
}


@parametrize_with_checks([LogisticRiskClassifier(), XGBoostRiskClassifier(n_estimators=10)],
                         expected_failed_checks=lambda estimator: WEIGHT_NOT_REPETITION)
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
    return FAMILIES[request.param](**FAMILY_PARAMS[request.param]).fit(matrix, y)


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


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_zero_weight_is_the_same_as_leaving_the_row_out(family, training):
    matrix, y, _ = training
    weight = np.ones(len(y))
    weight[::3] = 0
    kept = weight > 0
    params = FAMILY_PARAMS[family]
    weighted = FAMILIES[family](**params).fit(matrix, y, sample_weight=weight)
    subset = FAMILIES[family](**params).fit(matrix[kept], y[kept])
    np.testing.assert_allclose(weighted.predict_proba(matrix[:200]), subset.predict_proba(matrix[:200]), atol=1e-10)
