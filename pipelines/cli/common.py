"""What the commands share: the consoles, one-line errors with the README's exit codes, store faults, the
registered version a command names, and option parsing."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from rich.console import Console
from rich.table import Table

from features.simulator import DEFAULT_CONFIG_PATH, SimulatorConfig
from models.registry import LoadedModel, load_model
from pipelines.config import load_world
from pipelines.reading import InputFileError, check_input_name
from models.store import StoreFault, diagnose, quiet_store_logs, require_store
from models.tracking import configure_tracking

console = Console()
errors = Console(stderr=True)


def months(text: str) -> list[float]:
    """``"12,24, 36"`` -> ``[12.0, 24.0, 36.0]``; ValueError naming a value that is not a number."""
    values = []
    for part in text.split(","):
        try:
            values.append(float(part.strip()))
        except ValueError:
            raise ValueError(f"horizons: {part.strip()!r} is not a number of months") from None
    return values


def option_message(error: Exception) -> str:
    """An option's error as the option's name and the problem: ``horizons: ...`` -> ``--horizons: ...``."""
    return str(error) if str(error).startswith("--") else f"--{error}"


def print_table(table: Table) -> None:
    """A wide table whole: at the terminal's width, or at 160 columns where the output is not a terminal
    (a pipe, a log), whose 80-column default would cut every cell."""
    target = console if console.is_terminal else Console(file=console.file, width=160)
    target.print(table)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit to raise with ``code``."""
    # Not wrapped to the terminal's width: an error names paths and values that scripts grep for.
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def registered_version(text: str | None, option: str = "--model-version") -> str | None:
    """A registered version as given (``"3"``); exit 2 for one that is not a whole number."""
    if text is None or text.strip().isdigit():
        return text.strip() if text is not None else None
    raise fail(f"{option}: {text!r} is not a registered version; versions are whole numbers (1, 2, ...)", 2)


def check_input_options(path: Path, sheet: str | None) -> None:
    """The input exists, has a name autorisk reads, and takes --sheet only when it is a workbook.

    Raises
    ------
    pipelines.reading.InputFileError
    """
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if sheet is not None and check_input_name(path).format != "xlsx":
        raise InputFileError(f"--sheet: {path} is not an Excel workbook; --sheet applies to .xlsx files only")


def quiet_downloads() -> None:
    """No artifact download bars from MLflow (a value the user set wins), and none of its INFO
    notes (validating an input example, creating tables): the commands' own lines say what happens."""
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


@contextmanager
def store_faults(uri: str, *, must_exist: bool = True) -> Iterator[None]:
    """Faults of the MLflow store and of the model as one line and the exit code of the README's table."""
    quiet_store_logs()
    try:
        require_store(uri, must_exist=must_exist)
        yield
    except StoreFault as fault:
        raise fail(str(fault), fault.code) from fault
    except typer.Exit:
        raise
    except Exception as error:  # classified below; anything unknown is re-raised unchanged
        fault = diagnose(error, uri)
        if fault is None:
            raise
        raise fail(str(fault), fault.code) from error


def load_registered(version: str | None, alias: str) -> LoadedModel:
    """The registered version named (``version``, else the one under ``alias``), loaded from the store at
    ``MLFLOW_TRACKING_URI``; a fault of the store or of the model exits with its line and code."""
    with store_faults(configure_tracking()):
        return load_model(alias=alias, version=version)


def world_config(world: str, config: Path | None) -> SimulatorConfig:
    """The simulator assumptions in a named world; exit 2 naming the shipped worlds for another."""
    try:
        return load_world(world, config or DEFAULT_CONFIG_PATH)
    except (OSError, ValueError) as error:
        raise fail(str(error), 2) from error
