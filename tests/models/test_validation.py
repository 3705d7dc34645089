"""External validation figures against hand-computed cases and scikit-survival's own estimators."""

import numpy as np
import pytest
from sksurv.metrics import brier_score, cumulative_dynamic_auc
from sksurv.util import Surv

from models.validation import (
    NET_BENEFIT_THRESHOLDS,
    Z,
    calibration_in_the_large,
    net_benefit,
    observed_risk,
    ratio_interval,
    restricted_cubic_spline,
    smoothed_calibration,
    validate_at_horizon,
)


def test_kaplan_meier_risk_and_greenwood_by_hand():
    """Six patients: onsets at 2 and 5, censored at 3, 6, 8, 9. S(5) = (5/6)(3/4) = 0.625;
    Greenwood: var = S² (1/(6·5) + 1/(4·3))."""
    time = np.array([2.0, 3.0, 5.0, 6.0, 8.0, 9.0])
    event = np.array([1, 0, 1, 0, 0, 0])
    km = observed_risk(time, event, 7.0)
    assert km.risk == pytest.approx(1 - 0.625)
    assert km.se == pytest.approx(0.625 * np.sqrt(1 / 30 + 1 / 12))
    assert km.at_risk == 2
    assert km.lo < km.risk < km.hi
    # scikit-survival's log-log interval: exp(-exp(log(-log S) ± z se / (S |log S|)))
    s, log_se = 0.625, km.se / (0.625 * abs(np.log(0.625)))
    assert 1 - km.hi == pytest.approx(np.exp(-np.exp(np.log(-np.log(s)) + Z * log_se)), rel=1e-9)
    assert observed_risk(time, event, 1.0).risk == 0.0


def test_observed_over_expected_interval_uses_the_observed_risks_standard_error():
    km = observed_risk(np.array([2.0, 3.0, 5.0, 6.0, 8.0, 9.0]), np.array([1, 0, 1, 0, 0, 0]), 7.0)
    ratio, se, lo, hi = ratio_interval(km, 0.5)
    assert ratio == pytest.approx(0.375 / 0.5)
    assert se == pytest.approx(ratio * km.se / km.risk)
    assert lo == pytest.approx(ratio * np.exp(-Z * km.se / km.risk))
    assert hi == pytest.approx(ratio * np.exp(Z * km.se / km.risk))


@pytest.fixture(scope="module")
def cohort(make_cohort):
    frame = make_cohort("extension", 6000, 11)
    return frame["thyroid_time_months"].to_numpy(), frame["thyroid_event"].to_numpy(), frame


@pytest.mark.parametrize("horizon", [12, 36])
def test_auroc_and_brier_are_scikit_survivals(cohort, horizon):
    time, event, frame = cohort
    risk = frame[f"true_risk_thyroid_{horizon}m"].to_numpy() * 1.1
    values = validate_at_horizon(time, event, risk, horizon, bootstrap=20)
    y = Surv.from_arrays(event == 1, time)
    auc, _ = cumulative_dynamic_auc(y, y, risk, [horizon])
    assert values["auroc"] == pytest.approx(auc[0], abs=1e-6)  # scikit-survival ties risks within 1e-8
    _, brier = brier_score(y, y, 1 - risk[:, None], [horizon])
    # equal but for censorings tied with an onset, which scikit-survival weights by G(T), we by G(T-)
    assert values["brier"] == pytest.approx(brier[0], rel=1e-4)
    # IPA against the Kaplan-Meier risk given to everyone
    _, null = brier_score(y, y, np.full((len(risk), 1), 1 - values["observed_risk"]), [horizon])
    assert values["ipa"] == pytest.approx(1 - brier[0] / null[0], rel=1e-3)
    assert values["auroc_lo"] < values["auroc"] < values["auroc_hi"]
    assert values["calibration_slope_lo"] < values["calibration_slope"] < values["calibration_slope_hi"]


def test_the_true_risk_is_calibrated_and_a_shifted_one_is_not(cohort):
    time, event, frame = cohort
    truth = frame["true_risk_thyroid_36m"].to_numpy()
    good = validate_at_horizon(time, event, truth, 36, bootstrap=50)
    assert good["o_e_lo"] < 1 < good["o_e_hi"]
    assert good["calibration_slope"] == pytest.approx(1.0, abs=0.08)
    assert good["ici"] < 0.02
    bad = validate_at_horizon(time, event, np.clip(1.5 * truth, 0, 1), 36, bootstrap=50)
    assert bad["o_e_hi"] < 0.8
    assert bad["calibration_intercept"] < -0.3
    assert bad["ici"] > 0.08 and bad["e90"] > bad["e50"]


def test_no_figure_beyond_the_cohorts_follow_up(cohort):
    time, event, frame = cohort
    values = validate_at_horizon(np.minimum(time, 30.0), event * (time <= 30), frame["true_risk_thyroid_36m"], 36)
    assert not values["followed_to_horizon"] and np.isnan(values["observed_risk"]) and np.isnan(values["auroc"])


