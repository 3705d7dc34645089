"""Faults of the MLflow store and of a registered model: one line and one exit code each.

The commands that read the registry (``score``, ``serve``, ``build``, ``report``, ``promote``)
tell apart what the user can act on: a model that was never trained (MLflow answers "does not
exist"), a store path with a typo (or one that names a folder or an empty file), a store that is
busy, unreachable or damaged, and a registered version whose files are gone. Each gets its exit
code (:data:`EXIT_CODES`, the README's table) and one line that says what happened and what to
do, never a traceback. A tracking server that does not answer is reported within
``AUTORISK_STORE_TIMEOUT_S`` seconds (15 by default), instead of after MLflow's minutes of retries.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.exceptions import MlflowException

from models.settings import STORE_TIMEOUT_ENV, SettingsError, load_settings

NOT_FOUND = 1
UNUSABLE_INPUT = 2
UNREACHABLE = 3
LOCKED = 4
DAMAGED = 5
NO_STORE = 6
BROKEN_MODEL = 7
STOPPED_BY_CTRL_C = 130
STOPPED_BY_SIGTERM = 143
EXIT_CODES = {
    0: "the command completed (for score: every record scored or rejected with its reason)",
    NOT_FOUND: "not found: the registry has no such model, version or alias (MLflow's \"does not exist\")",
    UNUSABLE_INPUT: "the input, an option, a setting or an output cannot be used (unreadable file, missing column, "
                    "a version that is not a number, a bad AUTORISK_* setting, output locked by another run, "
                    "disk full)",
    UNREACHABLE: "the store cannot be reached or refuses access (server down, connection refused, no answer "
                 "within AUTORISK_STORE_TIMEOUT_S (15 s), permission denied, a server error)",
    LOCKED: "the store is locked by another process (try again when it is done)",
    DAMAGED: "the store is damaged or not an MLflow store of this version (not a database, malformed, "
             "schema out of date)",
    NO_STORE: "no store at the path (a typo in MLFLOW_TRACKING_URI, a folder or an empty file instead of a "
              "database, or nothing trained yet); nothing is created there",
    BROKEN_MODEL: "the registered version's artifacts are missing or cannot be read",
    STOPPED_BY_CTRL_C: "stopped by Ctrl-C (SIGINT); score leaves nothing half-written",
    STOPPED_BY_SIGTERM: "stopped by SIGTERM (kill, a scheduler's time limit); score leaves nothing half-written",
}
# Database URIs of a team's store (MLflow's SQLAlchemy store on PostgreSQL, with or without a +driver).
POSTGRES_SCHEMES = ("postgresql", "postgres")
# MLflow logs these faults with a traceback of its own before raising them; the command's one
# line replaces it.
_MLFLOW_STORE_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store",
                         "mlflow.store.model_registry.sqlalchemy_store")


class StoreFault(Exception):
    """A fault of the store or of a registered model, with its exit code.

    Attributes
    ----------
    code : int
        A key of :data:`EXIT_CODES`.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class NoChampionError(LookupError):
    """The registry has no version under the requested alias."""


class ModelLoadError(RuntimeError):
    """A registered version exists but cannot be loaded: its artifacts are missing or unreadable.

    The cause (``__cause__``) is the error MLflow or unpickling raised.
    """

    def __init__(self, name: str, version: str, cause: BaseException) -> None:
        missing = isinstance(cause, FileNotFoundError) or (
            isinstance(cause, MlflowException) and cause.error_code == "RESOURCE_DOES_NOT_EXIST")
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        state = "are missing" if missing else "cannot be read"
        super().__init__(f"model {name!r} version {version} is registered but its artifacts {state} "
                         f"({type(cause).__name__}{': ' + detail if detail else ''})")
        self.missing = missing


