"""The model a built Bento serves: pinned by registered version when the Bento is built.

``autorisk build`` resolves ``@champion`` (or takes ``--version``) and stores the name and
version as Bento arguments. BentoML hands a Bento's arguments to every process that serves it,
locally (``bentoml serve <tag>``) and in a container, so the Bento loads that version whatever
the alias points at when it starts.
"""

from __future__ import annotations

import os

MODEL_NAME_ARG = "model_name"
MODEL_VERSION_ARG = "model_version"


def pin_model_from_bento_args() -> str | None:
    """Point the service's model settings at the version the Bento was built with.

    Sets ``AUTORISK_MODEL_NAME`` and ``AUTORISK_MODEL_VERSION``, which the service reads when it
    loads the model; the Bento's version wins over the environment's, since a Bento must serve
    what was built into it.

    Returns
    -------
    str or None
        The pinned version, or None when the service runs from source without arguments.
    """
    import bentoml

    args = vars(bentoml.use_arguments())
    version = args.get(MODEL_VERSION_ARG)
    if not version:
        return None
    if MODEL_NAME_ARG in args:
        os.environ["AUTORISK_MODEL_NAME"] = str(args[MODEL_NAME_ARG])
    os.environ["AUTORISK_MODEL_VERSION"] = str(version)
    return str(version)
