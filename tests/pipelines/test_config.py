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
        FamilySpec(estimator="xgboost", censoring="ipcw", calibration="platt", tuning=tuning)
    spec = FamilySpec(estimator="xgboost", censoring="ipcw", calibration="platt",
                      tuning=tuning | {"space": {"max_depth": [1, 3]}})
    assert spec.tuning.space == {"max_depth": (1, 3)}
