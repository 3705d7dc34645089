"""Requests generated from the real server's OpenAPI document never get a 5xx (schemathesis)."""

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.integration

# Derandomised, without an example database: the same cases on every run and every machine.
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def schema(shared_server):
    document = httpx.get(f"{shared_server['url']}/docs.json", timeout=30).json()
    # BentoML labels the document OpenAPI 3.0.2, but its schemas are pydantic's JSON Schema 2020-12
    # (OpenAPI 3.1's dialect: a numeric exclusiveMinimum, type null), which 3.0 tooling misreads.
    assert document["openapi"] == "3.0.2", "BentoML relabelled its document: load it as it is"
    return schemathesis.openapi.from_dict({**document, "openapi": "3.1.0"})


@pytest.mark.parametrize("path, method, mode, examples, expected", [
    ("/predict", "POST", GenerationMode.POSITIVE, 200, {200, 400}),
    ("/predict", "POST", GenerationMode.NEGATIVE, 200, {400}),
    ("/model", "GET", GenerationMode.POSITIVE, 5, {200}),
])
def test_generated_requests_never_get_a_server_error(schema, shared_server, path, method, mode, examples,
                                                     expected):
    statuses = Counter()

    @settings(FUZZ, max_examples=examples)
    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    def check(case):
        response = case.call(base_url=shared_server["url"], timeout=60)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error])

    check()
    # The cases reached the service and drew the answers expected (the fuzzing did not stop short).
    assert expected <= set(statuses), statuses
