"""Ambiguous JSON gets a 400 that names the place: repeated keys at any level, numbers that are not finite.

Against the real server (``autorisk serve``), with bodies written by hand: a JSON library would
never write them, which is exactly why a client's bug or a hand-edited request can.
"""

import httpx
import pytest

from serving.middleware import json_problem

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
