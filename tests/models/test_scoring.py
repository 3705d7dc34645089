"""The one scoring call behind every front door, on every registered family: columns, SHAP identity, threads."""

import copy

import numpy as np
import pytest

from features.schema import HORIZON_FREE_FEATURES, output_columns
from features.validation import encode, validate_frame
from models.scoring import ScoringOptions, score_columns

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clinic(make_cohort):
    return make_cohort("clinic", 500, 11)  # IL-21 mostly unknown: missing values included


@pytest.fixture(scope="module", params=["cox-linear", "cox-xgboost"])
def registered(request, mlflow_store):
    from models.registry import load_model

    version = next(r.model_version for r in mlflow_store["results"] if r.family == request.param)
    return load_model(version=version).risk_model


@pytest.mark.parametrize("options", [ScoringOptions(), ScoringOptions(horizons=(1, 12, 36, 60, 72), contrast=True)],
                         ids=["default", "five-horizons-contrast"])
def test_score_columns_and_identity(registered, clinic, options):
    batch = validate_frame(clinic, allow_extra=True)
    scored = score_columns(registered, batch, options)
    assert list(scored) == ["patient_id", "treatment", *output_columns(registered.outcome_names, options.horizons,
                                                          options.contrast), "warnings"]
    for outcome in registered.outcome_names:
        free = sum(scored[f"shap_{outcome}__{name}"] for name in HORIZON_FREE_FEATURES)
        previous = np.zeros(len(batch.rows))
        for h in options.horizons:
            risk = scored[f"risk_{outcome}_{h}m"]
            assert ((risk > 0) & (risk < 1)).all() and (risk >= previous).all()
            previous = risk
            total = scored[f"base_{outcome}_{h}m"] + free + scored[f"shap_{outcome}_{h}m__treatment"]
            np.testing.assert_allclose(total, np.log(-np.log1p(-risk)), rtol=0, atol=1e-9)
            if options.contrast:
                alemtuzumab = scored[f"risk_{outcome}_{h}m_if_alemtuzumab"]
                np.testing.assert_allclose(alemtuzumab, risk, rtol=1e-9)  # the clinic is all on alemtuzumab
                np.testing.assert_allclose(scored[f"excess_{outcome}_{h}m"],
                                           alemtuzumab - scored[f"risk_{outcome}_{h}m_if_interferon_beta_1a"])


def test_extrapolated_horizons_are_in_the_warnings(registered, make_cohort):
    cohort = make_cohort("care-ms1", 300, 12)
    batch = validate_frame(cohort, allow_extra=True)
    scored = score_columns(registered, batch, ScoringOptions(horizons=(24, 48)))
    on_interferon = (cohort["treatment"] == "interferon_beta_1a").to_numpy()[batch.rows]
    assert all("extrapolated: risks at 48 months on interferon_beta_1a" in w for w in scored["warnings"][on_interferon])
    assert not any("extrapolated" in w for w in scored["warnings"][~on_interferon])


def test_one_thread_gives_the_same_scores(registered, clinic):
    matrix = encode(clinic)
    single = copy.deepcopy(registered).use_threads(1)
    before = matrix.copy()
    reference = registered.explain(matrix, (24, 48))
    for outcome, scores in single.explain(matrix, (24, 48)).items():
        np.testing.assert_array_equal(scores.shap, reference[outcome].shap)
        np.testing.assert_array_equal(scores.risk, reference[outcome].risk)
    np.testing.assert_array_equal(matrix, before)


def test_use_threads_reaches_every_booster(mlflow_store):
    from models.registry import load_model

    version = next(r.model_version for r in mlflow_store["results"] if r.family == "cox-xgboost")
    model = load_model(version=version).risk_model.use_threads(1)
    for survival in model.outcomes.values():
        assert survival.estimator_.n_jobs == 1
        assert survival.estimator_.booster_.save_config().count('"nthread":"1"') >= 1


def test_the_registered_trees_explain_exactly_as_pred_contribs(mlflow_store, make_cohort):
    """Every outcome of the registered tree family, loaded from its plain files: the tables' SHAP values
    and margins equal xgboost's pred_contribs and its own margin to 1e-5."""
    import xgboost as xgb

    from models.registry import load_model

    version = next(r.model_version for r in mlflow_store["results"] if r.family == "cox-xgboost")
    model = load_model(version=version).risk_model
    matrix = encode(make_cohort("care-ms2", 5000, 13))
    for outcome, survival in model.outcomes.items():
        estimator = survival.estimator_
        assert estimator.shap_tables_.fallback_reason is None, outcome
        rows = xgb.DMatrix(matrix, missing=np.nan)
        reference = estimator.booster_.predict(rows, pred_contribs=True)
        base, contributions = estimator.explain(matrix)
        np.testing.assert_allclose(contributions, reference[:, :-1], rtol=0, atol=1e-5, err_msg=outcome)
        np.testing.assert_allclose(base, reference[:, -1], rtol=0, atol=1e-5, err_msg=outcome)
        np.testing.assert_allclose(estimator.predict(matrix), estimator.booster_.predict(rows, output_margin=True),
                                   rtol=0, atol=1e-5, err_msg=outcome)


def test_peak_year_takes_the_earliest_of_tied_years():
    from models.scoring import peak_year

    onset = np.array([[0.01, 0.03, 0.05, 0.02, 0.01],   # one peak, in year 3
                      [0.02, 0.02, 0.02, 0.02, 0.02],   # a constant hazard: year 1
                      [0.01, 0.02, 0.03, 0.03 * (1 + 1e-12), 0.03]])  # rounding apart: the earliest, 3
    assert peak_year(onset).tolist() == [3, 1, 3]
