"""The real BentoML server in a subprocess, over HTTP, against a real MLflow store."""

import os
import re
import sys
import time

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.schema import FEATURE_NAMES, RESEARCH_NOTICE
from pipelines.cli import app
from serving.schemas import PredictResponse
from tests.identity import explained_value
from tests.servers import free_port, running_server

pytestmark = pytest.mark.integration

PATIENTS = [
    {"patient_id": "a", "age_years": 34, "sex": "female", "disease_duration_years": 2.5,
     "edss": 2.0, "relapses_prior_2y": 2, "prior_dmt": False, "il21_pg_ml": 620.0, "il21_assay": "legacy_elisa", "smoker": True,
     "family_history_autoimmunity": False, "thyroid_antibodies": True, "treatment": "alemtuzumab"},
    {"patient_id": "b", "age_years": 41, "sex": "male", "disease_duration_years": 6.0},
    {"patient_id": "c", "age_years": 67, "sex": "male", "disease_duration_years": 12.0,
     "treatment": "interferon_beta_1a"},
]


@pytest.fixture(scope="module")
def server(mlflow_store, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store["uri"]}
    with running_server([sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port)],
                        ready_url=f"{url}/readyz", log=log, env=env):
        yield {"url": url, "log": log}


def post(server, body, **kwargs):
    return httpx.post(f"{server['url']}/predict", timeout=30, **({"json": body} if body is not None else {}), **kwargs)


def test_health_and_openapi(server):
    assert httpx.get(f"{server['url']}/livez").status_code == 200
    assert httpx.get(f"{server['url']}/readyz").status_code == 200
    spec = httpx.get(f"{server['url']}/docs.json").json()
    assert "/predict" in spec["paths"]


def test_predict_returns_risks_and_shap_with_the_model_version(server, mlflow_store, champion):
    response = post(server, {"patients": PATIENTS})
    assert response.status_code == 200, response.text
    body = response.json()
    PredictResponse.model_validate(body)  # the answer has the documented shape (OpenAPI's schema)
    assert body["model"]["name"] == "autoimmunity-risk"
    assert body["model"]["version"] == mlflow_store["promotion"].chosen.version
    assert body["notice"] == RESEARCH_NOTICE and body["horizons_months"] == [24, 48]
    assert [p["patient_id"] for p in body["predictions"]] == ["a", "b", "c"]
    for prediction in body["predictions"]:
        assert set(prediction["outcomes"]) == {"thyroid", "itp"}
        for outcome in prediction["outcomes"].values():
            assert [r["horizon_months"] for r in outcome["risks"]] == [24, 48]
            assert outcome["risks"][0]["risk"] <= outcome["risks"][1]["risk"]
            assert outcome["contrast"] is None
            for scores in outcome["risks"]:
                assert scores["scale"] == champion.risk_model.explanation_scale
                assert 0 < scores["risk"] < 1
                lower, upper = scores["risk_interval"]  # the 95% interval holds the risk
                assert 0 <= lower <= scores["risk"] < upper < 1
                assert set(scores["shap"]) == set(FEATURE_NAMES)
                expected = explained_value(scores["risk"], scores["scale"], scores.get("timing_share"))
                assert scores["base_value"] + sum(scores["shap"].values()) == pytest.approx(expected, abs=1e-9)
            years = outcome["by_year"]
            assert [y["year"] for y in years] == [1, 2, 3, 4, 5]
            assert all(a["risk"] <= b["risk"] for a, b in zip(years, years[1:], strict=False))
            highest = max(y["onset_in_year"] for y in years)
            tied = [y["year"] for y in years if y["onset_in_year"] >= highest * (1 - 1e-6)]
            assert outcome["peak_hazard_year"] == tied[0]
    assert [p["treatment"] for p in body["predictions"]] == ["alemtuzumab", "alemtuzumab", "interferon_beta_1a"]
    assert body["predictions"][0]["warnings"] == []
    assert body["predictions"][0]["outcomes"]["thyroid"]["peak_hazard_year"] == 3
    interferon = body["predictions"][2]
    assert any(re.fullmatch(r"age_years: 67 is outside the training range 18(\.\d)?–5\d(\.\d)? and is scored as "
                            r"5\d(\.\d)?: the risk may be unreliable", w) for w in interferon["warnings"]), interferon["warnings"]
    # Interferon was followed for 24 months in training: its 48-month risks are extrapolated and say so.
    assert [r["extrapolated"] for r in interferon["outcomes"]["thyroid"]["risks"]] == [False, True]
    assert any(w.startswith("extrapolated: risks at 48 months on interferon_beta_1a") for w in interferon["warnings"])


