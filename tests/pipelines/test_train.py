"""Training against a real MLflow store (see the ``mlflow_store`` fixture), and its steps on small cohorts."""

import math
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.base import BaseEstimator

from features.schema import FEATURE_NAMES, ID_COLUMN, INPUT_NAMES, TREATMENTS
from features.validation import COLUMN_INDEX, validate_frame
from models.families import FAMILIES
from models.names import PROMOTION_METRIC, contrast_metric, endpoint_metric, truth_metric
from models.registry import MODEL_NAME, OE_RANGE, SLOPE_TOLERANCE, Candidate, choose, comparable
from models.scoring import ScoringOptions, score_batch
from pipelines.config import CohortSpec, FamilySpec, TuningSpec
from pipelines.steps import fit_family, simulate_cohorts, split, tune

pytestmark = pytest.mark.integration
LABEL_METRICS = ("auroc", "auroc_lo", "auroc_hi", "auprc", "brier", "log_loss", "log_loss_over_null",
                 "calibration_slope", "calibration_slope_lo", "calibration_slope_hi", "observed_over_expected_lo",
                 "observed_over_expected_hi", "oracle_calibration_slope", "slope_minus_oracle_lo", "slope_minus_oracle_hi",
                 "calibration_intercept", "observed_over_expected", "ici", "oracle_auroc", "auroc_over_oracle",
                 "mean_abs_risk_error")


def experiment_runs(tiny_experiment):
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tiny_experiment.name)
    return client.search_runs([experiment.experiment_id])


