"""Faults of the MLflow store and of a registered model: one line and the README's exit code each.

Real stores: one trained here (so that its files can be damaged without touching the shared one),
a file that is not a database, an empty file, a folder, a database another process holds locked, a
server address where nothing listens and one that accepts connections and never answers, paths
that do not exist, and the store mounted read-only (a bind mount in a mount namespace, where the
machine allows one). Real server processes for ``autorisk serve`` and for BentoML serving the
service directly (as a built Bento does).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from typer.testing import CliRunner

from models.store import (
    BROKEN_MODEL,
    DAMAGED,
    EXIT_CODES,
    LOCKED,
    NO_STORE,
    NOT_FOUND,
    STOPPED_BY_CTRL_C,
    STOPPED_BY_SIGTERM,
    UNREACHABLE,
    UNUSABLE_INPUT,
    readme_table,
)
from pipelines.cli import app
from tests.servers import free_port, running_server

pytestmark = pytest.mark.integration
runner = CliRunner()
AUTORISK = str(Path(sys.executable).with_name("autorisk"))
MODEL = "autoimmunity-risk"


@pytest.fixture(scope="module")
def store(tiny_experiment, tmp_path_factory):
    """A store of its own, trained by the real pipeline (one family, for speed), with a champion."""
    import mlflow

    from pipelines.train import run_experiment

    folder = tmp_path_factory.mktemp("fault-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.environ["MLFLOW_TRACKING_URI"]
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        config = tiny_experiment.model_copy(update={
            "name": "fault-test", "families": {"cox-linear": tiny_experiment.families["cox-linear"]}})
        run_experiment(config, log=lambda *_: None)
        client = mlflow.MlflowClient()
        version = max(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
        client.set_registered_model_alias(MODEL, "champion", str(version))
        artifacts = Path(unquote(urlparse(client.get_model_version_download_uri(MODEL, str(version))).path))
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = previous
        mlflow.set_tracking_uri(previous)
    return {"uri": uri, "folder": folder, "artifacts": artifacts}


@pytest.fixture()
def cohort(tmp_path):
    path = tmp_path / "clinic.csv"
    path.write_text("patient_id,age_years,sex,disease_duration_years\np1,34,F,2\n")
    return path


def score(uri: str, cohort: Path, *args: str, **env: str):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for name, value in env.items():
            patch.setenv(name, value)
        return runner.invoke(app, ["score", str(cohort), "--out", str(cohort.with_name("scores.csv")), *args])


def assert_one_line_error(result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_the_store_works_before_any_fault(store, cohort):
    result = score(store["uri"], cohort)
    assert result.exit_code == 0, result.output


def test_a_store_path_that_does_not_exist_is_named_and_not_created(cohort, tmp_path):
    for database in (tmp_path / "typo" / "mlflow.db", tmp_path / "mlflwo.db"):
        result = score(f"sqlite:///{database}", cohort)
        assert_one_line_error(result, NO_STORE, f"no MLflow store at {database}")
        assert not database.exists() and not (tmp_path / "typo").exists()


def test_a_file_that_is_not_a_database_is_a_damaged_store(cohort, tmp_path):
    database = tmp_path / "mlflow.db"
    database.write_bytes(os.urandom(8192))
    assert_one_line_error(score(f"sqlite:///{database}", cohort), DAMAGED, "is damaged or not an MLflow database")


def test_a_store_locked_by_another_process_says_so(store, cohort):
    holder = sqlite3.connect(store["folder"] / "mlflow.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = score(store["uri"], cohort)
    finally:
        holder.close()
    assert_one_line_error(result, LOCKED, "is locked by another process")


def test_an_unreachable_tracking_server_is_not_reported_as_not_found(cohort):
    uri = f"http://127.0.0.1:{free_port()}"
    # MLflow retries a refused connection for about four minutes by default; none here.
    result = score(uri, cohort, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    assert_one_line_error(result, UNREACHABLE, f"the MLflow store at {uri} cannot be reached")
    assert "Connection refused" in result.output and "train" not in result.output


def test_a_store_path_that_is_a_folder_is_named_at_once(cohort, tmp_path):
    started = time.perf_counter()
    result = score(f"sqlite:///{tmp_path}", cohort)
    assert_one_line_error(result, NO_STORE, f"no MLflow store at {tmp_path}")
    assert "it is a folder" in result.output
    assert time.perf_counter() - started < 10  # MLflow retried for about 100 s, with nine warnings


def test_an_empty_store_file_is_no_store_and_is_left_untouched(cohort, tmp_path):
    database = tmp_path / "mlflow.db"
    database.touch()
    assert_one_line_error(score(f"sqlite:///{database}", cohort), NO_STORE, "it is an empty file, left as it is")
    assert database.stat().st_size == 0  # MLflow wrote its whole schema into it


@contextmanager
def silent_server():
    """A port that accepts connections and never answers: a tracking server that hangs."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:  # closed at the end
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for connection in accepted:
            connection.close()


