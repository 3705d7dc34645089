"""Training against a real MLflow store (see the ``mlflow_store`` fixture)."""

import math
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.schema import ENDPOINTS, FEATURE_NAMES, ID_COLUMN, INPUT_NAMES, output_columns
from features.validation import validate_frame
from models.estimators import FAMILIES
from models.registry import MODEL_NAME, Candidate, choose, comparable
from models.scoring import score_batch
from pipelines.config import CohortSpec, FamilySpec, TuningSpec
from pipelines.train import fit_family, log_loss_over_null, simulate_cohorts, split, tune

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
    # One study per outcome, two trials each.
    assert sorted(t.data.tags["autorisk.outcome"] for t in trials) == ["itp", "itp", "thyroid", "thyroid"]
    assert all(t.data.tags["mlflow.parentRunId"] == xgboost.info.run_id for t in trials)
    assert all("validation_log_loss_over_null" in t.data.metrics for t in trials)
    # The compare view lines runs up by name: every child logs the same keys.
    shared = [{k for k in r.data.params if not k.startswith("model.")} for r in children]
    assert shared[0] == shared[1] == shared[2]
    tuning = {f"tuning_{o}_{m}" for o in ("thyroid", "itp") for m in ("trials", "best_log_loss_over_null")}
    assert tuning <= xgboost.data.metrics.keys()
    assert children[0].data.metrics.keys() - tuning == children[1].data.metrics.keys() - tuning


def test_each_outcome_is_tuned_by_its_own_study(mlflow_store, tiny_experiment):
    runs = family_runs(tiny_experiment)
    children = {r.data.tags["autorisk.family"]: r for r in runs if r.data.tags.get("autorisk.role") == "model"}
    # Every family logs its hyperparameters per outcome, under the same names in every experiment.
    for run in children.values():
        assert {k.split(".")[1] for k in run.data.params if k.startswith("model.")} == {"thyroid", "itp"}
    assert children["logistic"].data.params["model.itp.C"] == "1.0"
    trials = [r for r in runs if r.data.tags.get("autorisk.role") == "tuning-trial"]
    registered = {r.family: r for r in mlflow_store["results"]}
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{registered['xgboost'].model_version}")
    estimators = model.unwrap_python_model().risk_model.estimators
    for outcome in ("thyroid", "itp"):
        own = [t for t in trials if t.data.tags["autorisk.outcome"] == outcome]
        assert all(set(t.data.params) == {k for k in children["xgboost"].data.params if k.startswith(f"model.{outcome}.")}
                   for t in own)
        best = min(own, key=lambda t: t.data.metrics["validation_log_loss_over_null"])
        chosen = children["xgboost"].data.params[f"model.{outcome}.max_depth"]
        assert chosen == best.data.params[f"model.{outcome}.max_depth"]
        # The registered model was fitted with its outcome's choice, at every horizon.
        for horizon in (24, 48):
            assert str(estimators[f"{outcome}_{horizon}m"].estimator.max_depth) == chosen


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


def test_log_loss_over_null_is_one_for_the_incidence_alone_and_below_for_an_informative_risk():
    y = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0])
    weight = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.5, 1.0])
    incidence = np.average(y, weights=weight)
    assert log_loss_over_null(y, np.full(len(y), incidence), weight) == pytest.approx(1.0)
    assert log_loss_over_null(y, np.where(y == 1, 0.6, 0.1), weight) < 0.6
    # Scale-free: a rare and a common outcome, each predicted by its incidence, both score 1.
    assert log_loss_over_null(np.repeat([1, 0], [1, 99]), np.full(100, 0.01), np.ones(100)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="events and non-events"):
        log_loss_over_null(np.zeros(5, dtype=int), np.full(5, 0.1), np.ones(5))


class ConstantRisk:
    """The same risk for every patient: its best value is the outcome's incidence."""

    def __init__(self, *, risk: float = 0.5):
        self.risk = risk

    def fit(self, X, y, sample_weight=None):
        return self

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 1.0 - self.risk), np.full(len(X), self.risk)])


@pytest.fixture(scope="module")
def small_training_split(simulator):
    pooled = simulate_cohorts(simulator, [CohortSpec(profile="care-ms1", n=4000, seed=11),
                                          CohortSpec(profile="extension", n=3000, seed=12)])
    return split(pooled, 0.25, 7)[0]


