"""The event forms in closed form, against hand-computed cases and scipy's numerical integration."""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import expit, logit

from features.event_model import (
    ArmCurve,
    arm_curve,
    arm_intercepts,
    observed_probability,
    onset_months,
    onset_shift,
    risk_by_month,
)
from features.simulator import draw_baseline, simulate_cohort, true_risk, true_risk_at
from pipelines.config import load_world

EVER = ArmCurve("ever-risk", np.array([0.0, 12.0, 24.0]), np.array([0.0, 0.25, 1.0]))
HAZARD = ArmCurve("proportional-hazards", np.array([0.0, 12.0, 24.0]), np.array([0.0, 0.5, 1.5]))


@pytest.fixture(scope="module")
def worlds():
    return {name: load_world(name) for name in ("default", "proportional-hazards", "early-onset")}


def test_risk_by_month_by_hand():
    # Ever-risk 0.4, onset CDF 0.125 at month 6, 0.625 at 18 and 1 from 24.
    risk = risk_by_month(EVER, [logit(0.4)], [0.0], [6, 18, 30])
    np.testing.assert_allclose(risk, [[0.05, 0.25, 0.4]], rtol=1e-14)
    # Onset shift k = 0.5 at month 18: T = 0.625 + 0.5 * 0.625 * 0.375 = 0.7421875.
    assert risk_by_month(EVER, [logit(0.4)], [0.5], [18])[0, 0] == pytest.approx(0.4 * 0.7421875, rel=1e-14)
    # Relative hazard 2 on a cumulative hazard of 0.5 by month 12 and 1.0 by month 18.
    np.testing.assert_allclose(risk_by_month(HAZARD, [math.log(2)], [0.0], [12, 18]),
                               [[1 - math.exp(-1), 1 - math.exp(-2)]], rtol=1e-14)


def test_observed_probability_by_hand_and_against_quadrature():
    uniform = ArmCurve("ever-risk", np.array([0.0, 24.0]), np.array([0.0, 1.0]))
    mu = 0.01
    # k = 0: 0.4 * (1 - exp(-0.24)) / 0.24.
    assert observed_probability(uniform, [logit(0.4)], [0.0], mu, 24)[0] == pytest.approx(
        0.4 * (1 - math.exp(-0.24)) / 0.24, rel=1e-13)
    # k = 0.5: density (1.5 - t / 24) / 24; I0 = (1 - e^-0.24) / mu, I1 = (1 - 1.24 e^-0.24) / mu^2.
    i0, i1 = (1 - math.exp(-0.24)) / mu, (1 - 1.24 * math.exp(-0.24)) / mu**2
    assert observed_probability(uniform, [logit(0.4)], [0.5], mu, 24)[0] == pytest.approx(
        0.4 * (1.5 * i0 - i1 / 24) / 24, rel=1e-12)
    # Without drop-out the observed probability is the risk at the follow-up.
    assert observed_probability(EVER, [logit(0.3)], [-0.4], 0.0, 18)[0] == pytest.approx(
        risk_by_month(EVER, [logit(0.3)], [-0.4], [18])[0, 0], rel=1e-14)
    for curve, lp, shift, follow_up in ((EVER, logit(0.35), 0.7, 20.0), (HAZARD, 0.3, 0.0, 20.0),
                                        (HAZARD, -2.0, 0.0, 30.0)):
        def density(t, curve=curve, lp=lp, shift=shift):
            step = 1e-6
            return (risk_by_month(curve, [lp], [shift], [t + step])[0, 0]
                    - risk_by_month(curve, [lp], [shift], [t - step])[0, 0]) / (2 * step) * math.exp(-mu * t)

        expected = sum(quad(density, a, b, epsabs=1e-13)[0] for a, b in ((0, 12), (12, min(24, follow_up))))
        assert observed_probability(curve, [lp], [shift], mu, follow_up)[0] == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize(("curve", "lp", "shift"), [(EVER, logit(0.5), 0.0), (EVER, logit(0.5), 0.8),
                                                    (EVER, logit(0.5), -0.6), (HAZARD, 0.2, 0.0)])
def test_onset_times_follow_the_risk(curve, lp, shift):
    n = 200_000
    rng = np.random.default_rng(3)
    onset = onset_months(curve, np.full(n, lp), np.full(n, shift), rng.random(n), rng.random(n))
    months = [3, 9, 12, 15, 20, 24]
    expected = risk_by_month(curve, [lp], [shift], months)[0]
    empirical = np.array([(onset <= m).mean() for m in months])
    np.testing.assert_allclose(empirical, expected, atol=4 * np.sqrt(0.25 / n))


