"""Real REST servers shared by the serving tests that only send them requests."""

from __future__ import annotations

import httpx
import pytest

from tests.browser import browser
from tests.fhir_checks import ehr_fhir_server
from tests.servers import autorisk_server, free_port

# The API token of token_server, and the access token its stand-in EHR hands out (fhirAuthorization).
API_TOKEN = "page-token-5d1e"
EHR_TOKEN = "ehr-access-token-93a0"


@pytest.fixture(scope="session")
def shared_server(mlflow_store, tmp_path_factory):
    """``autorisk serve`` with the default settings: its URL and log file."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with autorisk_server(mlflow_store["uri"], log) as url:
        yield {"url": url, "log": log}


@pytest.fixture(scope="session")
def token_server(mlflow_store, tmp_path_factory):
    """``autorisk serve`` with ``AUTORISK_API_TOKEN`` set and an EHR's FHIR server (a stand-in on 127.0.0.1) that
    CDS Hooks may read from (``AUTORISK_FHIR_SERVERS``)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ehr_fhir_server(EHR_TOKEN, free_port()) as ehr, \
            autorisk_server(mlflow_store["uri"], log, AUTORISK_API_TOKEN=API_TOKEN,
                            AUTORISK_FHIR_SERVERS=ehr["url"]) as url:
        yield {"url": url, "log": log, "token": API_TOKEN, "ehr": ehr,
               "headers": {"Authorization": f"Bearer {API_TOKEN}"}}


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the page's tests (each test opens its own guarded context)."""
    with browser() as launched:
        yield launched


@pytest.fixture(scope="session")
def model_info(shared_server):
    """What GET /model says of the shared server's model."""
    return httpx.get(f"{shared_server['url']}/model", timeout=30).json()


def predicted_by_month(url: str, patient: dict, months: list[int]) -> dict:
    """What POST /predict answers for ``patient`` at ``months`` with the contrast, as any other client gets it."""
    response = httpx.post(f"{url}/predict", timeout=30,
                          json={"patients": [patient], "horizons_months": months, "contrast": True})
    assert response.status_code == 200, response.text
    return response.json()