def test_horizons_and_contrast_on_request(server):
    body = post(server, {"patients": PATIENTS, "horizons_months": [60, 1, 36, 36], "contrast": True}).json()
    PredictResponse.model_validate(body)
    assert body["horizons_months"] == [1, 36, 60]
    for prediction in body["predictions"]:
        for outcome in prediction["outcomes"].values():
            assert [r["horizon_months"] for r in outcome["risks"]] == [1, 36, 60]
            for own, contrast in zip(outcome["risks"], outcome["contrast"], strict=True):
                risk_if = contrast[f"risk_if_{prediction['treatment']}"]
                assert own["risk"] == pytest.approx(risk_if, rel=1e-5)
                assert contrast["excess"] == pytest.approx(
                    contrast["risk_if_alemtuzumab"] - contrast["risk_if_interferon_beta_1a"], abs=1e-12)
                assert contrast["extrapolated"] == (contrast["horizon_months"] > 24)
        thyroid = prediction["outcomes"]["thyroid"]["contrast"]
        assert thyroid[-1]["excess"] > 0.05  # alemtuzumab's excess thyroid risk by five years


@pytest.mark.parametrize("extra, message", [
    ({"horizons_months": [24, 73]}, "less than or equal to 72"),
    ({"horizons_months": [0]}, "greater than or equal to 1"),
    ({"horizons_months": [24.5]}, "horizons_months"),
    ({"horizons_months": []}, "horizons_months"),
    ({"contrast": "maybe"}, "contrast"),
])
def test_bad_horizons_get_a_400_naming_the_range(server, extra, message):
    response = post(server, {"patients": PATIENTS[:1], **extra})
    assert response.status_code == 400, response.text
    assert message in response.text


CROSS_FIELD = [
    {"patient_id": "longer", "age_years": 34, "sex": "female", "disease_duration_years": 40},
    {"patient_id": "no-kit", "age_years": 34, "sex": "female", "disease_duration_years": 2, "il21_pg_ml": 620.0},
    {"patient_id": "both", "age_years": 30, "sex": "male", "disease_duration_years": 31.5, "il21_pg_ml": 80.0},
]


