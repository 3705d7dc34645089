"""Ambiguous or mistyped JSON gets a 400 that names the place: repeated keys at any level, numbers that are
not finite, values of another JSON type than the schema states, keys it does not know.

Against the real server (``autorisk serve``), with bodies written by hand: a JSON library would
never write most of them, which is exactly why a client's bug or a hand-edited request can.
"""

import asyncio
import json

import httpx
import pytest

import serving.strict_json
from serving.middleware import PARSED_BODY, StrictJson
from serving.schemas import PredictRequest
from serving.strict_json import json_problem
from tests.threads import in_fresh_thread

pytestmark = pytest.mark.integration
JSON = {"content-type": "application/json"}
PATIENT = '"age_years": 34, "sex": "female", "disease_duration_years": 2'


def post(server, body: str) -> httpx.Response:
    return httpx.post(f"{server['url']}/predict", content=body.encode(), headers=JSON, timeout=60)


@pytest.mark.parametrize("body, message", [
    ('{"patients": [{' + PATIENT + '}], "patients": [{' + PATIENT + '}]}',
     "patients: the key 'patients' appears more than once in one object"),
    ('{"patients": [{' + PATIENT + '}, {' + PATIENT + ', "age_years": 80}]}',
     "patients.1.age_years: the key 'age_years' appears more than once in one object"),
    ('{"patients": [{' + PATIENT + ', "il21_pg_ml": NaN, "il21_assay": "legacy_elisa"}]}',
     "patients.0.il21_pg_ml: NaN is not a finite number"),
    ('{"patients": [{' + PATIENT.replace('"age_years": 34', '"age_years": Infinity') + '}]}',
     "patients.0.age_years: Infinity is not a finite number"),
    ('{"patients": [{' + PATIENT.replace('"age_years": 34', '"age_years": -Infinity') + '}]}',
     "patients.0.age_years: -Infinity is not a finite number"),
    ('{"patients": [{' + PATIENT.replace('"age_years": 34', '"age_years": 1e400') + '}]}',
     "patients.0.age_years: 1e400 is not a finite number"),
    ('{"patients": [{' + PATIENT.replace('"age_years": 34', '"age_years": ' + "9" * 400) + '}]}',
     "patients.0.age_years: 999999999999... (400 characters) is not a finite number"),
])
def test_ambiguous_json_is_a_400_naming_the_place(shared_server, body, message):
    response = post(shared_server, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == message or response.json()["error"].startswith(message)
    assert response.headers["x-model-version"]


def test_the_same_values_written_once_are_scored(shared_server):
    response = post(shared_server, '{"patients": [{' + PATIENT + ', "il21_pg_ml": 1E+2, "il21_assay": "legacy_elisa",'
                                   ' "patient_id": "NaN Infinity 1e400"}]}')
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["patient_id"] == "NaN Infinity 1e400"


def test_a_body_that_is_not_json_is_still_answered_by_the_request_model(shared_server):
    response = post(shared_server, '{"patients": [')
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("body", [b'{"a": 1e308, "b": -1.5e-400, "c": [1, 2], "d": {"e": null}}', b"[]", b"not json",
                                  b"[" * 100_000])
def test_unambiguous_or_unparseable_bodies_are_passed_on(body):
    assert json_problem(body) is None


def test_a_nested_problem_is_named_by_its_path():
    body = b'{"a": {"b": [1, {"c": 1, "c": 2}]}, "d": NaN}'
    assert json_problem(body) == "a.b.1.c: the key 'c' appears more than once in one object; send each key once"


WITH_PATIENT = '{"patients": [{' + PATIENT + '%s}]%s}'
QUOTES = " (write numbers and true/false without quotes)"


@pytest.mark.parametrize("body, message", [
    (WITH_PATIENT % ("", ', "horizons_months": [true]'), "horizons_months.0: expected an integer, got true"),
    (WITH_PATIENT % ("", ', "horizons_months": ["24"]'), "horizons_months.0: expected an integer, got a string" + QUOTES),
    (WITH_PATIENT % ("", ', "horizons_months": [24.5]'),
     "horizons_months.0: expected an integer, got a number with a fraction"),
    (WITH_PATIENT % ("", ', "contrast": "yes"'), "contrast: expected true/false, got a string" + QUOTES),
    (WITH_PATIENT % ("", ', "contrast": 1'), "contrast: expected true/false, got an integer"),
    ('{"patients": [{"age_years": "34", "sex": "female", "disease_duration_years": 2}]}',
     "patients.0.age_years: expected a number, got a string" + QUOTES),
    ('{"patients": [{"age_years": "nan", "sex": "female", "disease_duration_years": 2}]}',
     "patients.0.age_years: expected a number, got a string" + QUOTES),
    ('{"patients": [{"age_years": 34, "sex": "female", "disease_duration_years": "inf"}]}',
     "patients.0.disease_duration_years: expected a number, got a string" + QUOTES),
    (WITH_PATIENT % (', "thyroid_antibodies": "true"', ""),
     "patients.0.thyroid_antibodies: expected true/false or null, got a string" + QUOTES),
    (WITH_PATIENT % (', "smoker": 0', ""), "patients.0.smoker: expected true/false or null, got an integer"),
    (WITH_PATIENT % (', "relapses_prior_2y": false', ""),
     "patients.0.relapses_prior_2y: expected an integer or null, got false"),
    (WITH_PATIENT % (', "patient_id": 1001', ""), "patients.0.patient_id: expected a string or null, got an integer"),
    (WITH_PATIENT % (', "sex_": "female"', ""), 'patients.0: unknown field "sex_"; the fields are patient_id, '),
    ('{"patients": {"age_years": 34}}', "patients: expected a list, got an object"),
    ('[{' + PATIENT + '}]', "body: expected an object, got a list"),
])
def test_a_value_of_another_json_type_is_a_400_naming_the_field_and_the_type(shared_server, body, message):
    response = post(shared_server, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message), response.json()
    assert response.headers["x-model-version"]


def test_the_same_values_in_their_json_types_are_scored(shared_server):
    body = WITH_PATIENT % (', "thyroid_antibodies": true, "smoker": null, "relapses_prior_2y": 2.0, "patient_id": "1001"',
                           ', "horizons_months": [24, 48.0], "contrast": false')
    response = post(shared_server, body)
    assert response.status_code == 200, response.text
    assert response.json()["horizons_months"] == [24, 48]


def test_a_309_digit_integer_that_a_double_holds_is_a_number_one_that_overflows_is_not(shared_server):
    fits, overflows = "1" + "0" * 308, "2" + "0" * 308  # 1e308 and 2e308; the largest double is 1.8e308
    assert json_problem(f'{{"a": {fits}, "b": -{fits}}}'.encode()) is None
    response = post(shared_server, '{"patients": [{' + PATIENT.replace('"age_years": 34', f'"age_years": {fits}') + '}]}')
    assert response.status_code == 400 and "less than or equal to 120" in response.text  # a number, out of range
    response = post(shared_server, '{"patients": [{' + PATIENT.replace('"age_years": 34', f'"age_years": {overflows}')
                    + '}]}')
    assert response.json()["error"] == "patients.0.age_years: 200000000000... (309 characters) is not a finite number"


def test_the_openapi_document_states_the_strict_types(shared_server):
    document = httpx.get(f"{shared_server['url']}/docs.json", timeout=30).json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fields = body["properties"]
    assert 'numbers as JSON numbers (a string such as "34", "nan" or "inf" is refused)' in fields["patients"]["description"]
    assert 'true is not a month, and "24" is refused' in fields["horizons_months"]["description"]
    assert 'true or false only (not "yes" or 1)' in fields["contrast"]["description"]
    assert fields["horizons_months"]["items"]["type"] == "integer" and fields["contrast"]["type"] == "boolean"


def _through_strict_json(body: bytes, max_patients: int) -> tuple[dict | None, list[dict]]:
    """``body`` as a POST /predict through the real StrictJson middleware: the scope the app behind it gets
    (None if it got none) and what was sent back."""
    reached, sent = {}, []

    async def behind(scope, receive, send):
        reached["scope"] = scope
        reached["body"] = (await receive())["body"]

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    guard = StrictJson(behind, schemas={"/predict": PredictRequest}, max_patients={"/predict": max_patients})
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [], "query_string": b""}
    in_fresh_thread(asyncio.run, guard(scope, receive, send))
    assert reached.get("body", body) == body  # the app behind still reads the body as it came
    return reached.get("scope"), sent


def test_one_parse_checks_the_types_counts_the_patients_and_hands_its_document_on(monkeypatch):
    parses = []
    real_loads = serving.strict_json.json.loads
    monkeypatch.setattr(serving.strict_json.json, "loads", lambda *a, **k: parses.append(1) or real_loads(*a, **k))
    body = ('{"patients": [{' + PATIENT + '}, {' + PATIENT + '}], "contrast": true}').encode()
    scope, sent = _through_strict_json(body, max_patients=2)
    assert sent == [] and len(parses) == 1
    assert scope[PARSED_BODY] == json.loads(body)

    parses.clear()
    scope, sent = _through_strict_json(body, max_patients=1)
    assert scope is None and len(parses) == 1
    assert sent[0]["status"] == 422
    assert json.loads(sent[1]["body"]) == {
        "error": "patients: 2 in one request, at most 1 allowed; split them over several requests"}
