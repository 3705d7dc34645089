"""Clients that stall, go away or try to write into the server's log, and settings that cannot be used.

Against the real server (``autorisk serve``) over raw sockets and HTTP, and its real log file; bad
settings against ``autorisk serve`` and against BentoML serving the service directly, as a built
Bento does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from models.settings import DEFAULT_BODY_TIMEOUT_S
from serving.log_safety import WithholdInputValues, escape_control
from serving.schemas import PredictRequest
from tests.servers import free_port

pytestmark = pytest.mark.integration
PATIENT = '"age_years": 34, "sex": "female", "disease_duration_years": 2'
FORGED = "2026-01-01T00:00:00+0000 [INFO] [entry_service:RiskService:1] FORGED"


def _port(server) -> int:
    return int(server["url"].rsplit(":", 1)[1])


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_client_that_stalls_mid_body_gets_a_408_with_the_version_header(shared_server):
    with socket.create_connection(("127.0.0.1", _port(shared_server))) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200\r\n\r\n{\"patients\": [{" + PATIENT.encode())
        started = time.monotonic()
        sock.settimeout(DEFAULT_BODY_TIMEOUT_S + 15)
        answer = _answer(sock)  # the server closes the connection after answering
        elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().lower().splitlines()
    assert lines[0] == "http/1.1 408 request timeout", answer
    assert "connection: close" in lines and any(line.startswith("x-model-version: ") for line in lines), lines
    assert body == (b'{"error":"request body not received within %g s; send the whole body at once"}'
                    % DEFAULT_BODY_TIMEOUT_S)
    assert DEFAULT_BODY_TIMEOUT_S - 0.5 < elapsed < DEFAULT_BODY_TIMEOUT_S + 5  # BentoML's 504 came at 30 s


def test_a_client_that_goes_away_mid_body_is_let_go_and_the_server_keeps_serving(shared_server):
    with socket.create_connection(("127.0.0.1", _port(shared_server))) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200\r\n\r\n{\"patients\"")
    response = httpx.post(f"{shared_server['url']}/predict", json={"patients": [
        {"age_years": 34, "sex": "female", "disease_duration_years": 2}]}, timeout=60)
    assert response.status_code == 200, response.text


def test_no_client_can_write_a_line_or_an_identifier_into_the_server_log(shared_server):
    url = shared_server["url"]
    # The path decodes to a line break, a forged line and a NUL byte; BentoML logged it as it came.
    httpx.get(f"{url}/x%0a{FORGED.replace(' ', '%20')}%00%e2%80%a8end", timeout=30)
    # A key that carries an identifier and a forged line, at the top level and in a patient.
    for body in ('{"patients": [{' + PATIENT + ', "NHS 943 476 5919\\n' + FORGED + '": 1}]}',
                 '{"patients": [{' + PATIENT + '}], "NHS 943 476 5919\\u2028' + FORGED + '": 1}'):
        response = httpx.post(f"{url}/predict", content=body.encode(), timeout=30,
                              headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert "unknown field" in response.json()["error"]  # the client is told which key
    time.sleep(1)
    log = shared_server["log"].read_bytes()
    text = log.decode("utf-8")
    assert b"\x00" not in log and "\u2028" not in text
    assert not any(line.startswith(FORGED[:10]) for line in text.splitlines()), "a line was forged"
    assert "NHS 943" not in text
    assert "path=/x\\x0a2026-01-01T00:00:00+0000 [INFO]" in text and "\\x00\\u2028end" in text


def test_logged_rejections_name_keys_outside_the_schema_by_place_only():
    key = "NHS 943 476 5919\n" + FORGED
    try:
        PredictRequest.model_validate({"patients": [{"age_years": 34, "sex": "female", "disease_duration_years": 2,
                                                     key: 1}]})
    except ValidationError as error:
        import logging

        record = logging.LogRecord("bentoml.serve", logging.ERROR, __file__, 1, "Exception on /predict [POST]",
                                   None, (type(error), error, None))
    WithholdInputValues(["patients", "age_years"]).filter(record)
    assert record.getMessage() == ("Exception on /predict [POST]: rejected input (patients.0.<key not in the "
                                   f"schema, {len(key)} characters>: extra_forbidden); values withheld")
    assert record.exc_info is None


def test_escaping_is_one_line_and_unambiguous():
    assert escape_control("a\nb\rc\x00d\x1be\x7f\x85\u2028\\") == "a\\x0ab\\x0dc\\x00d\\x1be\\x7f\\x85\\u2028\\\\"
    assert escape_control("plain text, ümlaut, 日本") == "plain text, ümlaut, 日本"


BAD_SETTINGS = [
    ({"AUTORISK_API_TOKEN": " "}, "AUTORISK_API_TOKEN is set but empty; unset it to serve without authentication"),
    ({"AUTORISK_MAX_BODY_BYTES": "1MiB"}, "AUTORISK_MAX_BODY_BYTES: expected a positive whole number of bytes, got '1MiB'"),
    ({"AUTORISK_BODY_TIMEOUT_S": "45"}, "AUTORISK_BODY_TIMEOUT_S: expected a number of seconds above 0 and below 30"),
    ({"AUTORISK_WORKERS": "two"}, "AUTORISK_WORKERS: expected a positive whole number of processes, got 'two'"),
]


@pytest.mark.parametrize("setting, message", BAD_SETTINGS)
def test_a_bad_setting_stops_serve_with_one_line_and_exit_2(monkeypatch, setting, message):
    # In this process: the settings are read before anything loads (test_auth runs the blank token
    # in a real process, and the test below a Bento served directly).
    from typer.testing import CliRunner

    from pipelines.cli import app

    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port())])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_a_bad_setting_stops_a_bento_served_directly_with_one_line_and_exit_2(mlflow_store):
    environment = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store["uri"], "BENTOML_DO_NOT_TRACK": "true",
                   "AUTORISK_API_TOKEN": ""}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "bentoml", "serve", "serving.service:RiskService", "--port",
                             str(free_port()), "--working-dir", str(root)], env=environment, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [f"error: {BAD_SETTINGS[0][1]}"], lines
