"""ASGI middlewares that guard the REST service: bearer token, body size and time, unambiguous and
well-typed JSON, patients per request.

They run before BentoML parses a request, so that an unauthorised, oversized or stalled request
costs neither a JSON parse nor a model call, and each answers a client's mistake with a 4xx whose
message names the problem. None of them logs a request body.
"""

from __future__ import annotations

import asyncio
import hmac
import os

from starlette.responses import JSONResponse

from serving.strict_json import SchemaTypes, json_problem

# Probes of orchestrators and load balancers carry no credentials; every other path needs the token.
HEALTH_PATHS = frozenset({"/livez", "/healthz", "/readyz"})


class _Disconnected(Exception):
    """The client went away before its body arrived; there is nobody left to answer."""


class _TimedOut(Exception):
    """The client did not send its whole body in time."""


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:  # ASGI servers lower-case header names
            return value
    return None


async def _answer(scope, receive, send, status: int, message: str, headers: dict | None = None) -> None:
    await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)


async def _read_body(receive, limit: int | None = None, deadline: float | None = None) -> bytes | None:
    """The request body, or ``None`` as soon as it passes ``limit`` bytes (the rest stays unread).

    ``deadline`` (the event loop's clock) bounds the wait for the whole body: _TimedOut after it.
    """
    chunks, size = [], 0
    loop = asyncio.get_running_loop()
    while True:
        if deadline is None:
            message = await receive()
        else:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise _TimedOut from None
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
    """413 for a request body above ``max_bytes``, judged by Content-Length and by the bytes received;
    408 for one that has not arrived whole ``timeout_s`` seconds after the request began.

    A chunked body declares no length, so the bytes are counted as they arrive; the body is
    buffered (never more than the limit) and handed on once complete. A client that stalls
    mid-body gets the 408, with ``Connection: close``, before the server's own limit for a whole
    request would answer a 504 (a server error for a client's fault); one that goes away gets
    nothing, the connection simply closed.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.limit = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        # The server has already refused a malformed Content-Length; digits are all that reach here.
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        deadline = None if self.timeout_s is None else asyncio.get_running_loop().time() + self.timeout_s
        try:
            body = await _read_body(receive, self.limit, deadline)
        except _Disconnected:
            return
        except _TimedOut:
            await _answer(scope, receive, send, 408,
                          f"request body not received within {self.timeout_s:g} s; send the whole body at once",
                          {"Connection": "close"})
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


class StrictJson:
    """400 for a ``POST`` whose JSON body is ambiguous, or of other types than its path's schema states.

    Ambiguous: a key repeated in one object, or a number that is not finite (``NaN``, ``1e400``).
    Of the wrong type: for a path in ``schemas``, a value whose JSON type the request model's schema
    does not admit (``"34"`` for a number, ``"yes"`` or ``1`` for a boolean, ``true`` for a month),
    or a key it does not know. Both are refused here, before BentoML parses the body, with the
    location and the problem (:mod:`serving.strict_json`). A body that is not JSON at all is passed
    on untouched for the request model to reject.

    Parameters
    ----------
    schemas : dict of str to pydantic model class, optional
        The request model of each path whose bodies' types are checked.
    """

    def __init__(self, app, schemas: dict | None = None) -> None:
        self.app = app
        self.types = {path: SchemaTypes(model.model_json_schema()) for path, model in (schemas or {}).items()}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        problem = json_problem(body, self.types.get(scope["path"]))
        if problem is not None:
            await _answer(scope, receive, send, 400, problem)
            return
        await self.app(scope, _replay(body, receive), send)


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