def tune_in_a_run(monkeypatch, tmp_path, spec, train):
    """``tune`` all four endpoints inside a run of a fresh store; (chosen params, the run, its experiment id, log)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = MlflowClient(uri).create_experiment("tuning")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri writes the environment too; undone after the test
    mlflow.set_tracking_uri(uri)
    messages = []
    with mlflow.start_run(experiment_id=experiment_id) as run:
        chosen = tune(spec, train, ("thyroid_24m", "thyroid_48m", "itp_24m", "itp_48m"), 0.2, 7, messages.append)
    assert set(chosen) == {"thyroid", "itp"}
    return chosen, run, experiment_id, messages


def test_studies_choose_per_outcome(monkeypatch, tmp_path, small_training_split):
    """Thyroid (common) and ITP (rare) need different constants: a shared study could not pick both."""
    monkeypatch.setitem(FAMILIES, "constant", ConstantRisk)
    spec = FamilySpec(estimator="constant", censoring="ipcw", calibration="platt",
                      tuning=TuningSpec(n_trials=8, timeout_s=60, space={"risk": [0.002, 0.6]}))
    chosen, parent, experiment_id, messages = tune_in_a_run(monkeypatch, tmp_path, spec, small_training_split)
    assert chosen["itp"]["risk"] < 0.05 < chosen["thyroid"]["risk"]
    trials = MlflowClient().search_runs([experiment_id],
                                        f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    for outcome in ("thyroid", "itp"):
        own = [t for t in trials if t.data.tags["autorisk.outcome"] == outcome]
        assert len(own) == 8
        best = min(own, key=lambda t: t.data.metrics["validation_log_loss_over_null"])
        assert float(best.data.params[f"model.{outcome}.risk"]) == pytest.approx(chosen[outcome]["risk"])
        assert {f"validation_{outcome}_24m_log_loss", f"validation_{outcome}_48m_log_loss"} <= best.data.metrics.keys()
    assert [m.split(":")[0].strip() for m in messages] == ["thyroid", "itp"]


class SlowConstantRisk(ConstantRisk):
    """A constant risk that takes at least ``seconds`` to fit."""

    seconds = 0.3

    def fit(self, X, y, sample_weight=None):
        time.sleep(self.seconds)
        return self


def tune_slowly(monkeypatch, tmp_path, train, seconds: float, timeout_s: float):
    """Tune the slow constant risk on both outcomes; the number of trials of each study and the log."""
    monkeypatch.setitem(FAMILIES, "slow-constant", SlowConstantRisk)
    monkeypatch.setattr(SlowConstantRisk, "seconds", seconds)
    spec = FamilySpec(estimator="slow-constant", censoring="ipcw", calibration="platt",
                      tuning=TuningSpec(n_trials=20, timeout_s=timeout_s, space={"risk": [0.002, 0.6]}))
    _, run, _, messages = tune_in_a_run(monkeypatch, tmp_path, spec, train)
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    return {o: int(metrics[f"tuning_{o}_trials"]) for o in ("thyroid", "itp")}, messages


def test_the_studies_share_the_time_limit(monkeypatch, tmp_path, small_training_split):
    # A trial fits two endpoints, at least 0.6 s: in 3 s the thyroid study may start trials
    # during its half (at 0, 0.6 and 1.2 s), ITP during what is left (at most 1.2 s, two).
    trials, messages = tune_slowly(monkeypatch, tmp_path, small_training_split, seconds=0.3, timeout_s=3.0)
    assert all(n >= 1 for n in trials.values()) and sum(trials.values()) <= 5, trials
    assert all("time limit" in m for m in messages)


def test_a_study_with_no_time_left_still_runs_one_trial(monkeypatch, tmp_path, small_training_split):
    # The thyroid study's first trial (at least 1.2 s) outlasts the whole 1 s limit.
    trials, messages = tune_slowly(monkeypatch, tmp_path, small_training_split, seconds=0.6, timeout_s=1.0)
    assert trials == {"thyroid": 1, "itp": 1}
    assert messages[1].strip().startswith("itp: tuned over 1 trials (time limit of 0 s reached")


def test_fit_family_uses_each_outcomes_parameters_at_every_horizon(small_training_split):
    spec = FamilySpec(estimator="xgboost", censoring="ipcw", calibration="platt",
                      params={"n_estimators": 20, "max_depth": 3, "n_jobs": 1})
    endpoints = ("thyroid_24m", "thyroid_48m", "itp_24m", "itp_48m")
    model = fit_family(spec, spec.params, small_training_split, endpoints, 0.2, 7,
                       outcome_params={"itp": spec.params | {"max_depth": 1}})
    depths = {e: model.estimators[e].estimator.max_depth for e in endpoints}
    assert depths == {"thyroid_24m": 3, "thyroid_48m": 3, "itp_24m": 1, "itp_48m": 1}
