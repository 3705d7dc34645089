"""A real REST server shared by the serving tests that only send it requests."""

from __future__ import annotations

import pytest

from tests.servers import autorisk_server


@pytest.fixture(scope="session")
def shared_server(mlflow_store, tmp_path_factory):
    """``autorisk serve`` with the default settings: its URL and log file."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with autorisk_server(mlflow_store["uri"], log) as url:
        yield {"url": url, "log": log}
