"""CDS Hooks 2.0 over real HTTP: discovery, order-select and patient-view, the specification's own example requests,
prefetch read from an EHR's FHIR server with the token it hands out, and /predict's numbers on every card."""

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from features.schema import RESEARCH_NOTICE
from serving.cds_hooks import THRESHOLDS, percent
from tests.fhir_checks import (
    PATIENT_ID,
    REST_PATIENT,
    assert_valid_fhir,
    medication_request,
    patient_resources,
)
from tests.serving.conftest import EHR_TOKEN

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
ORDER_SELECT, PATIENT_VIEW = "autorisk-order-select", "autorisk-patient-view"


def call(server, service, body, **headers):
    return httpx.post(f"{server['url']}/cds-services/{service}", json=body, timeout=30,
                      headers={**server["headers"], **headers})


def searchset(resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def prefetch():
    resources = patient_resources()
    return {"patient": resources[0], "conditions": searchset([resources[1]]), "observations": searchset(resources[2:])}


def order_select(order=None, **request):
    order = order or medication_request()
    return {"hook": "order-select", "hookInstance": "4b1f0b7e-8f7e-4c42-9d55-0a5f7a0c9d11",
            "context": {"userId": "Practitioner/neurologist", "patientId": PATIENT_ID,
                        "selections": [f"MedicationRequest/{order['id']}"],
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}},
            **request}


@pytest.fixture(scope="module")
def predicted(token_server):
    body = {"patients": [REST_PATIENT], "horizons_months": [24, 48], "contrast": True}
    return httpx.post(f"{token_server['url']}/predict", json=body, headers=token_server["headers"], timeout=30).json()


def test_discovery_lists_both_services_with_their_prefetch(token_server):
    assert httpx.get(f"{token_server['url']}/cds-services", timeout=30).status_code == 401  # as /predict
    services = httpx.get(f"{token_server['url']}/cds-services", headers=token_server["headers"], timeout=30).json()
    hooks = {s["id"]: s["hook"] for s in services["services"]}
    assert hooks == {ORDER_SELECT: "order-select", PATIENT_VIEW: "patient-view"}
    for service in services["services"]:
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert "http://loinc.org|8099-4" in service["prefetch"]["observations"]
        assert service["title"] and service["description"]


def test_order_select_answers_a_card_per_outcome_with_predicts_numbers(token_server, predicted):
    response = call(token_server, ORDER_SELECT, order_select(prefetch=prefetch()))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    expected = predicted["predictions"][0]["outcomes"]
    assert len(cards) == len(expected)
    for card, (outcome, scores) in zip(cards, expected.items(), strict=True):
        at, contrast = scores["risks"][-1], scores["contrast"][-1]
        exact = card["extension"]["autorisk.risks"]
        assert exact["risk"] == pytest.approx(at["risk"], abs=1e-12)
        assert exact["risk_interval"] == pytest.approx(at["risk_interval"], abs=1e-12)
        assert exact["risk_if_interferon_beta_1a"] == pytest.approx(contrast["risk_if_interferon_beta_1a"], abs=1e-12)
        name = "Thyroid disorder" if outcome == "thyroid" else "Immune thrombocytopenic purpura"
        assert card["summary"] == (f"{name} by 48 months: {percent(contrast['risk_if_alemtuzumab'])} on alemtuzumab "
                                   f"vs {percent(contrast['risk_if_interferon_beta_1a'])} on interferon beta-1a")
        assert len(card["summary"]) <= 140
        warning, critical = THRESHOLDS[outcome]
        assert card["indicator"] == ("critical" if at["risk"] >= critical else
                                     "warning" if at["risk"] >= warning else "info")
        assert "95% bootstrap interval" in card["detail"] and "Largest parts" in card["detail"]
        assert "Extrapolated: on interferon beta-1a beyond the 24 months" in card["detail"]
        assert "Not provided" in card["detail"] and "EDSS at baseline" in card["detail"]
        assert RESEARCH_NOTICE in card["source"]["label"]
        link = urlsplit(card["links"][0]["url"])
        assert card["links"][0]["type"] == "absolute" and link.path == "/" and not link.query
        filled = dict(parse_qsl(link.fragment))
        assert filled == {**{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in REST_PATIENT.items()
                             if k != "patient_id"}, "month": "48"}