def test_one_parent_run_one_child_per_family_and_nested_tuning_trials(mlflow_store, tiny_experiment):
    runs = experiment_runs(tiny_experiment)
    parents = [r for r in runs if r.data.tags.get("autorisk.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("autorisk.role") == "model"]
    trials = [r for r in runs if r.data.tags.get("autorisk.role") == "tuning-trial"]
    assert len(parents) == 1
    assert sorted(r.data.tags["autorisk.family"] for r in children) == ["cox-linear", "cox-xgboost", "cure-xgboost"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    xgboost = next(r for r in children if r.data.tags["autorisk.family"] == "cox-xgboost")
    # One study per outcome, two trials each, logged with their own start and end times.
    assert sorted(t.data.tags["autorisk.outcome"] for t in trials) == ["itp", "itp", "thyroid", "thyroid"]
    assert all(t.data.tags["mlflow.parentRunId"] == xgboost.info.run_id for t in trials)
    assert all("validation_log_loss_over_null" in t.data.metrics for t in trials)
    assert all(t.info.status == "FINISHED" and t.info.end_time >= t.info.start_time for t in trials)
    # The compare view lines runs up by name: every child logs the same keys.
    shared = [{k for k in r.data.params if not k.startswith("model.")} for r in children]
    assert shared[0] == shared[1]
    tuning = {f"tuning_{o}_{m}" for o in ("thyroid", "itp") for m in ("trials", "best_log_loss_over_null")}
    assert tuning <= xgboost.data.metrics.keys()
    assert children[0].data.metrics.keys() - tuning == children[1].data.metrics.keys() - tuning


def test_each_outcome_is_tuned_by_its_own_study(mlflow_store, tiny_experiment):
    runs = experiment_runs(tiny_experiment)
    children = {r.data.tags["autorisk.family"]: r for r in runs if r.data.tags.get("autorisk.role") == "model"}
    for run in children.values():
        assert {k.split(".")[1] for k in run.data.params if k.startswith("model.")} == {"thyroid", "itp"}
    assert children["cox-linear"].data.params["model.itp.alpha"] == "1.0"
    trials = [r for r in runs if r.data.tags.get("autorisk.role") == "tuning-trial"]
    registered = {r.family: r for r in mlflow_store["results"]}
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{registered['cox-xgboost'].model_version}")
    outcomes = model.unwrap_python_model().risk_model.outcomes
    for outcome in ("thyroid", "itp"):
        own = [t for t in trials if t.data.tags["autorisk.outcome"] == outcome]
        best = min(own, key=lambda t: t.data.metrics["validation_log_loss_over_null"])
        chosen = children["cox-xgboost"].data.params[f"model.{outcome}.max_depth"]
        assert chosen == best.data.params[f"model.{outcome}.max_depth"]
        assert str(outcomes[outcome].estimator_.max_depth) == chosen  # the registered model was fitted with it


def test_child_runs_log_every_metric_against_outcomes_and_the_truth(mlflow_store, tiny_experiment):
    client = MlflowClient()
    for result in mlflow_store["results"]:
        run = client.get_run(result.run_id)
        params, metrics = run.data.params, run.data.metrics
        assert params["sim.profiles.care-ms1.arms.alemtuzumab.targets.thyroid"] == "0.18"
        for outcome in ("thyroid", "itp"):
            for horizon in tiny_experiment.evaluation_horizons_months:
                name = f"{outcome}_{horizon}m"
                for metric in LABEL_METRICS:
                    assert math.isfinite(metrics[endpoint_metric(name, metric)]), (result.family, name, metric)
                assert metrics[endpoint_metric(name, "auroc_lo")] <= metrics[endpoint_metric(name, "auroc")] \
                    <= metrics[endpoint_metric(name, "auroc_hi")]
                assert f"ext_clinic_{name}_auroc" in metrics
                # Against the truth: per arm of the benchmark (CARE-MS I: both arms) and both together.
                for arm in (*TREATMENTS, "all"):
                    assert truth_metric("bench", arm, name, "mean_risk") in metrics
                assert truth_metric("bench", "alemtuzumab", name, "auroc_over_oracle") in metrics
                assert contrast_metric("bench", name, "excess_correlation") in metrics
            # CARE-MS I follows patients for 24 months: no observed status at 48.
            assert f"bench_{outcome}_24m_auroc" in metrics and f"bench_{outcome}_48m_auroc" not in metrics
        assert "sub_female_thyroid_24m_auroc" in metrics and "sub_alemtuzumab_itp_48m_auroc" in metrics
        assert metrics["bench_patients_with_falling_risk"] == 0
        assert math.isfinite(metrics[PROMOTION_METRIC])
        contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(contexts) == {"training", "evaluation"} and all(d.digest for d in contexts.values())
        artifacts = {a.path for folder in ("plots", "model_card", "reference", "truth")
                     for a in client.list_artifacts(result.run_id, folder)}
        assert {"plots/roc_thyroid_24m.png", "plots/calibration_itp_48m.png", "plots/decision_curve_thyroid_48m.png",
                "plots/population_thyroid.png", "plots/population_itp.png", "model_card/model_card.md",
                "model_card/model_card.html", "reference/feature_profile.json", "truth/per_arm.csv",
                "truth/contrast.csv"} <= artifacts


def test_the_truth_tables_agree_with_the_metrics(mlflow_store):
    result = mlflow_store["results"][0]
    table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/truth/per_arm.csv"))
    row = table[(table.cohort == "bench") & (table.treatment == "interferon_beta_1a")
                & (table.endpoint == "thyroid_48m")].iloc[0]
    assert row["mean_risk"] == pytest.approx(
        result.metrics[truth_metric("bench", "interferon_beta_1a", "thyroid_48m", "mean_risk")])
    # The simulator's interferon risk is 0 for ITP: the model says under 0.01% by 48 months (docs/models.md).
    itp = table[(table.cohort == "bench") & (table.treatment == "interferon_beta_1a") & (table.endpoint == "itp_48m")]
    assert itp["mean_true_risk"].iloc[0] == 0 and itp["mean_risk"].iloc[0] < 1e-4


def test_model_card_reports_risk_over_time_and_its_limits(mlflow_store):
    result = mlflow_store["results"][0]
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.md")
    assert f"version {result.model_version}" in card
    assert "Not for clinical decisions" in card and "IL-21 is contested" in card
    assert "Alemtuzumab minus interferon beta-1a" in card and "interferon_beta_1a 24 months" in card
    assert "log(-log(1 - risk(t)))" in card and "extrapolated" in card
    auroc = result.metrics["thyroid_24m_auroc"]
    assert f"{auroc:.3f} ({result.metrics['thyroid_24m_auroc_lo']:.3f}–" in card
    assert "../plots/population_thyroid.png" in card
    html = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.html")
    assert "<table>" in html


def test_registered_model_has_signature_and_params_from_schema(mlflow_store):
    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/1")
    assert info.signature.inputs.input_names() == [ID_COLUMN, *INPUT_NAMES]
    assert {p.name: p.default for p in info.signature.params} == {"horizons_months": [24, 48], "contrast": False}


def test_promotion_follows_the_stated_rule(mlflow_store):
    """The rule reads only held-out figures a real study has: the calibration slope and O/E with their intervals,
    and the log loss; no figure against the simulator's truth."""
    client = MlflowClient()
    found = [r for r in mlflow_store["results"]]

    def reaches(r, metric, low, high, o, h):
        lo, hi = (r.metrics[endpoint_metric(f"{o}_{h}m", f"{metric}_{end}")] for end in ("lo", "hi"))
        return lo <= high and hi >= low

    calibrated = [r for r in found if all(
        reaches(r, "calibration_slope", 1 - SLOPE_TOLERANCE, 1 + SLOPE_TOLERANCE, o, h)
        and reaches(r, "observed_over_expected", *OE_RANGE, o, h) for o in ("thyroid", "itp") for h in (24, 48))]
    best = min(calibrated, key=lambda r: r.metrics[PROMOTION_METRIC]).model_version
    assert mlflow_store["promotion"].chosen.version == best
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == best
    runs = mlflow.search_runs(experiment_names=["promotions"], output_format="list")
    logged = [r for r in runs if r.info.run_name == f"promote/{MODEL_NAME}/v{best}"]
    assert logged and logged[0].data.params["champion"] == best
    assert "calibration slope" in logged[0].data.params["rule"] and "true risk" not in logged[0].data.params["rule"]


def candidate(version, metric, experiment="e", digest="d", slope=(1.0, 0.95, 1.05), oe=(1.0, 0.9, 1.1)):
    values = dict(zip(("slope", "slope_lo", "slope_hi", "oe", "oe_lo", "oe_hi"), (*slope, *oe), strict=True))
    return Candidate(version=str(version), run_id="r", family="f", experiment=experiment, config_digest=digest,
                     metric=metric, calibration={"thyroid_24m": values, "itp_24m": dict(values)})


def test_promotion_rule_ties_calibration_and_comparability():
    assert choose([candidate(1, 0.2), candidate(2, 0.1), candidate(3, 0.1)]).version == "3"
    # The lowest log loss is passed over when its calibration is shown to be off: a slope interval wholly
    # beyond 1 ± 0.2, or an O/E interval wholly beyond 0.8-1.25 ...
    assert choose([candidate(1, 0.05, slope=(1.4, 1.3, 1.5)), candidate(2, 0.1)]).version == "2"
    assert choose([candidate(1, 0.05, oe=(0.6, 0.5, 0.7)), candidate(2, 0.1)]).version == "2"
    # ... but not when the interval reaches within it (too few onsets to tell).
    assert choose([candidate(1, 0.05, slope=(1.5, 1.1, 2.0)), candidate(2, 0.1)]).version == "1"
    with pytest.raises(LookupError, match="held-out calibration is shown to be off"):
        choose([candidate(1, 0.05, slope=(0.5, 0.4, 0.7))])
    found = [candidate(1, 0.05, "old"), candidate(2, 0.2, "new", "a"), candidate(3, 0.1, "new", "b"),
             candidate(4, 0.3, "new", "b")]
    # Only the newest config's versions compete: 1 (another experiment) and 2 (an older config) do not.
    assert [c.version for c in comparable(found)] == ["3", "4"]
    assert [c.version for c in comparable(found, "old")] == ["1"]
    with pytest.raises(LookupError, match="experiments with versions: new, old"):
        comparable(found, "missing")


@pytest.mark.parametrize("params", [None, {"horizons_months": [6, 36, 60], "contrast": True}], ids=["default", "params"])
def test_pyfunc_champion_gives_the_same_numbers_as_the_scoring_function(mlflow_store, champion, make_cohort, params):
    cohort = make_cohort("care-ms2", 300, 99)[[ID_COLUMN, *INPUT_NAMES]]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    from_pyfunc = pyfunc.predict(cohort, params=params)
    options = ScoringOptions(horizons=tuple((params or {}).get("horizons_months", (24, 48))),
                             contrast=(params or {}).get("contrast", False))
    direct = score_batch(champion.risk_model, validate_frame(cohort), options)
    pd.testing.assert_frame_equal(from_pyfunc.reset_index(drop=True), direct, check_exact=False, rtol=0, atol=1e-12)
    extrapolated = from_pyfunc["warnings"].str.contains("extrapolated").to_numpy()
    # Interferon beyond 24 months is extrapolated: for its patients, and with the contrast for everyone.
    expected = np.ones(len(cohort), dtype=bool) if params else (cohort["treatment"] == "interferon_beta_1a").to_numpy()
    np.testing.assert_array_equal(extrapolated, expected)


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
    direct = score_batch(champion.risk_model, validate_frame(frame))
    pd.testing.assert_frame_equal(from_pyfunc.reset_index(drop=True), direct, check_exact=False, rtol=0, atol=1e-12)


def test_pyfunc_rejects_invalid_patients_and_horizons_with_reasons(mlflow_store):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    bad = pd.DataFrame({"age_years": [30.0, 30.0], "sex": ["female", "female"],
                        "disease_duration_years": [2.0, 45.0]})
    with pytest.raises(ValueError, match=r"row 1: disease_duration_years: 45 exceeds age_years 30"):
        pyfunc.predict(bad)
    with pytest.raises(ValueError, match="outside the range 1–72 months"):
        pyfunc.predict(bad.head(1), params={"horizons_months": [24, 96]})


class AntibodyHazard(BaseEstimator):
    """A relative hazard that reads thyroid antibodies only, with a tunable strength: thyroid needs a
    strong one (odds ratio 12 in the simulator), ITP none (odds ratio 1)."""

    def __init__(self, *, strength: float = 1.0):
        self.strength = strength

    def fit(self, X, y):
        self.fitted_ = True
        return self

    def predict(self, X):
        return self.strength * np.nan_to_num(np.asarray(X)[:, COLUMN_INDEX["thyroid_antibodies"]])

    def explain(self, X):
        contributions = np.zeros((len(X), len(FEATURE_NAMES)))
        contributions[:, COLUMN_INDEX["thyroid_antibodies"]] = self.predict(X)
        return np.zeros(len(X)), contributions


@pytest.fixture(scope="module")
def small_training_split(simulator):
    pooled = simulate_cohorts(simulator, [CohortSpec(profile="care-ms1", n=4000, seed=11),
                                          CohortSpec(profile="extension", n=3000, seed=12)])
    return split(pooled, 0.25, 7)[0]


def test_studies_choose_per_outcome(monkeypatch, simulator):
    """Thyroid and ITP need different strengths of the antibodies' effect (a log hazard ratio of about 1 for
    thyroid, none for ITP): a shared study could not pick both. Enough patients for ITP's loss to tell."""
    monkeypatch.setitem(FAMILIES, "antibodies", AntibodyHazard)
    train = split(simulate_cohorts(simulator, [CohortSpec(profile="care-ms1", n=30000, seed=11),
                                               CohortSpec(profile="extension", n=15000, seed=12)]), 0.25, 7)[0]
    spec = FamilySpec(estimator="antibodies", tuning=TuningSpec(n_trials=8, timeout_s=60, space={"strength": [0.01, 5.0]}))
    messages = []
    result = tune("antibodies", spec, train, ("thyroid", "itp"), (12, 24, 36, 48), 0.2, 7, messages.append)
    assert result.params["itp"]["strength"] < 0.6 < result.params["thyroid"]["strength"] < 2.0
    for outcome in ("thyroid", "itp"):
        own = [t for t in result.trials if t.outcome == outcome]
        assert len(own) == 8 and all(t.finished_ms >= t.started_ms for t in own)
        best = min(own, key=lambda t: t.value)
        assert best.params["strength"] == pytest.approx(result.params[outcome]["strength"])
        assert set(best.losses) == {f"{outcome}_{h}m" for h in (12, 24, 36, 48)}
        assert best.value == pytest.approx(np.mean(list(best.losses.values())))
    assert [m.split(":")[0].strip() for m in messages] == ["thyroid", "itp"]


class SlowHazard(AntibodyHazard):
    """The antibody hazard, taking at least ``seconds`` to fit."""

    seconds = 0.3

    def fit(self, X, y):
        time.sleep(self.seconds)
        return super().fit(X, y)


def tune_slowly(monkeypatch, train, seconds: float, timeout_s: float):
    """Tune the slow hazard on both outcomes; the number of trials of each study and the log."""
    monkeypatch.setitem(FAMILIES, "slow", SlowHazard)
    monkeypatch.setattr(SlowHazard, "seconds", seconds)
    spec = FamilySpec(estimator="slow", tuning=TuningSpec(n_trials=20, timeout_s=timeout_s, space={"strength": [0.01, 5.0]}))
    messages = []
    result = tune("slow", spec, train, ("thyroid", "itp"), (24, 48), 0.2, 7, messages.append)
    return {o: int(result.summary[f"tuning_{o}_trials"]) for o in ("thyroid", "itp")}, messages


def test_the_studies_share_the_time_limit(monkeypatch, small_training_split):
    # A trial fits one outcome, at least 0.3 s: in 1.5 s the thyroid study may start trials
    # during its half (at 0, 0.3 and 0.6 s), ITP during what is left (at most 0.9 s, three).
    trials, messages = tune_slowly(monkeypatch, small_training_split, seconds=0.3, timeout_s=1.5)
    assert all(n >= 1 for n in trials.values()) and sum(trials.values()) <= 7, trials
    assert all("time limit" in m for m in messages)


def test_a_study_with_no_time_left_still_runs_one_trial(monkeypatch, small_training_split):
    # The thyroid study's first trial (at least 1.2 s) outlasts the whole 1 s limit.
    trials, messages = tune_slowly(monkeypatch, small_training_split, seconds=1.2, timeout_s=1.0)
    assert trials == {"thyroid": 1, "itp": 1}
    assert messages[1].strip().startswith("itp: tuned over 1 trials (time limit of 0 s reached")


def test_fit_family_uses_each_outcomes_parameters(small_training_split):
    spec = FamilySpec(estimator="cox-xgboost", params={"n_estimators": 20, "max_depth": 3, "n_jobs": 1})
    model = fit_family("cox-xgboost", spec, small_training_split,
                       {"thyroid": spec.params, "itp": spec.params | {"max_depth": 1}})
    assert {o: m.estimator_.max_depth for o, m in model.outcomes.items()} == {"thyroid": 3, "itp": 1}


def test_each_family_logs_shap_pictures_and_the_card_shows_them(mlflow_store):
    import base64
    import re

    client = MlflowClient()
    for result in mlflow_store["results"]:
        logged = {a.path for a in client.list_artifacts(result.run_id, "explanations")}
        for outcome in ("thyroid", "itp"):
            assert {f"explanations/beeswarm_{outcome}.png", f"explanations/mean_abs_shap_{outcome}.png",
                    f"explanations/mean_abs_shap_{outcome}.csv"} <= logged
            table = pd.read_csv(mlflow.artifacts.download_artifacts(
                f"runs:/{result.run_id}/explanations/mean_abs_shap_{outcome}.csv"))
            assert set(table["feature"]) == set(FEATURE_NAMES)
            assert (table["mean_abs_shap"] >= 0).all() and table["mean_abs_shap"].is_monotonic_decreasing
        card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.md")
        assert "## Explanations (SHAP, held-out split)" in card
        assert "](../explanations/beeswarm_thyroid.png)" in card
        html = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.html")
        pictures = re.findall(r"src='data:image/png;base64,([^']+)'", html)
        assert len(pictures) == 4 and all(base64.b64decode(p)[:4] == b"\x89PNG" for p in pictures)
