"""FHIR R4 over real HTTP: $assess gives /predict's numbers as RiskAssessments that two validators accept."""

import httpx
import pytest

from features.schema import RESEARCH_NOTICE
from tests.fhir_checks import (
    PATIENT_ID,
    PROJECT,
    REST_PATIENT,
    assert_valid_fhir,
    assess_bundle,
    fhir_resources_errors,
    medication_request,
    patient_resources,
)

pytestmark = pytest.mark.integration

FHIR_JSON = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
INTERVAL = "https://autorisk.invalid/fhir/StructureDefinition/risk-interval"
EXPLANATION = "https://autorisk.invalid/fhir/StructureDefinition/risk-explanation"


def assess(server, body, **headers):
    return httpx.post(f"{server['url']}/fhir/RiskAssessment/$assess", json=body, timeout=30,
                      headers={**FHIR_JSON, **server["headers"], **headers})


def extension(element: dict, url: str) -> dict:
    return {e["url"]: e for e in element.get("extension", [])}[url]


def parts(complex_extension: dict) -> dict:
    return {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in complex_extension["extension"]
            if e["url"] != "contribution"}


@pytest.fixture(scope="module")
def predicted(token_server):
    body = {"patients": [REST_PATIENT], "horizons_months": [24, 48], "contrast": True}
    response = httpx.post(f"{token_server['url']}/predict", json=body, headers=token_server["headers"], timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def described(token_server):
    return httpx.get(f"{token_server['url']}/model", headers=token_server["headers"], timeout=30).json()


@pytest.fixture(scope="module")
def assessed(token_server):
    response = assess(token_server, assess_bundle())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    return response.json()


def test_assess_answers_predicts_numbers_as_risk_assessments(assessed, predicted, described):
    """The same numbers as /predict to 1e-12: risks, intervals, SHAP values, base values, relative risks."""
    assert_valid_fhir(assessed)
    kinds = [e["resource"]["resourceType"] for e in assessed["entry"]]
    assessments = [e["resource"] for e in assessed["entry"] if e["resource"]["resourceType"] == "RiskAssessment"]
    expected = predicted["predictions"][0]
    assert kinds.count("RiskAssessment") == len(expected["outcomes"]) and "Provenance" in kinds
    for assessment, (outcome, scores) in zip(assessments, expected["outcomes"].items(), strict=True):
        assert assessment["code"]["coding"][0]["code"] == f"risk-{outcome}"
        assert assessment["subject"]["reference"].endswith("00000000-0000-4000-8000-000000000000")
        assert RESEARCH_NOTICE in [n["text"] for n in assessment["note"]]
        assert described["version"] in assessment["method"]["text"] and described["version"] in \
            assessment["performer"]["display"]
        for at, contrast, fhir_at in zip(scores["risks"], scores["contrast"], assessment["prediction"], strict=True):
            assert fhir_at["whenRange"]["high"] == {"value": at["horizon_months"], "unit": "months",
                                                    "system": "http://unitsofmeasure.org", "code": "mo"}
            assert fhir_at["probabilityDecimal"] == pytest.approx(at["risk"], abs=1e-12)
            assert fhir_at["relativeRisk"] == pytest.approx(at["risk"] / contrast["risk_if_interferon_beta_1a"],
                                                            rel=1e-12)
            interval = parts(extension(fhir_at, INTERVAL))
            assert [interval["low"], interval["high"]] == pytest.approx(at["risk_interval"], abs=1e-12)
            assert interval["name"] == described["interval"]["name"]
            assert interval["level"] == described["interval"]["level"]
            explanation = extension(fhir_at, EXPLANATION)
            assert parts(explanation) == {"scale": at["scale"], "baseValue": pytest.approx(at["base_value"],
                                                                                                   abs=1e-12)}
            shap = {c["extension"][0]["valueCoding"]["code"]: c["extension"][1]["valueDecimal"]
                    for c in explanation["extension"] if c["url"] == "contribution"}
            assert shap == pytest.approx(at["shap"], abs=1e-12)
    # The basis names the resources each input came from.
    basis = {b["reference"]: b["display"] for b in assessments[0]["basis"]}
    assert "Condition: Disease duration" in basis.values()
    assert any("Serum IL-21" in text and "IL-21 kit" in text for text in basis.values())


def test_parameters_with_horizons_give_the_same_risks(token_server, assessed):
    resources = patient_resources()
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "resource": resources[0]}, {"name": "condition", "resource": resources[1]},
        *({"name": "observation", "resource": r} for r in resources[2:]),
        {"name": "treatment", "valueCode": "alemtuzumab"}, {"name": "courseDate", "valueDate": "2024-03-15"},
        {"name": "horizon", "valueInteger": 48}, {"name": "horizon", "valueInteger": 12}]}
    response = assess(token_server, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_valid_fhir(answer)
    thyroid = answer["entry"][0]["resource"]["prediction"]
    assert [p["whenRange"]["high"]["value"] for p in thyroid] == [12, 48]
    from_bundle = assessed["entry"][0]["resource"]["prediction"][1]
    assert thyroid[1]["probabilityDecimal"] == from_bundle["probabilityDecimal"]
    assert answer["entry"][0]["resource"]["subject"] == {"reference": f"Patient/{PATIENT_ID}", "display": "Patient"}


def _with(resources_change):
    body = assess_bundle()
    resources_change([e["resource"] for e in body["entry"]])
    return body


@pytest.mark.parametrize("change, status, where, words", [
    (lambda rs: rs[0].update(gender="unknown"), 422, "Bundle.entry[0].resource.gender", "Sex"),
    (lambda rs: rs[0].update(birthDate="1900-01-01"), 422, "Bundle.entry[0].resource.birthDate", "less than or equal to 120"),
    (lambda rs: rs[2]["valueQuantity"].update(value="high"), 400, "Bundle.entry[2].resource.valueQuantity.value",
     "Decimal"),
    (lambda rs: rs[2]["valueQuantity"].update(code="mmol/L", unit="mmol/L"), 400,
     "Bundle.entry[2].resource.valueQuantity.code", "pg/mL"),
    (lambda rs: rs[3].update(colour="red"), 400, "Bundle.entry[3].resource.colour", "Extra inputs"),
    (lambda rs: rs[4]["medicationCodeableConcept"].update(text="ocrelizumab 300 mg"), 422,
     "Bundle.entry[4].resource.medication", "alemtuzumab"),
    (lambda rs: rs[1].update(onsetDateTime="1980-01-01"), 422, "Bundle.entry[1].resource.onsetDateTime",
     "exceeds age_years"),
])
def test_bad_fhir_gets_an_operation_outcome_naming_the_element(token_server, change, status, where, words):
    response = assess(token_server, _with(change))
    assert response.status_code == status, response.text
    outcome = response.json()
    assert_valid_fhir(outcome)
    issues = outcome["issue"]
    assert any(where in i["expression"][0] and words in i["diagnostics"] for i in issues), issues


def test_missing_inputs_are_not_provided_and_required_ones_are_named(token_server):
    body = assess_bundle()
    body["entry"] = [e for e in body["entry"] if e["resource"]["resourceType"] != "Observation"]
    answer = assess(token_server, body).json()
    notes = [n["text"] for n in answer["entry"][0]["resource"]["note"]]
    assert any(n.startswith("Not provided") and "Serum IL-21" in n for n in notes)
    body["entry"] = [e for e in body["entry"] if e["resource"]["resourceType"] != "Condition"]
    response = assess(token_server, body)
    assert response.status_code == 422
    assert "Disease duration" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("headers, body, status", [
    ({"Authorization": "Bearer wrong"}, None, 401),
    ({}, b'{"resourceType": "Bundle", "type": "collection", "type": "batch"}', 400),
    ({}, b"not json", 400),
    ({"content-type": "text/plain"}, b"{}", 415),
])
def test_the_services_own_refusals_are_operation_outcomes_on_fhir_paths(token_server, headers, body, status):
    response = httpx.post(f"{token_server['url']}/fhir/RiskAssessment/$assess", content=body or b"{}", timeout=30,
                          headers={**FHIR_JSON, **token_server["headers"], **headers})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert_valid_fhir(response.json())


def test_conformance_resources_validate(token_server):
    read = [httpx.get(f"{token_server['url']}/fhir/{path}", headers=token_server["headers"], timeout=30)
            for path in ("metadata", "CodeSystem/autorisk", "OperationDefinition/RiskAssessment-assess",
                         "CodeSystem/other")]
    assert [r.status_code for r in read] == [200, 200, 200, 404]
    assert_valid_fhir(*(r.json() for r in read))
    codes = {c["code"] for c in read[1].json()["concept"]}
    assert read[1].json()["url"] == PROJECT and {"il21_pg_ml.legacy_elisa", "il21_pg_ml.current_elisa"} <= codes


def test_a_fhir_client_round_trips_a_bundle_over_http(token_server):
    """The client builds its request with fhir.resources' models, sends it as FHIR JSON, and reads the answer
    back into the same models: nothing is lost either way."""
    from fhir.resources.R4B.bundle import Bundle

    body = assess_bundle()
    body["entry"][4]["resource"] = medication_request("Lemtrada")  # the brand: known by name too
    request = Bundle.model_validate(body)
    with httpx.Client(base_url=token_server["url"], headers={**FHIR_JSON, **token_server["headers"]}) as client:
        capabilities = client.get("/fhir/metadata").json()
        assert capabilities["rest"][0]["resource"][0]["operation"][0]["name"] == "assess"
        sent = client.post("/fhir/RiskAssessment/$assess", content=request.model_dump_json(), timeout=30)
    assert sent.status_code == 200, sent.text
    answer = Bundle.model_validate_json(sent.content)
    assessments = [e.resource for e in answer.entry if e.resource.get_resource_type() == "RiskAssessment"]
    assert assessments and all(0 < float(p.probabilityDecimal) < 1 for a in assessments for p in a.prediction)
    assert answer.type == "collection"
    assert fhir_resources_errors(answer.model_dump(mode="json", exclude_none=True)) == []
