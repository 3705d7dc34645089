"""Added value of a predictor: the refit without it, the comparison, its metrics and its report in MLflow."""

import math

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.schema import FEATURE_NAMES
from features.validation import COLUMN_INDEX, encode
from models.incremental_value import added_value
from models.names import ADDED_VALUE_METRICS, added_value_metric
from pipelines.biomarker import (
    BENCHMARK,
    HELD_OUT,
    EvaluationSet,
    compare,
    evaluation_sets,
    measure_added_value,
    without,
)
from pipelines.config import EXPERIMENTS_DIR, CohortSpec, ExternalCohort, FamilySpec, load_experiment
from pipelines.steps import Cohorts, fit_family, simulate_cohorts, split, status_at


@pytest.fixture(scope="module")
def cohorts(simulator):
    pooled = simulate_cohorts(simulator, [CohortSpec(profile="care-ms1", n=5000, seed=21),
                                          CohortSpec(profile="extension", n=3000, seed=22)])
    train, test = split(pooled, 0.25, 7)
    current = simulate_cohorts(simulator, [CohortSpec(profile="care-ms1", n=2000, seed=23,
                                                      il21_assay="current_elisa")])
    benchmark = simulate_cohorts(simulator, [CohortSpec(profile="care-ms1", n=2000, seed=24)])
    return Cohorts(train, test, {"current-assay": current}, benchmark)


@pytest.fixture(scope="module")
def config():
    base = load_experiment(EXPERIMENTS_DIR / "il21-value.yaml")
    return base.model_copy(update={
        "external_cohorts": [ExternalCohort(name="current-assay", profile="care-ms1", n=2000, seed=23,
                                            il21_assay="current_elisa")],
        "bootstrap": 30, "added_value": ("il21_pg_ml", "thyroid_antibodies")})


LINEAR = FamilySpec(estimator="cox-linear", params={"alpha": 1.0})
XGBOOST = FamilySpec(estimator="cox-xgboost", params={"n_estimators": 40, "max_depth": 2, "learning_rate": 0.2,
                                                      "n_jobs": 1})


def test_without_makes_the_predictor_unknown_for_everyone_and_leaves_the_rest(cohorts):
    frame = cohorts.test.head(50)
    dropped = without(frame, "il21_pg_ml")
    assert dropped["il21_pg_ml"].isna().all() and dropped["il21_assay"].isna().all()
    matrix, original = encode(dropped), encode(frame)
    column = COLUMN_INDEX["il21_pg_ml@legacy_elisa"]
    assert np.isnan(matrix[:, column]).all()
    np.testing.assert_array_equal(np.delete(matrix, column, axis=1), np.delete(original, column, axis=1))
    antibodies = encode(without(frame, "thyroid_antibodies"))[:, COLUMN_INDEX["thyroid_antibodies"]]
    assert np.isnan(antibodies).all()
    assert frame["il21_pg_ml"].notna().any()  # the input is not changed


@pytest.mark.parametrize("spec", [LINEAR, XGBOOST], ids=["cox-linear", "cox-xgboost"])
def test_a_model_fitted_without_a_predictor_cannot_use_it(cohorts, spec):
    """Unknown throughout training, the predictor has a SHAP value of 0 for every patient and changing it
    changes no risk: dropping it this way is dropping it from the model."""
    params = {o: dict(spec.params) for o in ("thyroid", "itp")}
    reduced = fit_family(spec.estimator, spec, without(cohorts.train, "il21_pg_ml"), params)
    frame = cohorts.test.head(300)
    low, high = frame.assign(il21_pg_ml=20.0, il21_assay="legacy_elisa"), frame.assign(il21_pg_ml=3000.0,
                                                                                         il21_assay="legacy_elisa")
    for outcome, explanation in reduced.explain(encode(high), (24, 48)).items():
        assert np.all(explanation.shap[:, FEATURE_NAMES.index("il21_pg_ml")] == 0)
        np.testing.assert_allclose(explanation.risk, reduced.risks(encode(low), (24, 48))[outcome], rtol=1e-12)
    full = fit_family(spec.estimator, spec, cohorts.train, params)
    assert not np.allclose(full.risks(encode(low), (24,))["thyroid"], full.risks(encode(high), (24,))["thyroid"])


def test_evaluation_sets_give_the_kit_of_each_cohort(cohorts, config):
    sets = {s.name: s for s in evaluation_sets(config, cohorts)}
    assert list(sets) == [HELD_OUT, BENCHMARK, "current-assay"]
    assert (sets[HELD_OUT].kit, sets[BENCHMARK].kit, sets["current-assay"].kit) == (
        "legacy_elisa", "legacy_elisa", "current_elisa")
    assert [s.prefix for s in sets.values()] == ["", "bench_", "ext_current-assay_"]
    # An external cohort on its profile's own kit is not a kit comparison.
    plain = config.model_copy(update={"external_cohorts": [
        ExternalCohort(name="current-assay", profile="care-ms1", n=10, seed=1)]})
    assert [s.name for s in evaluation_sets(plain, cohorts)] == [HELD_OUT, BENCHMARK]


