"""The ``autorisk`` command line: simulate, train, promote, score, serve, build, demo.

Each command's options and help are a frozen dataclass of :mod:`pipelines.cli.options`; what it does is a
function of its own module (``pipelines.cli.score``, ...), which gets one instance of that dataclass. A
command's module is imported when the command runs: the modules load pandas, pyarrow, mlflow and xgboost,
which ``autorisk --help`` and each command's ``--help`` need not wait for. Faults end with one line and an
exit code of the README's table (:mod:`models.store`).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import typing
from collections.abc import Callable

import typer

from pipelines.cli import options

app = typer.Typer(
    help="autorisk: risk of secondary autoimmunity after alemtuzumab, with SHAP explanations. "
    "A research tool trained on synthetic trial cohorts; not for clinical decisions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# In the order `autorisk --help` lists them: name, options, and the function ("module:function") that runs it.
COMMANDS = (
    ("simulate", options.SimulateOptions, "pipelines.cli.simulate:simulate"),
    ("cohort-report", options.CohortReportOptions, "pipelines.cli.simulate:cohort_report"),
    ("train", options.TrainOptions, "pipelines.cli.training:train"),
    ("worlds", options.WorldsOptions, "pipelines.cli.training:worlds"),
    ("promote", options.PromoteOptions, "pipelines.cli.registry:promote"),
    ("report", options.ReportOptions, "pipelines.cli.registry:report"),
    ("sample-size", options.SampleSizeOptions, "pipelines.cli.training:sample_size"),
    ("score", options.ScoreOptions, "pipelines.cli.score:score"),
    ("validate", options.ValidateOptions, "pipelines.cli.observed:validate"),
    ("recalibrate", options.RecalibrateOptions, "pipelines.cli.observed:recalibrate"),
    ("serve", options.ServeOptions, "pipelines.cli.serve:serve"),
    ("build", options.BuildOptions, "pipelines.cli.serve:build"),
    ("explain", options.ExplainOptions, "pipelines.cli.explain:explain"),
    ("demo", options.DemoOptions, "pipelines.cli.demo:demo"),
)


@app.callback()
def _before_every_command() -> None:
    # OpenMP threads that spin while they wait steal the cores from each other and from any
    # neighbouring job: on a shared 2-core machine, xgboost training ran about 50 times slower
    # with spinning threads, so time-limited tuning saw fewer trials and chose another model.
    # Set before xgboost loads OpenMP; a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def lazy_command(spec: type, target: str) -> Callable:
    """A Typer command whose options are the fields of the dataclass ``spec`` and whose help is its docstring.

    When it runs, it imports ``target`` (``"module:function"``) and calls it with one ``spec``; a command whose
    ``spec`` lets it take extra arguments (``allow_extra_args``) gets them as a second argument.
    """
    hints = typing.get_type_hints(spec, include_extras=True)
    parameters = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                    default=inspect.Parameter.empty if f.default is dataclasses.MISSING
                                    else f.default)
                  for f in dataclasses.fields(spec)]
    settings = getattr(spec, "COMMAND", {})
    extra = settings.get("context_settings", {}).get("allow_extra_args", False)
    if extra:
        parameters.insert(0, inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    def command(**values):
        module, name = target.split(":")
        run = getattr(importlib.import_module(module), name)
        context = values.pop("ctx", None)
        return run(spec(**values), context.args) if extra else run(spec(**values))

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = spec.__doc__
    return command


for _name, _spec, _target in COMMANDS:
    app.command(_name, **getattr(_spec, "COMMAND", {}))(lazy_command(_spec, _target))

__all__ = ["app"]