def test_a_tracking_server_that_does_not_answer_is_reported_within_the_stated_time(cohort):
    with silent_server() as uri:
        started = time.perf_counter()
        result = score(uri, cohort, AUTORISK_STORE_TIMEOUT_S="2")
        elapsed = time.perf_counter() - started
    assert_one_line_error(result, UNREACHABLE, f"the MLflow store at {uri} did not answer within 2 s "
                                               "(AUTORISK_STORE_TIMEOUT_S sets the limit)")
    assert elapsed < 8, elapsed  # without the limit: no word for over ten minutes


def test_a_refused_connection_is_reported_at_once_with_mlflows_default_retries(cohort):
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.perf_counter()
    result = score(uri, cohort)
    assert_one_line_error(result, UNREACHABLE, f"the MLflow store at {uri} cannot be reached")
    assert "Connection refused" in result.output
    assert time.perf_counter() - started < 10  # MLflow's retries took over four minutes


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf"])
@pytest.mark.parametrize("store", ["http", "sqlite"])
def test_a_bad_store_timeout_is_a_bad_setting(cohort, value, store, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}" if store == "http" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = score(uri, cohort, AUTORISK_STORE_TIMEOUT_S=value)  # checked on a local store too, never ignored
    assert_one_line_error(result, UNUSABLE_INPUT, f"AUTORISK_STORE_TIMEOUT_S: expected a positive number of "
                                                  f"seconds, got {value!r}")


@pytest.mark.parametrize("command", [["score", "{cohort}", "--out", "{out}", "--model-version", "abc"],
                                     ["explain", "--age-years", "34", "--sex", "female",
                                      "--disease-duration-years", "2", "--model-version", "v2"],
                                     ["report", "latest", "--out", "{out}"], ["build", "--version", "1.0"]])
def test_a_version_that_is_not_a_number_is_an_unusable_option(store, cohort, command):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store["uri"])
        args = [part.format(cohort=cohort, out=cohort.with_name("out.csv")) for part in command]
        result = runner.invoke(app, args)
    assert_one_line_error(result, UNUSABLE_INPUT, "is not a registered version; versions are whole numbers")


def test_only_does_not_exist_means_not_found(store, cohort):
    result = score(store["uri"], cohort, "--model-version", "99")
    assert_one_line_error(result, NOT_FOUND, f"no model '{MODEL}' version 99")


@contextmanager
def artifacts_damaged(store, how: str):
    """The champion's artifacts truncated (``damaged``) or gone (``missing``) for the block, then restored."""
    folder = store["artifacts"]
    backup = folder.with_name(folder.name + ".backup")
    shutil.copytree(folder, backup)
    try:
        if how == "missing":
            shutil.rmtree(folder)
        else:
            # The fitted model's own files (numbers, xgboost's format, tables), cut short.
            damaged = [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".ubj", ".npz")]
            assert damaged, f"no model files under {folder}"
            for path in damaged:
                path.write_bytes(path.read_bytes()[:64])
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        backup.rename(folder)


@pytest.mark.parametrize("how, message", [("missing", "its artifacts are missing"),
                                          ("damaged", "its artifacts cannot be read")])
def test_a_registered_version_whose_artifacts_are_gone_or_damaged(store, cohort, how, message):
    with artifacts_damaged(store, how):
        result = score(store["uri"], cohort)
    assert_one_line_error(result, BROKEN_MODEL, f"model '{MODEL}' version ")
    assert message in result.output


def test_other_registry_commands_report_faults_the_same_way(tmp_path):
    database = tmp_path / "typo" / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
        for command in (["report", "--out", str(tmp_path / "cards")], ["promote", "--dry-run"], ["build"]):
            assert_one_line_error(runner.invoke(app, command), NO_STORE, f"no MLflow store at {database}")


