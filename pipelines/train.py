"""Training: :func:`run_experiment` wires the steps of :mod:`pipelines.steps` (cohorts, tuning, fitting),
the intervals (:mod:`pipelines.intervals`), the evaluation (:mod:`pipelines.evaluation`), the added value of
named predictors (:mod:`pipelines.biomarker`) and the MLflow runs (:mod:`pipelines.registration`).

An experiment may train on simulated cohorts, on files of a group's own patients with their observed
outcomes, or on both. Figures against the simulator's truth (oracle ratios, the intervals' coverage of
the true risk, contrasts against the counterfactual truth) are measured only on cohorts that carry it;
the run says where they are not. Riley's minimum sample size is checked at a file's own incidence.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from features.schema import endpoint
from models.names import PROMOTION_HORIZONS_MONTHS, PROMOTION_METRIC, endpoint_metric
from models.sample_size import MODEL_PARAMETERS, max_cox_snell_r2_survival, survival_sample_size
from pipelines.biomarker import measure_added_value
from pipelines.config import ExperimentConfig, FamilySpec, FileCohort
from pipelines.evaluation import evaluate
from pipelines.intervals import evaluate_intervals, fit_intervals
from pipelines.registration import ExperimentRun
from pipelines.steps import Cohorts, FamilyResult, fit_family, gather, has_truth, load_simulator, tune

# Riley et al.'s default when nothing better is known: an anticipated Nagelkerke R² of 0.15 (BMJ 2020).
ANTICIPATED_NAGELKERKE_R2 = 0.15
SAMPLE_SIZE_HORIZON_MONTHS = 48


def sample_size_checks(config: ExperimentConfig, cohorts: Cohorts) -> list[str]:
    """Riley's minimum sample size for each outcome at the training files' own incidence; a line per outcome
    whose training split is smaller. Only for experiments that train on files (the simulated cohorts are as
    large as the config says)."""
    files = {c.profile for c in config.train_cohorts if isinstance(c, FileCohort)}
    train = cohorts.train[cohorts.train["profile"].isin(files)]
    if train.empty:
        return []
    notes = []
    for outcome in config.outcomes:
        time_months = train[f"{outcome}_time_months"].to_numpy(dtype=float)
        events = int(train[f"{outcome}_event"].sum())
        if events == 0 or time_months.sum() <= 0:
            notes.append(f"{outcome}: no onset in the training files; no model of it can be developed from them")
            continue
        rate, mean_follow_up = events / time_months.sum(), float(time_months.mean())
        r2 = ANTICIPATED_NAGELKERKE_R2 * max_cox_snell_r2_survival(rate, mean_follow_up)
        needed = survival_sample_size(MODEL_PARAMETERS, rate, SAMPLE_SIZE_HORIZON_MONTHS, mean_follow_up, r2)
        if len(train) < needed.n:
            notes.append(f"{outcome}: {len(train):,} training patients from files, below Riley's minimum of "
                         f"{needed.n:,} for {MODEL_PARAMETERS} parameters at their incidence ({events} onsets, "
                         f"{1000 * rate:.2f} per 1,000 patient-months; Nagelkerke R² {ANTICIPATED_NAGELKERKE_R2}): "
                         "expect overfitting; the prediction-instability intervals show how much")
    return notes


def write_rejects(cohorts: Cohorts, config: ExperimentConfig, folder: Path = Path("outputs")) -> list[str]:
    """Each training or external file's rejected records into ``outputs/train-<experiment>/`` (never MLflow);
    a line per file."""
    lines = []
    for name, rejects in cohorts.rejected.items():
        path = folder / f"train-{config.name}" / f"{name}.rejects.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rejects.to_csv(path, index=False)
        lines.append(f"{name}: {len(rejects):,} records rejected, with their lines and reasons, in {path}")
    return lines


def _cohorts_line(cohorts: Cohorts, seconds: float) -> str:
    benchmark = f" and {len(cohorts.benchmark):,} benchmark" if cohorts.benchmark is not None else ""
    return (f"cohorts: {len(cohorts.train) + len(cohorts.test):,} patients ({len(cohorts.train):,} train / "
            f"{len(cohorts.test):,} test), {sum(map(len, cohorts.external.values())):,} external{benchmark} "
            f"in {seconds:.1f} s")


def train_family(name: str, spec: FamilySpec, config: ExperimentConfig, simulator, cohorts: Cohorts,
                 experiment: ExperimentRun, log) -> FamilyResult:
    """Tune, fit, refit for the intervals, evaluate, measure added value, log and register one family."""
    started = time.perf_counter()
    tuning = tune(name, spec, cohorts.train, config.outcomes, config.evaluation_horizons_months,
                  config.validation_fraction, config.split_seed, log) if spec.tuning else None
    outcome_params = tuning.params if tuning else {o: dict(spec.params) for o in config.outcomes}
    model = fit_family(name, spec, cohorts.train, outcome_params)
    fit_seconds = time.perf_counter() - started
    refits = None
    if config.interval_refits:
        model, refits, interval_seconds = fit_intervals(model, cohorts.train, config.interval_refits,
                                                        config.split_seed, held_out=cohorts.test)
    evaluation = evaluate(model, cohorts, config, simulator)
    evaluation.metrics["fit_seconds"] = fit_seconds
    truth = cohorts.benchmark if cohorts.benchmark is not None and has_truth(cohorts.benchmark) else None
    if refits is not None and truth is not None:
        intervals = evaluate_intervals(model, refits, simulator, truth, config.evaluation_horizons_months,
                                       seconds=interval_seconds, seed=config.split_seed)
        evaluation = dataclasses.replace(evaluation, intervals=intervals, metrics=evaluation.metrics | intervals.metrics())
        log(f"  95% risk intervals from {config.interval_refits} refits ({interval_seconds:.0f} s): true risk "
            "inside, benchmark: " + "; ".join(f"{r.endpoint} {r.coverage:.0%}" for r in intervals.table.itertuples()
                                              if r.arm == "all"))
    elif refits is not None:
        log(f"  95% risk intervals from {config.interval_refits} refits ({interval_seconds:.0f} s); their coverage "
            "of the true risk is not measured: no cohort of the experiment carries it")
    if config.added_value:
        value_started = time.perf_counter()
        biomarker = measure_added_value(name, spec, model, outcome_params, cohorts, config, log)
        evaluation = dataclasses.replace(evaluation, biomarker=biomarker, metrics=evaluation.metrics
                                         | biomarker.metrics() | {"added_value_seconds": time.perf_counter() - value_started})
    result = experiment.log_family(name, spec, model, outcome_params, tuning, evaluation)
    m = result.metrics
    summary = "; ".join(f"{endpoint(o, h)} AUROC {m.get(endpoint_metric(endpoint(o, h), 'auroc'), np.nan):.3f}"
                        + (f" (oracle {m[endpoint_metric(endpoint(o, h), 'oracle_auroc')]:.3f})"
                           if endpoint_metric(endpoint(o, h), "oracle_auroc") in m else "")
                        for o in config.outcomes for h in PROMOTION_HORIZONS_MONTHS)
    log(f"{name}: {summary}; log loss / null {m[PROMOTION_METRIC]:.4f}; registered {config.registered_model_name} "
        f"v{result.model_version} ({time.perf_counter() - started:.0f} s)")
    return result


def run_experiment(config: ExperimentConfig, *, log=print) -> list[FamilyResult]:
    """Run one experiment against the current MLflow tracking URI and register each family's model."""
    simulator = load_simulator(config) if config.simulated else None
    started = time.perf_counter()
    cohorts = gather(config, simulator)
    log(_cohorts_line(cohorts, time.perf_counter() - started))
    notes = write_rejects(cohorts, config) + sample_size_checks(config, cohorts)
    if not cohorts.with_truth():
        notes.append("no cohort of the experiment carries the simulator's true risks: figures against the truth "
                     "(oracle ratios, the intervals' coverage, contrasts) are not measured; every figure is "
                     "against observed outcomes")
    for note in notes:
        log(f"  note: {note}")
    results = []
    with ExperimentRun(config, simulator, cohorts, notes=notes) as experiment:
        for name, spec in config.families.items():
            results.append(train_family(name, spec, config, simulator, cohorts, experiment, log))
        experiment.finish(time.perf_counter() - started, results)
    return results
