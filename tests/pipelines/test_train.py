"""Training against a real MLflow store (see the ``mlflow_store`` fixture)."""

import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.schema import FEATURE_NAMES, ID_COLUMN, INPUT_NAMES, output_columns
from features.validation import validate_frame
from models.registry import MODEL_NAME, Candidate, choose, comparable
from models.scoring import score_batch

pytestmark = pytest.mark.integration
METRICS = ("auroc", "auprc", "brier", "log_loss", "calibration_slope", "calibration_intercept", "oracle_auroc")


def test_one_parent_run_and_one_child_per_family(mlflow_store, tiny_experiment):
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tiny_experiment.name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("autorisk.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("autorisk.role") == "model"]
    assert len(parents) == 1
    assert sorted(r.data.tags["autorisk.family"] for r in children) == ["logistic", "xgboost"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    # The compare view lines runs up by name: every child logs the same keys.
    shared = [{k for k in r.data.params if not k.startswith("model.")} for r in children]
    assert shared[0] == shared[1]  # hyperparameters (model.*) are the family's own
    assert children[0].data.metrics.keys() == children[1].data.metrics.keys()


def test_child_runs_log_params_metrics_data_plots_and_model(mlflow_store, tiny_experiment):
    client = MlflowClient()
    for result in mlflow_store["results"]:
        run = client.get_run(result.run_id)
        params, metrics = run.data.params, run.data.metrics
        assert params["sim.profiles.care-ms1.arms.alemtuzumab.targets.thyroid"] == "0.18"
        assert params["family"] == result.family
        for outcome in tiny_experiment.outcomes:
            for name in METRICS:
                assert math.isfinite(metrics[f"{outcome}_{name}"]), (outcome, name)
            assert 0.5 < metrics[f"{outcome}_auroc"] <= 1.0
            assert metrics[f"{outcome}_auroc"] <= metrics[f"{outcome}_oracle_auroc"] + 0.05
            assert f"external_camms223_{outcome}_auroc" in metrics
        contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(contexts) == {"training", "evaluation"}
        assert all(d.digest for d in contexts.values())
        artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
        assert {"plots/roc_thyroid.png", "plots/calibration_itp.png"} <= artifacts
        version = client.get_model_version(MODEL_NAME, result.model_version)
        assert version.run_id == result.run_id


def test_registered_model_has_signature_from_schema(mlflow_store):
    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/1")
    assert info.signature.inputs.input_names() == [ID_COLUMN, *INPUT_NAMES]
    assert info.signature.outputs.input_names() == output_columns()


def test_promote_chooses_lowest_mean_log_loss(mlflow_store):
    client = MlflowClient()
    by_version = {r.model_version: r.metrics["mean_log_loss"] for r in mlflow_store["results"]}
    best = min(by_version, key=by_version.get)
    assert mlflow_store["promotion"].chosen.version == best
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == best


def candidate(version, metric, experiment="e", digest="d"):
    return Candidate(version=str(version), run_id="r", family="f", experiment=experiment,
                     config_digest=digest, metric=metric)


def test_promotion_rule_ties_and_comparability():
    assert choose([candidate(1, 0.2), candidate(2, 0.1), candidate(3, 0.1)]).version == "3"
    found = [candidate(1, 0.05, "old"), candidate(2, 0.2, "new", "a"), candidate(3, 0.1, "new", "b"),
             candidate(4, 0.3, "new", "b")]
    # only the newest config's versions compete: 1 (another experiment) and 2 (an older config) do not
    assert [c.version for c in comparable(found)] == ["3", "4"]
    assert [c.version for c in comparable(found, "old")] == ["1"]
    with pytest.raises(LookupError, match="experiments with versions: new, old"):
        comparable(found, "missing")


def test_pyfunc_champion_gives_the_same_numbers_as_the_scoring_function(mlflow_store, champion, make_cohort):
    cohort = make_cohort("care-ms2", 300, 99)[[ID_COLUMN, *INPUT_NAMES]]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    from_pyfunc = pyfunc.predict(cohort)
    direct = score_batch(champion.risk_model, validate_frame(cohort))[output_columns()]
    pd.testing.assert_frame_equal(from_pyfunc.reset_index(drop=True), direct, check_exact=False, rtol=0, atol=1e-12)
    for outcome in ("thyroid", "itp"):
        risk = from_pyfunc[f"risk_{outcome}"].to_numpy()
        shap_sum = from_pyfunc[[f"shap_{outcome}__{f}" for f in FEATURE_NAMES]].sum(axis=1).to_numpy()
        np.testing.assert_allclose(from_pyfunc[f"base_{outcome}"] + shap_sum, np.log(risk / (1 - risk)), atol=1e-4)


def test_pyfunc_accepts_what_batch_and_rest_accept(mlflow_store, champion):
    """Integers, text codings and missing values reach the model's own validation, not MLflow's types."""
    frame = pd.DataFrame({
        "patient_id": ["a", "b"], "age_years": [34, 51], "sex": ["F", "male"],
        "disease_duration_years": [2, 7], "relapses_prior_2y": [2, None],
        "smoker": ["yes", None], "prior_dmt": [1.0, 0.0],
        "il21_pg_ml": [420, None], "il21_assay": ["legacy_elisa", None],
    })
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    from_pyfunc = pyfunc.predict(frame)
    direct = score_batch(champion.risk_model, validate_frame(frame))[output_columns()]
    pd.testing.assert_frame_equal(from_pyfunc.reset_index(drop=True), direct, check_exact=False, rtol=0, atol=1e-12)


def test_pyfunc_rejects_invalid_patients_with_reasons(mlflow_store):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    bad = pd.DataFrame({"age_years": [30.0, 30.0], "sex": ["female", "female"],
                        "disease_duration_years": [2.0, 45.0]})
    with pytest.raises(ValueError, match=r"row 1: disease_duration_years: 45 exceeds age_years 30"):
        pyfunc.predict(bad)
