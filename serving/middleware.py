"""ASGI middlewares that guard the REST service: bearer token, body size, unambiguous JSON, patients
per request.

They run before BentoML parses a request, so that an unauthorised or oversized request costs
neither a JSON parse nor a model call, and each answers a client's mistake with a 4xx whose
message names the problem. None of them logs a request body.
"""

from __future__ import annotations

import hmac
import json
import os

from starlette.responses import JSONResponse

API_TOKEN_ENV = "AUTORISK_API_TOKEN"
MAX_BODY_BYTES_ENV = "AUTORISK_MAX_BODY_BYTES"
# Probes of orchestrators and load balancers carry no credentials; every other path needs the token.
HEALTH_PATHS = frozenset({"/livez", "/healthz", "/readyz"})


class _Disconnected(Exception):
    """The client went away before its body arrived; there is nobody left to answer."""


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:  # ASGI servers lower-case header names
            return value
    return None


async def _answer(scope, receive, send, status: int, message: str, headers: dict | None = None) -> None:
    await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)


async def _read_body(receive, limit: int | None = None) -> bytes | None:
    """The request body, or ``None`` as soon as it passes ``limit`` bytes (the rest stays unread)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands over the buffered body once, then waits on the client as before."""
    delivered = False

    async def replayed():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def body_limit(default: int) -> int:
    """The body limit in bytes: ``AUTORISK_MAX_BODY_BYTES`` when set, else ``default``.

    Raises
    ------
    ValueError
        When the variable is not a positive whole number; read when the service module is
        imported, so that the server refuses to start rather than fail every request.
    """
    text = os.environ.get(MAX_BODY_BYTES_ENV)
    if text is None:
        return default
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError(f"{MAX_BODY_BYTES_ENV}: expected a positive whole number of bytes, got {text!r}")
    return int(text)


def api_token() -> str | None:
    """The API token from ``AUTORISK_API_TOKEN``; None when unset (no authentication).

    Raises
    ------
    ValueError
        When the variable is set but blank: more likely a deployment mistake than a wish to
        serve without a token. Read when the service module is imported, like :func:`body_limit`.
    """
    token = os.environ.get(API_TOKEN_ENV)
    if token is not None and not token.strip():
        raise ValueError(f"{API_TOKEN_ENV} is set but empty; unset it to serve without authentication")
    # Surrounding whitespace is a quoting accident: the header's credentials are compared stripped too.
    return token.strip() if token is not None else None


