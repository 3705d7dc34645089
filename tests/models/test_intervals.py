"""Risk intervals from bootstrap refits: the Cox refit against scikit-survival, the closed form against the
refits themselves, the learned spread against them, containment of the risk, and the plain-file format."""

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from features.schema import output_columns
from features.validation import encode, validate_frame
from models.cox_newton import cox_newton
from models.estimators import LinearCoxRegression
from models.intervals import (
    LearnedSpread,
    LinearSpread,
    Z,
    affine_coefficients,
    affine_design,
    bootstrap_refits,
    interval,
    refit_linear,
    served_spread,
)
from models.persistence import load_risk_model, save_risk_model
from models.scoring import ScoringOptions, score_columns
from models.survival import treatment_index
from pipelines.config import FamilySpec
from pipelines.intervals import fit_intervals
from pipelines.steps import fit_family

FAMILIES = {
    "cox-linear": FamilySpec(estimator="cox-linear", params={"alpha": 1.0}),
    "cox-xgboost": FamilySpec(estimator="cox-xgboost", params={"n_estimators": 40, "max_depth": 2,
                                                                "learning_rate": 0.2, "n_jobs": 1}),
}


@pytest.fixture(scope="module")
def cohort(make_cohort):
    return pd.concat([make_cohort("care-ms1", 4000, 61).assign(profile="care-ms1"),
                      make_cohort("extension", 2000, 62).assign(profile="extension")], ignore_index=True)


@pytest.fixture(scope="module")
def fitted(cohort):
    """Both families with 6 refits each, and their refits."""
    models = {}
    for family, spec in FAMILIES.items():
        model = fit_family(family, spec, cohort, {"thyroid": spec.params, "itp": spec.params})
        models[family] = fit_intervals(model, cohort, refits=6, seed=3)[:2]
    return models


def test_cox_newton_finds_scikit_survivals_coefficients_with_tied_times():
    rng = np.random.default_rng(0)
    Zd = rng.normal(size=(2000, 4))
    time = np.round(rng.exponential(8.0, 2000))  # whole numbers: many ties
    event = rng.random(2000) < 0.5
    for alpha in (0.0, 3.0):
        expected = CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow").fit(Zd, Surv.from_arrays(event, time)).coef_
        np.testing.assert_allclose(cox_newton(Zd, event, time, alpha), expected, atol=1e-6)
        # From a start far away too (step halving keeps each step downhill).
        np.testing.assert_allclose(cox_newton(Zd, event, time, alpha, start=np.full(4, 3.0)), expected, atol=1e-6)


def test_a_linear_refit_is_the_estimators_own_fit(cohort):
    X = encode(cohort)
    event, time = cohort["thyroid_event"].to_numpy() == 1, cohort["thyroid_time_months"].to_numpy()
    rows = np.random.default_rng(1).integers(0, len(X), len(X))
    original = LinearCoxRegression(alpha=1.0).fit(X, Surv.from_arrays(event, time))
    expected = LinearCoxRegression(alpha=1.0).fit(X[rows], Surv.from_arrays(event[rows], time[rows]))
    refit = refit_linear(original, X[rows], event[rows], time[rows])
    for name in ("indicated_", "medians_", "mean_", "scale_"):
        np.testing.assert_array_equal(getattr(refit, name), getattr(expected, name))
    np.testing.assert_allclose(refit.coef_, expected.coef_, atol=1e-6)
    # The affine form reproduces every linear model's prediction, missing values included.
    assert np.isnan(X).any()
    np.testing.assert_allclose(affine_design(X) @ affine_coefficients(refit), refit.predict(X), atol=1e-10)


def test_the_closed_form_is_the_refits_own_spread(fitted, cohort):
    model, refits = fitted["cox-linear"]
    X = model.prepare(encode(cohort.head(500)))
    for outcome, spread in model.spreads.items():
        assert isinstance(spread, LinearSpread) and spread.refits == 6
        horizons = (1, 12, 24, 48, 72)
        exact = refits[outcome].log_hazard_deviations(X, horizons).std(axis=0, ddof=1)
        np.testing.assert_allclose(spread.log_sd(X, horizons), exact, rtol=1e-8, atol=1e-12)
        assert (exact > 0).all()


