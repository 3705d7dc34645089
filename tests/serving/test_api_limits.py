"""Request limits of the real server: body size, patients per request, hostile JSON."""

import json

import httpx
import pytest

from models.settings import MAX_BODY_BYTES_ENV, SettingsError, load_settings

pytestmark = pytest.mark.integration

MIB = 1 << 20
PATIENT = {"age_years": 34, "sex": "female", "disease_duration_years": 2}
JSON = {"content-type": "application/json"}


def post(server, content, **kwargs):
    return httpx.post(f"{server['url']}/predict", content=content, headers=JSON, timeout=60, **kwargs)


def padded_body(size: int) -> bytes:
    """A valid request of exactly ``size`` bytes (trailing JSON whitespace is still valid JSON)."""
    body = json.dumps({"patients": [PATIENT]}).encode()
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = 64 * 1024):
    """The body as a generator: httpx then sends it chunked, without a Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def assert_still_serving(server):
    assert httpx.get(f"{server['url']}/readyz", timeout=10).status_code == 200
    response = post(server, json.dumps({"patients": [PATIENT]}).encode())
    assert response.status_code == 200, response.text


def test_more_patients_than_allowed_get_a_422_naming_the_limit(shared_server):
    response = post(shared_server, json.dumps({"patients": [PATIENT] * 1001}).encode())
    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert "patients" in message and "1000" in message and "1001" in message


def test_exactly_the_allowed_number_of_patients_is_scored(shared_server):
    response = post(shared_server, json.dumps({"patients": [PATIENT] * 1000}).encode())
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["predictions"]) == 1000


def test_a_body_at_the_limit_is_accepted_one_byte_more_gets_a_413(shared_server):
    assert post(shared_server, padded_body(MIB)).status_code == 200
    response = post(shared_server, padded_body(MIB + 1))
    assert response.status_code == 413, response.text
    assert str(MIB) in response.json()["error"]


def test_a_chunked_body_is_counted_as_it_arrives(shared_server):
    small = post(shared_server, chunks(padded_body(200_000)))
    assert small.status_code == 200, small.text
    assert "content-length" not in small.request.headers
    large = post(shared_server, chunks(padded_body(MIB + 1)))
    assert large.status_code == 413, large.text
    assert str(MIB) in large.json()["error"]


def test_a_huge_body_is_refused_and_the_server_keeps_serving(shared_server):
    response = post(shared_server, b"[" * (64 * MIB))
    assert response.status_code == 413
    assert_still_serving(shared_server)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"patients": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"patients": [' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"]}",
    b"[" * 500_000,
], ids=["lists", "lists-in-patients", "objects-in-patients", "unclosed"])
def test_deeply_nested_json_gets_a_4xx_and_the_server_keeps_serving(shared_server, body):
    response = post(shared_server, body)
    assert 400 <= response.status_code < 500, response.text[:500]
    assert_still_serving(shared_server)


def test_the_body_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(MAX_BODY_BYTES_ENV, raising=False)
    assert load_settings().max_body_bytes == MIB
    monkeypatch.setenv(MAX_BODY_BYTES_ENV, "4096")
    assert load_settings().max_body_bytes == 4096
    for bad in ("", "0", "-5", "1.5", "1MiB"):
        monkeypatch.setenv(MAX_BODY_BYTES_ENV, bad)
        with pytest.raises(SettingsError, match=f"^{MAX_BODY_BYTES_ENV}: expected a positive whole number of bytes, "
                                                f"got {bad!r}$"):
            load_settings()
