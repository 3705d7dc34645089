"""``autorisk serve`` and ``autorisk build``: the REST service on one registered version, live or as a Bento."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from models.registry import MODEL_NAME, load_model, resolve_version, version_or_alias
from pipelines.cli.common import console, errors, fail, store_faults
from pipelines.cli.options import BuildOptions, ServeOptions
from models.tracking import PROJECT_ROOT, configure_tracking
from serving.bento import MODEL_NAME_ARG, MODEL_VERSION_ARG
from models.settings import SettingsError
from models.settings import load_settings as server_settings


def serve(given: ServeOptions) -> None:
    """The version loaded once here, then BentoML serving it in this process's place."""
    try:  # the server's settings before anything loads: a bad one is one line and exit 2
        server_settings()
        version, alias = version_or_alias(given.model_version)
    except (SettingsError, ValueError) as error:
        raise fail(str(error), 2) from error
    uri = os.environ["MLFLOW_TRACKING_URI"] = configure_tracking()
    # The model is loaded here once before the server starts: a model that cannot load stops
    # the command with its exit code, instead of BentoML restarting workers that fail forever.
    with store_faults(uri):
        served = load_model(alias=alias, version=version)
    # The service loads exactly the version printed here, even if the alias moves meanwhile.
    os.environ["AUTORISK_MODEL_VERSION"] = str(served.version)
    named = "" if version else f" (@{alias})"
    console.print(f"serving autoimmunity-risk version {served.version}{named} on http://{given.host}:{given.port}")
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:RiskService",
               "--host", given.host, "--port", str(given.port), "--working-dir", str(PROJECT_ROOT)]
    os.execv(sys.executable, command)


def build(given: BuildOptions) -> None:
    """``bentoml build`` with the version pinned as a Bento argument; the tag alone on stdout."""
    try:
        number, alias = version_or_alias(given.version)
    except ValueError as error:
        raise fail(str(error).replace("--model-version", "--version"), 2) from error
    uri = os.environ["MLFLOW_TRACKING_URI"] = configure_tracking()
    with store_faults(uri):
        found = resolve_version(alias=alias, version=number)
    pinned = str(found.version)
    # The version travels as a Bento argument, which every process serving the Bento receives
    # (serving/bento.py); the labels make it visible in `bentoml list` and `bentoml get`.
    command = [sys.executable, "-m", "bentoml", "build", str(PROJECT_ROOT),
               "--bentofile", str(PROJECT_ROOT / "bentofile.yaml"), "--output", "tag",
               "--arg", f"{MODEL_NAME_ARG}={MODEL_NAME}", "--arg", f"{MODEL_VERSION_ARG}={pinned}",
               "--label", f"model_name={MODEL_NAME}", "--label", f"model_version={pinned}",
               "--label", f"model_run_id={found.run_id}"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    tags = [line.removeprefix("__tag__:").strip() for line in result.stdout.splitlines()
            if line.startswith("__tag__:")]
    if result.returncode != 0 or not tags:
        raise fail(f"bentoml build failed:\n{result.stderr.strip() or result.stdout.strip()}")
    # The tag alone on stdout, for scripts (`TAG=$(autorisk build)`); the explanation on stderr.
    errors.print(f"built Bento {tags[-1]} serving {MODEL_NAME} version {pinned}"
                 f"{'' if number else f' (@{alias} now)'}; it reads the model from the registry at "
                 "MLFLOW_TRACKING_URI when it starts", highlight=False, soft_wrap=True)
    typer.echo(tags[-1])
