"""One headless Chromium that reaches 127.0.0.1 only: for the page's tests, the MLflow UI's and the docs' screenshots.

Playwright's own browser download cannot reach its servers from here, so this drives Debian's
``chromium`` package (``make browser`` installs it; ``AUTORISK_CHROMIUM`` names another). Every
request that is not to 127.0.0.1 (or a ``data:``/``blob:`` URL, and ``file:`` where allowed) is
aborted and recorded, so that a caller can assert that nothing tried to reach another machine.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("AUTORISK_CHROMIUM", "/usr/bin/chromium")
LOOPBACK = "127.0.0.1"
# Chromium will not run as root with its sandbox (a container's usual user); no GPU, no background traffic.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when there is none."""
    return CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")


@dataclass
class Guard:
    """What a browser context asked for: every URL, the ones refused (not 127.0.0.1), console errors."""

    allow_files: bool = False
    requests: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme in ("data", "blob") or (parts.scheme == "file" and self.allow_files)
                or (parts.scheme in ("http", "https") and parts.hostname == LOOPBACK))

    def route(self, route) -> None:
        url = route.request.url
        self.requests.append(url)
        if self.allows(url):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()


@contextmanager
def chromium(executable: str | None = None) -> Iterator[object]:
    """A launched headless Chromium (Playwright ``Browser``), closed at the end."""
    from playwright.sync_api import sync_playwright

    executable = executable or chromium_path()
    if executable is None:
        raise RuntimeError("Debian's chromium is not installed (as root: apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def guarded_page(launched, *, width: int = 1280, height: int = 900,
                 allow_files: bool = False) -> Iterator[tuple[object, Guard]]:
    """A fresh context and page of ``launched`` whose requests are guarded and console errors recorded."""
    guard = Guard(allow_files=allow_files)
    context = launched.new_context(viewport={"width": width, "height": height})
    context.route("**/*", guard.route)
    page = context.new_page()
    page.on("console", lambda message: guard.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: guard.errors.append(str(error)))
    try:
        yield page, guard
    finally:
        context.close()


def fill_form(page, values: dict[str, str]) -> None:
    """Type ``values`` into the page's form fields ``#f-<name>``, choosing where a field is a list."""
    for name, value in values.items():
        field_ = page.locator(f"#f-{name}")
        if field_.evaluate("e => e.tagName") == "SELECT":
            field_.select_option(value)
        else:
            field_.fill(value)
