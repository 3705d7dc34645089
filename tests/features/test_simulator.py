import numpy as np
import pandas as pd
import pytest

from features.cohort_report import build_report, incidence_checks, kaplan_meier_incidence
from features.schema import OUTCOMES
from features.simulator import SimulatorConfig, onset_cdf, simulate_cohort, true_risk
from features.validation import validate_frame

PROFILES = ("camms223", "care-ms1", "care-ms2", "extension", "clinic", "referral-clinic", "il21-high", "registry")


def test_same_seed_same_cohort(make_cohort):
    pd.testing.assert_frame_equal(make_cohort("care-ms1", 500, 7), make_cohort("care-ms1", 500, 7))
    assert not make_cohort("care-ms1", 500, 7).equals(make_cohort("care-ms1", 500, 8))


@pytest.mark.parametrize("profile", PROFILES)
def test_cohort_is_valid_input_with_event_times(make_cohort, simulator, profile):
    cohort = make_cohort(profile, 5000, 1)
    batch = validate_frame(cohort, allow_extra=True)
    assert batch.rejects.empty
    follow_up = simulator.profiles[profile].follow_up_months
    for outcome in OUTCOMES:
        event, time = cohort[f"{outcome}_event"], cohort[f"{outcome}_time_months"]
        assert set(event.unique()) <= {0, 1}
        assert ((time > 0) & (time <= follow_up)).all()
        for column in (f"true_risk_{outcome}", f"true_risk_{outcome}_24m", f"true_risk_{outcome}_48m"):
            assert cohort[column].between(0, 1).all()
        assert (cohort[f"true_risk_{outcome}_24m"] <= cohort[f"true_risk_{outcome}_48m"]).all()


@pytest.mark.parametrize("profile", PROFILES)
def test_validation_report_passes(simulator, profile):
    """Every published target of §1–2 (and the configured missingness) within its tolerance at n = 200,000."""
    report = build_report(simulator, profile, n=200_000, seed=11)
    failed = report.checks[~report.checks["passed"]]
    assert failed.empty, failed.to_string()
    if simulator.profiles[profile].target_kind != "none":
        assert (report.checks["section"] == "§2 incidence").any()


def test_report_fails_when_a_target_is_missed(simulator):
    cohort = simulate_cohort(simulator, "care-ms1", 20_000, 1)
    checks = incidence_checks(simulator, "care-ms1", cohort.assign(thyroid_event=0))
    missed = [c for c in checks if c.target.startswith("thyroid") and c.arm == "alemtuzumab"]
    assert missed and not any(c.passed for c in missed)
    assert all(c.passed for c in incidence_checks(simulator, "care-ms1", cohort) if c.target.startswith("itp"))


def test_kaplan_meier_matches_the_exact_risk_at_24_and_48_months(simulator):
    cohort = simulate_cohort(simulator, "extension", 200_000, 3)
    for outcome, tolerance in (("thyroid", 0.01), ("itp", 0.003)):
        km = kaplan_meier_incidence(cohort[f"{outcome}_time_months"], cohort[f"{outcome}_event"], [24, 48])
        exact = [cohort[f"true_risk_{outcome}_24m"].mean(), cohort[f"true_risk_{outcome}_48m"].mean()]
        np.testing.assert_allclose(km, exact, atol=tolerance)


def test_true_risk_is_the_probability_of_the_event_label(simulator):
    cohort = simulate_cohort(simulator, "care-ms2", 200_000, 4)
    for _arm, members in cohort.groupby("treatment"):
        for outcome in OUTCOMES:
            assert members[f"{outcome}_event"].mean() == pytest.approx(members[f"true_risk_{outcome}"].mean(), abs=0.004)


def test_kaplan_meier_by_hand():
    time = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    event = np.array([1, 0, 1, 1, 0])
    # S(1) = 4/5, S(2) = 4/5 * 3/4, S(3) = 3/5 * 1/2
    np.testing.assert_allclose(kaplan_meier_incidence(time, event, [0.5, 1, 2, 3, 10]),
                               [0.0, 0.2, 0.4, 0.7, 0.7])


def test_onset_peaks_in_year_three_on_alemtuzumab(simulator):
    by_year = np.diff(onset_cdf(simulator, "alemtuzumab", [0, 12, 24, 36, 48, 60, 72]))
    assert np.argmax(by_year) == 2
    assert onset_cdf(simulator, "alemtuzumab", 36) == pytest.approx(0.83)


def test_randomisation_ratio_matches_the_trial(simulator):
    for profile in ("camms223", "care-ms1", "care-ms2"):
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
    assert low_step < 0.01 and high_step < 0.01 and alemtuzumab[2] - alemtuzumab[1] > 0.1


def test_zero_il21_effect_removes_the_signal(simulator):
    data = simulator.model_dump()
    for outcome in OUTCOMES:
        data["risk"][outcome]["il21"]["max_odds_ratio"] = 1.0
    no_il21 = SimulatorConfig.model_validate(data)
    cohort = simulate_cohort(no_il21, "care-ms1", 20_000, 5)
    alem = cohort[(cohort["treatment"] == "alemtuzumab") & cohort["il21_pg_ml"].notna()]
    correlation = np.corrcoef(np.log(alem["il21_pg_ml"]), alem["true_risk_thyroid"])[0, 1]
    assert abs(correlation) < 0.05
    assert build_report(no_il21, "care-ms1", n=100_000, seed=2).passed  # targets still met


