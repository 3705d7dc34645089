"""Every ``AUTORISK_*`` setting, read from the environment at once, as one typed object.

A command reads them when it first needs one (``autorisk serve`` before it loads the model, a command
on a tracking server before it asks the server anything) and a built Bento when its service module is
imported, so that a bad value stops it at start-up with one line naming the variable and the problem
(exit code 2), rather than a traceback or a server that fails every request. ``autorisk serve`` and a
built Bento write the model they pin into the environment (``AUTORISK_MODEL_VERSION``) for the
server's processes, which read it here like any other setting.
"""

from __future__ import annotations

import math
import os
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.names import CHAMPION, MODEL_NAME

ENV_PREFIX = "AUTORISK_"
API_TOKEN_ENV = "AUTORISK_API_TOKEN"
MAX_BODY_BYTES_ENV = "AUTORISK_MAX_BODY_BYTES"
BODY_TIMEOUT_ENV = "AUTORISK_BODY_TIMEOUT_S"
WORKERS_ENV = "AUTORISK_WORKERS"
STORE_TIMEOUT_ENV = "AUTORISK_STORE_TIMEOUT_S"
FHIR_SERVERS_ENV = "AUTORISK_FHIR_SERVERS"
MODEL_VERSION_ENV = "AUTORISK_MODEL_VERSION"
# Largest request body in bytes: MAX_PATIENTS patients of JSON take about a third of it.
DEFAULT_MAX_BODY_BYTES = 1 << 20
# A client has this long to send its whole body; BentoML answers 504 for anything still running
# after TRAFFIC_TIMEOUT_S, so the body's limit must end before it.
DEFAULT_BODY_TIMEOUT_S = 10.0
TRAFFIC_TIMEOUT_S = 30
# A tracking server has this long to answer, instead of MLflow's minutes of retries.
DEFAULT_STORE_TIMEOUT_S = 15.0


class SettingsError(ValueError):
    """A setting cannot be used; the message names the variable and the problem."""


def _positive_whole(name: str, value: object, unit: str) -> object:
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.strip().isdigit() or int(text) <= 0:
        raise SettingsError(f"{name}: expected a positive whole number of {unit}, got {text!r}")
    return int(text)


def _seconds(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class Settings(BaseSettings):
    """What the environment sets, each field from ``AUTORISK_<FIELD>`` (upper case, as named below).

    Attributes
    ----------
    api_token : str or None
        ``AUTORISK_API_TOKEN``: the bearer token every REST request needs; None serves without one.
    max_body_bytes : int
        ``AUTORISK_MAX_BODY_BYTES``: the largest request body (413 above it).
    body_timeout_s : float
        ``AUTORISK_BODY_TIMEOUT_S``: seconds a client has to send its whole body (408 after it).
    workers : int
        ``AUTORISK_WORKERS``: server processes (default: one per core).
    store_timeout_s : float
        ``AUTORISK_STORE_TIMEOUT_S``: seconds a tracking server has to answer (15 by default).
    fhir_servers : tuple of str
        ``AUTORISK_FHIR_SERVERS``: the FHIR servers CDS Hooks may read from (comma-separated base URLs).
    model_name, model_alias, model_version : str
        ``AUTORISK_MODEL_NAME``, ``AUTORISK_MODEL_ALIAS``, ``AUTORISK_MODEL_VERSION``: the registered
        model the server loads; a version, when set, wins over the alias.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=True, frozen=True, extra="ignore",
                                      protected_namespaces=())

    # In this order: the first that cannot be used is the one a command names.
    api_token: str | None = Field(None, validation_alias=API_TOKEN_ENV)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, validation_alias=MAX_BODY_BYTES_ENV)
    body_timeout_s: float = Field(DEFAULT_BODY_TIMEOUT_S, validation_alias=BODY_TIMEOUT_ENV)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, validation_alias=WORKERS_ENV)
    store_timeout_s: float = Field(DEFAULT_STORE_TIMEOUT_S, validation_alias=STORE_TIMEOUT_ENV)
    fhir_servers: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias=FHIR_SERVERS_ENV)
    model_name: str = Field(MODEL_NAME, validation_alias=f"{ENV_PREFIX}MODEL_NAME")
    model_alias: str = Field(CHAMPION, validation_alias=f"{ENV_PREFIX}MODEL_ALIAS")
    model_version: str | None = Field(None, validation_alias=MODEL_VERSION_ENV)

    @field_validator("api_token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        # Set but blank is more likely a deployment mistake than a wish to serve without a token.
        # Surrounding whitespace is a quoting accident: the header's credentials are compared stripped too.
        if isinstance(value, str) and not value.strip():
            raise SettingsError(f"{API_TOKEN_ENV} is set but empty; unset it to serve without authentication")
        return value.strip() if isinstance(value, str) else value

    @field_validator("max_body_bytes", mode="before")
    @classmethod
    def _body_bytes(cls, value: object) -> object:
        return _positive_whole(MAX_BODY_BYTES_ENV, value, "bytes")

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        return _positive_whole(WORKERS_ENV, value, "processes")

    @field_validator("body_timeout_s", mode="before")
    @classmethod
    def _body_timeout(cls, value: object) -> float:
        seconds = _seconds(value)
        if not (0 < seconds < TRAFFIC_TIMEOUT_S):
            raise SettingsError(f"{BODY_TIMEOUT_ENV}: expected a number of seconds above 0 and below "
                                f"{TRAFFIC_TIMEOUT_S} (the server's limit for a whole request), got {value!r}")
        return seconds

    @field_validator("store_timeout_s", mode="before")
    @classmethod
    def _store_timeout(cls, value: object) -> float:
        seconds = _seconds(value)
        if not (math.isfinite(seconds) and seconds > 0):
            raise SettingsError(f"{STORE_TIMEOUT_ENV}: expected a positive number of seconds, got {value!r}")
        return seconds

    @field_validator("fhir_servers", mode="before")
    @classmethod
    def _servers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(s.strip().rstrip("/") for s in value.split(",") if s.strip())
        return value

    @field_validator("model_version", mode="before")
    @classmethod
    def _version(cls, value: object) -> object:
        return value or None  # set but empty: no pin


def load_settings() -> Settings:
    """Every setting from the environment.

    Raises
    ------
    SettingsError
        Naming the first setting that cannot be used and the problem, in one line.
    """
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, SettingsError):
            raise cause from None
        raise SettingsError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
