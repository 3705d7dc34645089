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


def test_ranked_scores_match_scikit_learn_with_ties_and_weights():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from models.evaluation import RankedScores

    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.2).astype(int)
    risk = np.round(rng.random(3000) * 0.3 + 0.3 * y, 2)  # rounding makes many ties
    weight = rng.random(3000) * 2
    weight[::7] = 0
    auroc, auprc = RankedScores(y, risk).auroc_auprc(weight)
    assert auroc == pytest.approx(roc_auc_score(y, risk, sample_weight=weight), abs=1e-12)
    assert auprc == pytest.approx(average_precision_score(y, risk, sample_weight=weight), abs=1e-12)


def test_bootstrap_interval_brackets_the_estimate():
    from models.evaluation import evaluate_at_horizon

    rng = np.random.default_rng(4)
    risk = 1 / (1 + np.exp(-rng.normal(-1.5, 1.0, 20_000)))
    y = (rng.random(risk.size) < risk).astype(int)
    metrics = evaluate_at_horizon(y, risk, np.ones(risk.size), risk, bootstrap=100)
    assert metrics["auroc_lo"] < metrics["auroc"] < metrics["auroc_hi"]
    assert metrics["auroc_hi"] - metrics["auroc_lo"] < 0.03
    assert metrics["calibration_slope"] == pytest.approx(1.0, abs=0.05)
    assert metrics["observed_over_expected"] == pytest.approx(1.0, abs=0.03)
    assert metrics["ici"] < 0.01