def test_order_select_without_prefetch_reads_the_ehrs_fhir_server_with_its_token(token_server, predicted):
    ehr = token_server["ehr"]
    before = len(ehr["seen"])
    body = order_select(fhirServer=ehr["url"], fhirAuthorization={
        "access_token": EHR_TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "user/*.read",
        "subject": "autorisk"})
    response = call(token_server, ORDER_SELECT, body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    thyroid = predicted["predictions"][0]["outcomes"]["thyroid"]["risks"][-1]
    assert cards[0]["extension"]["autorisk.risks"]["risk"] == pytest.approx(thyroid["risk"], abs=1e-12)
    seen = ehr["seen"][before:]
    assert {path.split("?")[0] for path, _ in seen} == {f"/Patient/{PATIENT_ID}", "/Observation", "/Condition"}
    assert {authorization for _, authorization in seen} == {f"Bearer {EHR_TOKEN}"}


def test_the_specifications_order_select_example_orders_nothing_this_model_knows(token_server):
    """The hook's own R4 example selects amoxicillin and a pureed diet: no card is due."""
    response = call(token_server, ORDER_SELECT, json.loads((DATA / "cds-hooks-order-select.json").read_text()))
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}


def test_the_specifications_patient_view_example_gets_a_card_saying_what_is_missing(token_server):
    """The specification's example request: its Patient (under its own prefetch key) but no disease duration, and a
    fhirServer this service does not read from, so nothing leaves the machine."""
    response = call(token_server, PATIENT_VIEW, json.loads((DATA / "cds-hooks-patient-view.json").read_text()))
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "info" and "cannot be assessed" in card["summary"]
    assert "Disease duration" in card["detail"]
    assert "http://hooks.smarthealthit.org:9080 is not among the FHIR servers" in card["detail"]


def test_patient_view_without_a_patient_is_a_412_with_an_operation_outcome(token_server):
    body = {"hook": "patient-view", "hookInstance": "c0c5b8c2-1b0e-4f0e-8c55-59b3a9b8e0a1",
            "context": {"userId": "Practitioner/1", "patientId": PATIENT_ID}}
    response = call(token_server, PATIENT_VIEW, body)
    assert response.status_code == 412, response.text
    assert_valid_fhir(response.json())
    assert response.json()["issue"][0]["expression"] == ["prefetch.patient"]


@pytest.mark.parametrize("service, change, status, where", [
    ("no-such-service", lambda b: None, 404, "id"),
    (PATIENT_VIEW, lambda b: None, 400, "hook"),
    (ORDER_SELECT, lambda b: b["context"].pop("patientId"), 400, "context.patientId"),
    (ORDER_SELECT, lambda b: b["prefetch"]["patient"].update(gender=3), 400, "prefetch.patient.gender"),
    (ORDER_SELECT, lambda b: b["prefetch"]["observations"]["entry"][0]["resource"].update(valueString=1), 400,
     "prefetch.observations.entry[0].resource"),
])
def test_bad_requests_get_a_4xx_with_an_operation_outcome(token_server, service, change, status, where):
    body = order_select(prefetch=prefetch())
    change(body)
    response = call(token_server, service, body)
    assert response.status_code == status, response.text
    assert_valid_fhir(response.json())
    assert response.json()["issue"][0]["expression"][0].startswith(where)


def test_patient_view_answers_for_the_default_treatment(token_server):
    """No order: the risks are for the schema's default treatment, and the age is today's."""
    body = {"hook": "patient-view", "hookInstance": "a6c3e1f2-4b61-4a43-9b7c-0c2b6f1f6a55",
            "context": {"userId": "Practitioner/1", "patientId": PATIENT_ID}, "prefetch": prefetch()}
    response = call(token_server, PATIENT_VIEW, body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert [c["extension"]["autorisk.risks"]["treatment"] for c in cards] == ["alemtuzumab", "alemtuzumab"]
