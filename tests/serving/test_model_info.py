"""GET /model of the real server against the MLflow run of the served version."""

import math

import httpx
import pytest

from features.schema import FEATURES_BY_NAME, INPUT_NAMES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def info(shared_server):
    response = httpx.get(f"{shared_server['url']}/model", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def run(info, mlflow_store):
    import mlflow

    return mlflow.get_run(info["run_id"])


def test_names_the_served_version_like_predict(info, shared_server, mlflow_store):
    chosen = mlflow_store["promotion"].chosen
    assert (info["name"], info["version"], info["run_id"]) == ("autoimmunity-risk", chosen.version, chosen.run_id)
    predicted = httpx.post(f"{shared_server['url']}/predict", timeout=30, json={
        "patients": [{"age_years": 34, "sex": "female", "disease_duration_years": 2}]}).json()
    assert predicted["model"] == {k: info[k] for k in ("name", "version", "run_id")}
    assert info["family"] == chosen.family
    assert info["experiment"] == "tiny-test"


def test_lists_the_runs_datasets_with_digests(info, run):
    logged = {(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs}
    assert {(d["name"], d["digest"]) for d in info["datasets"]} == logged
    assert sorted(d["context"] for d in info["datasets"]) == ["evaluation", "training"]
    assert all(d["digest"] for d in info["datasets"])


def test_headline_metrics_are_the_runs(info, run):
    metrics = run.data.metrics
    assert info["promotion_metric"] == pytest.approx(metrics["mean_log_loss_over_null"])
    assert info["benchmark_cohort"] == run.data.params["benchmark_cohort"]
    endpoints = {f"{o}_{h}m" for o in info["outcomes"] for h in (12, 24, 36, 48)}
    assert set(info["benchmark"]) == set(info["held_out"]) == set(info["benchmark_against_truth"]) == endpoints
    for table in (info["benchmark"], info["held_out"]):
        assert None not in table["thyroid_24m"].values()  # common enough to have every metric
    assert info["benchmark"]["thyroid_48m"]["auroc"] is None  # CARE-MS I: nobody followed to 48 months
    for prefix, table in (("bench_", info["benchmark"]), ("", info["held_out"])):
        for endpoint, values in table.items():
            assert set(values) == {"auroc", "auroc_lo", "auroc_hi", "calibration_slope",
                                   "calibration_intercept", "observed_over_expected"}
            for name, value in values.items():
                logged = metrics.get(f"{prefix}{endpoint}_{name}")
                if logged is None or not math.isfinite(logged):
                    assert value is None
                else:
                    assert value == pytest.approx(logged)
    truth = info["benchmark_against_truth"]["thyroid_48m"]["interferon_beta_1a"]
    assert truth["mean_true_risk"] == pytest.approx(
        metrics["truth_bench_interferon_beta_1a_thyroid_48m_mean_true_risk"])


def test_says_what_it_answers_and_where_it_extrapolates(info, champion):
    assert info["notice"] == "Research tool on synthetic data; not for clinical decisions."
    assert info["outcomes"] == ["thyroid", "itp"]
    assert info["horizons_months"]["low"] == 1 and info["horizons_months"]["high"] == 72
    assert info["default_horizons_months"] == [24, 48]
    assert info["follow_up_months"] == {"interferon_beta_1a": 24.0, "alemtuzumab": 72.0}
    assert info["extrapolation_rule"] == champion.risk_model.extrapolation_rule
    assert info["explanation_scale"] == champion.risk_model.explanation_scale


def test_features_carry_units_and_ranges_from_the_schema_and_the_model(info, champion):
    assert [f["name"] for f in info["features"]] == list(INPUT_NAMES)
    by_name = {f["name"]: f for f in info["features"]}
    age = by_name["age_years"]
    assert (age["kind"], age["unit"], age["required"]) == ("number", "years", True)
    assert age["possible"] == {"low": 0.0, "high": 120.0, "low_inclusive": True, "high_inclusive": True}
    # the training ranges are the served version's own (what its training patients had)
    ranges = champion.risk_model.domain.input_ranges()
    assert (age["training"]["low"], age["training"]["high"]) == ranges["age_years"]
    assert 18 <= ranges["age_years"][0] < 20 and 53 < ranges["age_years"][1] <= 55
    il21 = by_name["il21_pg_ml"]
    assert il21["unit"] == "pg/mL" and il21["possible"]["low_inclusive"] is False
    assert il21["training"] is None
    assert {k: (v["low"], v["high"]) for k, v in il21["training_by_assay"].items()} == {
        kit: ranges[f"il21_pg_ml@{kit}"] for kit in ("legacy_elisa", "current_elisa") if f"il21_pg_ml@{kit}" in ranges}
    assert "legacy_elisa" in il21["training_by_assay"]
    assert by_name["treatment"]["categories"] == ["alemtuzumab", "interferon_beta_1a"]
    assert by_name["treatment"]["default"] == "alemtuzumab"
    assert by_name["sex"]["unit"] is None and by_name["sex"]["possible"] is None
    assert by_name["il21_assay"]["model_input"] is False
    for name, described in by_name.items():
        assert described["description"] == FEATURES_BY_NAME[name].description
        assert described["required"] == FEATURES_BY_NAME[name].required


def test_the_openapi_document_describes_get_model(shared_server):
    spec = httpx.get(f"{shared_server['url']}/docs.json", timeout=30).json()
    assert set(spec["paths"]["/model"]) == {"get"}
    answer = spec["paths"]["/model"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/ModelInfo"}
    assert "features" in spec["components"]["schemas"]["ModelInfo"]["properties"]
    assert "post" in spec["paths"]["/predict"]


def test_other_methods_on_model_get_a_405(shared_server):
    response = httpx.post(f"{shared_server['url']}/model", json={}, timeout=30)
    assert response.status_code == 405
