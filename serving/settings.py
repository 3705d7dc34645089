"""The REST server's settings, read from the environment once, as one typed object.

``autorisk serve`` reads them before it loads the model and a built Bento when its service module is
imported, so that a bad value stops the server at start-up with one line naming the variable and the
problem (exit code 2), rather than a traceback or a server that fails every request.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

API_TOKEN_ENV = "AUTORISK_API_TOKEN"
MAX_BODY_BYTES_ENV = "AUTORISK_MAX_BODY_BYTES"
BODY_TIMEOUT_ENV = "AUTORISK_BODY_TIMEOUT_S"
WORKERS_ENV = "AUTORISK_WORKERS"
# Largest request body in bytes: MAX_PATIENTS patients of JSON take about a third of it.
DEFAULT_MAX_BODY_BYTES = 1 << 20
# A client has this long to send its whole body; BentoML answers 504 for anything still running
# after TRAFFIC_TIMEOUT_S, so the body's limit must end before it.
DEFAULT_BODY_TIMEOUT_S = 10.0
TRAFFIC_TIMEOUT_S = 30


class SettingsError(ValueError):
    """A setting cannot be used; the message names the variable and the problem."""


@dataclass(frozen=True)
class ServerSettings:
    """What the environment sets for the REST server.

    Attributes
    ----------
    api_token : str or None
        ``AUTORISK_API_TOKEN``: the bearer token every request needs; None serves without one.
    max_body_bytes : int
        ``AUTORISK_MAX_BODY_BYTES``: the largest request body (413 above it).
    body_timeout_s : float
        ``AUTORISK_BODY_TIMEOUT_S``: seconds a client has to send its whole body (408 after it).
    workers : int
        ``AUTORISK_WORKERS``: server processes (default: one per core).
    """

    api_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    workers: int = 1


def api_token(text: str | None) -> str | None:
    """The token, stripped; SettingsError when it is set but blank (more likely a deployment mistake
    than a wish to serve without a token). Surrounding whitespace is a quoting accident: the
    header's credentials are compared stripped too."""
    if text is not None and not text.strip():
        raise SettingsError(f"{API_TOKEN_ENV} is set but empty; unset it to serve without authentication")
    return text.strip() if text is not None else None


def _positive_whole(name: str, text: str | None, default: int, unit: str) -> int:
    if text is None:
        return default
    if not text.strip().isdigit() or int(text) <= 0:
        raise SettingsError(f"{name}: expected a positive whole number of {unit}, got {text!r}")
    return int(text)


def body_limit(default: int = DEFAULT_MAX_BODY_BYTES) -> int:
    """``AUTORISK_MAX_BODY_BYTES`` when set, else ``default``; SettingsError unless a positive whole number."""
    return _positive_whole(MAX_BODY_BYTES_ENV, os.environ.get(MAX_BODY_BYTES_ENV), default, "bytes")


def body_timeout(text: str | None) -> float:
    """Seconds for a whole request body: more than 0 and less than BentoML's own limit."""
    if text is None:
        return DEFAULT_BODY_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds < TRAFFIC_TIMEOUT_S):
        raise SettingsError(f"{BODY_TIMEOUT_ENV}: expected a number of seconds above 0 and below "
                            f"{TRAFFIC_TIMEOUT_S} (the server's limit for a whole request), got {text!r}")
    return seconds


def server_settings() -> ServerSettings:
    """The settings from the environment; SettingsError naming the first that cannot be used."""
    environ = os.environ
    return ServerSettings(
        api_token=api_token(environ.get(API_TOKEN_ENV)),
        max_body_bytes=body_limit(),
        body_timeout_s=body_timeout(environ.get(BODY_TIMEOUT_ENV)),
        workers=_positive_whole(WORKERS_ENV, environ.get(WORKERS_ENV), os.cpu_count() or 1, "processes"),
    )