def local_store_path(uri: str) -> Path | None:
    """The file (SQLite) or folder (file store) a local tracking URI names; None for a server."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = unquote(uri.removeprefix("sqlite:///").split("?", 1)[0])
        return None if path in ("", ":memory:") else Path(path)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri:
        return Path(uri)
    return None


def store_timeout() -> float:
    """Seconds a tracking server has to answer (:attr:`models.settings.Settings.store_timeout_s`).

    Raises
    ------
    StoreFault
        With exit code 2, when a setting cannot be used.
    """
    try:
        return load_settings().store_timeout_s
    except SettingsError as error:
        raise StoreFault(UNUSABLE_INPUT, str(error)) from None


def _which(uri: str) -> str:
    return (f"MLFLOW_TRACKING_URI={uri}" if os.environ.get("MLFLOW_TRACKING_URI")
            else "the project's default store; MLFLOW_TRACKING_URI names another")


def require_store(uri: str, *, must_exist: bool = True) -> None:
    """StoreFault when ``uri`` names no usable store, said at once rather than after MLflow's retries.

    - A local path that does not exist (``must_exist``), a SQLite path that is a folder, or a
      SQLite file of no bytes (``must_exist``): NO_STORE. MLflow would create an empty store there
      (or write its schema into the empty file) and then report "no model": a typo in the path
      must say so instead, and leave the path untouched. Commands that create stores (``train``,
      ``demo``) pass ``must_exist=False``.
    - A tracking server that does not answer within :func:`store_timeout`: UNREACHABLE.
    - A timeout setting that cannot be used: UNUSABLE_INPUT, whatever the store (a setting is checked
      where it is read, not only where it is needed).
    """
    timeout = store_timeout()
    path = local_store_path(uri)
    sqlite_file = urlparse(uri).scheme == "sqlite"
    if path is not None:
        if must_exist and not path.exists():
            raise StoreFault(NO_STORE, f"no MLflow store at {path} ({_which(uri)}): check the path, "
                                       "or run `autorisk train` to create one")
        if sqlite_file and path.is_dir():
            raise StoreFault(NO_STORE, f"no MLflow store at {path} ({_which(uri)}): it is a folder; name the "
                                       "database file in it (sqlite:///<folder>/mlflow.db)")
        if must_exist and sqlite_file and path.is_file() and path.stat().st_size == 0:
            raise StoreFault(NO_STORE, f"no MLflow store at {path} ({_which(uri)}): it is an empty file, left "
                                       "as it is; check the path, or run `autorisk train` to create a store there")
    elif urlparse(uri).scheme in ("http", "https"):
        _require_answer(uri, timeout)
    elif urlparse(uri).scheme.split("+")[0] in POSTGRES_SCHEMES:
        _require_database(uri, timeout)


def shown_uri(uri: str) -> str:
    """``uri`` without its password, for messages."""
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)).geturl()


def _require_database(uri: str, timeout: float) -> None:
    """StoreFault(UNREACHABLE) unless the PostgreSQL of ``uri`` lets its role in within ``timeout`` seconds.

    MLflow would retry a database it cannot open for about 100 s, logging each try; this says why at once.
    """
    import psycopg

    parsed = urlparse(uri)
    conninfo = parsed._replace(scheme="postgresql").geturl()
    try:
        psycopg.connect(conninfo, connect_timeout=max(1, math.ceil(timeout))).close()
    except psycopg.Error as error:
        raise StoreFault(UNREACHABLE, f"the MLflow store at {shown_uri(uri)} cannot be reached or refuses the "
                                      f"connection ({_first_line(error)})") from error


def _require_answer(uri: str, timeout: float) -> None:
    """StoreFault(UNREACHABLE) unless the tracking server at ``uri`` answers anything within ``timeout`` seconds.

    Any HTTP answer will do (an authentication error is for MLflow's own requests to report);
    proxies and certificates are those MLflow's requests use.
    """
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=(timeout, timeout), allow_redirects=False).close()
    except requests.Timeout as error:
        raise StoreFault(UNREACHABLE, f"the MLflow store at {uri} did not answer within {timeout:g} s "
                                      f"({STORE_TIMEOUT_ENV} sets the limit)") from error
    except requests.RequestException as error:
        raise StoreFault(UNREACHABLE, f"the MLflow store at {uri} cannot be reached "
                                      f"({_first_line(_chain(error)[-1])})") from error


def _chain(error: BaseException) -> list[BaseException]:
    found, seen = [], set()
    while error is not None and id(error) not in seen:
        found.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return found


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _transport_error(error: BaseException) -> bool:
    try:
        import requests
        import urllib3
    except ImportError:  # pragma: no cover - MLflow depends on both
        return isinstance(error, ConnectionError | TimeoutError)
    return isinstance(error, requests.ConnectionError | requests.Timeout | urllib3.exceptions.HTTPError
                      | ConnectionError | TimeoutError)


def diagnose(error: BaseException, uri: str) -> StoreFault | None:  # noqa: C901 - one branch per fault of the exit-code table
    """The fault behind ``error``, raised while reading the store at ``uri``; None when it is none of them.

    Parameters
    ----------
    error : BaseException
        As raised by :mod:`models.registry` or MLflow (causes are followed).
    uri : str
        The tracking URI, for the message.

    Returns
    -------
    StoreFault or None
    """
    if isinstance(error, StoreFault):
        return error
    chain = _chain(error)
    where = f"the MLflow store at {shown_uri(uri)}"
    for link in chain:
        text = str(link).lower()
        if isinstance(link, NoChampionError):
            return StoreFault(NOT_FOUND, str(link))
        if isinstance(link, sqlite3.OperationalError | sqlite3.DatabaseError) or _is_sqlalchemy(link):
            if "locked" in text or "busy" in text:
                return StoreFault(LOCKED, f"{where} is locked by another process ({_first_line(link)}); "
                                          "try again when it is done")
            if "unable to open database file" in text:
                return StoreFault(UNREACHABLE, f"{where} cannot be opened ({_first_line(link)}): "
                                               "check that its folder exists and is readable")
            return StoreFault(DAMAGED, f"{where} is damaged or not an MLflow database ({_first_line(link)})")
        if isinstance(link, MlflowException) and "out-of-date database schema" in text:
            return StoreFault(DAMAGED, f"{where} was written by another MLflow version ({_first_line(link)})")
        if _transport_error(link):
            # The innermost cause says it plainly ("[Errno 111] Connection refused").
            return StoreFault(UNREACHABLE, f"{where} cannot be reached ({_first_line(chain[-1])})")
        if isinstance(link, MlflowException) and link.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            return StoreFault(UNREACHABLE, f"{where} refuses access ({_first_line(link)})")
        if isinstance(link, PermissionError):
            return StoreFault(UNREACHABLE, f"{where} cannot be read: permission denied ({_first_line(link)})")
    if isinstance(error, ModelLoadError):
        return StoreFault(BROKEN_MODEL, f"{error}; retrain it (autorisk train), or use another registered version")
    if isinstance(error, MlflowException):
        return StoreFault(UNREACHABLE, f"{where} failed: {_first_line(error)}")
    return None


def _is_sqlalchemy(error: BaseException) -> bool:
    return type(error).__module__.startswith("sqlalchemy")


class _WithoutTraceback(logging.Filter):
    """Drop MLflow's own error records of store faults; the command reports them in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.exc_info)


def quiet_store_logs() -> None:
    """Keep MLflow's tracebacks of store faults off the terminal (call at run time, not import)."""
    for name in _MLFLOW_STORE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _WithoutTraceback) for f in logger.filters):
            logger.addFilter(_WithoutTraceback())


def readme_table() -> str:
    """The exit-code table of the README, from :data:`EXIT_CODES`."""
    rows = "\n".join(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items())
    return "| exit code | meaning |\n|---|---|\n" + rows
