"""`autorisk build`: a Bento with the model version pinned, served by `bentoml serve <tag>`."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.requirements import Requirement

from tests.fhir_checks import PATIENT_ID, assess_bundle, medication_request, patient_resources
from tests.servers import free_port, running_server
from tools.lock import LOCK_PYTHON, PIN, RUNTIME_LOCK, canonical, pins, problems

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def autorisk(*args, env):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bento_env(mlflow_store, tmp_path_factory):
    return {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store["uri"], "BENTOML_DO_NOT_TRACK": "true",
            "BENTOML_HOME": str(tmp_path_factory.mktemp("bentoml-home"))}


def test_the_bento_serves_the_pinned_version_after_champion_moves(mlflow_store, bento_env, tmp_path):
    from mlflow import MlflowClient

    from models.registry import CHAMPION, MODEL_NAME

    champion = mlflow_store["promotion"].chosen.version
    built = autorisk("build", env=bento_env)
    assert built.returncode == 0, built.stderr
    tag = built.stdout.strip()
    assert tag.startswith("autorisk:") and "\n" not in tag
    assert f"version {champion}" in built.stderr
    # The Bento installs the lock as it is: every pin with its hashes (pip's hash-checking mode); BentoML adds
    # only its own pin, which must be the lock's.
    name, version = tag.split(":")
    installed = (Path(bento_env["BENTOML_HOME"]) / "bentos" / name / version / "env/python/requirements.txt").read_text()
    locked = pins(ROOT / RUNTIME_LOCK)
    assert pins_in(installed) == {name: pin for name, (pin, _) in locked.items()}
    assert installed.count("--hash=sha256:") == sum(count for _, count in locked.values())

    client = MlflowClient(mlflow_store["uri"])
    other = next(str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")
                 if str(v.version) != champion)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, other)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Started outside the project, with no model settings: only the Bento can name the version.
    environment = {k: v for k, v in bento_env.items() if not k.startswith("AUTORISK_MODEL")}
    try:
        with running_server([sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port)],
                            ready_url=f"{url}/readyz", log=tmp_path / "bento.log",
                            env={**environment, "AUTORISK_WORKERS": "1"}, cwd=tmp_path):
            assert httpx.get(f"{url}/model", timeout=30).json()["version"] == champion
            # The page and its files travel in the Bento.
            assert "<title>autorisk" in httpx.get(f"{url}/", timeout=30).text
            assert httpx.get(f"{url}/page/app.js", timeout=30).status_code == 200
            predicted = httpx.post(f"{url}/predict", timeout=30, json={
                "patients": [{"age_years": 34, "sex": "female", "disease_duration_years": 2}]})
            assert predicted.status_code == 200, predicted.text
            assert predicted.json()["model"]["version"] == champion
            # FHIR and CDS Hooks travel in the Bento too, on the pinned version.
            assessed = httpx.post(f"{url}/fhir/RiskAssessment/$assess", json=assess_bundle(), timeout=30,
                                  headers={"content-type": "application/fhir+json"})
            assert assessed.status_code == 200, assessed.text
            assert assessed.json()["entry"][0]["resource"]["performer"]["display"].endswith(f"version {champion}")
            services = httpx.get(f"{url}/cds-services", timeout=30).json()["services"]
            card = httpx.post(f"{url}/cds-services/{services[0]['id']}", timeout=30, json={
                "hook": services[0]["hook"], "hookInstance": "e2b1", "context": {
                    "patientId": PATIENT_ID, "userId": "Practitioner/1", "selections": ["MedicationRequest/order-1"],
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": medication_request()}]}},
                "prefetch": {"patient": patient_resources()[0]}})
            assert card.status_code == 200, card.text
            assert card.json()["cards"][0]["indicator"] == "info"  # what is missing: the disease duration
    finally:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, champion)


def test_build_names_a_missing_version(bento_env):
    result = autorisk("build", "--version", "999", env=bento_env)
    assert result.returncode == 1
    assert "version 999" in result.stderr


def pins_in(requirements: str) -> dict[str, str]:
    return {canonical(m.group(1)): m.group(2) for m in map(PIN.match, requirements.splitlines()) if m}


def test_the_bento_installs_the_projects_locked_dependencies():
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert bentofile["python"]["requirements_txt"] == RUNTIME_LOCK and "packages" not in bentofile["python"]
    assert bentofile["python"]["lock_packages"] is False  # BentoML's own lock would drop the hashes
    assert str(bentofile["docker"]["python_version"]) == LOCK_PYTHON
    assert problems(ROOT) == []
    locked = pins(ROOT / RUNTIME_LOCK)
    assert {canonical(Requirement(r).name) for r in project["dependencies"]} <= set(locked)
    assert bentofile["service"] == "serving.service:RiskService"
