"""The mixture-cure family: its pieces by hand, its likelihood's gradient, its recovery of the simulator's own
form, its exact explanation, monotone risks, the floor of an arm without onsets, storage and recalibration."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from features.schema import CATEGORY_CODES, MAX_HORIZON_MONTHS
from features.simulator import true_risk_at
from features.validation import encode
from models.cure import (
    CureXGBoost,
    MixtureCure,
    TimingShares,
    onset_distribution,
    risk_from_ever_risk,
    timing_shares,
)
from models.evaluation import evaluate_against_truth
from models.persistence import load_risk_model, save_risk_model
from models.recalibration import recalibrated_model
from models.survival import BASELINE_FLOOR_PER_MONTH, MONTHS, survival_target
from pipelines.config import FamilySpec
from pipelines.intervals import fit_intervals
from pipelines.steps import fit_family

SPEC = FamilySpec(estimator="cure-xgboost", params={"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1,
                                                    "min_child_weight": 5.0, "n_jobs": 2})
ALEMTUZUMAB = int(CATEGORY_CODES["treatment"]["alemtuzumab"])
INTERFERON = int(CATEGORY_CODES["treatment"]["interferon_beta_1a"])
EVERY_MONTH = tuple(range(1, MAX_HORIZON_MONTHS + 1))


def test_onset_distribution_by_hand():
    """Onsets at 2 and 5 among six patients (weights 1, 0.5 for the two censored ones at 3 and 6 that may still
    have an onset, 0 for those censored at 8 and 9 that will not): at 2, 1 of 1+0.5+1+0.5 = 3 at risk; at 5, 1 of
    1 + 0.5 = 1.5. G = 1 - (1 - 1/3)(1 - 1/1.5), normalised to 1 at the last onset."""
    time = np.array([2.0, 3.0, 5.0, 6.0, 8.0, 9.0])
    event = np.array([True, False, True, False, False, False])
    weight = np.array([1.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    times, cdf = onset_distribution(time, event, weight, window=9.0)
    assert times.tolist() == [2.0, 5.0]
    first = 1 / 3
    total = 1 - (1 - first) * (1 - 1 / 1.5)
    np.testing.assert_allclose(cdf, [first / total, 1.0])


def test_timing_shares_are_normalised_kaplan_meier_and_extrapolated_at_the_last_years_rate():
    rng = np.random.default_rng(0)
    n = 4000
    strata = np.r_[np.full(n, ALEMTUZUMAB), np.full(n, INTERFERON)]
    onset = np.r_[rng.uniform(0, 72, n), rng.uniform(0, 72, n)]
    ever = rng.random(2 * n) < 0.3
    follow = np.r_[np.full(n, 72.0), np.full(n, 24.0)]
    event = ever & (onset <= follow)
    time = np.where(event, onset, follow)
    shares = timing_shares(time, event, strata)
    assert shares.follow_up_months.tolist() == [24.0, 72.0]
    # alemtuzumab: uniform onsets over its 72-month window
    np.testing.assert_allclose(shares.cumulative[ALEMTUZUMAB, [12, 36, 72]], [1 / 6, 1 / 2, 1.0], atol=0.03)
    # interferon: within its 24 months, uniform too; beyond, the last 12 months' rate (about 1/24 a month) goes on
    np.testing.assert_allclose(shares.cumulative[INTERFERON, [12, 24]], [0.5, 1.0], atol=0.04)
    assert shares.cumulative[INTERFERON, 48] == pytest.approx(1 + 24 * (1 - shares.cumulative[INTERFERON, 12]) / 12)
    assert shares.extrapolated([24, 25]).tolist() == [[False, True], [False, False]]
    assert (np.diff(shares.cumulative, axis=1) >= 0).all()


def test_the_risk_beyond_the_window_is_continuous_monotone_and_below_one():
    p = np.array([0.01, 0.3, 0.9999])[:, None]
    shares = np.array([0.5, 1.0, 1.0 + 1e-9, 2.0, 5.0])[None, :]
    risk = risk_from_ever_risk(p, shares)
    np.testing.assert_allclose(risk[:, 1], p[:, 0])  # the ever-risk at the window's end
    np.testing.assert_allclose(risk[:, 2], p[:, 0], rtol=1e-6)
    assert (np.diff(risk, axis=1) > 0).all() and (risk <= 1).all()  # 1 - 1e-20 is 1 in floating point
    assert risk[1, 3] == pytest.approx(1 - 0.7 ** 2)


def test_the_boosting_gradient_is_the_mixture_likelihoods(monkeypatch):
    """p - w, with w the E-step's posterior chance of an onset, is minus the derivative of the observed-data log
    likelihood (log p for an onset, log(1 - p G) for a censoring) in the log-odds: checked by finite differences."""
    import xgboost as xgb

    captured = {}
    real_train = xgb.train

    def spy(params, dtrain, num_boost_round, obj):
        captured["obj"] = obj
        return real_train(params, dtrain, num_boost_round=num_boost_round, obj=obj)

    monkeypatch.setattr(xgb, "train", spy)
    X = np.random.default_rng(1).normal(size=(6, 2))
    event = np.array([True, False, False, True, False, False])
    timing = np.array([1.0, 0.2, 0.7, 1.0, 0.0, 0.95])
    CureXGBoost(n_estimators=1, n_jobs=1).fit(X, survival_target(event, np.arange(1.0, 7.0)), timing=timing)
    margin = np.array([-1.0, 0.3, 1.5, 0.0, -2.0, 0.8])
    grad, hess = captured["obj"](margin, None)

    def loglik(m):
        p = expit(m)
        return np.where(event, np.log(p), np.log(1 - p * timing))

    h = 1e-6
    numeric = -(loglik(margin + h) - loglik(margin - h)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    assert (hess > 0).all()


@pytest.fixture(scope="module")
def trained(make_cohort):
    train = pd.concat([make_cohort("care-ms1", 16000, 81).assign(profile="care-ms1"),
                       make_cohort("extension", 8000, 82).assign(profile="extension")], ignore_index=True)
    model = fit_family("cure-xgboost", SPEC, train, {o: SPEC.params for o in ("thyroid", "itp")})
    return fit_intervals(model, train, 3, 0)[0], train


def test_it_recovers_the_simulators_own_form(trained, make_cohort, simulator):
    model, _ = trained
    benchmark = make_cohort("care-ms1", 8000, 83)
    risk = model.risks(encode(benchmark), (12, 24, 48))["thyroid"]
    truth = true_risk_at(simulator, benchmark, "thyroid", (12, 24, 48))
    alemtuzumab = (benchmark["treatment"] == "alemtuzumab").to_numpy()
    for k in range(3):
        figures = evaluate_against_truth(risk[alemtuzumab, k], truth[alemtuzumab, k])
        assert figures["mean_risk_over_true"] == pytest.approx(1.0, abs=0.08), k
        assert figures["auroc_over_oracle"] > 0.97, k
        assert 0.85 < figures["calibration_slope"] < 1.15, k
    # onsets after alemtuzumab peak in year 3 in the simulator: the timing share is steepest there
    monthly = np.diff(model.outcomes["thyroid"].baseline_.cumulative[ALEMTUZUMAB])
    assert 24 <= int(np.argmax(np.convolve(monthly, np.ones(12) / 12, mode="valid"))) + 6 <= 40


def test_the_explanation_is_exact_on_the_ever_risks_log_odds(trained, make_cohort):
    model, _ = trained
    matrix = encode(make_cohort("care-ms1", 500, 84))
    for outcome, explained in model.explain(matrix, (6, 24, 60)).items():
        assert explained.scale.startswith("log-odds of the ever-risk")
        for k in range(3):
            ever = expit(explained.base[k] + explained.shap_at(k).sum(axis=1))
            np.testing.assert_allclose(risk_from_ever_risk(ever[:, None], explained.timing[:, [k]])[:, 0],
                                       explained.risk[:, k], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(explained.shap_at(0), explained.shap_at(2))  # the same at every horizon
        # the tables are xgboost's own contributions
        inner = model.outcomes[outcome].estimator_
        booster = inner.booster_.predict(__import__("xgboost").DMatrix(model.prepare(matrix), missing=np.nan),
                                         pred_contribs=True)
        np.testing.assert_allclose(inner.explain(model.prepare(matrix))[1], booster[:, :-1], atol=1e-5)


def test_no_risk_falls_over_time_and_an_arm_without_onsets_is_at_the_floor(trained, make_cohort):
    model, train = trained
    matrix = encode(make_cohort("care-ms1", 3000, 85))
    for risk in model.risks(matrix, EVERY_MONTH).values():
        assert (np.diff(risk, axis=1) >= 0).all() and ((risk > 0) & (risk < 1)).all()
    on_interferon = (train["treatment"] == "interferon_beta_1a").to_numpy()
    assert train.loc[on_interferon, "itp_event"].sum() == 0  # the trials had no ITP on interferon
    itp = model.outcomes["itp"]
    prepared = model.prepare(encode(train[on_interferon]))
    mean = itp.risk(prepared, (24,))[:, 0].mean()
    assert mean == pytest.approx(BASELINE_FLOOR_PER_MONTH * 24, rel=1e-6)
    lower, upper = model.intervals(encode(train[on_interferon].head(50)), (24, 48))["itp"]
    assert (lower == 0).all()
    np.testing.assert_allclose(upper[:, 0], 3.0 / on_interferon.sum())  # the rule of three over its patients
    np.testing.assert_allclose(upper[:, 1], 2 * 3.0 / on_interferon.sum())  # growing beyond its 24 months


def test_a_cure_model_is_stored_and_read_back_exactly(trained, make_cohort, tmp_path):
    model, _ = trained
    again = load_risk_model(save_risk_model(model, tmp_path / "model"))
    assert isinstance(again.outcomes["thyroid"], MixtureCure)
    assert isinstance(again.outcomes["thyroid"].baseline_, TimingShares)
    matrix = encode(make_cohort("care-ms2", 300, 86))
    for outcome in ("thyroid", "itp"):
        np.testing.assert_array_equal(again.risks(matrix, (24, 48))[outcome], model.risks(matrix, (24, 48))[outcome])
        np.testing.assert_array_equal(again.intervals(matrix, (24, 48))[outcome][1],
                                      model.intervals(matrix, (24, 48))[outcome][1])


def test_a_cure_model_recalibrates_to_a_registry(trained, make_cohort):
    model, _ = trained
    local = make_cohort("registry", 6000, 87)
    outcomes = {o: (local[f"{o}_event"].to_numpy(), local[f"{o}_time_months"].to_numpy()) for o in ("thyroid", "itp")}
    updated, done = recalibrated_model(model, encode(local), outcomes, "baseline")
    assert done["thyroid"].slope == 1.0
    test = make_cohort("registry", 6000, 88)
    alemtuzumab = (test["treatment"] == "alemtuzumab").to_numpy()
    truth = test.loc[alemtuzumab, "true_risk_thyroid_48m"].mean()
    before = model.risks(encode(test), (48,))["thyroid"][alemtuzumab].mean()
    after = updated.risks(encode(test), (48,))["thyroid"][alemtuzumab].mean()
    assert abs(after - truth) < 0.1 * truth < abs(before - truth)
    # the explanation stays exact: the offsets go to the treatment and the base value
    explained = updated.explain(encode(test.head(100)), (48,))["thyroid"]
    ever = expit(explained.base[0] + explained.shap_at(0).sum(axis=1))
    np.testing.assert_allclose(risk_from_ever_risk(ever[:, None], explained.timing)[:, 0], explained.risk[:, 0],
                               rtol=1e-12)
    assert MONTHS[-1] == MAX_HORIZON_MONTHS
