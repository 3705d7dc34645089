"""The model-error term of the intervals: the Q-profile bound by hand and in simulation, calibration residuals of
a right and a wrong model, and what the served spread does with it."""

import numpy as np
import pytest
from scipy.stats import chi2

from models.model_error import (
    ModelErrorSpread,
    calibration_residuals,
    cloglog,
    heterogeneity_upper,
    model_error_variance,
    sampling_spread,
)
from models.survival import MONTHS


def test_the_upper_bound_by_hand_with_equal_variances():
    """With every v_g = v, Q(tau²) = sum y² / (v + tau²), so the bound is sum y² / chi2.ppf(0.025, k) - v."""
    residuals = np.array([0.3, -0.2, 0.25, -0.35, 0.1, 0.4])
    v = 0.01
    expected = np.sum(residuals ** 2) / chi2.ppf(0.025, len(residuals)) - v
    assert heterogeneity_upper(residuals, np.full(6, v)) == pytest.approx(expected, rel=1e-8)


def test_residuals_within_their_sampling_noise_give_no_error():
    residuals = np.array([0.01, -0.01, 0.005, 0.0])
    assert heterogeneity_upper(residuals, np.full(4, 0.04)) == 0.0


def test_the_bound_holds_the_true_heterogeneity_as_often_as_it_says():
    """A one-sided 97.5% bound: over draws of y_g ~ N(0, v_g + tau²), it lies above the true tau² 97.5% of the time."""
    rng = np.random.default_rng(0)
    tau2, variances = 0.04, rng.uniform(0.005, 0.03, 10)
    held = [heterogeneity_upper(rng.normal(0, np.sqrt(variances + tau2)), variances) >= tau2 for _ in range(2000)]
    assert 0.96 <= np.mean(held) <= 0.99


def _survival_data(rng, n, hazard_scale=1.0):
    """Exponential onsets with a patient-specific rate, censored uniformly over 12–48 months; the log cumulative
    hazard at 24 months that a model with the rates times ``hazard_scale`` would predict."""
    rate = np.exp(rng.normal(np.log(0.01), 0.6, n))
    onset, censor = rng.exponential(1 / rate), rng.uniform(12, 48, n)
    event, time = onset <= censor, np.minimum(onset, censor)
    return np.log(hazard_scale * rate * 24.0), event, time


def test_a_right_model_has_residuals_of_sampling_size_and_a_wrong_one_its_error_in_every_group():
    rng = np.random.default_rng(1)
    right = calibration_residuals(*_survival_data(rng, 40_000), 24.0)
    assert right is not None
    residuals, variances = right
    assert len(residuals) == 10
    assert np.all(np.abs(residuals) < 4 * np.sqrt(variances))
    wrong_log_hazard, event, time = _survival_data(np.random.default_rng(1), 40_000, hazard_scale=1.5)
    residuals, _ = calibration_residuals(wrong_log_hazard, event, time, 24.0)
    # cloglog(O) - cloglog(E): about -log 1.5 where risks are small, a little less in magnitude where they are not
    assert np.all((residuals < -0.25) & (residuals > -0.5))
    assert heterogeneity_upper(*calibration_residuals(wrong_log_hazard, event, time, 24.0)) > 0.05


def test_too_few_onsets_for_three_groups_give_nothing():
    log_hazard = np.zeros(100)
    event = np.zeros(100, dtype=bool)
    event[:25] = True
    assert calibration_residuals(log_hazard, event, np.full(100, 10.0), 24.0) is None


def test_the_variance_per_treatment_and_month():
    """Treatment 0 has no onsets: no term. Treatment 1 is followed to 36 months: the variance is interpolated
    between the grid's months and the last one's beyond."""
    rng = np.random.default_rng(2)
    n = 20_000
    strata = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    log_rate = np.r_[np.full(n, -12.0), rng.normal(np.log(0.01), 0.6, n)]
    onset = rng.exponential(1 / np.exp(log_rate))
    censor = np.r_[np.full(n, 24.0), np.minimum(rng.uniform(12, 48, n), 36.0)]
    event, time = (onset <= censor) & (strata == 1), np.minimum(onset, censor)
    months = (6, 12, 24, 36, 48)
    wrong = np.log(2.0 * np.exp(log_rate))[:, None] + np.log(np.asarray(months, dtype=float))[None, :]
    variance = model_error_variance(wrong, event, time, strata, 2, months)
    assert variance.shape == (2, len(MONTHS))
    assert (variance[0] == 0).all()
    assert (variance[1, [6, 12, 24, 36]] > 0.1).all()
    np.testing.assert_allclose(variance[1, 37:], variance[1, 36])
    assert variance[1, 18] == pytest.approx((variance[1, 12] + variance[1, 24]) / 2)


class _ConstantSpread:
    kind, refits = "learned", 20

    def log_sd(self, X, horizons):
        return np.full((len(X), len(tuple(horizons))), 0.3)


def test_the_served_spread_adds_the_variance_of_the_patients_treatment_and_month():
    from features.schema import CATEGORY_CODES, TREATMENT_FEATURE
    from features.validation import COLUMN_INDEX

    variance = np.zeros((2, len(MONTHS)))
    variance[int(CATEGORY_CODES[TREATMENT_FEATURE]["alemtuzumab"]), 24] = 0.16
    X = np.zeros((2, len(COLUMN_INDEX)))
    X[:, COLUMN_INDEX[TREATMENT_FEATURE]] = [CATEGORY_CODES[TREATMENT_FEATURE]["alemtuzumab"],
                                             CATEGORY_CODES[TREATMENT_FEATURE]["interferon_beta_1a"]]
    spread = ModelErrorSpread(_ConstantSpread(), variance)
    np.testing.assert_allclose(spread.log_sd(X, (12, 24)), [[0.3, 0.5], [0.3, 0.3]])
    assert spread.refits == 20 and isinstance(sampling_spread(spread), _ConstantSpread)
    assert cloglog(1 - np.exp(-1.0)) == pytest.approx(0.0)


def test_only_the_refits_part_takes_students_t():
    """Four refits' SD of 0.3 with a model error of 0.4: t(3) = 3.18 widens the refits' 0.3 alone, so the
    interval's half-width is 1.96 · sqrt((3.18 / 1.96 · 0.3)² + 0.4²) = 1.24, not 3.18 · 0.5 = 1.59."""
    from scipy.stats import norm, t

    from features.schema import CATEGORY_CODES, TREATMENT_FEATURE
    from features.validation import COLUMN_INDEX
    from models.intervals import interval_variance

    inner = _ConstantSpread()
    inner.refits = 4
    X = np.zeros((1, len(COLUMN_INDEX)))
    X[:, COLUMN_INDEX[TREATMENT_FEATURE]] = CATEGORY_CODES[TREATMENT_FEATURE]["alemtuzumab"]
    spread = ModelErrorSpread(inner, np.full((2, len(MONTHS)), 0.16))
    half_width = norm.ppf(0.975) * np.sqrt(interval_variance(spread, X, (24,)))
    expected = norm.ppf(0.975) * np.sqrt((t.ppf(0.975, 3) / norm.ppf(0.975) * 0.3) ** 2 + 0.16)
    np.testing.assert_allclose(half_width, [[expected]])
    assert expected == pytest.approx(1.24, abs=0.01)
