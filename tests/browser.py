"""A real browser for the page's tests: the distribution's Chromium (:mod:`tools.browser`), or a skip saying why.

Every request that is not to 127.0.0.1 is blocked and recorded, so that a test can assert that the
page never tried to reach another machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tools.browser import Guard, chromium, chromium_path, guarded_page

__all__ = ["Guard", "browser", "chromium_or_skip", "guarded_page"]


def chromium_or_skip() -> str:
    """The Chromium binary, or skip the calling test with the reason."""
    found = chromium_path()
    if found is None:
        pytest.skip("Debian's chromium is not installed (as root: apt-get install -y chromium; `make test` does it)")
    return found


@contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium, closed at the end; skips the test where there is none."""
    with chromium(chromium_or_skip()) as launched:
        yield launched
