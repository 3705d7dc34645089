"""Shared fixtures: simulated cohorts and a real MLflow store with a trained champion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from features.simulator import load_simulator_config, simulate_cohort
from pipelines.config import DEFAULT_EXPERIMENT, CohortSpec, load_experiment


@pytest.fixture(scope="session")
def simulator():
    return load_simulator_config()


@pytest.fixture(scope="session")
def make_cohort(simulator):
    """Factory: ``make_cohort(profile, n, seed)`` -> simulated cohort frame."""

    def make(profile: str = "care-ms1", n: int = 200, seed: int = 0):
        return simulate_cohort(simulator, profile, n, seed)

    return make


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory):
    """The default experiment, shrunk to train in seconds (every family, tuning included for cox-xgboost), with
    the added value of IL-21."""
    from pipelines.config import ExternalCohort, TuningSpec

    config = load_experiment(DEFAULT_EXPERIMENT)
    xgboost, cure = config.families["cox-xgboost"], config.families["cure-xgboost"]
    return config.model_copy(update={
        "name": "tiny-test",
        "train_cohorts": [CohortSpec(profile="care-ms1", n=5000, seed=1),
                          CohortSpec(profile="extension", n=4000, seed=2)],
        "external_cohorts": [ExternalCohort(name="clinic", profile="clinic", n=3000, seed=3)],
        "benchmark_cohort": CohortSpec(profile="care-ms1", n=3000, seed=4),
        "bootstrap": 20,
        "added_value": ("il21_pg_ml",),
        "interval_refits": 4,
        "families": {
            "cox-linear": config.families["cox-linear"],
            "cox-xgboost": xgboost.model_copy(update={
                # Few, fast-learning trees: the small cohorts train in seconds and still calibrate.
                "params": {**xgboost.params, "n_estimators": 60, "learning_rate": 0.2, "n_jobs": 2},
                "tuning": TuningSpec(n_trials=2, timeout_s=60, space={"max_depth": [2, 3]}),
            }),
            "cure-xgboost": cure.model_copy(update={
                "params": {**cure.params, "n_estimators": 60, "learning_rate": 0.2, "n_jobs": 2},
                "tuning": None,
            }),
        },
    })


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory, tiny_experiment, _isolated_tracking_uri):
    """A real SQLite MLflow store in a temporary folder, with both families trained and a champion."""
    import mlflow

    from models.registry import promote
    from pipelines.train import run_experiment

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.environ["MLFLOW_TRACKING_URI"]
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    results = run_experiment(tiny_experiment, log=lambda *_: None)
    decision = promote(mlflow.MlflowClient())
    yield {"uri": uri, "folder": Path(folder), "results": results, "promotion": decision}
    os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def champion(mlflow_store):
    from models.registry import load_model

    return load_model()



@pytest.fixture(scope="session", autouse=True)
def _isolated_tracking_uri(tmp_path_factory):
    """Every test talks to a temporary store, never the project's own mlflow.db."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('empty-store') / 'mlflow.db'}"
    yield
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(autouse=True)
def _follow_tracking_env(_isolated_tracking_uri):
    """CLI commands set MLflow's process-wide tracking URI; reset it to the environment's after each test."""
    import mlflow

    yield
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
