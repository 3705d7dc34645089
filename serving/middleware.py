"""ASGI middlewares that guard the REST service: bearer token, body size and time, unambiguous and
well-typed JSON with its patients per request, parsed once.

They run before BentoML parses a request, so that an unauthorised, oversized or stalled request
costs neither a JSON parse nor a model call, and each answers a client's mistake with a 4xx whose
message names the problem. None of them logs a request body.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.responses import JSONResponse

from serving.strict_json import SchemaTypes, strict_parse

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


# Where StrictJson leaves the document it parsed, in the request's ASGI scope: a JSON object, for the
# request model to validate as it is (see serving.service.PredictRequestIODescriptor), never parsed again.
PARSED_BODY = "autorisk.parsed_body"


class StrictJson:
    """400 for a ``POST`` whose JSON body is ambiguous, or of other types than its path's schema states;
    422 for one with more patients than a path admits. One parse of the body does both.

    Ambiguous: a key repeated in one object, or a number that is not finite (``NaN``, ``1e400``).
    Of the wrong type: for a path in ``schemas``, a value whose JSON type the request model's schema
    does not admit (``"34"`` for a number, ``"yes"`` or ``1`` for a boolean, ``true`` for a month),
    or a key it does not know. Both are refused here, before BentoML reads the body, with the
    location and the problem (:mod:`serving.strict_json`). Then, for a path in ``max_patients``, a
    ``patients`` list longer than its limit gets a 422 naming the limit (the request model's own
    length check would answer a generic 400). A body that is not JSON at all is passed on untouched
    for the request model to reject; a JSON object is passed on with its document under
    :data:`PARSED_BODY` in the scope.

    Parameters
    ----------
    schemas : dict of str to pydantic model class, optional
        The request model of each path whose bodies' types are checked.
    max_patients : dict of str to int, optional
        The most patients a body of each path may hold.
    """

    def __init__(self, app, schemas: dict | None = None, max_patients: dict[str, int] | None = None) -> None:
        self.app = app
        self.types = {path: SchemaTypes(model.model_json_schema()) for path, model in (schemas or {}).items()}
        self.max_patients = dict(max_patients or {})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        document, problem = strict_parse(body, self.types.get(scope["path"]))
        if problem is not None:
            await _answer(scope, receive, send, 400, problem)
            return
        limit = self.max_patients.get(scope["path"])
        count = _patient_count(document)
        if limit is not None and count is not None and count > limit:
            await _answer(scope, receive, send, 422,
                          f"patients: {count} in one request, at most {limit} allowed; split them over several requests")
            return
        if isinstance(document, dict):
            scope = {**scope, PARSED_BODY: document}
        await self.app(scope, _replay(body, receive), send)


def _patient_count(document) -> int | None:
    patients = document.get("patients") if isinstance(document, dict) else None
    return len(patients) if isinstance(patients, list) else None


class ModelVersionHeader:
    """Every HTTP answer names the model version it came from (``X-Model-Version``), errors included.

    ``version`` is the one the service was pinned to before its workers started
    (``AUTORISK_MODEL_VERSION``, set by ``autorisk serve`` and by a built Bento); without a pin
    there is no header, and ``POST /predict`` answers still name their version in the body.
    """

    def __init__(self, app, version: str | None = None) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope, receive, send) -> None:
        version = self.version
        if scope["type"] != "http" or not version:
            await self.app(scope, receive, send)
            return
        header = (b"x-model-version", version.encode())

        async def send_with_version(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_version)
