"""The one scoring call behind every front door: risks, SHAP values, threads."""

import copy

import numpy as np
import pytest

from features.validation import encode


@pytest.fixture(scope="module")
def matrix(make_cohort):
    return encode(make_cohort("clinic", 500, 11))  # IL-21 mostly unknown: missing values included


def test_explained_risks_are_the_models_risks(champion, matrix):
    model = champion.risk_model
    explained, direct = model.explain(matrix), model.risks(matrix)
    for endpoint, scores in explained.items():
        np.testing.assert_allclose(scores.risk, direct[endpoint], rtol=1e-5, atol=1e-7)
        assert np.all((scores.risk >= 0) & (scores.risk <= 1))
        logit = np.log(scores.risk / (1 - scores.risk))
        np.testing.assert_allclose(scores.base + scores.shap.sum(axis=1), logit, atol=1e-9)


def test_one_thread_gives_the_same_scores(champion, matrix):
    model = champion.risk_model
    single = copy.deepcopy(model).use_threads(1)
    before = matrix.copy()
    for endpoint, scores in single.explain(matrix).items():
        reference = model.explain(matrix)[endpoint]
        np.testing.assert_array_equal(scores.shap, reference.shap)
        np.testing.assert_array_equal(scores.risk, reference.risk)
    np.testing.assert_array_equal(matrix, before)