def test_rest_and_batch_reject_a_rule_between_inputs_with_the_same_reason(server, tmp_path):
    """The rules between inputs (features.validation.CROSS_FIELD_RULES) in the same words at both front doors:
    the REST request model's error and the file's rejects."""
    source, out = tmp_path / "patients.csv", tmp_path / "scores.csv"
    kit = {"patient_id": "kit", "age_years": 50, "sex": "male", "disease_duration_years": 9, "il21_pg_ml": 300.0,
           "il21_assay": "legacy_elisa"}  # the file names the kit where it is known, as a clinic's export would
    pd.DataFrame([*CROSS_FIELD, kit]).to_csv(source, index=False)
    result = CliRunner().invoke(app, ["score", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    batch = pd.read_csv(tmp_path / "scores.rejects.csv").set_index("patient_id")["reason"]
    assert sorted(batch.index) == sorted(p["patient_id"] for p in CROSS_FIELD)
    assert batch["both"] == ("disease_duration_years: 31.5 exceeds age_years 30; il21_assay: required when "
                             "il21_pg_ml is given (legacy_elisa or current_elisa)")
    for patient in CROSS_FIELD:
        response = post(server, {"patients": [patient]})
        assert response.status_code == 400, response.text
        assert [(d["loc"], d["msg"]) for d in response.json()["detail"]] == [
            (["patients", 0], f"Value error, {batch[patient['patient_id']]}")]


def _batch_extrapolated(warnings: str, treatment: str, horizon: int) -> bool:
    """Whether the batch ``warnings`` name ``horizon`` as extrapolated on ``treatment``."""
    for note in warnings.split("; "):
        prefix = "extrapolated: risks at "
        if note.startswith(prefix) and f" months on {treatment} lie beyond" in note:
            months = note[len(prefix):note.index(" months on ")].split(", ")
            if str(horizon) in months:
                return True
    return False


def test_rest_and_batch_give_the_same_numbers(server, tmp_path):
    """Every field of the REST answer against the batch front door scoring the same file: risks, bases,
    SHAP values, intervals, extrapolation, contrast, the years of the monitoring view and their peak,
    the treatment, the warnings, the inputs not provided and the model."""
    horizons = [12, 24, 36, 48, 60]  # the monitoring view's year ends, so by_year is checked too
    body = post(server, {"patients": PATIENTS, "horizons_months": horizons, "contrast": True}).json()
    source, out = tmp_path / "patients.csv", tmp_path / "scores.csv"
    pd.DataFrame(PATIENTS).to_csv(source, index=False)
    result = CliRunner().invoke(app, ["score", str(source), "--out", str(out), "--horizons",
                                      ",".join(map(str, horizons)), "--contrast"])
    assert result.exit_code == 0, result.output
    batch = pd.read_csv(out, keep_default_na=False).set_index("patient_id")
    drift = pd.read_json(tmp_path / "scores.drift.json", typ="series")
    assert body["model"] == drift["model"]
    assert body["horizons_months"] == horizons
    given = pd.DataFrame(PATIENTS).set_index("patient_id")
    for prediction in body["predictions"]:
        row = batch.loc[prediction["patient_id"]]
        assert prediction["treatment"] == row["treatment"]
        assert "; ".join(prediction["warnings"]) == row["warnings"]
        blank = {c for c in given.columns if pd.isna(given.loc[prediction["patient_id"], c])}
        assert prediction["not_provided"] == [n for n in FEATURE_NAMES if n in blank and n != "treatment"]
        for outcome, scores in prediction["outcomes"].items():
            assert [at["horizon_months"] for at in scores["risks"]] == horizons
            for at, contrast in zip(scores["risks"], scores["contrast"], strict=True):
                h = at["horizon_months"]
                name = f"{outcome}_{h}m"
                assert at["risk"] == pytest.approx(row[f"risk_{name}"], abs=1e-12)
                assert at["base_value"] == pytest.approx(row[f"base_{name}"], abs=1e-12)
                assert at["risk_interval"] == pytest.approx([row[f"risk_lo_{name}"], row[f"risk_hi_{name}"]], abs=1e-12)
                assert at["extrapolated"] == _batch_extrapolated(row["warnings"], prediction["treatment"], h)
                assert at["scale"] == "log cumulative hazard"
                for feature, value in at["shap"].items():
                    column = f"shap_{name}__treatment" if feature == "treatment" else f"shap_{outcome}__{feature}"
                    assert value == pytest.approx(row[column], abs=1e-12)
                assert contrast["horizon_months"] == h
                for treatment in ("alemtuzumab", "interferon_beta_1a"):
                    assert contrast[f"risk_if_{treatment}"] == pytest.approx(row[f"risk_{name}_if_{treatment}"], abs=1e-12)
                assert contrast["excess"] == pytest.approx(row[f"excess_{name}"], abs=1e-12)
                assert contrast["extrapolated"] == any(_batch_extrapolated(row["warnings"], t, h)
                                                       for t in ("alemtuzumab", "interferon_beta_1a"))
            # The monitoring view: the risk by each year's end, the year's hazard, the likeliest year.
            by_end = [row[f"risk_{outcome}_{12 * y}m"] for y in range(1, 6)]
            previous = [0.0, *by_end[:-1]]
            for year, before, after in zip(scores["by_year"], previous, by_end, strict=True):
                assert year["risk"] == pytest.approx(after, abs=1e-12)
                assert year["onset_in_year"] == pytest.approx(1 - (1 - after) / (1 - before), abs=1e-12)
                assert year["extrapolated"] == _batch_extrapolated(row["warnings"], prediction["treatment"],
                                                                   12 * year["year"])
            hazards = [1 - (1 - a) / (1 - b) for b, a in zip(previous, by_end, strict=True)]
            peak = next(y for y, v in enumerate(hazards, 1) if v >= max(hazards) * (1 - 1e-6))
            assert scores["peak_hazard_year"] == peak


@pytest.mark.parametrize("patient, field", [
    ({"age_years": 34, "sex": "female", "disease_duration_years": 2, "il_21": 600}, "il_21"),
    ({"age_years": 34, "sex": "woman", "disease_duration_years": 2}, "sex"),
    ({"age_years": 34, "sex": "female", "disease_duration_years": 40}, "disease_duration_years"),
    ({"age_years": 34, "sex": "female", "disease_duration_years": 2, "il21_pg_ml": -1,
      "il21_assay": "current_elisa"}, "il21_pg_ml"),
    ({"age_years": 34, "sex": "female", "disease_duration_years": 2, "il21_pg_ml": 30}, "il21_assay"),
    ({"age_years": 34, "sex": "female", "disease_duration_years": 2, "edss": 12}, "edss"),
    ({"age_years": "old", "sex": "female", "disease_duration_years": 2}, "age_years"),
    ({"sex": "female", "disease_duration_years": 2}, "age_years"),
])
def test_bad_patients_get_a_4xx_naming_the_field(server, patient, field):
    response = post(server, {"patients": [PATIENTS[0], patient]})
    assert 400 <= response.status_code < 500, response.text
    assert field in response.text


@pytest.mark.parametrize("body", [{"patients": []}, {}, {"patients": "x"}, [1, 2],
                                  {"patients": [PATIENTS[1]], "patient": {}}])
def test_malformed_requests_get_a_4xx(server, body):
    response = post(server, body)
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"--x\r\n"),
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"patients\"\r\n\r\n\xff\xfe\r\n--x--\r\n"),
    ("text/plain", b'{"patients": []}'),
    ("application/x-www-form-urlencoded", b"patients=1"),
])
def test_non_json_content_types_get_415(server, content_type, body):
    response = post(server, None, content=body, headers={"content-type": content_type})
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]