def test_the_readme_lists_every_exit_code():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert readme_table() in readme
    assert sorted(EXIT_CODES) == [*range(8), STOPPED_BY_CTRL_C, STOPPED_BY_SIGTERM]


# --- serving a model that cannot load -------------------------------------------------------------

def _run_until_exit(command: list[str], env: dict, log: Path, timeout: float = 180) -> int:
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
        pytest.fail(f"still running after {timeout} s (a restart loop?):\n{log.read_text()[-3000:]}")


def test_serve_exits_with_the_fault_code_when_the_model_cannot_load(store, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "AUTORISK_WORKERS": "1", "BENTOML_DO_NOT_TRACK": "true"}
    log = tmp_path / "serve.log"
    with artifacts_damaged(store, "missing"):
        code = _run_until_exit([AUTORISK, "serve", "--port", str(free_port())], env, log, timeout=120)
    text = log.read_text()
    assert code == BROKEN_MODEL, text
    assert [line for line in text.splitlines() if line.strip()] == [
        line for line in text.splitlines() if line.startswith("error: ") and "its artifacts are missing" in line]
    assert "BentoServer" not in text  # stopped before any server started


def test_a_worker_that_cannot_load_stops_the_server_instead_of_restarting(store, tmp_path):
    # As a built Bento runs: BentoML serves the service directly, without autorisk serve's check.
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "AUTORISK_WORKERS": "1", "BENTOML_DO_NOT_TRACK": "true",
           "AUTORISK_MODEL_VERSION": "1"}
    log = tmp_path / "bentoml.log"
    root = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    with artifacts_damaged(store, "missing"):
        _run_until_exit([sys.executable, "-m", "bentoml", "serve", "serving.service:RiskService",
                         "--port", str(free_port()), "--working-dir", str(root)], env, log, timeout=120)
    text = log.read_text()
    failures = [line for line in text.splitlines() if "cannot serve:" in line]
    assert 1 <= len(failures) <= 2, text  # the arbiter may start one more worker before it stops
    assert "its artifacts are missing" in failures[0]
    assert "Traceback" not in text
    assert time.monotonic() - started < 120


# --- a read-only store ----------------------------------------------------------------------------

def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _with_bytecode_caching() -> dict:
    """The environment with Python's bytecode cache on, as it is by default (this machine sets it off)."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "AUTORISK_WORKERS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def test_loading_a_model_writes_nothing_into_the_store(store, cohort, monkeypatch):
    import mlflow

    from models.registry import load_model

    before = _snapshot(store["folder"])
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # Python's default; this machine turns it off
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    assert load_model().version
    assert sys.dont_write_bytecode is False
    # MLflow imports the version's mlflow_model.py from the store; its __pycache__ was written there.
    assert _snapshot(store["folder"]) == before


def _read_only_command(folder: Path) -> list[str] | None:
    """A command prefix that runs what follows with ``folder`` bind-mounted read-only over itself, or None."""
    if shutil.which("unshare") is None:
        return None
    script = (f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" '
              f'&& ! touch "{folder}/.writable" 2>/dev/null && exec "$@"')
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        if subprocess.run([*prefix, "sh", "-c", script, "sh", "true"], capture_output=True).returncode == 0:
            return [*prefix, "sh", "-c", script, "sh"]
    return None


def test_score_and_serve_work_on_a_read_only_store(store, cohort, tmp_path):
    prefix = _read_only_command(store["folder"])
    if prefix is None:
        pytest.skip("no way to mount the store read-only here (needs unshare with mount namespaces)")
    env = {**_with_bytecode_caching(), "MLFLOW_TRACKING_URI": store["uri"]}
    result = subprocess.run([*prefix, AUTORISK, "score", str(cohort), "--out", str(tmp_path / "scores.csv")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scored 1," in result.stdout
    port = free_port()
    with running_server([*prefix, AUTORISK, "serve", "--port", str(port)], ready_url=f"http://127.0.0.1:{port}/readyz",
                        log=tmp_path / "serve.log", env=env):
        import httpx

        answer = httpx.post(f"http://127.0.0.1:{port}/predict", timeout=60, json={"patients": [
            {"age_years": 34, "sex": "female", "disease_duration_years": 2}]})
    assert answer.status_code == 200, answer.text
    assert not (store["folder"] / ".writable").exists()