def test_compare_is_the_added_value_of_the_two_models_risks(cohorts):
    params = {o: dict(LINEAR.params) for o in ("thyroid", "itp")}
    full = fit_family("cox-linear", LINEAR, cohorts.train, params)
    reduced = fit_family("cox-linear", LINEAR, without(cohorts.train, "thyroid_antibodies"), params)
    target = EvaluationSet(HELD_OUT, "", "legacy_elisa", cohorts.test)
    found = {c.endpoint: c for c in compare(full, reduced, "thyroid_antibodies", target, (24, 48), bootstrap=20,
                                            seed=3)}
    # ITP has too few onsets at 48 months among 2,000 held-out patients (at most a handful) or enough:
    # either way thyroid at both horizons is compared.
    assert {"thyroid_24m", "thyroid_48m"} <= set(found)
    labels = status_at(cohorts.test, "thyroid", 24)
    direct = added_value(labels.y, full.risks(encode(cohorts.test), (24,))["thyroid"][:, 0],
                         reduced.risks(encode(without(cohorts.test, "thyroid_antibodies")), (24,))["thyroid"][:, 0],
                         labels.weight, bootstrap=20, seed=3)
    got = found["thyroid_24m"]
    assert got.value.auroc.difference == direct.auroc.difference
    assert got.value.nri == direct.nri and got.value.idi == direct.idi
    assert got.events == int(labels.y[labels.known].sum()) and got.known == int(labels.known.sum())


def test_measure_added_value_names_every_metric_and_finds_the_simulated_effects(cohorts, config):
    spec = XGBOOST
    params = {o: dict(spec.params) for o in config.outcomes}
    model = fit_family("cox-xgboost", spec, cohorts.train, params)
    messages = []
    value = measure_added_value("cox-xgboost", spec, model, params, cohorts, config, messages.append)
    metrics = value.metrics()
    for predictor in config.added_value:
        for prefix in ("", "bench_", "ext_current-assay_"):
            for metric in ADDED_VALUE_METRICS:
                assert math.isfinite(metrics[added_value_metric(predictor, "thyroid_24m", metric, prefix)]), \
                    (predictor, prefix, metric)
    # CARE-MS I follows patients for 24 months: nothing to compare at 48 outside the held-out split.
    assert added_value_metric("il21_pg_ml", "thyroid_48m", "delta_auroc") in metrics
    assert added_value_metric("il21_pg_ml", "thyroid_48m", "delta_auroc", "bench_") not in metrics
    # The simulator gives IL-21 (odds ratio up to 30) and thyroid antibodies (12) strong thyroid effects.
    for predictor in config.added_value:
        assert metrics[added_value_metric(predictor, "thyroid_24m", "delta_auroc_lo")] > 0
        assert metrics[added_value_metric(predictor, "thyroid_24m", "idi_lo")] > 0
    table = value.table()
    assert len(table) == len(value.comparisons) and set(table["kit"]) == {"legacy_elisa", "current_elisa"}
    curves = value.net_benefit_curves()
    assert set(curves["threshold"].round(2)) == set(np.round(np.arange(0.05, 0.301, 0.01), 2))
    assert [m.split(":")[0].strip() for m in messages] == ["without il21_pg_ml", "without thyroid_antibodies"]


def test_experiments_il21_value_and_no_effect_differ_only_in_the_simulator():
    baseline = load_experiment(EXPERIMENTS_DIR / "baseline-comparison.yaml")
    value = load_experiment(EXPERIMENTS_DIR / "il21-value.yaml")
    no_effect = load_experiment(EXPERIMENTS_DIR / "il21-no-effect.yaml")
    fields = type(baseline).model_fields
    assert {k for k in fields if getattr(baseline, k) != getattr(value, k)} == {"name", "description", "added_value"}
    assert value.added_value == ("il21_pg_ml", "thyroid_antibodies")
    assert {k for k in fields if getattr(value, k) != getattr(no_effect, k)} == {
        "name", "description", "world"}


@pytest.mark.parametrize("names, message", [(["treatment"], "not predictors"), (["il21"], "not predictors"),
                                            (["smoker", "smoker"], "twice")])
def test_added_value_names_predictors(names, message):
    base = load_experiment(EXPERIMENTS_DIR / "baseline-comparison.yaml")
    with pytest.raises(ValueError, match=message):
        type(base).model_validate(base.model_dump() | {"added_value": names})


@pytest.mark.integration
def test_every_family_run_logs_the_added_value_and_its_report(mlflow_store, tiny_experiment):
    client = MlflowClient()
    predictor = tiny_experiment.added_value[0]
    for result in mlflow_store["results"]:
        metrics = result.metrics
        for metric in ADDED_VALUE_METRICS:
            assert added_value_metric(predictor, "thyroid_24m", metric) in metrics, metric
        logged = client.get_run(result.run_id).data.metrics
        assert logged[added_value_metric(predictor, "thyroid_24m", "delta_auroc")] == pytest.approx(
            metrics[added_value_metric(predictor, "thyroid_24m", "delta_auroc")])
        artifacts = {a.path for folder in ("biomarker", "biomarker/plots")
                     for a in client.list_artifacts(result.run_id, folder)}
        assert {"biomarker/biomarker-value.md", "biomarker/biomarker-value.html", "biomarker/added_value.csv",
                "biomarker/net_benefit_difference.csv", "biomarker/plots/delta_auroc.png",
                f"biomarker/plots/net_benefit_difference_{predictor}.png"} <= artifacts
        report = mlflow.artifacts.load_text(f"runs:/{result.run_id}/biomarker/biomarker-value.md")
        delta = metrics[added_value_metric(predictor, "thyroid_24m", "delta_auroc")]
        assert "| held-out (legacy_elisa) | thyroid_24m |" in report and f"{delta:+.4f}" in report
        table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/biomarker/added_value.csv"))
        row = table[(table.cohort == HELD_OUT) & (table.endpoint == "thyroid_24m")].iloc[0]
        assert row["delta_auroc"] == pytest.approx(delta)
        card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.md")
        assert "## Added value of predictors" in card and "../biomarker/plots/delta_auroc.png" in card
        assert "<table>" in mlflow.artifacts.load_text(f"runs:/{result.run_id}/biomarker/biomarker-value.html")