def test_true_risk_is_the_form_by_hand(worlds):
    """Three patients, each outcome's risk composed by hand from the world's effects, intercept and curve."""
    for name, world in worlds.items():
        baseline = draw_baseline(world, "care-ms1", 3, np.random.default_rng(1)).assign(
            family_history_autoimmunity=[1.0, 0.0, 0.0], smoker=[0.0, 1.0, 0.0], thyroid_antibodies=[1.0, 0.0, 1.0],
            il21_pg_ml=[150.0, 420.0, 2000.0], sex=["female", "male", "female"],
            treatment=["alemtuzumab", "alemtuzumab", "interferon_beta_1a"])
        for outcome in ("thyroid", "itp"):
            effects = world.risk[outcome]
            step = expit((np.log(baseline["il21_pg_ml"]) - math.log(effects.il21.threshold_pg_ml)) / effects.il21.width_log)
            eta = (math.log(effects.family_history_autoimmunity.odds_ratio) * baseline["family_history_autoimmunity"]
                   + math.log(effects.smoker.odds_ratio) * baseline["smoker"]
                   + math.log(effects.thyroid_antibodies.odds_ratio) * baseline["thyroid_antibodies"]
                   + math.log(effects.il21.max_odds_ratio) * step * (baseline["treatment"] == "alemtuzumab"))
            intercepts = arm_intercepts(world, "care-ms1")
            lp = eta + baseline["treatment"].map(lambda t, o=outcome: intercepts[(t, o)])  # noqa: B023 - mapped at once
            shift = onset_shift(world, "care-ms1", outcome, baseline)
            for k, arm in enumerate(baseline["treatment"]):
                curve = arm_curve(world, arm, outcome)
                level = float(np.interp(36.0, curve.months, curve.values))
                if world.event_model.form == "proportional-hazards":
                    expected = 1 - math.exp(-math.exp(lp[k]) * level)
                else:
                    expected = expit(lp[k]) * (level + shift[k] * level * (1 - level))
                assert true_risk(world, "care-ms1", outcome, baseline, 36)[k] == pytest.approx(expected, rel=1e-12), \
                    (name, outcome, k)


def test_truth_columns_give_the_true_risk_at_any_month_in_every_form(worlds):
    for world in worlds.values():
        cohort = simulate_cohort(world, "care-ms2", 400, 5)
        baseline = draw_baseline(world, "care-ms2", 400, np.random.default_rng(5))
        for outcome in ("thyroid", "itp"):
            np.testing.assert_array_equal(true_risk_at(world, cohort, outcome, [24, 48]),
                                          cohort[[f"true_risk_{outcome}_24m", f"true_risk_{outcome}_48m"]])
            for arm in ("alemtuzumab", "interferon_beta_1a"):
                other = baseline.assign(treatment=arm)
                np.testing.assert_allclose(true_risk_at(world, cohort, outcome, [7, 30, 60], arm)[:, 1],
                                           true_risk(world, "care-ms2", outcome, other, 30), rtol=1e-13, atol=1e-300)


def test_proportional_hazards_keep_the_published_timing(worlds):
    world = worlds["proportional-hazards"]
    cohort = simulate_cohort(world, "extension", 100_000, 2)
    ever = cohort["true_ever_risk_thyroid_if_alemtuzumab"].mean()
    assert ever == pytest.approx(0.42, abs=0.003)
    # Share of the 72-month risk by month 36: 0.83, the published timing (the baseline hazard solved for it).
    assert cohort["true_risk_thyroid_36m"].mean() / ever == pytest.approx(0.83, abs=0.003)
    # The same hazard ratio at every month: ln(1 - risk) in proportion for two patients.
    hazards = -np.log1p(-true_risk_at(world, cohort.iloc[:2], "thyroid", [12, 24, 48]))
    np.testing.assert_allclose(hazards[0] / hazards[1], hazards[0, 0] / hazards[1, 0], rtol=1e-12)


def test_patient_timing_brings_onset_forward_and_keeps_the_published_timing(worlds):
    world = worlds["early-onset"]
    cohort = simulate_cohort(world, "extension", 100_000, 2)
    share = cohort["true_risk_thyroid_24m"] / cohort["true_ever_risk_thyroid_if_alemtuzumab"]
    primed = (cohort["thyroid_antibodies"] == True).to_numpy()  # noqa: E712 - object column with None
    assert share[primed].mean() > share[~primed].mean() + 0.05
    # Over the eventual cases, the timing is the published one: 43% of onsets by month 24, 83% by 36.
    weights = cohort["true_ever_risk_thyroid_if_alemtuzumab"]
    for month, published in ((24, 0.43), (36, 0.83)):
        assert cohort[f"true_risk_thyroid_{month}m"].sum() / weights.sum() == pytest.approx(published, abs=0.003)
    assert cohort["true_onset_shift_thyroid_if_alemtuzumab"].abs().max() <= 1


def test_a_timing_strong_enough_to_make_risks_fall_is_refused(worlds):
    data = worlds["early-onset"].model_dump()
    data["event_model"]["patient_timing"]["strength"] = 2.5
    with pytest.raises(ValueError, match="fall over time"):
        type(worlds["early-onset"]).model_validate(data)
    data = worlds["proportional-hazards"].model_dump()
    data["event_model"]["patient_timing"] = worlds["early-onset"].event_model.patient_timing.model_dump()
    with pytest.raises(ValueError, match="only in the ever-risk form"):
        type(worlds["proportional-hazards"]).model_validate(data)
