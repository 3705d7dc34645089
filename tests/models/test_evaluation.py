import numpy as np
import pytest

from models.evaluation import calibration_slope_intercept, evaluate


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(0)
    risk = 1 / (1 + np.exp(-rng.normal(-1.5, 1.0, 200_000)))
    return (rng.random(risk.size) < risk).astype(int), risk


def test_calibrated_risks_have_slope_one_and_intercept_zero(calibrated):
    y, risk = calibrated
    slope, intercept = calibration_slope_intercept(y, risk)
    assert slope == pytest.approx(1.0, abs=0.03)
    assert intercept == pytest.approx(0.0, abs=0.02)


def test_overconfident_risks_have_slope_below_one(calibrated):
    y, risk = calibrated
    logit = np.log(risk / (1 - risk))
    overconfident = 1 / (1 + np.exp(-(2 * logit + 1.5)))
    slope, _ = calibration_slope_intercept(y, overconfident)
    assert slope == pytest.approx(0.5, abs=0.03)


def test_oracle_metrics_on_the_truth(calibrated):
    y, risk = calibrated
    metrics = evaluate(y, risk, risk)
    assert metrics["auroc_over_oracle"] == pytest.approx(1.0)
    assert metrics["mean_abs_risk_error"] == 0.0
    assert 0 < metrics["brier"] < metrics["incidence"]