def test_the_current_kit_reads_the_same_patients_without_signal(simulator):
    """Azzopardi 2014: the current kit reads about ten times lower and has no predictive value."""
    legacy = simulate_cohort(simulator, "extension", 20_000, 9)
    current = simulate_cohort(simulator, "extension", 20_000, 9, il21_assay="current_elisa")
    pd.testing.assert_series_equal(legacy["true_risk_thyroid"], current["true_risk_thyroid"])
    pd.testing.assert_series_equal(legacy["thyroid_event"], current["thyroid_event"])
    both = legacy["il21_pg_ml"].notna()
    assert both.equals(current["il21_pg_ml"].notna())
    assert set(current.loc[both, "il21_assay"]) == {"current_elisa"}
    assert current["il21_assay"][~both].isna().all()
    readings = current.loc[both, "il21_pg_ml"]
    assert readings.between(1.0, 500.0).all()
    assert readings.median() == pytest.approx(22.2, rel=0.03)
    assert 9.3 < readings.median() < 53.1 and legacy.loc[both, "il21_pg_ml"].median() / readings.median() > 9
    assert abs(np.corrcoef(np.log(readings), np.log(legacy.loc[both, "il21_pg_ml"]))[0, 1]) < 0.03
    assert abs(np.corrcoef(np.log(readings), current.loc[both, "true_risk_thyroid"])[0, 1]) < 0.03
    # The legacy kit reads the true level itself: the risk function's IL-21 term follows from it.
    assert np.corrcoef(np.log(legacy.loc[both, "il21_pg_ml"]), legacy.loc[both, "true_risk_thyroid"])[0, 1] > 0.3


def test_external_populations_differ_in_risk_not_only_in_features(simulator, make_cohort):
    patients = make_cohort("clinic", 1, 0).iloc[[0] * 2].reset_index(drop=True).assign(
        smoker=[0.0, 1.0], family_history_autoimmunity=0.0, thyroid_antibodies=0.0, il21_pg_ml=200.0,
        treatment="alemtuzumab")
    clinic = true_risk(simulator, "clinic", "thyroid", patients, 48)
    referral = true_risk(simulator, "referral-clinic", "thyroid", patients, 48)
    odds = lambda r: r / (1 - r)  # noqa: E731
    # The same patients: 1.6 times the baseline odds of ever developing it; smoking 1.5 instead of 3.05.
    g48 = onset_cdf(simulator, "alemtuzumab", 48)
    assert odds(referral[0] / g48) / odds(clinic[0] / g48) == pytest.approx(1.6, rel=1e-9)
    assert odds(referral[1] / g48) / odds(referral[0] / g48) == pytest.approx(1.5, rel=1e-9)
    assert odds(clinic[1] / g48) / odds(clinic[0] / g48) == pytest.approx(3.05, rel=1e-9)
    high = simulate_cohort(simulator, "il21-high", 20_000, 3)
    trial = simulate_cohort(simulator, "care-ms2", 20_000, 3)
    trial = trial[trial["treatment"] == "alemtuzumab"]
    assert high["il21_pg_ml"].median() == pytest.approx(400, rel=0.03)
    assert high["true_risk_thyroid_48m"].mean() > trial["true_risk_thyroid_48m"].mean() + 0.03
    registry = simulate_cohort(simulator, "registry", 30_000, 3)
    assert set(registry["treatment"]) == {"alemtuzumab", "interferon_beta_1a"}
    by_arm = registry.groupby("treatment")[["true_risk_itp_48m", "true_risk_thyroid_48m"]].mean()
    care_ms1 = simulate_cohort(simulator, "care-ms1", 30_000, 3).groupby("treatment")[
        ["true_risk_itp_48m", "true_risk_thyroid_48m"]].mean()
    # Fewer thyroid disorders recorded than the trials', more ITP, and ITP on interferon too.
    assert by_arm.loc["alemtuzumab", "true_risk_thyroid_48m"] < care_ms1.loc["alemtuzumab", "true_risk_thyroid_48m"] - 0.05
    assert by_arm.loc["alemtuzumab", "true_risk_itp_48m"] > 1.2 * care_ms1.loc["alemtuzumab", "true_risk_itp_48m"]
    assert by_arm.loc["interferon_beta_1a", "true_risk_itp_48m"] > 0


def test_missingness_can_depend_on_other_features(simulator):
    cohort = simulate_cohort(simulator, "clinic", 100_000, 6)
    # clinic: smoking more often unrecorded in older patients (depends_on: age_years > 0)
    older = cohort["age_years"] > cohort["age_years"].median()
    assert cohort.loc[older, "smoker"].isna().mean() > cohort.loc[~older, "smoker"].isna().mean() + 0.05
    assert cohort["il21_pg_ml"].isna().mean() == pytest.approx(0.80, abs=0.01)


def test_every_assumption_is_logged_as_a_param(simulator):
    params = simulator.assumption_params()
    assert params["sim.world"] == "default" and params["sim.event_model.form"] == "ever-risk"
    assert params["sim.il21_assays.current_elisa.correlation"] == "0.0"
    assert params["sim.profiles.care-ms1.arms.alemtuzumab.targets.thyroid"] == "0.18"
    assert params["sim.onset.alemtuzumab.cdf"].startswith("0,0.15,0.43,0.83")
    assert "sim.risk.thyroid.il21.max_odds_ratio" in params
    assert all(len(key) <= 250 for key in params)
