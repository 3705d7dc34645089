"""Bearer-token authentication of the real server, started with AUTORISK_API_TOKEN set."""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.servers import autorisk_server, free_port

pytestmark = pytest.mark.integration

TOKEN = "test-token-7f3a9c"
BODY_LIMIT = 64 * 1024
PATIENT = {"age_years": 34, "sex": "female", "disease_duration_years": 2}


@pytest.fixture(scope="module")
def server(mlflow_store, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with autorisk_server(mlflow_store["uri"], log, AUTORISK_API_TOKEN=TOKEN,
                         AUTORISK_MAX_BODY_BYTES=str(BODY_LIMIT)) as url:
        yield {"url": url, "log": log}


def call(server, method, path, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{server['url']}{path}", headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz"])
def test_health_checks_need_no_token(server, path):
    assert call(server, "GET", path).status_code == 200


@pytest.mark.parametrize("method, path", [
    ("POST", "/predict"), ("GET", "/model"), ("GET", "/metrics"), ("GET", "/docs.json"),
    ("GET", "/no-such-path"), ("GET", "/pages/app.js"), ("GET", "/docs/"),
])
def test_everything_else_needs_the_token(server, method, path):
    kwargs = {"json": {"patients": [PATIENT]}} if method == "POST" else {}
    response = call(server, method, path, **kwargs)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="autorisk"'
    assert "Authorization: Bearer" in response.json()["error"]


@pytest.mark.parametrize("path", ["/", "/docs", "/page/app.js", "/page/style.css", "/static_content/swagger-ui.css"])
def test_the_page_and_the_docs_open_without_the_token(server, path):
    # Static files without data: the page then asks for the token, which the data behind it needs.
    assert call(server, "GET", path).status_code == 200


@pytest.mark.parametrize("header", [
    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer", f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}",
])
def test_a_wrong_token_or_scheme_gets_a_401(server, header):
    response = call(server, "GET", "/model", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="autorisk", error="invalid_token"'


def test_the_token_opens_every_endpoint(server, mlflow_store):
    predicted = call(server, "POST", "/predict", TOKEN, json={"patients": [PATIENT]})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["model"]["version"] == mlflow_store["promotion"].chosen.version
    assert call(server, "GET", "/model", TOKEN).json()["version"] == mlflow_store["promotion"].chosen.version
    assert call(server, "GET", "/metrics", TOKEN).status_code == 200
    assert "/predict" in call(server, "GET", "/docs.json", TOKEN).json()["paths"]


def test_the_scheme_is_case_insensitive(server):
    assert call(server, "GET", "/model", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_the_token_is_checked_before_the_body_is_read(server):
    oversized = json.dumps({"patients": [PATIENT]}).encode() + b" " * BODY_LIMIT
    headers = {"content-type": "application/json"}
    assert call(server, "POST", "/predict", content=oversized, headers=dict(headers)).status_code == 401
    response = call(server, "POST", "/predict", TOKEN, content=oversized, headers=dict(headers))
    assert response.status_code == 413
    assert str(BODY_LIMIT) in response.json()["error"]  # AUTORISK_MAX_BODY_BYTES, read at start-up


def test_the_token_stays_out_of_the_server_log(server):
    call(server, "GET", "/model", TOKEN)
    call(server, "GET", "/model", headers={"Authorization": f"Bearer {TOKEN}-wrong"})
    time.sleep(0.5)
    log = server["log"].read_text()
    assert "/model" in log  # the access log is on, and it holds no headers
    assert TOKEN not in log


def test_a_blank_token_stops_the_server_from_starting(mlflow_store):
    environment = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store["uri"], "AUTORISK_API_TOKEN": " ",
                   "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "--port", str(free_port())],
                            env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2  # an unusable setting; it was a traceback and exit 1 ("not found")
    assert (result.stdout + result.stderr).strip() == ("error: AUTORISK_API_TOKEN is set but empty; unset it to "
                                                       "serve without authentication")
