"""Training against a real MLflow store (see the ``mlflow_store`` fixture)."""

import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.schema import ENDPOINTS, FEATURE_NAMES, ID_COLUMN, INPUT_NAMES, output_columns
from features.validation import validate_frame
from models.registry import MODEL_NAME, Candidate, choose, comparable
from models.scoring import score_batch

pytestmark = pytest.mark.integration
METRICS = ("auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo", "auprc_hi", "brier", "log_loss",
           "calibration_slope", "calibration_intercept", "observed_over_expected", "ici", "oracle_auroc",
           "auroc_over_oracle", "mean_abs_risk_error")


def family_runs(tiny_experiment):
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tiny_experiment.name)
    return client.search_runs([experiment.experiment_id])


def test_one_parent_run_one_child_per_family_and_nested_tuning_trials(mlflow_store, tiny_experiment):
    runs = family_runs(tiny_experiment)
    parents = [r for r in runs if r.data.tags.get("autorisk.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("autorisk.role") == "model"]
    trials = [r for r in runs if r.data.tags.get("autorisk.role") == "tuning-trial"]
    assert len(parents) == 1
    assert sorted(r.data.tags["autorisk.family"] for r in children) == ["binary-xgboost", "logistic", "xgboost"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    xgboost = next(r for r in children if r.data.tags["autorisk.family"] == "xgboost")
    assert len(trials) == 2 and all(t.data.tags["mlflow.parentRunId"] == xgboost.info.run_id for t in trials)
    assert all("validation_mean_log_loss" in t.data.metrics for t in trials)
    # The compare view lines runs up by name: every child logs the same keys.
    shared = [{k for k in r.data.params if not k.startswith("model.")} for r in children]
    assert shared[0] == shared[1] == shared[2]
    assert children[0].data.metrics.keys() - {"tuning_trials", "tuning_best_log_loss"} == \
        children[1].data.metrics.keys() - {"tuning_trials", "tuning_best_log_loss"}


def test_child_runs_log_every_metric_with_intervals(mlflow_store, tiny_experiment):
    client = MlflowClient()
    for result in mlflow_store["results"]:
        run = client.get_run(result.run_id)
        params, metrics = run.data.params, run.data.metrics
        assert params["sim.profiles.care-ms1.arms.alemtuzumab.targets.thyroid"] == "0.18"
        for endpoint in ("thyroid_24m", "thyroid_48m"):
            for name in METRICS:
                assert math.isfinite(metrics[f"{endpoint}_{name}"]), (result.family, endpoint, name)
            assert metrics[f"{endpoint}_auroc_lo"] <= metrics[f"{endpoint}_auroc"] <= metrics[f"{endpoint}_auroc_hi"]
            assert f"bench_{endpoint}_auroc" in metrics or endpoint.endswith("48m")  # care-ms1: 24 months
            assert f"ext_clinic_{endpoint}_auroc" in metrics
            assert f"sub_female_{endpoint}_auroc" in metrics
        contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(contexts) == {"training", "evaluation"} and all(d.digest for d in contexts.values())
        artifacts = {a.path for folder in ("plots", "model_card", "reference")
                     for a in client.list_artifacts(result.run_id, folder)}
        assert {"plots/roc_thyroid_24m.png", "plots/calibration_itp_48m.png",
                "plots/decision_curve_thyroid_48m.png", "model_card/model_card.md",
                "model_card/model_card.html", "reference/feature_profile.json"} <= artifacts


def test_censoring_aware_models_beat_the_one_that_ignores_censoring_at_48_months(mlflow_store):
    by_family = {r.family: r.metrics for r in mlflow_store["results"]}
    # Counting censored patients as non-events underestimates risk: observed/expected well above 1.
    assert by_family["binary-xgboost"]["thyroid_48m_observed_over_expected"] > 1.3
    assert 0.8 < by_family["xgboost"]["thyroid_48m_observed_over_expected"] < 1.25


def test_model_card_reports_intervals_and_limitations(mlflow_store):
    result = mlflow_store["results"][0]
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.md")
    assert f"version {result.model_version}" in card
    assert "Not for clinical decisions" in card and "IL-21 is contested" in card
    auroc = result.metrics["thyroid_24m_auroc"]
    assert f"{auroc:.3f} ({result.metrics['thyroid_24m_auroc_lo']:.3f}–" in card
    html = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.html")
    assert "<table>" in html


def test_registered_model_has_signature_from_schema(mlflow_store):
    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/1")
    assert info.signature.inputs.input_names() == [ID_COLUMN, *INPUT_NAMES]
    assert info.signature.outputs.input_names() == output_columns(ENDPOINTS)


def test_promotion_follows_the_stated_rule(mlflow_store):
    client = MlflowClient()
    calibrated = {r.model_version: r.metrics["mean_log_loss"] for r in mlflow_store["results"]
                  if all(0.8 <= r.metrics[f"{e}_calibration_slope"] <= 1.2 for e in ENDPOINTS)}
    best = min(calibrated, key=calibrated.get)
    assert mlflow_store["promotion"].chosen.version == best
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == best
    runs = mlflow.search_runs(experiment_names=["promotions"], output_format="list")
    logged = [r for r in runs if r.info.run_name == f"promote/{MODEL_NAME}/v{best}"]
    assert logged and logged[0].data.params["champion"] == best
    assert "calibration slope" in logged[0].data.params["rule"]


def candidate(version, metric, experiment="e", digest="d", slope=1.0):
    return Candidate(version=str(version), run_id="r", family="f", experiment=experiment,
                     config_digest=digest, metric=metric, slopes={"thyroid_24m": slope, "itp_24m": 1.0})


def test_promotion_rule_ties_calibration_and_comparability():
    assert choose([candidate(1, 0.2), candidate(2, 0.1), candidate(3, 0.1)]).version == "3"
    # the lowest log loss is passed over when its calibration slope is out of range
    assert choose([candidate(1, 0.05, slope=1.5), candidate(2, 0.1)]).version == "2"
    with pytest.raises(LookupError, match="calibration slope"):
        choose([candidate(1, 0.05, slope=0.5)])
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
    for endpoint in ENDPOINTS:
        risk = from_pyfunc[f"risk_{endpoint}"].to_numpy()
        shap_sum = from_pyfunc[[f"shap_{endpoint}__{f}" for f in FEATURE_NAMES]].sum(axis=1).to_numpy()
        np.testing.assert_allclose(from_pyfunc[f"base_{endpoint}"] + shap_sum, np.log(risk / (1 - risk)), atol=1e-4)


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
