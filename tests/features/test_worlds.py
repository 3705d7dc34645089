"""Every shipped world still matches every published figure it targets."""

import pytest

from features.cohort_report import build_report
from pipelines.config import load_world, world_names

OTHER_WORLDS = [w for w in world_names() if w != "default"]


def test_the_shipped_worlds_include_the_default_and_il21_no_effect():
    names = world_names()
    assert names[0] == "default" and "il21-no-effect" in names and len(names) >= 4
    forms = {load_world(w).event_model.form for w in names}
    assert forms == {"ever-risk", "proportional-hazards"}
    assert any(load_world(w).event_model.patient_timing is not None for w in names)
    assert {tuple(load_world(w).onset["interferon_beta_1a"].cdf) for w in names} >= {(0.0, 1.0), (0.0, 0.5, 1.0),
                                                                                       (0.0, 0.2, 1.0)}


@pytest.mark.parametrize("world", OTHER_WORLDS)
@pytest.mark.parametrize("profile", ["extension", "camms223"])
def test_every_world_passes_the_cohort_report(world, profile):
    """§2 incidences and timing, §3 IL-21 and §4 effects (n = 100,000: the trials' 0.5-point tolerance is
    over 3 standard errors of an arm's observed share)."""
    config = load_world(world)
    assert config.world == world and config.world_source
    report = build_report(config, profile, n=100_000, seed=12)
    failed = report.checks[~report.checks["passed"]]
    assert failed.empty, failed.to_string()
    if profile == "extension":
        assert set(report.checks["section"]) >= {"§2 incidence", "§2 timing", "§3 IL-21", "§4 effects"}


def test_a_world_outside_the_evidence_fails_the_report_unless_it_says_so():
    config = load_world("il21-no-effect")
    assert config.evidence_departures  # it states that it leaves the IL-21 ratio of Azzopardi 2014
    report = build_report(config.model_copy(update={"evidence_departures": {}}), "extension", n=50_000, seed=3)
    failed = report.checks[~report.checks["passed"]]
    assert list(failed["target"]) == [t for t in report.checks["target"] if t.startswith("IL-21 (original kit)")]
    strong = load_world("default", overrides={"risk": {"thyroid": {"smoker": {"odds_ratio": 12.0}}}})
    checks = build_report(strong, "extension", n=50_000, seed=3).checks
    assert not checks[checks["target"] == "thyroid: smoker, adjusted OR of an onset by month 72"]["passed"].any()


def test_unknown_world_is_refused_naming_the_shipped_ones():
    with pytest.raises(ValueError, match="world: unknown 'flat'; choose from default, "):
        load_world("flat")
