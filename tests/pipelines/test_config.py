"""The typed experiment configuration: every shipped experiment loads, tuning spaces are checked."""

import pytest
from pydantic import ValidationError

from pipelines.config import EXPERIMENTS_DIR, FamilySpec, TuningSpec, load_experiment

EXPERIMENTS = sorted(p for p in EXPERIMENTS_DIR.glob("*.yaml") if p.name != "cohorts.yaml")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_loads(path):
    config = load_experiment(path)
    assert config.name == path.stem
    assert config.families


def test_tuning_bounds_keep_their_type():
    space = TuningSpec(n_trials=1, timeout_s=1, space={"max_depth": [1, 3], "min_child_weight": [1.0, 20.0]}).space
    assert all(isinstance(b, int) for b in space["max_depth"])
    # Written as reals, searched as reals (on a log scale), even when whole numbers.
    assert all(isinstance(b, float) for b in space["min_child_weight"])


@pytest.mark.parametrize("space, message", [
    ({"max_depth": [3, 1]}, "must be below"),
    ({"max_depth": [2, 2]}, "must be below"),
    ({"learning_rate": [0.0, 0.2]}, "log scale"),
    ({"max_depth": [1, 2, 3]}, "at most 2 items"),
    ({}, "at least 1 item"),
])
def test_tuning_space_rejects_unusable_bounds(space, message):
    with pytest.raises(ValidationError, match=message):
        TuningSpec(n_trials=1, timeout_s=1, space=space)


def test_tuning_space_names_estimator_parameters():
    tuning = {"n_trials": 1, "timeout_s": 1, "space": {"max_detph": [1, 3]}}
    with pytest.raises(ValidationError, match="tuning.space: .*max_detph"):
        FamilySpec(estimator="cox-xgboost", tuning=tuning)
    spec = FamilySpec(estimator="cox-xgboost", tuning=tuning | {"space": {"max_depth": [1, 3]}})
    assert spec.tuning.space == {"max_depth": (1, 3)}
    with pytest.raises(ValidationError, match="estimator: unknown 'xgboost'"):
        FamilySpec(estimator="xgboost")


def test_experiments_inherit_the_baseline_and_differ_only_where_they_say():
    baseline = load_experiment(EXPERIMENTS_DIR / "baseline-comparison.yaml")
    no_effect = load_experiment(EXPERIMENTS_DIR / "il21-no-effect.yaml")
    clinic = load_experiment(EXPERIMENTS_DIR / "trial-to-clinic.yaml")
    differs = {k for k in type(baseline).model_fields if getattr(baseline, k) != getattr(no_effect, k)}
    # il21-no-effect inherits il21-value: the baseline with the added value of IL-21 and the antibodies.
    assert differs == {"name", "description", "world", "added_value"}
    assert no_effect.families == baseline.families  # tuning included
    assert clinic.families == baseline.families
    assert {k for k in type(baseline).model_fields if getattr(baseline, k) != getattr(clinic, k)} == {
        "name", "description", "train_cohorts", "external_cohorts"}


def test_extends_merges_mappings_and_null_removes(tmp_path):
    (tmp_path / "cohorts.yaml").write_text((EXPERIMENTS_DIR / "cohorts.yaml").read_text())
    (tmp_path / "base.yaml").write_text((EXPERIMENTS_DIR / "baseline-comparison.yaml").read_text())
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\nname: child\nbootstrap: 5\n"
        "families: {cox-linear: null, cure-xgboost: null, cox-xgboost: {params: {max_depth: 2}}}\n")
    child = load_experiment(tmp_path / "child.yaml")
    base = load_experiment(tmp_path / "base.yaml")
    assert child.bootstrap == 5 and list(child.families) == ["cox-xgboost"]
    assert child.families["cox-xgboost"].params == base.families["cox-xgboost"].params | {"max_depth": 2}
    assert child.families["cox-xgboost"].tuning == base.families["cox-xgboost"].tuning
    assert child.simulator_config == (tmp_path / "cohorts.yaml").resolve()


def test_extends_in_a_circle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ValueError, match="circle"):
        load_experiment(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\nname: c\n")
    with pytest.raises(ValueError, match="missing.yaml"):
        load_experiment(tmp_path / "c.yaml")
