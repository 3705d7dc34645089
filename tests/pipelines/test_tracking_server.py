"""Researchers compare runs in the MLflow UI: a real `mlflow server` on the store serves them over REST."""

import os
import sys

import httpx
import pytest

from tests.servers import free_port, running_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tracking_server(mlflow_store, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", mlflow_store["uri"],
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with running_server(command, ready_url=f"{url}/health", env=dict(os.environ),
                        log=tmp_path_factory.mktemp("mlflow-server") / "server.log"):
        yield url


def api(url: str, method: str, path: str, **kwargs) -> dict:
    response = httpx.request(method, f"{url}/api/2.0/mlflow/{path}", timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_runs_and_metrics_read_back_through_the_rest_api(tracking_server, tiny_experiment):
    experiment = api(tracking_server, "GET", "experiments/get-by-name",
                     params={"experiment_name": tiny_experiment.name})["experiment"]
    runs = api(tracking_server, "POST", "runs/search", json={
        "experiment_ids": [experiment["experiment_id"]],
        "filter": "tags.`autorisk.role` = 'model'", "max_results": 50,
    })["runs"]
    assert sorted(r["info"]["run_name"] for r in runs) == [
        f"{tiny_experiment.name}/{f}" for f in sorted(tiny_experiment.families)]
    keys = [{m["key"] for m in r["data"]["metrics"]} for r in runs]
    # the compare view lines up what every run shares: the headline metrics of every endpoint
    for endpoint in (f"{o}_{h}m" for o in tiny_experiment.outcomes for h in tiny_experiment.evaluation_horizons_months):
        for name in ("auroc", "auroc_lo", "auroc_hi", "calibration_slope", "brier", "oracle_auroc"):
            assert all(f"{endpoint}_{name}" in k for k in keys), (endpoint, name)
        assert all(f"truth_bench_alemtuzumab_{endpoint}_mean_risk" in k for k in keys)
    params = [{p["key"]: p["value"] for p in r["data"]["params"]} for r in runs]
    assert {p["family"] for p in params} == set(tiny_experiment.families)


def test_champion_alias_reads_back(tracking_server, mlflow_store):
    found = api(tracking_server, "GET", "registered-models/alias",
                params={"name": "autoimmunity-risk", "alias": "champion"})["model_version"]
    assert found["version"] == mlflow_store["promotion"].chosen.version
