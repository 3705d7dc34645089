"""Added value of a predictor: hand-computed cases, brute-force cross-checks and invariants.

No published worked example of the continuous NRI or the IDI could be reproduced with certainty
(Pencina et al. 2008 and 2011 give formulas; their numeric examples need the Framingham data), so
the estimates are checked against independent brute-force computations instead: pairwise
concordance over every event/non-event pair, per-patient loops, and bootstrap resamples rebuilt by
duplicating rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models.incremental_value import (
    added_value,
    bootstrap_weights,
    delta_auroc,
    integrated_discrimination,
    net_benefit_difference,
    net_reclassification,
)
from models.survival import horizon_labels

# Six patients; the last one's status is unknown (weight 0) and its risks are extreme on purpose.
Y = np.array([1, 1, 0, 0, 0, 1])
W = np.array([1.0, 2.0, 1.0, 1.0, 2.0, 0.0])
OLD = np.array([0.3, 0.2, 0.2, 0.1, 0.4, 0.9])
NEW = np.array([0.5, 0.2, 0.1, 0.3, 0.3, 0.1])


def test_hand_computed_delta_auroc():
    # Weighted event/non-event pairs: events weigh 1 + 2 = 3, non-events 1 + 1 + 2 = 4, so 12 in all.
    # Old: event 0.3 beats 0.2 (1x1) and 0.1 (1x1), loses to 0.4 -> 2; event 0.2 ties 0.2 (2x1x0.5 = 1),
    #      beats 0.1 (2x1 = 2), loses to 0.4 -> 3; AUROC 5 / 12.
    # New: event 0.5 beats 0.1, 0.3, 0.3 (1 + 1 + 2 = 4); event 0.2 beats 0.1 (2), loses to both 0.3 -> 2;
    #      AUROC 6 / 12. Difference 1 / 12.
    result = delta_auroc(Y, NEW, OLD, W, bootstrap=0)
    assert result.old == pytest.approx(5 / 12)
    assert result.new == pytest.approx(6 / 12)
    assert result.difference.value == pytest.approx(1 / 12)
    assert np.isnan(result.difference.lo) and np.isnan(result.difference.hi)


def test_hand_computed_nri():
    # Events (weights 1, 2): 0.3 -> 0.5 up, 0.2 -> 0.2 unchanged: P(up) = 1/3, P(down) = 0 -> 1/3.
    # Non-events (1, 1, 2): 0.2 -> 0.1 down, 0.1 -> 0.3 up, 0.4 -> 0.3 down: P(down) = 3/4, P(up) = 1/4 -> 1/2.
    result = net_reclassification(Y, NEW, OLD, W, bootstrap=0)
    assert result.events.value == pytest.approx(1 / 3)
    assert result.nonevents.value == pytest.approx(1 / 2)
    assert result.total.value == pytest.approx(5 / 6)


def test_hand_computed_idi():
    # Events: (1 * (0.5 - 0.3) + 2 * 0) / 3 = 0.2 / 3.
    # Non-events: (1 * (0.2 - 0.1) + 1 * (0.1 - 0.3) + 2 * (0.4 - 0.3)) / 4 = 0.1 / 4 = 0.025.
    result = integrated_discrimination(Y, NEW, OLD, W, bootstrap=0)
    assert result.events.value == pytest.approx(0.2 / 3)
    assert result.nonevents.value == pytest.approx(0.025)
    assert result.total.value == pytest.approx(0.2 / 3 + 0.025)


def test_hand_computed_net_benefit_difference():
    # Threshold 0.25, odds 1/3, total weight 7. New treats 0.5 (event, 1), 0.3 and 0.3 (non-events, 1 + 2):
    # (1 - 3 / 3) / 7 = 0. Old treats 0.3 (event, 1) and 0.4 (non-event, 2); 0.9 has weight 0:
    # (1 - 2 / 3) / 7 = 1 / 21. Difference -1 / 21.
    result = net_benefit_difference(Y, NEW, OLD, W, np.array([0.25]), bootstrap=0)
    assert result.new == pytest.approx([0.0])
    assert result.old == pytest.approx([1 / 21])
    assert result.difference == pytest.approx([-1 / 21])


# --------------------------------------------------------------------------- brute force


def _pairwise_auroc(y, risk, w):
    num = den = 0.0
    for i in np.flatnonzero(y == 1):
        for j in np.flatnonzero(y == 0):
            pair = w[i] * w[j]
            den += pair
            num += pair * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
    return num / den


def _loop_nri_idi(y, new, old, w):
    up = {0: 0.0, 1: 0.0}
    down = {0: 0.0, 1: 0.0}
    change = {0: 0.0, 1: 0.0}
    total = {0: 0.0, 1: 0.0}
    for yi, a, b, wi in zip(y, new, old, w, strict=True):
        total[yi] += wi
        change[yi] += wi * (a - b)
        up[yi] += wi * (a > b)
        down[yi] += wi * (a < b)
    nri = ((up[1] - down[1]) / total[1], (down[0] - up[0]) / total[0])
    idi = (change[1] / total[1], -change[0] / total[0])
    return nri, idi


@pytest.fixture(scope="module")
def small_random():
    rng = np.random.default_rng(11)
    n = 80
    y = (rng.random(n) < 0.3).astype(int)
    old = np.round(rng.random(n) * 0.5 + 0.1 * y, 1)  # rounding to 0.1 makes many ties
    new = np.round(old + rng.normal(0, 0.1, n) + 0.1 * y, 1)
    w = rng.uniform(0.5, 2.0, n)
    w[::9] = 0.0
    return y, new, old, w


def test_estimates_match_brute_force(small_random):
    y, new, old, w = small_random
    known = w > 0
    auroc = delta_auroc(y, new, old, w, bootstrap=0)
    assert auroc.new == pytest.approx(_pairwise_auroc(y[known], new[known], w[known]), abs=1e-12)
    assert auroc.old == pytest.approx(_pairwise_auroc(y[known], old[known], w[known]), abs=1e-12)
    (nri_e, nri_ne), (idi_e, idi_ne) = _loop_nri_idi(y, new, old, w)
    nri = net_reclassification(y, new, old, w, bootstrap=0)
    idi = integrated_discrimination(y, new, old, w, bootstrap=0)
    assert (nri.events.value, nri.nonevents.value) == pytest.approx((nri_e, nri_ne), abs=1e-12)
    assert (idi.events.value, idi.nonevents.value) == pytest.approx((idi_e, idi_ne), abs=1e-12)


def test_paired_bootstrap_matches_resamples_rebuilt_by_duplicating_rows(small_random):
    # Each resample's weights are weight x (times drawn); the same resample built by repeating rows
    # and computed by brute force must give the same statistic, hence the same percentiles.
    y, new, old, w = small_random
    known = w > 0
    yk, nk, ok, wk = y[known], new[known], old[known], w[known]
    auroc_draws, nri_draws = [], []
    for resampled in bootstrap_weights(wk, 60, seed=5):
        counts = np.rint(resampled / wk).astype(int)
        rows = np.repeat(np.arange(len(yk)), counts)
        yr, nr, orr, wr = yk[rows], nk[rows], ok[rows], wk[rows]
        if 0 < yr.sum() < len(yr):
            auroc_draws.append(_pairwise_auroc(yr, nr, wr) - _pairwise_auroc(yr, orr, wr))
            nri_draws.append(sum(_loop_nri_idi(yr, nr, orr, wr)[0]))
    auroc = delta_auroc(y, new, old, w, bootstrap=60, seed=5)
    nri = net_reclassification(y, new, old, w, bootstrap=60, seed=5)
    assert (auroc.difference.lo, auroc.difference.hi) == pytest.approx(tuple(np.percentile(auroc_draws, [2.5, 97.5])))
    assert (nri.total.lo, nri.total.hi) == pytest.approx(tuple(np.percentile(nri_draws, [2.5, 97.5])))


# --------------------------------------------------------------------------- invariants


def test_identical_models_add_nothing(small_random):
    y, _, old, w = small_random
    result = added_value(y, old, old, w, bootstrap=200, seed=1)
    estimates = [result.auroc.difference, *vars(result.nri).values(), *vars(result.idi).values()]
    for estimate in estimates:
        assert estimate.value == 0.0
        assert estimate.contains(0.0)
    assert np.all(result.net_benefit.difference == 0.0)
    assert np.all((result.net_benefit.lo <= 0) & (result.net_benefit.hi >= 0))


def test_zero_weight_equals_leaving_the_rows_out(small_random):
    y, new, old, w = small_random
    rng = np.random.default_rng(2)
    extra = 25
    y_more = np.concatenate([y, rng.integers(0, 2, extra)])
    new_more = np.concatenate([new, rng.random(extra)])
    old_more = np.concatenate([old, rng.random(extra)])
    w_more = np.concatenate([w, np.zeros(extra)])
    with_rows = added_value(y_more, new_more, old_more, w_more, bootstrap=100, seed=3)
    known = w > 0
    without = added_value(y[known], new[known], old[known], w[known], bootstrap=100, seed=3)
    assert with_rows.auroc == without.auroc
    assert with_rows.nri == without.nri
    assert with_rows.idi == without.idi
    for field in ("new", "old", "difference", "lo", "hi"):
        np.testing.assert_array_equal(getattr(with_rows.net_benefit, field), getattr(without.net_benefit, field))


def test_swapping_the_models_negates_every_difference(small_random):
    y, new, old, w = small_random
    forward = added_value(y, new, old, w, bootstrap=0)
    backward = added_value(y, old, new, w, bootstrap=0)
    assert backward.auroc.difference.value == pytest.approx(-forward.auroc.difference.value)
    assert backward.nri.total.value == pytest.approx(-forward.nri.total.value)
    assert backward.idi.total.value == pytest.approx(-forward.idi.total.value)
    np.testing.assert_allclose(backward.net_benefit.difference, -forward.net_benefit.difference)


# --------------------------------------------------------------------------- real behaviour under censoring


def _censored_cohort(n, effect, seed):
    """Two predictors, exponential onset times, uniform censoring; status and IPCW weights at 24 months."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    hazard = 0.01 * np.exp(0.8 * x[:, 0] + effect * x[:, 1])
    onset = rng.exponential(1 / hazard)
    censor = rng.uniform(6, 48, n)
    labels = horizon_labels(np.minimum(onset, censor), (onset <= censor).astype(int), horizon=24.0)
    return x, labels.y, labels.weight


