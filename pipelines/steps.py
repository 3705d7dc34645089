"""The training steps: typed data and small functions that :func:`pipelines.train.run_experiment` wires.

1. :func:`gather` — the experiment's cohorts (:class:`Cohorts`), simulated or read from files of observed
   outcomes: the pooled training cohorts split into train and test, the external cohorts and the
   benchmark cohort (simulated experiments only).
2. :func:`tune` — per family with a tuning spec, one Optuna study per outcome on a validation fold of the
   training split (:class:`TuningResult`; its trials are logged afterwards).
3. :func:`fit_family` — one survival model per outcome (:class:`models.scoring.RiskModel`): what the
   training data covered (:class:`models.domain.InputDomain`), a log relative hazard fitted on every
   training cohort's whole follow-up, both arms, and a Breslow baseline cumulative hazard per treatment
   (:mod:`models.survival`).

Each is a pure function of its inputs. The steps after them import these, never the other way:
:mod:`pipelines.intervals` and :mod:`pipelines.biomarker` (refits), :mod:`pipelines.evaluation`
(:class:`pipelines.evaluation.Evaluation`), :mod:`pipelines.registration` (the MLflow runs), and
:mod:`pipelines.train`, which wires them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from features.schema import EVALUATION_HORIZONS_MONTHS, OUTCOMES, endpoint
from features.simulator import SimulatorConfig, simulate_cohort
from features.validation import encode
from models.domain import InputDomain
from models.evaluation import log_loss_over_null
from models.families import outcome_model
from models.names import BENCHMARK_COHORT, external_cohort, tuning_metric
from models.scoring import RiskModel
from models.survival import TREATMENT_BY_CODE, HorizonLabels, horizon_labels, survival_target, treatment_index
from pipelines.config import CohortSpec, ExperimentConfig, FamilySpec, FileCohort, load_world
from pipelines.observed import read_observed


@dataclass(frozen=True)
class Cohorts:
    """The simulated data of one experiment.

    Attributes
    ----------
    train, test : DataFrame
        The pooled training cohorts, split (stratified by profile and arm); a ``profile`` column says
        where each patient came from (a simulated profile, or a file's name).
    external : dict of str to DataFrame
        Cohorts the models are validated on, by name.
    benchmark : DataFrame or None
        The simulated cohort the project's stated performance is measured on; never used in training.
        None for an experiment without one (trained on files).
    rejected : dict of str to DataFrame
        Per file cohort with records that could not be used: ``line``, ``patient_id``, ``reason``.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    external: dict[str, pd.DataFrame]
    benchmark: pd.DataFrame | None
    rejected: dict[str, pd.DataFrame] = field(default_factory=dict)

    def with_truth(self) -> dict[str, pd.DataFrame]:
        """The evaluation cohorts that carry the simulator's true risks, by metric cohort (``bench``,
        ``ext_<name>``: :mod:`models.names`): truth-based figures are measured on these only."""
        named = ({BENCHMARK_COHORT: self.benchmark} if self.benchmark is not None else {}) | {
            external_cohort(n): f for n, f in self.external.items()}
        return {name: frame for name, frame in named.items() if has_truth(frame)}


@dataclass(frozen=True)
class Trial:
    """One Optuna trial of an outcome's study, for logging as a nested MLflow run."""

    outcome: str
    number: int
    params: dict
    losses: dict[str, float]
    value: float
    started_ms: int
    finished_ms: int


@dataclass(frozen=True)
class TuningResult:
    """Chosen estimator parameters per outcome, and every trial behind them."""

    params: dict[str, dict]
    trials: list[Trial]
    summary: dict[str, float]


@dataclass(frozen=True)
class FamilyResult:
    """Outcome of training one model family."""

    family: str
    run_id: str
    model_version: str
    metrics: dict[str, float]


def load_simulator(config: ExperimentConfig) -> SimulatorConfig:
    """The experiment's simulator: the assumptions file in the experiment's world, with its overrides."""
    return load_world(config.world, config.simulator_config, config.simulator_overrides)


def has_truth(frame: pd.DataFrame) -> bool:
    """Whether a cohort carries the simulator's true risks (a simulated cohort does; a file of patients does not)."""
    return all(f"true_risk_{o}_{h}m" in frame for o in OUTCOMES for h in EVALUATION_HORIZONS_MONTHS)


def simulate_cohorts(simulator: SimulatorConfig, cohorts: list[CohortSpec]) -> pd.DataFrame:
    """Pooled cohorts with a ``profile`` column."""
    frames = [simulate_cohort(simulator, c.profile, c.n, c.seed, il21_assay=c.il21_assay).assign(profile=c.profile)
              for c in cohorts]
    return pd.concat(frames, ignore_index=True)


def file_cohort(spec: FileCohort, outcomes: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A file's usable patients with their outcomes (``profile`` the file's name, ``treatment`` in the schema's
    words), and its rejected records."""
    cohort = read_observed(spec.file, outcomes, il21_assay=spec.il21_assay, sheet=spec.sheet)
    treatment = np.array(TREATMENT_BY_CODE, dtype=object)[treatment_index(cohort.matrix)]
    return cohort.frame.assign(treatment=treatment), cohort.rejects


def gather_cohorts(specs, simulator: SimulatorConfig | None, outcomes: tuple[str, ...]
                   ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Simulated and file cohorts pooled, with a ``profile`` column; the files' rejected records by file name."""
    frames, rejected = [], {}
    for spec in specs:
        if isinstance(spec, FileCohort):
            frame, rejects = file_cohort(spec, outcomes)
            if len(rejects):
                rejected[spec.file.name] = rejects
            frames.append(frame)
        else:
            frames.append(simulate_cohorts(simulator, [spec]))
    return pd.concat(frames, ignore_index=True), rejected


def split(pooled: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two parts, the second of ``fraction``, stratified by profile and treatment arm."""
    strata = pooled["profile"].astype(str) + "/" + pooled["treatment"].astype(str)
    first, second = train_test_split(pooled, test_size=fraction, random_state=seed, stratify=strata)
    return first.reset_index(drop=True), second.reset_index(drop=True)


def gather(config: ExperimentConfig, simulator: SimulatorConfig | None) -> Cohorts:
    """Step 1: the experiment's cohorts (simulated, or read from files), the training cohorts split into train
    and test."""
    pooled, rejected = gather_cohorts(config.train_cohorts, simulator, config.outcomes)
    train, test = split(pooled, config.test_fraction, config.split_seed)
    external = {}
    for c in config.external_cohorts:
        external[c.name], more = gather_cohorts([c], simulator, config.outcomes)
        rejected |= more
    benchmark = simulate_cohorts(simulator, [config.benchmark_cohort]) if config.benchmark_cohort else None
    return Cohorts(train, test, external, benchmark, rejected)


def survival_labels(frame: pd.DataFrame, outcome: str) -> np.ndarray:
    """The survival target of ``outcome``: onset observed, and onset or censoring month."""
    return survival_target(frame[f"{outcome}_event"].to_numpy() == 1, frame[f"{outcome}_time_months"].to_numpy())


def status_at(frame: pd.DataFrame, outcome: str, horizon: int) -> HorizonLabels:
    """Observed status at ``horizon`` with IPCW weights, censoring estimated per source cohort."""
    return horizon_labels(frame[f"{outcome}_time_months"].to_numpy(), frame[f"{outcome}_event"].to_numpy(),
                          horizon, groups=frame["profile"].to_numpy())


def fit_family(name: str, spec: FamilySpec, train: pd.DataFrame, outcome_params: dict[str, dict]) -> RiskModel:
    """Step 3: one survival model per outcome, on the training split's whole follow-up.

    Parameters
    ----------
    name : str
        The family's name in the experiment.
    spec : FamilySpec
        Its estimator.
    train : DataFrame
        Training split (both arms, every cohort, censored times included).
    outcome_params : dict of str to dict
        Estimator parameters per outcome (``"thyroid"``, ``"itp"``).

    Returns
    -------
    RiskModel
    """
    matrix = encode(train)
    domain = InputDomain.fit(matrix)
    prepared = domain.prepare(matrix)
    models = {outcome: outcome_model(spec.estimator, params).fit(prepared, survival_labels(train, outcome))
              for outcome, params in outcome_params.items()}
    return RiskModel(family=name, outcomes=models, domain=domain)


def validation_loss(model: RiskModel, validation: pd.DataFrame, matrix: np.ndarray,
                    horizons: tuple[int, ...]) -> dict[str, float]:
    """Held-out IPCW log loss over that of the incidence, per endpoint with events and non-events known."""
    losses = {}
    for outcome, risk in model.risks(matrix, horizons).items():
        for k, h in enumerate(horizons):
            labels = status_at(validation, outcome, h)
            known = labels.known
            y, weight = labels.y[known], labels.weight[known]
            if 0 < y.sum() < len(y):
                losses[endpoint(outcome, h)] = log_loss_over_null(y, risk[known, k], weight)
    return losses


def tune(name: str, spec: FamilySpec, train: pd.DataFrame, outcomes: tuple[str, ...], horizons: tuple[int, ...],
         validation_fraction: float, seed: int, log=print) -> TuningResult:
    """Step 2: Optuna search of the family's hyperparameters, one study per outcome.

    Thyroid disorder and ITP differ in incidence by more than an order of magnitude, so a
    shared objective is all but blind to the rare outcome: each outcome gets its own study and
    its own hyperparameters. Objective: the mean over ``horizons`` of the held-out IPCW log loss
    divided by that of the incidence (:func:`models.evaluation.log_loss_over_null`), on a
    validation fold of ``train``, so each horizon counts alike whatever its incidence.

    Returns
    -------
    TuningResult
        Per outcome, ``spec.params`` updated with the study's best trial; every trial.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = time.perf_counter() + spec.tuning.timeout_s
    fit_part, validation = split(train, validation_fraction, seed)
    validation_matrix = encode(validation)
    chosen: dict[str, dict] = {}
    trials: list[Trial] = []
    summary: dict[str, float] = {}
    for index, outcome in enumerate(outcomes):
        # Each study may use an equal share of the time left, so time one study leaves unused
        # goes to the next and the family's tuning stays within timeout_s.
        time_limit = max(deadline - time.perf_counter(), 0.0) / (len(outcomes) - index)

        def objective(trial: optuna.Trial, outcome: str = outcome) -> float:
            started = int(time.time() * 1000)
            params = dict(spec.params)
            for key, (low, high) in spec.tuning.space.items():
                if isinstance(low, int) and isinstance(high, int):
                    params[key] = trial.suggest_int(key, low, high)
                else:
                    params[key] = trial.suggest_float(key, low, high, log=True)
            model = fit_family(name, spec, fit_part, {outcome: params})
            losses = validation_loss(model, validation, validation_matrix, horizons)
            value = float(np.mean(list(losses.values())))
            trials.append(Trial(outcome, trial.number, params, losses, value, started, int(time.time() * 1000)))
            return value

        # The same sampler seed for every outcome: the random start-up trials of every study try
        # the same points, so where the studies' choices differ, the outcomes differ, not the draws.
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=spec.tuning.seed))
        started = time.perf_counter()
        study.optimize(objective, n_trials=1)  # one trial whatever the time left: every outcome gets parameters
        left = time_limit - (time.perf_counter() - started)
        if spec.tuning.n_trials > 1 and left > 0:
            study.optimize(objective, n_trials=spec.tuning.n_trials - 1, timeout=left)
        chosen[outcome] = dict(spec.params) | study.best_params
        best = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in study.best_params.items())
        cut = f" (time limit of {time_limit:.0f} s reached: {spec.tuning.n_trials} planned)" \
            if len(study.trials) < spec.tuning.n_trials else ""
        log(f"  {outcome}: tuned over {len(study.trials)} trials{cut}, best validation log loss / null "
            f"{study.best_value:.4f} ({best})")
        summary |= {tuning_metric(outcome, "trials"): len(study.trials),
                    tuning_metric(outcome, "best_log_loss_over_null"): study.best_value}
    return TuningResult(chosen, trials, summary)


