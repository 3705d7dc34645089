"""Real server processes for integration tests: start, wait until ready, stop the whole group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(command: list[str], *, ready_url: str, log: Path, env: dict,
                   timeout_s: float = 120, cwd: Path | None = None) -> Iterator[None]:
    """Run ``command`` until ``ready_url`` answers 200; stop it and its children at the end.

    The process gets its own session because both servers start children (BentoML workers,
    MLflow job consumers) that must not outlive the test.
    """
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in {timeout_s:g} s:\n{log.read_text()}")
            time.sleep(0.5)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def autorisk_server(mlflow_uri: str, log: Path, **env: str) -> Iterator[str]:
    """``autorisk serve`` on the store at ``mlflow_uri``, with ``env`` added; yields its URL.

    One worker process: the tests send few requests at a time, and the machine's cores are shared.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "AUTORISK_WORKERS": "1",
                   "BENTOML_DO_NOT_TRACK": "true", **env}
    with running_server([sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port)],
                        ready_url=f"{url}/readyz", log=log, env=environment):
        yield url
