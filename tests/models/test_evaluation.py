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


def test_fast_calibration_slope_is_scikit_learns():
    from scipy.special import logit

    from models.evaluation import calibration_slope_fast, weighted_calibration

    rng = np.random.default_rng(6)
    risk = 1 / (1 + np.exp(-rng.normal(-1.0, 1.2, 5000)))
    y = (rng.random(risk.size) < risk ** 1.3).astype(int)
    weight = rng.random(risk.size) * 3
    expected = weighted_calibration(y, risk, weight)[0]
    # scikit-learn's L-BFGS stops at a gradient tolerance of 1e-4; Newton's steps go to 1e-10.
    assert calibration_slope_fast(y, logit(risk), weight) == pytest.approx(expected, abs=1e-3)


def test_expected_metrics_against_the_truth_by_hand():
    """Two patients with true risks 0.2 and 0.6, predicted 0.1 and 0.5: each appears as an onset with
    weight p and as none with weight 1 - p. AUROC counts onset-none pairs where the onset is ranked
    higher: 0.6 * 0.8 (patient 2's onset over patient 1's none) + 0.5 * (0.2 * 0.4 + 0.2 * 0.8 + 0.6 * 0.4)
    for ties, out of (0.2 + 0.6) * (0.8 + 0.4)."""
    from models.evaluation import evaluate_against_truth

    metrics = evaluate_against_truth(np.array([0.1, 0.5]), np.array([0.2, 0.6]))
    assert metrics["mean_risk"] == pytest.approx(0.3) and metrics["mean_true_risk"] == pytest.approx(0.4)
    assert metrics["mean_risk_over_true"] == pytest.approx(0.75)
    assert metrics["mean_abs_risk_error"] == pytest.approx(0.1)
    # Ranked pairs: onset of 2 over none of 1 (0.6 * 0.8); onset of 1 below none of 2 counts 0;
    # same-patient pairs tie (0.5 each): 0.2 * 0.8 and 0.6 * 0.4.
    expected = (0.6 * 0.8 + 0.5 * (0.2 * 0.8 + 0.6 * 0.4)) / ((0.2 + 0.6) * (0.8 + 0.4))
    assert metrics["auroc"] == pytest.approx(expected)
    assert metrics["oracle_auroc"] == pytest.approx(expected)  # the same ranking
    assert metrics["auroc_over_oracle"] == pytest.approx(1.0)


def test_the_truth_scores_itself_perfectly_and_a_shrunk_model_does_not():
    from models.evaluation import evaluate_against_truth

    rng = np.random.default_rng(7)
    truth = 1 / (1 + np.exp(-rng.normal(-1.5, 1.0, 20_000)))
    itself = evaluate_against_truth(truth, truth)
    assert itself["calibration_slope"] == pytest.approx(1.0, abs=1e-6)
    assert itself["auroc_over_oracle"] == pytest.approx(1.0)
    logit = np.log(truth / (1 - truth))
    shrunk = 1 / (1 + np.exp(-(0.5 * logit - 0.75)))
    assert evaluate_against_truth(shrunk, truth)["calibration_slope"] == pytest.approx(2.0, rel=0.05)
    # No positive true risk: nothing to discriminate, only the means.
    assert set(evaluate_against_truth(np.full(5, 0.01), np.zeros(5))) == {"mean_risk", "mean_true_risk",
                                                                          "mean_abs_risk_error"}


def test_contrast_by_hand():
    from models.evaluation import evaluate_contrast

    treatment = np.array(["alemtuzumab", "alemtuzumab", "interferon_beta_1a"])
    predicted = {"alemtuzumab": np.array([0.3, 0.5, 0.2]), "interferon_beta_1a": np.array([0.1, 0.1, 0.05])}
    truth = {"alemtuzumab": np.array([0.4, 0.4, 0.2]), "interferon_beta_1a": np.array([0.1, 0.1, 0.1])}
    own_risk = np.array([0.3, 0.5, 0.05])
    own_truth = np.array([0.4, 0.4, 0.1])
    metrics = evaluate_contrast(predicted, truth, treatment, own_truth, own_risk)
    assert metrics["predicted_between_arms"] == pytest.approx(0.4 - 0.05)
    assert metrics["true_between_arms"] == pytest.approx(0.4 - 0.1)
    assert metrics["mean_predicted_excess"] == pytest.approx((0.2 + 0.4 + 0.15) / 3)
    assert metrics["mean_true_excess"] == pytest.approx((0.3 + 0.3 + 0.1) / 3)
    assert metrics["excess_mean_abs_error"] == pytest.approx((0.1 + 0.1 + 0.05) / 3)
    assert metrics["excess_correlation"] == pytest.approx(np.corrcoef([0.2, 0.4, 0.15], [0.3, 0.3, 0.1])[0, 1])


def test_slope_interval_is_paired_and_brackets_the_difference():
    from models.evaluation import evaluate_at_horizon

    rng = np.random.default_rng(8)
    truth = 1 / (1 + np.exp(-rng.normal(-2.0, 1.0, 20_000)))
    y = (rng.random(truth.size) < truth).astype(int)
    logit = np.log(truth / (1 - truth))
    compressed = 1 / (1 + np.exp(-(0.6 * logit - 0.8)))
    metrics = evaluate_at_horizon(y, compressed, np.ones(truth.size), truth, bootstrap=100)
    gap = metrics["calibration_slope"] - metrics["oracle_calibration_slope"]
    assert metrics["slope_minus_oracle_lo"] < gap < metrics["slope_minus_oracle_hi"]
    assert metrics["slope_minus_oracle_lo"] > 0.4  # 1 / 0.6 - 1: clearly off, and the interval says so


def test_log_loss_over_null_is_one_for_the_incidence_alone_and_below_for_an_informative_risk():
    from models.evaluation import log_loss_over_null

    y = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0])
    weight = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.5, 1.0])
    incidence = np.average(y, weights=weight)
    assert log_loss_over_null(y, np.full(len(y), incidence), weight) == pytest.approx(1.0)
    assert log_loss_over_null(y, np.where(y == 1, 0.6, 0.1), weight) < 0.6
    # Scale-free: a rare and a common outcome, each predicted by its incidence, both score 1.
    assert log_loss_over_null(np.repeat([1, 0], [1, 99]), np.full(100, 0.01), np.ones(100)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="events and non-events"):
        log_loss_over_null(np.zeros(5, dtype=int), np.full(5, 0.1), np.ones(5))
