"""The one scoring call behind every front door: risks, SHAP values, threads; for every family."""

import copy

import numpy as np
import pytest

from features.validation import encode

FAMILIES = ("logistic", "xgboost", "binary-xgboost")


@pytest.fixture(scope="module")
def matrix(make_cohort):
    return encode(make_cohort("clinic", 500, 11))  # IL-21 mostly unknown: missing values included


@pytest.fixture(scope="module", params=FAMILIES)
def registered(request, mlflow_store):
    from models.registry import load_model

    version = next(r.model_version for r in mlflow_store["results"] if r.family == request.param)
    return load_model(version=version).risk_model


def test_explained_risks_are_the_models_risks(registered, matrix):
    explained, direct = registered.explain(matrix), registered.risks(matrix)
    for endpoint, scores in explained.items():
        np.testing.assert_allclose(scores.risk, direct[endpoint], rtol=1e-5, atol=1e-7)
        assert np.all((scores.risk >= 0) & (scores.risk <= 1))
        logit = np.log(scores.risk / (1 - scores.risk))
        np.testing.assert_allclose(scores.base + scores.shap.sum(axis=1), logit, atol=1e-9)


def test_one_thread_gives_the_same_scores(registered, matrix):
    single = copy.deepcopy(registered).use_threads(1)
    before = matrix.copy()
    reference = registered.explain(matrix)
    for endpoint, scores in single.explain(matrix).items():
        np.testing.assert_array_equal(scores.shap, reference[endpoint].shap)
        np.testing.assert_array_equal(scores.risk, reference[endpoint].risk)
    np.testing.assert_array_equal(matrix, before)


@pytest.mark.parametrize("family", ["xgboost", "binary-xgboost"])
def test_use_threads_reaches_every_booster(mlflow_store, family):
    from models.registry import load_model

    version = next(r.model_version for r in mlflow_store["results"] if r.family == family)
    model = load_model(version=version).risk_model.use_threads(1)
    for estimator in model.estimators.values():
        inner = getattr(estimator, "estimator", estimator)
        assert inner.n_jobs == 1 and inner.booster_.save_config().count('"nthread":"1"') >= 1
