"""A team's store: MLflow's tracking server on PostgreSQL with served artifacts (make team-store), end to end.

One real PostgreSQL and one real `mlflow server` in a temporary folder; a small experiment trained into
it over HTTP, promoted, scored from a file and served by a real `autorisk serve`, then read back through
MLflow's REST API and shown in the MLflow UI of that server in a real browser. Skipped, saying why, only
where PostgreSQL cannot be installed or started (make postgresql installs Debian's).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.servers import autorisk_server, free_port
from tools.browser import chromium_path
from tools.team_store import DATABASE, ROLE, TeamStoreError, postgres_bin, team_store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Set to a folder (make team-store-screenshot: docs/images) to keep the picture of the run in the UI.
SCREENSHOT_DIR_ENV = "AUTORISK_TEAM_STORE_SCREENSHOT_DIR"


def autorisk(*args: str, uri: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MLFLOW_TRACKING_URI": uri, "AUTORISK_STORE_TIMEOUT_S": "10"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def api(url: str, method: str, path: str, **kwargs) -> dict:
    response = httpx.request(method, f"{url}/api/2.0/mlflow/{path}", timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def team(tiny_experiment, tmp_path_factory):
    """The team store, with a small experiment trained into it over HTTP and a champion promoted by the CLI."""
    import mlflow

    from pipelines.config import CohortSpec, ExternalCohort
    from pipelines.train import run_experiment

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed and could not be (make postgresql: Debian's postgresql)")
    # PostgreSQL runs as the postgres user when the tests run as root: its folder cannot be under pytest's
    # own temporary folder, which only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="autorisk-team-store-"))
    folder.chmod(0o755)
    work = tmp_path_factory.mktemp("team-work")
    experiment = tiny_experiment.model_copy(
        update={
            "name": "team-store",
            "families": {name: tiny_experiment.families[name] for name in ("cox-linear", "cure-xgboost")},
            # Smaller still: what is tested here is the store, not the models (kept under two minutes).
            "train_cohorts": [
                CohortSpec(profile="care-ms1", n=3000, seed=1),
                CohortSpec(profile="extension", n=2500, seed=2),
            ],
            "external_cohorts": [ExternalCohort(name="clinic", profile="clinic", n=1500, seed=3)],
            "benchmark_cohort": CohortSpec(profile="care-ms1", n=1500, seed=4),
            "bootstrap": 10,
            "interval_refits": 2,
            "added_value": (),
        }
    )
    previous = os.environ["MLFLOW_TRACKING_URI"]
    try:
        with team_store(folder / "store") as store:
            url = os.environ["MLFLOW_TRACKING_URI"] = store.url
            mlflow.set_tracking_uri(url)
            results = run_experiment(experiment, log=lambda *_: None)
            promoted = autorisk("promote", uri=url, cwd=work)
            assert promoted.returncode == 0, promoted.stderr
            yield {
                "url": url,
                "store": store,
                "work": work,
                "results": results,
                "experiment": experiment,
            }
    except TeamStoreError as error:
        pytest.skip(f"PostgreSQL could not be started: {error}")
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = previous
        mlflow.set_tracking_uri(previous)
        shutil.rmtree(folder, ignore_errors=True)


def test_runs_live_in_postgresql_and_their_files_behind_the_server(team):
    import psycopg

    url, experiment = team["url"], team["experiment"]
    found = api(url, "GET", "experiments/get-by-name", params={"experiment_name": experiment.name})["experiment"]
    runs = api(
        url,
        "POST",
        "runs/search",
        json={
            "experiment_ids": [found["experiment_id"]],
            "filter": "tags.`autorisk.role` = 'model'",
            "max_results": 50,
        },
    )["runs"]
    assert sorted(r["info"]["run_name"] for r in runs) == [
        f"{experiment.name}/{f}" for f in sorted(experiment.families)
    ]
    for run in runs:
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        logged = next(r for r in team["results"] if r.run_id == run["info"]["run_id"])
        assert metrics["thyroid_24m_auroc"] == pytest.approx(logged.metrics["thyroid_24m_auroc"])
        # Served artifacts: clients write through the server, which keeps the files in its own folder.
        assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")
        listed = httpx.get(
            f"{url}/api/2.0/mlflow-artifacts/artifacts",
            params={"path": run["info"]["artifact_uri"].split("mlflow-artifacts:/", 1)[1]},
            timeout=30,
        )
        assert listed.status_code == 200 and listed.json()["files"], listed.text
    assert any(team["store"].artifacts.rglob("MLmodel"))
    champion = api(url, "GET", "registered-models/alias", params={"name": "autoimmunity-risk", "alias": "champion"})[
        "model_version"
    ]
    # The rows are in PostgreSQL itself, not in a SQLite file somewhere.
    database = team["store"].database
    with psycopg.connect(
        host="127.0.0.1", port=database.port, user=ROLE, dbname=DATABASE, passfile=str(database.passfile)
    ) as db:
        count = db.execute(
            "SELECT count(*) FROM runs WHERE experiment_id = %s AND lifecycle_stage = 'active'",
            (int(found["experiment_id"]),),
        ).fetchone()[0]
        version = db.execute("SELECT version FROM registered_model_aliases WHERE alias = 'champion'").fetchone()[0]
    assert count >= len(experiment.families) and str(version) == champion["version"]
    assert not list(team["work"].glob("*.db")) and not list(team["store"].artifacts.parent.rglob("*.db"))


def test_score_a_file_and_serve_from_the_team_store(team, make_cohort):
    url, work = team["url"], team["work"]
    champion = api(url, "GET", "registered-models/alias", params={"name": "autoimmunity-risk", "alias": "champion"})[
        "model_version"
    ]["version"]
    patient = {"age_years": 34, "sex": "female", "disease_duration_years": 2}
    # The patient REST is asked about below heads a simulated clinic's file (the other inputs not provided).
    cohort = pd.concat([pd.DataFrame([{**patient, "treatment": "alemtuzumab"}]), make_cohort("clinic", 300, 31)])
    source, out = work / "clinic.csv", work / "scores.csv"
    cohort.to_csv(source, index=False)
    scored = autorisk("score", str(source), "--out", str(out), "--ignore-extra-columns", uri=url, cwd=work)
    assert scored.returncode == 0, scored.stderr
    scores = pd.read_csv(out)
    assert len(scores) == len(cohort) and (scores["model_version"].astype(str) == champion).all()
    assert scores["risk_thyroid_24m"].between(0, 1, inclusive="neither").all()

    with autorisk_server(url, work / "serve.log") as served:
        assert httpx.get(f"{served}/model", timeout=30).json()["version"] == champion
        predicted = httpx.post(f"{served}/predict", timeout=30, json={"patients": [patient], "horizons_months": [24]})
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert body["model"]["version"] == champion
    # One model behind both front doors: the served risk is the batch's for the same patient.
    served_risk = body["predictions"][0]["outcomes"]["thyroid"]["risks"][0]
    assert served_risk["horizon_months"] == 24
    assert served_risk["risk"] == pytest.approx(scores["risk_thyroid_24m"].iloc[0], abs=1e-9)


def test_the_run_in_the_mlflow_ui_of_the_team_server(team, tmp_path):
    pytest.importorskip("playwright")
    if chromium_path() is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    from tools.mlflow_ui import close_side_panels, loopback_page, model_training_view, show

    url, experiment = team["url"], team["experiment"]
    result = next(r for r in team["results"] if r.family == "cure-xgboost")
    found = api(url, "GET", "experiments/get-by-name", params={"experiment_name": experiment.name})["experiment"]
    picture = Path(os.environ.get(SCREENSHOT_DIR_ENV) or tmp_path) / "team-store-run.png"
    with loopback_page() as (page, blocked):
        show(page, f"{url}/#/experiments", experiment.name, timeout_s=180)
        model_training_view(page)
        show(
            page,
            f"{url}/#/experiments/{found['experiment_id']}/runs/{result.run_id}",
            f"{experiment.name}/cure-xgboost",
            timeout_s=180,
        )
        close_side_panels(page)
        text = page.inner_text("body")
        page.screenshot(path=picture)
    assert f"{result.metrics['thyroid_24m_auroc']:.3f}" in text
    assert picture.stat().st_size > 50_000
    assert all("127.0.0.1" not in u for u in blocked)


def test_an_unreachable_team_store_is_exit_3_never_a_sqlite_store(team):
    work = team["work"]
    down = f"http://127.0.0.1:{free_port()}"
    result = autorisk("score", str(work / "clinic.csv"), "--out", str(work / "none.csv"), uri=down, cwd=work)
    assert result.returncode == 3, result.stderr
    assert f"the MLflow store at {down} cannot be reached" in result.stderr
    # The database directly, as MLflow also takes it: nothing listening, and a role it refuses.
    for uri, words in (
        (f"postgresql://{ROLE}@127.0.0.1:{free_port()}/{DATABASE}", "Connection refused"),
        (
            f"postgresql://{ROLE}:not-the-password@127.0.0.1:{team['store'].database.port}/{DATABASE}",
            "password authentication failed",
        ),
    ):
        started = time.monotonic()
        result = autorisk("promote", "--dry-run", uri=uri, cwd=work)
        assert result.returncode == 3, result.stderr
        assert "cannot be reached or refuses the connection" in result.stderr and words in result.stderr
        assert "not-the-password" not in result.stderr and "Traceback" not in result.stderr
        assert time.monotonic() - started < 60
    assert not list(work.glob("*.db")) and not (work / "mlruns").exists()


def test_messages_never_show_a_database_password():
    from models.store import shown_uri

    assert shown_uri("postgresql+psycopg://team:s3cret@db.example:5432/mlflow") == (
        "postgresql+psycopg://team:***@db.example:5432/mlflow"
    )
    assert shown_uri("postgresql://team@127.0.0.1:5432/mlflow") == "postgresql://team@127.0.0.1:5432/mlflow"
    assert shown_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
