"""``autorisk worlds``: the default experiment trained in every world, its champion judged against each world's truth.

A world (``experiments/worlds/<name>.yaml``, ``docs/worlds.md``) is one set of simulator
assumptions: an event form, a set of effects, interferon's hazard after month 24. Every world
matches the published incidences, so a model tuned to one world's assumptions can look right there
for the wrong reasons; judged in worlds no one tuned it to, it cannot.

For each world the experiment is trained as ``autorisk train`` would (its own MLflow experiment
``<experiment>-<world>`` and its own registered model, so no world's versions compete with another's
or with the default champion), its champion is chosen by :func:`models.registry.promote`, and the
champion's ``truth_*``, ``interval_*`` and ``contrast_*`` metrics are read back from its run. The
sweep is one parent run of the MLflow experiment ``worlds``, with one child run per world holding
those metrics; :func:`worlds_table` builds the tables from the children.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient

from features.schema import TREATMENTS, endpoint
from models.names import (
    BENCHMARK_COHORT,
    FAMILY_TAG,
    PROMOTION_METRIC,
    ROLE_MODEL,
    ROLE_TAG,
    contrast_metric,
    interval_metric,
    truth_metric,
)
from models.registry import NoChampionError, promote
from models.tracking import NOTE_TAG, ensure_experiment
from pipelines.config import CohortSpec, ExperimentConfig, TuningSpec, world_overrides
from pipelines.train import run_experiment

EXPERIMENT = "worlds"
ROLE_SWEEP, ROLE_WORLD = "worlds", "world"
WORLD_TAG = "autorisk.world"
TABLE_HORIZONS = (24, 48)
COHORT = BENCHMARK_COHORT  # the CARE-MS I cohort of each world that no model saw
TRUTH = ("mean_risk", "mean_true_risk", "auroc_over_oracle", "calibration_slope")
CONTRAST = ("predicted_between_arms", "true_between_arms", "excess_mean_abs_error", "excess_correlation")
# --quick: every cohort a tenth of its size (at least 2,000 patients), tuning cut to 4 trials in 40 s
# and 5 interval refits, so that a sweep of every world takes minutes (for tests and trial sweeps).
QUICK_SHARE, QUICK_MIN_N = 0.1, 2000


def quick_settings(config: ExperimentConfig) -> dict:
    """Updates that make ``config`` small: the cohorts' sizes, tuning and interval refits."""
    def small(cohort: CohortSpec) -> CohortSpec:
        return cohort.model_copy(update={"n": max(QUICK_MIN_N, round(cohort.n * QUICK_SHARE))})

    families = {name: spec.model_copy(update={"tuning": TuningSpec(n_trials=4, timeout_s=40,
                                                                   space=spec.tuning.space, seed=spec.tuning.seed)})
                if spec.tuning else spec for name, spec in config.families.items()}
    return {"train_cohorts": [small(c) for c in config.train_cohorts],
            "external_cohorts": [small(c) for c in config.external_cohorts],
            "benchmark_cohort": small(config.benchmark_cohort),
            "interval_refits": min(config.interval_refits, 5), "families": families}


def world_experiment(config: ExperimentConfig, world: str, *, quick: bool = False) -> ExperimentConfig:
    """``config`` in ``world``: its own experiment name and registered model name."""
    world_overrides(world)  # a shipped world, or a ValueError naming them
    suffix = f"{world}-quick" if quick else world
    update = {"world": world, "name": f"{config.name}-{suffix}",
              "registered_model_name": f"{config.registered_model_name}-{suffix}"}
    return config.model_copy(update=update | (quick_settings(config) if quick else {}))


def champion_metrics(metrics: dict[str, float], horizons=TABLE_HORIZONS) -> dict[str, float]:
    """The champion's metrics the worlds table reads: truth per arm, interval coverage, contrast."""
    kept = {}
    for name, value in metrics.items():
        wanted = name.startswith(("truth_", "interval_", "contrast_")) and any(
            f"_{h}m_" in name for h in horizons)
        if wanted and math.isfinite(value):
            kept[name] = value
    return kept


@dataclass(frozen=True)
class WorldResult:
    world: str
    experiment: str
    version: str
    family: str
    seconds: float
    cpu_seconds: float