def _risks_with_and_without(effect, seed):
    x, y, w = _censored_cohort(4000, effect, seed)
    x_test, y_test, w_test = _censored_cohort(4000, effect, seed + 1)
    known = w > 0
    with_both = LogisticRegression().fit(x[known], y[known], sample_weight=w[known])
    without = LogisticRegression().fit(x[known, :1], y[known], sample_weight=w[known])
    return y_test, with_both.predict_proba(x_test)[:, 1], without.predict_proba(x_test[:, :1])[:, 1], w_test


def test_an_informative_predictor_has_an_interval_above_zero():
    y, new, old, w = _risks_with_and_without(effect=0.8, seed=20)
    assert (w == 0).any() and (w > 1).any()  # censoring did remove and reweight patients
    result = added_value(y, new, old, w, bootstrap=200, seed=0)
    assert result.auroc.difference.lo > 0
    assert result.nri.total.lo > 0
    assert result.idi.total.lo > 0
    assert result.idi.events.lo > 0 and result.idi.nonevents.lo > 0
    assert np.all(result.net_benefit.difference > 0)


def test_a_useless_predictor_has_an_interval_around_zero():
    y, new, old, w = _risks_with_and_without(effect=0.0, seed=30)
    result = added_value(y, new, old, w, bootstrap=200, seed=0)
    assert result.auroc.difference.contains(0.0)
    assert abs(result.auroc.difference.value) < 0.01
    assert result.idi.total.contains(0.0)
    assert result.nri.total.contains(0.0)
    # Pointwise 95% intervals over 26 thresholds: about one may miss 0 by chance, not more than a few.
    inside = (result.net_benefit.lo <= 0) & (result.net_benefit.hi >= 0)
    assert inside.mean() >= 0.9
    assert np.abs(result.net_benefit.difference).max() < 0.005


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="same length"):
        delta_auroc(Y, NEW[:-1], OLD, W)
    with pytest.raises(ValueError, match="0/1"):
        delta_auroc(Y * 2, NEW, OLD, W)
    with pytest.raises(ValueError, match="non-negative"):
        delta_auroc(Y, NEW, OLD, -W)
    with pytest.raises(ValueError, match="event"):
        delta_auroc(np.zeros(6, dtype=int), NEW, OLD, W)
