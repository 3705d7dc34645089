"""Contract and explanation tests of the relative-hazard estimators, parametrised over every one (the
mixture-cure family's estimator is tested in test_cure.py)."""

import numpy as np
import pytest
import shap
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_set_params,
)

from features.schema import MODEL_COLUMNS
from features.validation import COLUMN_INDEX, encode
from models.estimators import LinearCoxRegression, XGBoostCoxRegression
from models.families import CURE_ESTIMATORS
from models.families import FAMILIES as EVERY_FAMILY
from models.survival import survival_target

FAMILIES = {name: kind for name, kind in EVERY_FAMILY.items() if not issubclass(kind, CURE_ESTIMATORS)}

FAMILY_PARAMS = {
    "cox-linear": {"alpha": 1.0},
    "cox-xgboost": {"n_estimators": 40, "max_depth": 3, "n_jobs": 2},
}


@pytest.fixture(scope="module")
def training(make_cohort):
    cohort = make_cohort("care-ms1", 6000, 3)
    return encode(cohort), survival_target(cohort["thyroid_event"] == 1, cohort["thyroid_time_months"]), cohort


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def fitted(request, training):
    matrix, y, _ = training
    return FAMILIES[request.param](**FAMILY_PARAMS[request.param]).fit(matrix, y)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scikit_learn_contract(family, training):
    estimator = FAMILIES[family](**FAMILY_PARAMS[family])
    check_no_attributes_set_in_init(family, estimator)
    check_get_params_invariance(family, estimator)
    check_set_params(family, estimator)
    with pytest.raises(NotFittedError):
        estimator.predict(training[0][:5])
    matrix, y, _ = training
    assert estimator.fit(matrix[:2000], y[:2000]) is estimator
    assert clone(estimator).get_params() == estimator.get_params()
    assert estimator.n_features_in_ == len(MODEL_COLUMNS)
    with pytest.raises(ValueError, match="features"):
        estimator.predict(matrix[:5, :-1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_target_that_is_not_a_survival_time_is_refused(family, training):
    matrix = training[0][:100]
    with pytest.raises(ValueError, match="structured array"):
        FAMILIES[family]().fit(matrix, np.ones(100))
    with pytest.raises(ValueError, match="at least one event"):
        FAMILIES[family]().fit(matrix, survival_target(np.zeros(100, dtype=bool), np.ones(100)))


def test_shap_identity_on_the_log_relative_hazard(fitted, training):
    matrix = training[0]
    assert np.isnan(matrix).any()  # the identity must hold with unknown values too
    base, contributions = fitted.explain(matrix)
    assert contributions.shape == (len(matrix), len(MODEL_COLUMNS))
    np.testing.assert_allclose(base + contributions.sum(axis=1), fitted.predict(matrix), atol=1e-5)


def test_explaining_does_not_modify_input(fitted, training):
    matrix = training[0]
    before = matrix.copy()
    fitted.explain(matrix)
    fitted.predict(matrix)
    np.testing.assert_array_equal(matrix, before)


def test_unknown_optional_features_are_scored(fitted, training):
    matrix = training[0][:50].copy()
    optional = [COLUMN_INDEX[n] for n in ("edss", "il21_pg_ml@legacy_elisa", "il21_pg_ml@current_elisa", "smoker",
                                          "thyroid_antibodies")]
    matrix[:, optional] = np.nan
    assert np.isfinite(fitted.predict(matrix)).all()


def test_higher_relative_hazard_for_the_simulators_risk_factors(fitted, training):
    """Thyroid antibodies multiply the odds of thyroid disease by 12 in the simulator: the hazard must rise clearly."""
    matrix = training[0][:500].copy()
    column = COLUMN_INDEX["thyroid_antibodies"]
    matrix[:, column] = 0.0
    without = fitted.predict(matrix)
    matrix[:, column] = 1.0
    assert np.mean(fitted.predict(matrix) - without) > 0.5


def test_xgboost_contributions_match_shap_tree_explainer(training):
    matrix, y, _ = training
    model = XGBoostCoxRegression(n_estimators=40, n_jobs=2).fit(matrix, y)
    base, contributions = model.explain(matrix[:300])
    explanation = shap.TreeExplainer(model.booster_)(matrix[:300])
    np.testing.assert_allclose(contributions, explanation.values, atol=1e-4)
    np.testing.assert_allclose(base, explanation.base_values, atol=1e-4)


def test_linear_contributions_are_exact_shapley_values(training):
    """Checked against shap's model-agnostic Exact explainer on the log relative hazard as a black box."""
    matrix, y, _ = training
    model = LinearCoxRegression().fit(matrix, y)
    background, rows = matrix[:100], matrix[100:110]
    assert np.isnan(rows).any() and np.isnan(background).any()  # imputation and indicators are exercised
    explainer = shap.explainers.Exact(model.predict, shap.maskers.Independent(background, max_samples=len(background)))
    exact = explainer(rows)
    _, ours = model.explain(rows)
    _, on_background = model.explain(background)
    # Shapley values against a background are ours minus the background's mean contribution.
    np.testing.assert_allclose(exact.values, ours - on_background.mean(axis=0), atol=1e-6)


def test_linear_cox_recovers_a_known_hazard_ratio():
    """Exponential times with hazard 0.01 * exp(0.7 x): the fitted log hazard ratio is 0.7 (to sampling error)."""
    rng = np.random.default_rng(5)
    n = 20_000
    x = rng.normal(size=(n, 1))
    time = rng.exponential(1.0 / (0.01 * np.exp(0.7 * x[:, 0])))
    censor = np.minimum(rng.exponential(200.0, n), 120.0)
    event = time <= censor
    model = LinearCoxRegression(alpha=0.0).fit(x, survival_target(event, np.minimum(time, censor)))
    per_unit = model.coef_[0] / model.scale_[0]
    assert per_unit == pytest.approx(0.7, abs=0.03)


@pytest.mark.parametrize("max_depth", [1, 2, 3, 5])
def test_xgboost_tables_equal_pred_contribs_at_every_depth_the_tuning_allows(training, max_depth):
    """Depths 1-3 (the tuning space) are tabulated; depth 5 falls back to pred_contribs itself."""
    import xgboost as xgb

    matrix, y, _ = training
    model = XGBoostCoxRegression(n_estimators=120, max_depth=max_depth, learning_rate=0.1, n_jobs=2).fit(matrix, y)
    assert (model.shap_tables_.fallback_reason is None) == (max_depth <= 3)
    base, contributions = model.explain(matrix)
    reference = model.booster_.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)
    np.testing.assert_allclose(contributions, reference[:, :-1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(base, reference[:, -1], rtol=0, atol=1e-5)
    margin = model.booster_.predict(xgb.DMatrix(matrix, missing=np.nan), output_margin=True)
    np.testing.assert_allclose(model.predict(matrix), margin, rtol=0, atol=1e-5)
    if max_depth <= 3:  # tables: the identity holds in float64
        np.testing.assert_allclose(base + contributions.sum(axis=1), model.predict(matrix), rtol=0, atol=1e-9)