def _log_child(client: MlflowClient, experiment_id: str, parent_id: str, world_config: ExperimentConfig,
               result: WorldResult, metrics: dict[str, float], quick: bool) -> str:
    world = world_config.world
    child = client.create_run(experiment_id, run_name=f"worlds/{world}", tags={
        "mlflow.parentRunId": parent_id, ROLE_TAG: ROLE_WORLD, WORLD_TAG: world,
        NOTE_TAG: f"The champion of {world_config.name} (version {result.version} of "
                  f"{world_config.registered_model_name}, {result.family}) against the world's truth."})
    run_id = child.info.run_id
    params = {"world": world, "experiment": world_config.name, "model": world_config.registered_model_name,
              "champion_version": result.version, "champion_family": result.family[:500], "quick": str(quick),
              "world_source": world_overrides(world).get("world_source", "")[:500]}
    for key, value in params.items():
        client.log_param(run_id, key, value)
    values = metrics | {"world_seconds": result.seconds, "world_cpu_seconds": result.cpu_seconds}
    items = [mlflow.entities.Metric(k, float(v), int(time.time() * 1000), 0) for k, v in values.items()]
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start:start + 1000])
    client.set_terminated(run_id)
    return run_id


def run_worlds(config: ExperimentConfig, worlds: list[str], *, quick: bool = False, log=print) -> str:
    """Train ``config`` in each of ``worlds``, promote each world's champion and log the sweep.

    Returns
    -------
    str
        The parent run's id; :func:`worlds_table` reads the tables from it.
    """
    client = MlflowClient()
    experiment_id = ensure_experiment(EXPERIMENT, description=(
        "`autorisk worlds`: the default experiment trained in every world (experiments/worlds/), one parent run "
        "per sweep and one child per world with its champion's figures against that world's truth "
        "(docs/worlds.md)."))
    parent = client.create_run(experiment_id, run_name=f"worlds/{config.name}" + ("-quick" if quick else ""),
                               tags={ROLE_TAG: ROLE_SWEEP})
    parent_id = parent.info.run_id
    for key, value in {"experiment": config.name, "worlds": ",".join(worlds), "quick": str(quick)}.items():
        client.log_param(parent_id, key, value)
    status = "FAILED"
    try:
        for world in worlds:
            world_config = world_experiment(config, world, quick=quick)
            log(f"world {world}: training {world_config.name}")
            wall, cpu = time.perf_counter(), time.process_time()
            run_experiment(world_config, log=log)
            try:
                chosen = promote(client, world_config.registered_model_name, experiment=world_config.name).chosen
            except NoChampionError as error:  # the world is reported without a champion, and why
                chosen, metrics, reason = None, {}, str(error)
            else:
                metrics, reason = champion_metrics(client.get_run(chosen.run_id).data.metrics), ""
            result = WorldResult(world, world_config.name, chosen.version if chosen else "none",
                                 chosen.family if chosen else reason, time.perf_counter() - wall,
                                 time.process_time() - cpu)
            _log_child(client, experiment_id, parent_id, world_config, result, metrics, quick)
            log(f"world {world}: champion " + (f"v{result.version} ({result.family})" if chosen else
                                               f"none: {reason}") + f", {result.seconds:.0f} s wall, "
                f"{result.cpu_seconds:.0f} s CPU")
        tables = worlds_table(client, parent_id)
        client.log_text(parent_id, tables, "worlds.md")
        client.set_tag(parent_id, NOTE_TAG, tables)
        status = "FINISHED"
    finally:
        client.set_terminated(parent_id, status=status)
    return parent_id


def children(client: MlflowClient, parent_id: str) -> list:
    """The world runs of a sweep, in the order they were trained."""
    parent = client.get_run(parent_id)
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return sorted(runs, key=lambda r: r.info.start_time)


def world_rows(client: MlflowClient, parent_id: str) -> pd.DataFrame:
    """One row per world, arm, outcome and horizon: the champion's figures against the world's truth."""
    rows = []
    for run in children(client, parent_id):
        m, world = run.data.metrics, run.data.tags[WORLD_TAG]
        for outcome in ("thyroid", "itp"):
            for horizon in TABLE_HORIZONS:
                name = endpoint(outcome, horizon)
                for arm in TREATMENTS:
                    row = {"world": world, "arm": arm, "endpoint": name}
                    row |= {k: m.get(truth_metric(COHORT, arm, name, k), math.nan) for k in TRUTH}
                    row["coverage"] = m.get(interval_metric(COHORT, arm, name, "coverage"), math.nan)
                    row |= {f"contrast_{k}": m.get(contrast_metric(COHORT, name, k), math.nan) for k in CONTRAST}
                    rows.append(row)
    return pd.DataFrame(rows)