def test_the_learned_spread_follows_the_refits_on_patients_it_never_saw(fitted, make_cohort):
    model, refits = fitted["cox-xgboost"]
    unseen = model.prepare(encode(make_cohort("care-ms1", 2000, 63)))
    spread = model.spreads["thyroid"]
    assert isinstance(spread, LearnedSpread) and spread.refits == 6
    exact = refits["thyroid"].log_hazard_deviations(unseen, (24,)).std(axis=0, ddof=1)[:, 0]
    learned = spread.log_sd(unseen, (24,))[:, 0]
    # Six refits make each patient's spread noisy: the log of an SD from 6 draws has an SD of 0.35
    # (chi with 5 degrees of freedom), so even a perfect smoothed spread is off by about a third per
    # patient and correlates with it only as far as the patients' true spreads differ (about 0.7 here).
    # The learned spread is the smoothed one: its median ratio within 10% of 1; a spread off by a
    # sixth, or one blind to the patient (correlation 0), fails.
    assert 0.9 < np.median(learned / exact) < 1.1
    assert np.corrcoef(np.log(learned), np.log(exact))[0, 1] > 0.6


def test_the_learned_spread_is_its_boosters_prediction_on_one_thread_or_two(fitted, cohort):
    from models.intervals import spread_inputs

    model = fitted["cox-xgboost"][0]
    spread = model.spreads["itp"]
    X, horizons = model.prepare(encode(cohort))[:300], (1, 24, 72)
    booster = np.exp(spread.booster.inplace_predict(spread_inputs(X, horizons), missing=np.nan)).reshape(len(X), 3)
    for threads in (1, 2):
        spread.n_threads = threads
        # Tables sum in float64, xgboost in float32: equal to float32's precision.
        np.testing.assert_allclose(spread.log_sd(X, horizons), booster, rtol=1e-5)
    assert spread.log_sd(X[:0], horizons).shape == (0, 3)


def test_bootstrap_refits_are_reproducible_and_differ_from_the_model(fitted, cohort):
    model, refits = fitted["cox-linear"]
    X = model.prepare(encode(cohort))
    event, time = cohort["itp_event"].to_numpy() == 1, cohort["itp_time_months"].to_numpy()
    again = bootstrap_refits(model.outcomes["itp"], X, event, time, refits=2, seed=3 + 1000)
    np.testing.assert_array_equal(again.refits[0].estimator_.coef_, refits["itp"].refits[0].estimator_.coef_)
    assert not np.allclose(again.refits[0].estimator_.coef_, model.outcomes["itp"].estimator_.coef_)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_interval_holds_its_risk(fitted, cohort, family):
    model, _ = fitted[family]
    matrix = encode(cohort.sample(800, random_state=2))
    horizons = tuple(range(1, 73))  # every month: no end may fall anywhere
    explained = model.explain(matrix, horizons)
    without_onsets = {o: m.baseline_.events[treatment_index(matrix)] == 0 for o, m in model.outcomes.items()}
    for outcome, (lo, hi) in model.intervals(matrix, horizons, explained).items():
        risk = explained[outcome].risk
        assert ((lo >= 0) & (lo < risk) & (risk < hi) & (hi < 1)).all()
        # from 0 exactly on a treatment the training data had no onset on (ITP on interferon), else above 0
        np.testing.assert_array_equal(lo[without_onsets[outcome]] == 0, True)
        assert (lo[~without_onsets[outcome]] > 0).all()
        # Never falling over time, like the risk itself.
        assert (np.diff(lo, axis=1) >= -1e-12).all() and (np.diff(hi, axis=1) >= -1e-12).all()
        # Without the explanation, the same numbers.
        np.testing.assert_allclose(model.intervals(matrix, horizons)[outcome][0], lo, rtol=1e-12)
    # Horizons asked in another order get the same ends, in that order.
    shuffled = (48, 3, 72, 24)
    ordered = model.intervals(matrix, sorted(shuffled))
    for outcome, (lo, hi) in model.intervals(matrix, shuffled).items():
        np.testing.assert_allclose(lo, ordered[outcome][0][:, [2, 0, 3, 1]], rtol=1e-12)
        np.testing.assert_allclose(hi, ordered[outcome][1][:, [2, 0, 3, 1]], rtol=1e-12)