def test_non_json_body_gets_a_4xx(server):
    response = post(server, None, content=b"not json", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def test_rejected_patient_values_stay_out_of_the_server_log(server):
    sentinel = {"patient_id": "SENTINEL-ID-4242", "age_years": 34, "sex": "female",
                "disease_duration_years": 2, "il21_pg_ml": -98765.4321, "il21_assay": "legacy_elisa"}
    assert post(server, {"patients": [sentinel]}).status_code == 400
    assert post(server, None, content=b"SENTINEL-BODY-4242", headers={"content-type": "application/json"}).status_code == 400
    assert post(server, {"patients": [PATIENTS[0]]}).status_code == 200
    time.sleep(0.5)
    log = server["log"].read_text()
    assert "rejected input (patients.0.il21_pg_ml: greater_than); values withheld" in log
    for secret in ("SENTINEL-ID-4242", "98765", "SENTINEL-BODY-4242", "620.0"):
        assert secret not in log


def test_every_answer_names_the_model_version(server, mlflow_store):
    version = mlflow_store["promotion"].chosen.version
    assert post(server, {"patients": PATIENTS[:1]}).headers["x-model-version"] == version
    rejected = post(server, {"patients": [{**PATIENTS[0], "age_years": 400}]})
    assert rejected.status_code == 400 and rejected.headers["x-model-version"] == version
    assert httpx.get(f"{server['url']}/readyz").headers["x-model-version"] == version


def test_inputs_not_provided_are_named(server):
    body = post(server, {"patients": PATIENTS}).json()
    complete, minimal, _ = body["predictions"]
    assert complete["not_provided"] == []
    assert minimal["not_provided"] == ["edss", "relapses_prior_2y", "prior_dmt", "il21_pg_ml", "smoker",
                                       "family_history_autoimmunity", "thyroid_antibodies"]
    # Still credited: the model's treatment of an unknown value.
    assert any(r["shap"]["edss"] != 0 for r in minimal["outcomes"]["thyroid"]["risks"])