def _pct(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{100 * value:.2f}%"


def _num(value: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def worlds_table(client: MlflowClient, parent_id: str) -> str:
    """Markdown: the truth table and the contrast table of a sweep, and each world's champion and time."""
    frame = world_rows(client, parent_id)
    lines = ["| world | arm | endpoint | mean predicted | mean true | predicted / true | AUROC / oracle's "
             "| calibration slope | 95% interval holds the truth |", "|---|---|---|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        ratio = r.mean_risk / r.mean_true_risk if r.mean_true_risk > 0 else math.nan
        lines.append(f"| {r.world} | {r.arm} | {r.endpoint} | {_pct(r.mean_risk)} | {_pct(r.mean_true_risk)} | "
                     f"{_num(ratio, 2)} | {_num(r.auroc_over_oracle)} | {_num(r.calibration_slope, 2)} | "
                     f"{_pct(r.coverage)} |")
    contrast = frame.drop_duplicates(["world", "endpoint"])
    lines += ["", "| world | endpoint | contrast predicted | contrast true | per-patient contrast: mean absolute "
              "error | correlation with the true |", "|---|---|---|---|---|---|"]
    for r in contrast.itertuples():
        lines.append(f"| {r.world} | {r.endpoint} | {_pct(r.contrast_predicted_between_arms)} | "
                     f"{_pct(r.contrast_true_between_arms)} | {_pct(r.contrast_excess_mean_abs_error)} | "
                     f"{_num(r.contrast_excess_correlation)} |")
    lines += ["", "| world | champion | trained in (wall / CPU) |", "|---|---|---|"]
    for run in children(client, parent_id):
        p, m = run.data.params, run.data.metrics
        champion = (f"{p['model']} v{p['champion_version']} ({p['champion_family']})" if p["champion_version"] != "none"
                    else f"none: {p['champion_family']}")
        lines.append(f"| {run.data.tags[WORLD_TAG]} | {champion} | {m['world_seconds']:.0f} s / "
                     f"{m['world_cpu_seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


def family_runs(client: MlflowClient, parent_id: str) -> list[tuple[str, object]]:
    """Per world of a sweep, every family's run of that world's training: ``(world, run)``, in training order."""
    parent = client.get_run(parent_id)
    found = []
    for child in children(client, parent_id):
        experiment = client.get_experiment_by_name(child.data.params["experiment"])
        if experiment is None:
            continue
        runs = client.search_runs([experiment.experiment_id], filter_string=(
            f"tags.{ROLE_TAG} = '{ROLE_MODEL}' and attributes.start_time >= {parent.info.start_time} and "
            f"attributes.start_time <= {child.info.start_time}"), order_by=["attributes.start_time ASC"])
        found += [(child.data.tags[WORLD_TAG], run) for run in runs]
    return found


def families_table(client: MlflowClient, parent_id: str) -> str:
    """Markdown: every family of every world of a sweep against the world's truth on the alemtuzumab arm, with its
    held-out log loss (the promotion's measure) and its interval's coverage and mean width."""
    lines = ["| world | family | log loss over the incidence's | endpoint | predicted / true | AUROC / oracle's "
             "| calibration slope | interval holds the truth | mean width |", "|---|---|---|---|---|---|---|---|---|"]
    for world, run in family_runs(client, parent_id):
        m, family = run.data.metrics, run.data.tags.get(FAMILY_TAG, "?")
        for outcome in ("thyroid", "itp"):
            for horizon in TABLE_HORIZONS:
                name, arm = endpoint(outcome, horizon), "alemtuzumab"
                mean, true = (m.get(truth_metric(COHORT, arm, name, k), math.nan)
                              for k in ("mean_risk", "mean_true_risk"))
                width = m.get(interval_metric(COHORT, arm, name, "mean_width"), math.nan)
                lines.append(f"| {world} | {family} | {_num(m.get(PROMOTION_METRIC, math.nan), 4)} | {name} | "
                             f"{_pct(mean)} / {_pct(true)} | "
                             f"{_num(m.get(truth_metric(COHORT, arm, name, 'auroc_over_oracle'), math.nan))} | "
                             f"{_num(m.get(truth_metric(COHORT, arm, name, 'calibration_slope'), math.nan), 2)} | "
                             f"{_pct(m.get(interval_metric(COHORT, arm, name, 'coverage'), math.nan))} | "
                             f"{_num(100 * width, 2)} pts |")
    return "\n".join(lines) + "\n"


def latest_sweep(client: MlflowClient, *, quick: bool | None = None) -> str:
    """The newest finished sweep's parent run id (of quick or full sweeps when ``quick`` is given)."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise LookupError("no worlds sweep in the store; run `autorisk worlds` first")
    query = f"tags.{ROLE_TAG} = '{ROLE_SWEEP}' and attributes.status = 'FINISHED'"
    if quick is not None:
        query += f" and params.quick = '{quick}'"
    runs = client.search_runs([experiment.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
                              max_results=1)
    if not runs:
        raise LookupError("no finished worlds sweep in the store; run `autorisk worlds` first")
    return runs[0].info.run_id