def test_interval_by_hand():
    # log H = log(-log(1 - 0.2)); ± 1.96 · 0.5 on that scale.
    log_hazard = np.array([[np.log(-np.log(0.8))]])
    lo, hi = interval(log_hazard, np.array([[0.5]]))
    assert pytest.approx(1.959964, abs=1e-6) == Z
    assert lo[0, 0] == pytest.approx(1 - 0.8 ** np.exp(-Z * 0.5))
    assert hi[0, 0] == pytest.approx(1 - 0.8 ** np.exp(Z * 0.5))


def test_a_model_without_refits_gives_no_interval(cohort):
    spec = FAMILIES["cox-linear"]
    model = fit_family("cox-linear", spec, cohort, {"thyroid": spec.params})
    lo, hi = model.intervals(encode(cohort.head(5)), (24,))["thyroid"]
    assert np.isnan(lo).all() and np.isnan(hi).all()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_intervals_survive_the_plain_file_format(fitted, cohort, family, tmp_path):
    model, _ = fitted[family]
    loaded = load_risk_model(save_risk_model(model, tmp_path / "model"))
    assert [s.kind for s in loaded.spreads.values()] == [s.kind for s in model.spreads.values()]
    matrix = encode(cohort.head(300))
    for outcome, (lo, hi) in model.intervals(matrix, (24, 48)).items():
        read_lo, read_hi = loaded.intervals(matrix, (24, 48))[outcome]
        np.testing.assert_array_equal(read_lo, lo)
        np.testing.assert_array_equal(read_hi, hi)


def test_batch_columns_carry_the_interval_in_schema_order(fitted, cohort):
    model, _ = fitted["cox-xgboost"]
    batch = validate_frame(cohort.head(200), allow_extra=True)
    options = ScoringOptions(horizons=(12, 24))
    columns = score_columns(model, batch, options)
    names = [c for c in columns if c not in ("patient_id", "treatment", "warnings")]
    assert names == output_columns(model.outcome_names, options.horizons)
    for outcome in model.outcome_names:
        for h in options.horizons:
            risk, lo, hi = (columns[f"{kind}_{outcome}_{h}m"] for kind in ("risk", "risk_lo", "risk_hi"))
            assert ((lo < risk) & (risk < hi)).all()


def test_served_spread_is_the_closed_form_for_the_linear_family_only(fitted):
    assert isinstance(served_spread(fitted["cox-linear"][1]["thyroid"], np.empty((0, 11))), LinearSpread)
    assert {s.kind for s in fitted["cox-xgboost"][0].spreads.values()} == {"learned"}


def test_error_over_spread_by_hand():
    from pipelines.intervals import _error_over_spread

    truth = np.array([0.2, 0.1, 0.0])
    log_true = np.log(-np.log1p(-truth[:2]))
    # Errors of +0.3 and -0.4 on the log H scale against spreads of 0.1 and 0.2; the true risk of 0 is left out.
    ratio = _error_over_spread(np.array([log_true[0] + 0.3, log_true[1] - 0.4, -5.0]), truth,
                               np.array([0.1, 0.2, 1.0]))
    assert ratio == pytest.approx(np.sqrt((0.09 + 0.16) / 2) / np.sqrt((0.01 + 0.04) / 2))
    assert np.isnan(_error_over_spread(np.zeros(2), np.zeros(2), np.ones(2)))