class RequireToken:
    """401 unless the request carries ``Authorization: Bearer <token>``; no check when ``token`` is None.

    Every path except :data:`HEALTH_PATHS` and those ``public`` admits needs the token, the OpenAPI
    document and ``/metrics`` included, so that a route added later is never open by mistake.
    Tokens are compared in constant time.

    Parameters
    ----------
    public : callable, optional
        ``public(path)`` is true for paths served without the token: static files that hold no
        data, such as a page that then asks for the token itself.
    """

    def __init__(self, app, token: str | None, public=None) -> None:
        self.app = app
        self.expected = token.encode() if token else None
        self.public = public or (lambda path: False)

    def _authorised(self, scope) -> bool:
        scheme, _, credentials = (_header(scope, b"authorization") or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.expected)

    async def __call__(self, scope, receive, send) -> None:
        if (self.expected is None or scope["type"] not in ("http", "websocket")
                or scope["path"] in HEALTH_PATHS or self.public(scope["path"]) or self._authorised(scope)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the client sees a 403
            return
        if _header(scope, b"authorization") is None:
            challenge, message = 'Bearer realm="autorisk"', "send the API token as Authorization: Bearer <token>"
        else:
            challenge = 'Bearer realm="autorisk", error="invalid_token"'
            message = "Authorization: expected Bearer <token> with the server's API token"
        await _answer(scope, receive, send, 401, message, {"WWW-Authenticate": challenge})


class LimitBodySize:
    """413 for a request body above ``max_bytes``, judged by Content-Length and by the bytes received.

    A chunked body declares no length, so the bytes are counted as they arrive; the body is
    buffered (never more than the limit) and handed on once complete.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.limit = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        # The server has already refused a malformed Content-Length; digits are all that reach here.
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        try:
            body = await _read_body(receive, self.limit)
        except _Disconnected:
            return
        if body is None:
            await self._too_large(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope, receive, send) -> None:
        await _answer(scope, receive, send, 413,
                      f"request body larger than {self.limit} bytes; split the patients over several requests")


class LimitPatients:
    """422 for a ``POST`` to ``path`` whose ``patients`` list holds more than ``max_patients``.

    The request model's own length check would answer a generic 400; this answer names the limit.
    The body is already bounded by :class:`LimitBodySize`, so counting costs one parse of at most
    that many bytes. A body that is not a JSON object with a ``patients`` list is passed on
    untouched for the request model to reject.
    """

    def __init__(self, app, path: str, max_patients: int) -> None:
        self.app = app
        self.path = path
        self.max_patients = max_patients

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        count = _patient_count(body)
        if count is not None and count > self.max_patients:
            await _answer(scope, receive, send, 422,
                          f"patients: {count} in one request, at most {self.max_patients} allowed; "
                          "split them over several requests")
            return
        await self.app(scope, _replay(body, receive), send)


class RejectAmbiguousJson:
    """400 for a ``POST`` whose JSON body repeats a key in one object, or holds a number that is not finite.

    JSON parsers disagree on repeated keys (most keep the last value silently, so a second
    ``"patients"`` list would replace the first), and ``NaN``, ``Infinity`` and ``1e400`` (which
    overflows to infinity) are not JSON numbers at all, though Python's and pydantic's parsers
    accept them, after which a range check would answer "should be <= 120". Both are refused
    here, before BentoML parses the body, with the location and the problem: ``patients.0.age_years:
    the key 'age_years' appears twice``, ``patients.0.il21_pg_ml: NaN is not a finite number``.
    A body that is not JSON at all is passed on untouched for the request model to reject.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        problem = json_problem(body)
        if problem is not None:
            await _answer(scope, receive, send, 400, problem)
            return
        await self.app(scope, _replay(body, receive), send)


class _Ambiguous(ValueError):
    """A repeated key or a number that is not finite (raised while parsing, to stop early)."""


class _Object(dict):
    """A parsed JSON object that remembers the keys it saw more than once."""

    repeated: list[str]


class _NotFinite:
    """A number that is not finite, as written in the body."""

    def __init__(self, text: str) -> None:
        self.text = text


_MAX_FINITE_DIGITS = 309  # 10**309 is above the largest float64


def _strict_object(pairs: list) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Ambiguous
    return found


def _strict_float(text: str) -> float:
    value = float(text)
    if value - value != 0:  # inf - inf and nan - nan are nan
        raise _Ambiguous
    return value


def _strict_int(text: str) -> int:
    if len(text.lstrip("-")) >= _MAX_FINITE_DIGITS:
        raise _Ambiguous
    return int(text)


def _refuse_constant(text: str):
    raise _Ambiguous


def _recording_object(pairs: list) -> _Object:
    found = _Object()
    found.repeated = []
    for key, value in pairs:
        if key in found and key not in found.repeated:
            found.repeated.append(key)
        found.setdefault(key, value)
    return found


def _recording_float(text: str):
    value = float(text)
    return value if value - value == 0 else _NotFinite(text)


def _recording_int(text: str):
    return _NotFinite(text) if len(text.lstrip("-")) >= _MAX_FINITE_DIGITS else int(text)


def _first_problem(document) -> str | None:
    """Location and problem of the first repeated key or non-finite number (an object's own keys before its contents)."""
    stack = [(document, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _NotFinite):
            shown = node.text if len(node.text) <= 24 else f"{node.text[:12]}... ({len(node.text)} characters)"
            return f"{path or 'body'}: {shown} is not a finite number"
        if isinstance(node, dict):
            if getattr(node, "repeated", None):
                key = node.repeated[0]
                where = f"{path}.{key}" if path else key
                return f"{where}: the key {key!r} appears more than once in one object; send each key once"
            stack.extend((value, f"{path}.{key}" if path else str(key)) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((value, f"{path}.{i}" if path else str(i)) for i, value in reversed(list(enumerate(node))))
    return None


def json_problem(body: bytes) -> str | None:
    """Why a JSON body is ambiguous (a repeated key, a number that is not finite), or None.

    Parameters
    ----------
    body : bytes
        The request body.

    Returns
    -------
    str or None
        ``<location>: <problem>``; None for an unambiguous body, and for one that is not JSON
        at all (the request model says what is wrong with it).
    """
    try:
        # One strict parse that stops at the first problem: the common case costs about as
        # much as a plain parse (0.3 ms for 100 patients).
        json.loads(body, object_pairs_hook=_strict_object, parse_float=_strict_float, parse_int=_strict_int,
                   parse_constant=_refuse_constant)
        return None
    except _Ambiguous:
        pass
    except (ValueError, RecursionError):  # not JSON, or nested too deep: for the request model to answer
        return None
    # Parsed again, recording instead of stopping, to say where: only for bodies being refused.
    try:
        document = json.loads(body, object_pairs_hook=_recording_object, parse_float=_recording_float,
                              parse_int=_recording_int, parse_constant=_NotFinite)
    except (ValueError, RecursionError):  # broken further on: what was found first still stands
        return "body: a key appears more than once in one object, or a number is not finite"
    return _first_problem(document)


def _patient_count(body: bytes) -> int | None:
    from pydantic_core import from_json

    try:
        # The same parser as the request model, with its nesting limit: deep JSON fails here, fast.
        document = from_json(body)
    except ValueError:
        return None
    patients = document.get("patients") if isinstance(document, dict) else None
    return len(patients) if isinstance(patients, list) else None


class ModelVersionHeader:
    """Every HTTP answer names the model version it came from (``X-Model-Version``), errors included.

    The version is the one the service was pinned to before its workers started
    (``AUTORISK_MODEL_VERSION``, set by ``autorisk serve`` and by a built Bento); without a pin
    there is no header, and ``POST /predict`` answers still name their version in the body.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        version = os.environ.get("AUTORISK_MODEL_VERSION")
        if scope["type"] != "http" or not version:
            await self.app(scope, receive, send)
            return
        header = (b"x-model-version", version.encode())

        async def send_with_version(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_version)
