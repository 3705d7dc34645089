"""Server processes started and stopped whole: ``autorisk serve``, ``mlflow ui``, ``mlflow server``, a Bento.

The tests, the tools that take the docs' pictures and the benchmarks start real servers the same way:
in a session of their own (BentoML and MLflow start workers and job consumers that must not outlive
them), with their output in a log file, waiting until a URL answers 200, and at the end stopping the
whole process group (SIGTERM, then SIGKILL for what is still there). This module is that one way; it
imports nothing of the project.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A server exited before it was ready, or was not ready in time; the message ends with its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` now (the operating system's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _stop(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM to the process group; SIGKILL to what is left after ``timeout_s``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except ProcessLookupError:  # the group is gone already
        process.wait()
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def running_server(command: list[str], *, ready_url: str, log: Path, env: dict | None = None,
                   timeout_s: float = 120, cwd: Path | None = None, stop_timeout_s: float = 20
                   ) -> Iterator[subprocess.Popen]:
    """Run ``command`` until ``ready_url`` answers 200; yield the process; stop it and its children at the end.

    Parameters
    ----------
    command : list of str
        The server's command line.
    ready_url : str
        A URL that answers 200 once the server serves (``/readyz``, ``/health``).
    log : Path
        The server's standard output and error.
    env : dict, optional
        Its environment (this process's by default); output is unbuffered, so that the log is current.
    timeout_s : float
        How long it has to become ready.
    cwd : Path, optional
        Its working folder.
    stop_timeout_s : float
        How long it has to stop after SIGTERM before it is killed.

    Raises
    ------
    ServerError
        When it exits before it is ready, or is not ready within ``timeout_s`` (it is stopped then).
    """
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    name = Path(command[0]).name
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise ServerError(f"{name} exited with {process.returncode}:\n{log.read_text()}")
            if _answers(ready_url):
                break
            if time.monotonic() > deadline:
                raise ServerError(f"{name} not ready in {timeout_s:g} s:\n{log.read_text()}")
            time.sleep(0.5)
        yield process
    finally:
        _stop(process, stop_timeout_s)
