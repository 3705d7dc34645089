"""A team's MLflow store on this machine: a tracking server on PostgreSQL, serving the artifacts, on loopback.

``make team-store`` runs :func:`main`: Debian's PostgreSQL (``make postgresql`` installs it) in
``.team-store/postgres`` (created on first use, kept between starts), a database ``mlflow`` owned by
the role ``autorisk`` with a password that only this folder holds, and ``mlflow server`` on
127.0.0.1 with that database as its backend store and ``.team-store/artifacts`` for the runs'
files, which it serves (``--serve-artifacts``), so a client needs no access to the folder.
Researchers then set ``MLFLOW_TRACKING_URI`` to the URL it prints. Ctrl-C stops both.

Nothing here falls back to SQLite: when PostgreSQL is missing, will not start or refuses the role,
this says so and exits 1; a command pointed at a server that is not running is exit 3
(models/store.py).

PostgreSQL refuses to run as root, so as root its programs run as Debian's ``postgres`` user, and the
folder of its data is given to that user.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.mlflow_ui import LOOPBACK, mlflow_ui

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT / ".team-store"
ROLE, DATABASE = "autorisk", "mlflow"
SERVICE_USER = "postgres"  # Debian's postgresql package creates it


class TeamStoreError(RuntimeError):
    """The team store cannot be started; the message says why and what to do."""


@dataclass(frozen=True)
class Database:
    """A running PostgreSQL: its port and the client settings of its role."""

    port: int
    passfile: Path

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI MLflow takes (no password: libpq reads it from ``PGPASSFILE``)."""
        return f"postgresql://{ROLE}@{LOOPBACK}:{self.port}/{DATABASE}"

    def client_env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSFILE": str(self.passfile), "PGCONNECT_TIMEOUT": "10"}


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH), the newest version first."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        reverse=True,
    )
    if found:
        return found[0].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _as_service_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(_as_service_user(command), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        if log is not None and log.is_file():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        raise TeamStoreError(f"PostgreSQL: {what} failed ({result.returncode}): {detail}")


def _give_to_service_user(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        shutil.chown(paths[0], user=SERVICE_USER, group=SERVICE_USER)
    except LookupError as error:
        raise TeamStoreError(
            f"no user {SERVICE_USER!r}: PostgreSQL refuses to run as root, and Debian's postgresql "
            "package creates that user (make postgresql)"
        ) from error
    for path in paths[1:]:
        shutil.chown(path, user=SERVICE_USER, group=SERVICE_USER)


def _initialise(bin_dir: Path, folder: Path) -> None:
    """A new cluster in ``folder/data``: TCP on loopback only, password (SCRAM) for every connection."""
    password = secrets.token_urlsafe(24)
    pwfile = folder / "initdb-password"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    # libpq reads the role's password from here; any port, since each start may take another.
    passfile = folder / "pgpass"
    passfile.write_text(f"{LOOPBACK}:*:*:{ROLE}:{password}\n")
    passfile.chmod(0o600)
    _give_to_service_user(folder, pwfile)
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(folder / "data"),
                "-U",
                ROLE,
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
            ],
            "initdb",
        )
    finally:
        pwfile.unlink()


@contextmanager
def postgres(folder: Path, port: int | None = None) -> Iterator[Database]:
    """PostgreSQL with its data in ``folder`` (created on first use), listening on 127.0.0.1 only.

    ``folder``'s parents must be open to the ``postgres`` user when run as root. Stopped at the end.

    Raises
    ------
    TeamStoreError
        When PostgreSQL is not installed or cannot start.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise TeamStoreError("PostgreSQL is not installed (Debian: apt-get install postgresql, or make postgresql)")
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "data" / "PG_VERSION").is_file():
        _initialise(bin_dir, folder)
    port = port or free_port()
    log = folder / "postgres.log"
    log.touch()
    _give_to_service_user(log)
    # The socket lives in the data folder, so nothing is needed in /var/run/postgresql.
    options = f"-c listen_addresses={LOOPBACK} -p {port} -k {folder / 'data'}"
    _run(
        [str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
        "start",
        log,
    )
    database = Database(port=port, passfile=folder / "pgpass")
    try:
        _create_database(database)
        yield database
    finally:
        _run([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"], "stop")


def _create_database(database: Database) -> None:
    import psycopg

    with psycopg.connect(
        host=LOOPBACK,
        port=database.port,
        user=ROLE,
        dbname="postgres",
        passfile=str(database.passfile),
        connect_timeout=10,
        autocommit=True,
    ) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if found is None:
            connection.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{ROLE}"')


@dataclass(frozen=True)
class TeamStore:
    """A running team store: the tracking server's URL, its database and the folder of its artifacts."""

    url: str
    database: Database
    artifacts: Path


@contextmanager
def team_store(folder: Path, port: int | None = None, timeout_s: float = 180) -> Iterator[TeamStore]:
    """PostgreSQL and ``mlflow server`` on it with served artifacts, all in ``folder``; stopped at the end."""
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    with postgres(folder / "postgres") as database:
        options = ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
        with mlflow_ui(
            database.uri, folder / "mlflow-server.log", timeout_s, options=options, port=port, env=database.client_env()
        ) as url:
            yield TeamStore(url=url, database=database, artifacts=artifacts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="Where the database and artifacts live.")
    parser.add_argument("--port", type=int, default=5000, help="The tracking server's port on 127.0.0.1.")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with team_store(args.folder.resolve(), port=args.port) as store:
            print(
                f"MLflow tracking server on PostgreSQL at {store.url} (database and artifacts in {args.folder});\n"
                f"  export MLFLOW_TRACKING_URI={store.url}\n"
                f"  its database: {store.database.uri} (PGPASSFILE={store.database.passfile})\n  Ctrl-C stops it",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except RuntimeError as error:  # TeamStoreError, or mlflow_ui's: the server exited or did not answer
        raise SystemExit(f"team store: {error}") from error
    except KeyboardInterrupt:
        print("team store stopped")


if __name__ == "__main__":
    main()
