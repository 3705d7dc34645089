import numpy as np
import pandas as pd
import pytest

from features.schema import FEATURES_BY_NAME, OUTCOMES
from features.simulator import SimulatorConfig, simulate_cohort, true_risk
from features.validation import validate_frame

PROFILES = ("camms223", "care-ms1", "care-ms2")


def test_same_seed_same_cohort(make_cohort):
    pd.testing.assert_frame_equal(make_cohort("care-ms1", 500, 7), make_cohort("care-ms1", 500, 7))
    assert not make_cohort("care-ms1", 500, 7).equals(make_cohort("care-ms1", 500, 8))


@pytest.mark.parametrize("profile", PROFILES)
def test_cohort_is_valid_input_within_training_ranges(make_cohort, profile):
    cohort = make_cohort(profile, 5000, 1)
    batch = validate_frame(cohort, allow_extra=True)
    assert batch.rejects.empty
    assert (batch.warnings == "").all()
    for name in ("thyroid_event", "itp_event"):
        assert set(cohort[name].unique()) <= {0, 1}
    for outcome in OUTCOMES:
        risk = cohort[f"true_risk_{outcome}"]
        assert risk.between(0, 1).all()


@pytest.mark.parametrize("profile", PROFILES)
def test_incidence_per_arm_matches_target_at_200k(simulator, profile):
    cohort = simulate_cohort(simulator, profile, 200_000, 11)
    for arm, spec in simulator.profiles[profile].arms.items():
        members = cohort[cohort["treatment"] == arm]
        for outcome in OUTCOMES:
            target = spec.incidence[outcome]
            observed = members[f"{outcome}_event"].mean()
            expected = members[f"true_risk_{outcome}"].mean()
            assert abs(observed - target) < 0.005, (profile, arm, outcome, observed, target)
            assert abs(expected - target) < 0.002, (profile, arm, outcome, expected, target)


@pytest.mark.parametrize("profile", PROFILES)
def test_randomisation_ratio_matches_the_trial(simulator, profile):
    cohort = simulate_cohort(simulator, profile, 50_000, 3)
    arms = simulator.profiles[profile].arms
    expected = arms["alemtuzumab"].n_randomised / sum(a.n_randomised for a in arms.values())
    assert abs((cohort["treatment"] == "alemtuzumab").mean() - expected) < 0.01


def test_il21_effect_is_nonlinear_and_acts_only_after_alemtuzumab(simulator, make_cohort):
    base = make_cohort("care-ms1", 1, 0).iloc[[0] * 4].reset_index(drop=True)
    base = base.assign(il21_pg_ml=[50.0, 100.0, 1500.0, 3000.0], smoker=False,
                       family_history_autoimmunity=False, thyroid_antibodies=False)
    alemtuzumab = true_risk(simulator, "care-ms1", "thyroid", base.assign(treatment="alemtuzumab"))
    interferon = true_risk(simulator, "care-ms1", "thyroid", base.assign(treatment="interferon_beta_1a"))
    assert np.ptp(interferon) < 1e-12  # interaction: no IL-21 effect without alemtuzumab
    low_step, high_step = alemtuzumab[1] - alemtuzumab[0], alemtuzumab[3] - alemtuzumab[2]
    # Same doubling of IL-21, very different effect: a threshold, not linear in log IL-21.
    assert low_step < 0.01 and high_step < 0.01 and alemtuzumab[2] - alemtuzumab[1] > 0.2


def test_zero_il21_effect_removes_the_signal(simulator):
    data = simulator.model_dump()
    for outcome in OUTCOMES:
        data["risk"][outcome]["il21"]["max_odds_ratio"] = 1.0
    no_il21 = SimulatorConfig.model_validate(data)
    cohort = simulate_cohort(no_il21, "care-ms1", 20_000, 5)
    alem = cohort[cohort["treatment"] == "alemtuzumab"]
    correlation = np.corrcoef(np.log(alem["il21_pg_ml"].fillna(alem["il21_pg_ml"].median())),
                              alem["true_risk_thyroid"])[0, 1]
    assert abs(correlation) < 0.05


def test_missing_values_follow_configured_rates(simulator, make_cohort):
    cohort = make_cohort("care-ms2", 40_000, 2)
    for name, rate in simulator.population.missing_rate.items():
        assert abs(cohort[name].isna().mean() - rate) < 0.01, name
    for name in ("age_years", "sex", "disease_duration_years", "treatment"):
        assert FEATURES_BY_NAME[name].required or name == "treatment"
        assert cohort[name].notna().all()


def test_every_assumption_is_logged_as_a_param(simulator):
    params = simulator.assumption_params()
    assert params["sim.profiles.care-ms1.arms.alemtuzumab.incidence.thyroid"] == "0.18"
    assert "sim.risk.thyroid.il21.max_odds_ratio" in params
    assert all(len(key) <= 250 for key in params)
