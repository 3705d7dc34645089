"""A real browser for the page's tests: the distribution's Chromium, driven by Playwright.

Playwright's own browser download cannot reach its servers from here, so the tests use Debian's
``chromium`` package (``make test`` installs it); where it is missing they are skipped, saying why.
Every request that is not to 127.0.0.1 is blocked and recorded, so that a test can assert that the
page never tried to reach another machine.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_or_skip() -> Path:
    """The Chromium binary, or skip the calling test with the reason."""
    if not CHROMIUM.is_file():
        found = shutil.which("chromium")
        reason = (f"Debian's chromium is at {found}, not {CHROMIUM}" if found
                  else "Debian's chromium is not installed (as root: apt-get install -y chromium; `make test` does it)")
        pytest.skip(reason)
    return CHROMIUM


@dataclass
class Guard:
    """What a browser context asked for: every URL, the ones blocked (not 127.0.0.1), console errors."""

    requests: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, route) -> None:
        url = route.request.url
        self.requests.append(url)
        scheme, host = urlsplit(url).scheme, urlsplit(url).hostname
        if scheme == "data" or (scheme in ("http", "https") and host == "127.0.0.1"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()


@contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium, closed at the end."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def guarded_page(launched, *, width: int = 1280, height: int = 900) -> Iterator[tuple[object, Guard]]:
    """A fresh context and page whose requests are guarded and whose console errors are recorded."""
    guard = Guard()
    context = launched.new_context(viewport={"width": width, "height": height})
    context.route("**/*", guard.route)
    page = context.new_page()
    page.on("console", lambda message: guard.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: guard.errors.append(str(error)))
    try:
        yield page, guard
    finally:
        context.close()