def test_calibration_in_the_large_by_hand():
    """With an offset and the slope fixed at 1, the intercept makes the weighted mean match: solve by hand."""
    y = np.array([1, 0, 0, 1, 0, 0, 0, 0])
    lp = np.zeros(8)
    # expit(a) = 2/8 -> a = logit(0.25)
    assert calibration_in_the_large(y, lp, np.ones(8)) == pytest.approx(np.log(0.25 / 0.75), abs=1e-10)


def test_restricted_cubic_spline_is_harrells():
    knots = np.array([0.0, 1.0, 3.0])
    x = np.array([-1.0, 0.5, 2.0, 4.0])
    expected = (np.maximum(x, 0) ** 3 - np.maximum(x - 1, 0) ** 3 * 3 / 2 + np.maximum(x - 3, 0) ** 3 * 1 / 2) / 9
    np.testing.assert_allclose(restricted_cubic_spline(x, knots), np.column_stack([x, expected]))
    # linear beyond the last knot: the second derivative vanishes
    far = restricted_cubic_spline(np.array([10.0, 11.0, 12.0]), knots)[:, 1]
    assert far[2] - 2 * far[1] + far[0] == pytest.approx(0, abs=1e-9)


def test_too_few_onsets_give_no_smoothed_curve():
    time = np.full(100, 24.0)
    event = np.zeros(100, dtype=int)
    event[:3] = 1
    assert smoothed_calibration(time, event, np.full(100, 0.03), 24) is None


def test_net_benefit_by_hand():
    """Ten patients followed to month 12, onsets in the three of highest risk and one other; at a threshold of
    0.2 the four above it (three onsets): NB = 4/10 · 3/4 - 4/10 · 1/4 · 0.2/0.8."""
    risk = np.array([0.5, 0.4, 0.3, 0.25, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05])
    event = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    time = np.where(event == 1, 6.0, 12.0)
    nb = net_benefit(time, event, risk, 12, thresholds=np.array([0.2]))
    assert nb["model"][0] == pytest.approx(0.4 * 0.75 - 0.4 * 0.25 * 0.25)
    assert nb["treat_all"][0] == pytest.approx(0.4 - 0.6 * 0.25)
    assert len(net_benefit(time, event, risk, 12)["threshold"]) == len(NET_BENEFIT_THRESHOLDS)


def test_the_smoothed_calibration_is_scikit_survivals_cox_model_on_the_spline(cohort):
    """Austin, Harrell & van Klaveren's smoother, fitted with scikit-survival's Cox model and Breslow baseline."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    time, event, frame = cohort
    risk, horizon = np.clip(1.3 * frame["true_risk_thyroid_36m"].to_numpy(), 0, 0.99), 36
    smooth = smoothed_calibration(time, event, risk, horizon)
    cll = np.log(-np.log1p(-risk))
    basis = restricted_cubic_spline(cll, np.quantile(cll, [0.1, 0.5, 0.9]))
    basis = (basis - basis.mean(axis=0)) / basis.std(axis=0)
    onset = (event == 1) & (time <= horizon)
    cox = CoxPHSurvivalAnalysis(alpha=1e-6, ties="breslow").fit(basis, Surv.from_arrays(onset, np.minimum(time, horizon)))
    survival = np.array([f(horizon) for f in cox.predict_survival_function(basis)])
    np.testing.assert_allclose(smooth.observed, 1 - survival, rtol=1e-6, atol=1e-9)
    assert smooth.ici == pytest.approx(np.mean(np.abs(risk - (1 - survival))), rel=1e-6)


def test_one_prediction_for_every_patient_has_no_calibration_slope_and_no_interval_from_rounding():
    """A treatment the model does not tell apart: every patient has the same linear predictor (up to rounding),
    so the slope is not estimable; the intercept still is."""
    from models.validation import calibration_with_intervals

    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.01).astype(float)
    lp = np.full(3000, -4.0) + rng.normal(0, 1e-15, 3000)
    found = calibration_with_intervals(y, lp, np.ones(3000))
    assert np.isnan(found["calibration_slope"]) and np.isnan(found["calibration_slope_lo"])
    assert found["calibration_intercept_lo"] < found["calibration_intercept"] < found["calibration_intercept_hi"]


def test_a_slope_whose_own_intercept_does_not_converge_has_no_interval(monkeypatch):
    """The sandwich needs a finite information matrix; an intercept fit that did not converge (NaN) gives none."""
    import models.validation as validation

    rng = np.random.default_rng(1)
    lp = rng.normal(-3.0, 1.0, 2000)
    y = (rng.random(2000) < 0.05).astype(float)
    real = validation.calibration_in_the_large
    monkeypatch.setattr(validation, "calibration_in_the_large",
                        lambda yy, xx, ww: float("nan") if xx is not lp else real(yy, xx, ww))
    found = validation.calibration_with_intervals(y, lp, np.ones(2000))
    assert np.isfinite(found["calibration_slope"]) and np.isnan(found["calibration_slope_lo"])
