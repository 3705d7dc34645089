"""The page for clinicians at ``/`` and the API docs at ``/docs``: static files, served from this package.

The page (``serving/page/index.html``, ``app.js``, ``style.css``) builds its form from ``GET /model``
(which derives from :mod:`features.schema`) and asks ``POST /predict``, the same API as every other
client, for the risks it draws. Nothing it shows loads from outside the server: the files reference
only each other, and the Content-Security-Policy sent with every page tells the browser to refuse
anything else.

``/docs`` is BentoML's Swagger UI (its own script and style files under ``/static_content``) without
the Google Tag Manager snippet of BentoML's index page, which would contact a third party as soon as
the page opens. The page files hold no data and no secrets, so they are served without the API
token (:data:`PUBLIC_PATHS`, :data:`PUBLIC_PREFIXES`); the data behind them (``/model``,
``/predict``, ``/docs.json``) still needs it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PAGE_DIR = Path(__file__).parent / "page"
# Files of PAGE_DIR served under /page/, by name; nothing else of the folder is reachable.
PAGE_FILES = {"app.js": "text/javascript", "export.js": "text/javascript", "style.css": "text/css",
              "docs.js": "text/javascript",
              "docs.css": "text/css"}
PUBLIC_PATHS = frozenset({"/", "/docs"})
# /static_content/ holds BentoML's Swagger UI files, which /docs loads.
PUBLIC_PREFIXES = ("/page/", "/static_content/")

# Only this server's own files: no CDN, web font, tracker or inline script can run on the page.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# Swagger UI sets inline style attributes (React); its scripts still come from this server only.
DOCS_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                  # Revalidated on every load, so that a new release's page is never mixed with old scripts.
                  "Cache-Control": "no-cache"}


@cache
def _read(name: str) -> bytes:
    # Read once per process, on first use: the files are part of the installed code.
    return (PAGE_DIR / name).read_bytes()


def _html(name: str, policy: str) -> Response:
    return Response(_read(name), media_type="text/html; charset=utf-8",
                    headers={**COMMON_HEADERS, "Content-Security-Policy": policy})


async def index(_: Request) -> Response:
    """The page for clinicians: one patient's risks over time, the contrast and the explanations."""
    return _html("index.html", PAGE_POLICY)


async def docs(_: Request) -> Response:
    """BentoML's Swagger UI without its tracker."""
    return _html("docs.html", DOCS_POLICY)


async def page_file(request: Request) -> Response:
    """A script or style file of the page, by name."""
    name = request.path_params["name"]
    if name not in PAGE_FILES:
        return PlainTextResponse(f"no page file {name!r}", status_code=404)
    return Response(_read(name), media_type=PAGE_FILES[name], headers=COMMON_HEADERS)


PAGE_APP = Starlette(routes=[
    Route("/", index, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/page/{name}", page_file, methods=["GET"]),
])


def is_public(path: str) -> bool:
    """Whether ``path`` is one of the page's files, served without the API token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
