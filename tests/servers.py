"""Real server processes for integration tests: ``autorisk serve`` on a test store (:mod:`pipelines.servers`
starts and stops every server)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.servers import free_port, running_server

__all__ = ["autorisk_server", "free_port", "running_server"]


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
