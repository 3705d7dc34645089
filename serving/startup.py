"""A server worker that cannot load its model stops the server: one line in the log, no restart loop;
a server whose settings cannot be used does not start: one line, exit code 2.

BentoML's arbiter restarts a worker whose start-up failed, outside containers without end, so a
model whose artifacts are gone would fill the log with the same traceback. ``autorisk serve``
loads the model once before it starts the server and exits with the fault's code (see
:mod:`models.store`); this is the net for the cases it cannot see: a built Bento served with
``bentoml serve``, or a store that fails between that check and the workers' start.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from models.store import UNUSABLE_INPUT, diagnose

T = TypeVar("T")
logger = logging.getLogger("autorisk.serving")


def bentoml_arbiter():
    """The BentoML arbiter that started this worker (a psutil.Process), or None when there is none."""
    import psutil

    try:
        parent = psutil.Process(os.getppid())
        return parent if "bentoml" in " ".join(parent.cmdline()) else None
    except psutil.Error:
        return None


def load_or_stop(load: Callable[[], T], tracking_uri: Callable[[], str]) -> T:
    """``load()``, or, when a store or model fault stops it, one log line, the server stopped and this worker gone.

    Parameters
    ----------
    load : callable
        Loads the model.
    tracking_uri : callable
        The store's URI, for the message.

    Returns
    -------
    Whatever ``load`` returns. Errors that are no store or model fault propagate unchanged, and so
    does every error outside a BentoML worker.
    """
    try:
        return load()
    except Exception as error:  # classified below; anything unknown propagates unchanged
        fault = diagnose(error, tracking_uri())
        if fault is None:
            raise
        arbiter = bentoml_arbiter()
        if arbiter is None:
            raise  # not a BentoML worker (a test, a debugger): the caller sees the error itself
        logger.error("cannot serve: %s (exit code %d); stopping the server", fault, fault.code)
        for handler in logging.getLogger().handlers + logger.handlers:
            handler.flush()
        arbiter.terminate()  # the arbiter stops every worker and does not start this one again
        os._exit(fault.code)  # no traceback, and nothing for BentoML to report as a start-up to retry


def stop_on_bad_settings(error: ValueError) -> NoReturn:
    """One line naming the setting and the problem on stderr, and exit code 2 (an unusable setting).

    Called where the service module reads its settings, at import: in ``bentoml serve`` (a built
    Bento) that is before any worker starts, so the server stops instead of failing every request.
    """
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(UNUSABLE_INPUT)
