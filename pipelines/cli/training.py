"""``autorisk train``, ``autorisk worlds`` and ``autorisk sample-size``: experiments trained into the MLflow store."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from mlflow import MlflowClient

from pipelines.cli.common import console, fail, months, store_faults
from pipelines.cli.options import SampleSizeOptions, TrainOptions, WorldsOptions
from pipelines.config import DEFAULT_EXPERIMENT, ExperimentConfig, load_experiment, world_names, world_overrides
from pipelines.sample_size import DEFAULT_SETTINGS, QUICK_SETTINGS, CurveSettings, run_sample_size, write_report
from pipelines.steps import load_simulator
from models.tracking import configure_tracking
from pipelines.train import run_experiment
from pipelines.worlds import run_worlds, worlds_table


def _experiment(config: Path | None) -> ExperimentConfig:
    """The experiment of ``config`` (the default one without); exit 2 naming the problem."""
    try:
        return load_experiment(config or DEFAULT_EXPERIMENT)
    except (OSError, ValueError) as error:
        raise fail(f"config: {error}", 2) from error


def train(given: TrainOptions) -> None:
    """Every family of the experiment trained, logged and registered, in the store at MLFLOW_TRACKING_URI."""
    uri = configure_tracking()
    experiment = _experiment(given.config)
    console.print(f"experiment {experiment.name!r}, tracking at {uri}")
    started = time.perf_counter()
    # A store that is locked, damaged or out of reach: one line and the README's exit code.
    with store_faults(uri, must_exist=False):
        run_experiment(experiment, log=console.print)
    console.print(f"trained in {time.perf_counter() - started:.0f} s")


def worlds(given: WorldsOptions) -> None:
    """The experiment trained in each world, and one table of each world's champion against its truth."""
    uri = configure_tracking()
    experiment = _experiment(given.config)
    try:
        names = given.world or world_names()
        for name in names:
            world_overrides(name)
    except (OSError, ValueError) as error:
        raise fail(f"config: {error}", 2) from error
    started = time.perf_counter()
    with store_faults(uri, must_exist=False):
        parent = run_worlds(experiment, names, quick=given.quick, log=console.print)
        table = worlds_table(MlflowClient(), parent)
    given.out.parent.mkdir(parents=True, exist_ok=True)
    given.out.write_text(table, encoding="utf-8")
    console.print(table, highlight=False, soft_wrap=True)
    console.print(f"{len(names)} worlds in {time.perf_counter() - started:.0f} s; MLflow run {parent} of experiment "
                  f"'worlds'; tables -> {given.out}")


def _sample_size_settings(experiment: ExperimentConfig, given: SampleSizeOptions) -> CurveSettings:
    """The learning-curve settings the options ask for; ValueError naming a size, repeat or family out of range."""
    changes = {"families": tuple(given.family or ())}
    if given.sizes is not None:
        changes["sizes"] = tuple(int(v) for v in months(given.sizes))
    if given.repeats is not None:
        changes["repeats"] = given.repeats
    settings = dataclasses.replace(QUICK_SETTINGS if given.quick else DEFAULT_SETTINGS, **changes)
    if any(n < 10 for n in settings.sizes) or settings.repeats < 1:
        raise ValueError("sizes must be at least 10 patients and repeats at least 1")
    unknown = [f for f in settings.families if f not in experiment.families]
    if unknown:
        raise ValueError(f"family: {', '.join(unknown)} not in {experiment.name} ({', '.join(experiment.families)})")
    return settings


def sample_size(given: SampleSizeOptions) -> None:
    """Learning curves and Riley's minimum sample size, written as a report and logged."""
    uri = configure_tracking()
    try:
        experiment = load_experiment(given.config or DEFAULT_EXPERIMENT)
        settings = _sample_size_settings(experiment, given)
    except (OSError, ValueError) as error:
        raise fail(str(error), 2) from error
    console.print(f"learning curves of {experiment.name} ({', '.join(settings.families or experiment.families)}): "
                  f"{', '.join(f'{n:,}' for n in settings.sizes)} training patients, {settings.repeats} repeats; "
                  f"tracking at {uri}", soft_wrap=True, highlight=False)
    with store_faults(uri, must_exist=False):
        result = run_sample_size(experiment, load_simulator(experiment), settings,
                                 log=lambda m: console.print(m, soft_wrap=True, highlight=False))
    paths = write_report(given.out, result.summary, result.riley, result.markdown)
    for r in result.riley.itertuples():
        console.print(f"{r.outcome} by month {r.horizon_months} ({100 * r.incidence:.1f}%), C {r.c_statistic:.3f} "
                      f"({r.c_source}): at least {r.n:,} patients ({r.events:,.0f} onsets); "
                      f"141 patients are {r.published_share_of_needed:.0%} of it", highlight=False, soft_wrap=True)
    console.print(f"report: {paths[0]} (MLflow run {result.run_id}, experiment 'sample-size'; {result.seconds:.0f} s)",
                  soft_wrap=True, highlight=False)
