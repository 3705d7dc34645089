"""Training: a short chain of typed steps that :func:`run_experiment` only wires.

1. :func:`simulate` — the experiment's synthetic cohorts (:class:`Cohorts`): the pooled training
   cohorts split into train and test, the external cohorts and the benchmark cohort.
2. :func:`tune` — per family with a tuning spec, one Optuna study per outcome on a validation
   fold of the training split (:class:`TuningResult`; its trials are logged afterwards).
3. :func:`fit_family` — one survival model per outcome (:class:`models.scoring.RiskModel`): a
   log relative hazard fitted on every training cohort's whole follow-up, both arms, and a
   Breslow baseline cumulative hazard per treatment (:mod:`models.survival`); then
   :func:`pipelines.intervals.fit_intervals` refits it on bootstrap resamples for the 95%
   interval of every risk.
4. :func:`evaluate` — :class:`Evaluation`: metrics against observed, censored outcomes (IPCW),
   against the simulator's true risks per arm and horizon, and of the treatment contrast; with
   ``added_value`` in the config, :func:`pipelines.biomarker.measure_added_value` adds what each
   named predictor contributes (the family refitted without it).
5. :func:`pipelines.registration.log_family` — one MLflow run per family: params, metrics,
   datasets, plots, model card, and the model registered with its signature.

Every step but the last is a pure function of its inputs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from features.schema import MAX_HORIZON_MONTHS, TREATMENTS, endpoint
from features.simulator import SimulatorConfig, simulate_cohort, true_risk_at
from features.validation import encode
from models.estimators import FAMILIES
from models.evaluation import evaluate_against_truth, evaluate_at_horizon, evaluate_contrast, log_loss_over_null
from models.names import (
    PROMOTION_HORIZONS_MONTHS,
    PROMOTION_METRIC,
    contrast_metric,
    endpoint_metric,
    truth_metric,
)
from models.scoring import RiskModel
from models.survival import HorizonLabels, StratifiedCox, horizon_labels, survival_target
from pipelines.config import CohortSpec, ExperimentConfig, FamilySpec, load_world

if TYPE_CHECKING:
    from pipelines.biomarker import BiomarkerValue
    from pipelines.intervals import IntervalEvaluation

SUBGROUP_METRICS = ("auroc", "calibration_slope", "calibration_intercept", "observed_over_expected")
SUBGROUP_HORIZONS_MONTHS = (24, 48)
ALL_ARMS = "all"  # both arms together, in a cohort that has both


@dataclass(frozen=True)
class Cohorts:
    """The simulated data of one experiment.

    Attributes
    ----------
    train, test : DataFrame
        The pooled training cohorts, split (stratified by profile and arm); a ``profile`` column says
        where each patient came from.
    external : dict of str to DataFrame
        Cohorts the models are validated on, by name.
    benchmark : DataFrame
        The cohort the project's stated performance is measured on; never used in training.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    external: dict[str, pd.DataFrame]
    benchmark: pd.DataFrame


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
class Evaluation:
    """Everything measured of one fitted family.

    Attributes
    ----------
    metrics : dict of str to float
        Named as in :mod:`models.names`.
    curves : dict of str to dict
        Per endpoint of the test split, the arrays behind the plots: ``y``, ``weight``, ``model``, ``oracle``.
    subgroups : DataFrame
        One row per subgroup and endpoint of the test split.
    truth : DataFrame
        One row per cohort, arm and endpoint: the risks against the simulator's truth.
    contrast : DataFrame
        One row per cohort and endpoint: the alemtuzumab-minus-interferon contrast against the truth.
    population : dict of str to dict
        Per outcome and treatment, the benchmark cohort's mean predicted and true risk by month 0–72.
    biomarker : BiomarkerValue, optional
        What each predictor of the config's ``added_value`` adds (:mod:`pipelines.biomarker`).
    intervals : IntervalEvaluation, optional
        Coverage of the true risk by the risks' 95% intervals (:mod:`pipelines.intervals`).
    """

    metrics: dict[str, float]
    curves: dict[str, dict[str, np.ndarray]]
    subgroups: pd.DataFrame
    truth: pd.DataFrame
    contrast: pd.DataFrame
    population: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    biomarker: BiomarkerValue | None = None
    intervals: IntervalEvaluation | None = None


def load_simulator(config: ExperimentConfig) -> SimulatorConfig:
    """The experiment's simulator: the assumptions file in the experiment's world, with its overrides."""
    return load_world(config.world, config.simulator_config, config.simulator_overrides)


def simulate_cohorts(simulator: SimulatorConfig, cohorts: list[CohortSpec]) -> pd.DataFrame:
    """Pooled cohorts with a ``profile`` column."""
    frames = [simulate_cohort(simulator, c.profile, c.n, c.seed, il21_assay=c.il21_assay).assign(profile=c.profile)
              for c in cohorts]
    return pd.concat(frames, ignore_index=True)


def split(pooled: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two parts, the second of ``fraction``, stratified by profile and treatment arm."""
    strata = pooled["profile"].astype(str) + "/" + pooled["treatment"].astype(str)
    first, second = train_test_split(pooled, test_size=fraction, random_state=seed, stratify=strata)
    return first.reset_index(drop=True), second.reset_index(drop=True)


def simulate(config: ExperimentConfig, simulator: SimulatorConfig) -> Cohorts:
    """Step 1: the experiment's cohorts, the training cohorts split into train and test."""
    train, test = split(simulate_cohorts(simulator, config.train_cohorts), config.test_fraction, config.split_seed)
    external = {c.name: simulate_cohorts(simulator, [c]) for c in config.external_cohorts}
    return Cohorts(train, test, external, simulate_cohorts(simulator, [config.benchmark_cohort]))


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
    models = {outcome: StratifiedCox(estimator=FAMILIES[spec.estimator](**params)).fit(
        matrix, survival_labels(train, outcome)) for outcome, params in outcome_params.items()}
    return RiskModel(family=name, outcomes=models)


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
        summary |= {f"tuning_{outcome}_trials": len(study.trials),
                    f"tuning_{outcome}_best_log_loss_over_null": study.best_value}
    return TuningResult(chosen, trials, summary)


def subgroups(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks of the reported subgroups: sex, age band, prior treatment, treatment arm."""
    age = frame["age_years"].to_numpy()
    prior = frame["prior_dmt"]
    return {
        "female": (frame["sex"] == "female").to_numpy(),
        "male": (frame["sex"] == "male").to_numpy(),
        "age_under_30": age < 30,
        "age_30_39": (age >= 30) & (age < 40),
        "age_40_plus": age >= 40,
        "prior_dmt": (prior == True).to_numpy(),  # noqa: E712 - object column with None
        "no_prior_dmt": (prior == False).to_numpy(),  # noqa: E712
        **{treatment: (frame["treatment"] == treatment).to_numpy() for treatment in TREATMENTS},
    }


def subgroup_table(curves: dict[str, dict[str, np.ndarray]], frame: pd.DataFrame) -> pd.DataFrame:
    """Metrics by subgroup at the subgroup horizons, from the test split's curves: one row per subgroup and endpoint."""
    rows = []
    for name, mask in subgroups(frame).items():
        if mask.sum() < 50:
            continue
        for key, c in curves.items():
            if int(key.rsplit("_", 1)[1].removesuffix("m")) not in SUBGROUP_HORIZONS_MONTHS:
                continue
            values = evaluate_at_horizon(c["y"][mask], c["model"][mask], c["weight"][mask], c["oracle"][mask],
                                         detail=False)
            rows.append({"subgroup": name, "endpoint": key, "n": int(mask.sum())}
                        | {m: values.get(m, np.nan) for m in (*SUBGROUP_METRICS, "events")})
    return pd.DataFrame(rows)


def evaluate_labels(model: RiskModel, frame: pd.DataFrame, horizons: tuple[int, ...], *, prefix: str = "",
                    bootstrap: int = 0, seed: int = 0) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Metrics against observed, censored outcomes (IPCW) per endpoint, and the arrays behind them."""
    metrics: dict[str, float] = {}
    curves = {}
    for outcome, risk in model.risks(encode(frame), horizons).items():
        for k, h in enumerate(horizons):
            name = endpoint(outcome, h)
            labels = status_at(frame, outcome, h)
            truth = frame[f"true_risk_{name}"].to_numpy()
            values = evaluate_at_horizon(labels.y, risk[:, k], labels.weight, truth, bootstrap=bootstrap, seed=seed)
            metrics |= {endpoint_metric(name, m, prefix): v for m, v in values.items()}
            curves[name] = {"y": labels.y, "weight": labels.weight, "model": risk[:, k], "oracle": truth}
    return metrics, curves


def evaluate_truth(model: RiskModel, simulator: SimulatorConfig, frame: pd.DataFrame, cohort: str,
                   horizons: tuple[int, ...]) -> tuple[dict[str, float], list[dict], list[dict]]:
    """Risks per arm (and both arms together) against the simulator's truth, and the contrast
    where the cohort has both arms.

    Returns
    -------
    metrics : dict
        ``truth_<cohort>_<treatment>_<endpoint>_<metric>`` and ``contrast_<cohort>_<endpoint>_<metric>``.
    truth_rows, contrast_rows : list of dict
        The same as table rows.
    """
    matrix = encode(frame)
    treatment = frame["treatment"].to_numpy()
    own = model.risks(matrix, horizons)
    both_arms = all(f"true_ever_risk_thyroid_if_{t}" in frame and frame[f"true_ever_risk_thyroid_if_{t}"].notna().all()
                    for t in TREATMENTS)
    counterfactual = model.contrast(matrix, horizons) if both_arms else {}
    metrics: dict[str, float] = {}
    truth_rows, contrast_rows = [], []
    for outcome, risk in own.items():
        true_own = true_risk_at(simulator, frame, outcome, horizons)
        true_by_treatment = {t: true_risk_at(simulator, frame, outcome, horizons, t) for t in TREATMENTS} \
            if both_arms else {}
        for k, h in enumerate(horizons):
            name = endpoint(outcome, h)
            for arm, members in {**{t: treatment == t for t in TREATMENTS},
                                 ALL_ARMS: np.ones(len(frame), dtype=bool)}.items():
                if members.sum() < 50 or (arm == ALL_ARMS and len(set(treatment)) < 2):
                    continue
                values = evaluate_against_truth(risk[members, k], true_own[members, k])
                metrics |= {truth_metric(cohort, arm, name, m): v for m, v in values.items()}
                truth_rows.append({"cohort": cohort, "treatment": arm, "endpoint": name, "n": int(members.sum())}
                                  | values)
            if both_arms:
                values = evaluate_contrast({t: counterfactual[outcome][t][:, k] for t in TREATMENTS},
                                           {t: true_by_treatment[t][:, k] for t in TREATMENTS},
                                           treatment, true_own[:, k], risk[:, k])
                metrics |= {contrast_metric(cohort, name, m): v for m, v in values.items()}
                contrast_rows.append({"cohort": cohort, "endpoint": name} | values)
    return metrics, truth_rows, contrast_rows


def population_curves(model: RiskModel, simulator: SimulatorConfig, frame: pd.DataFrame
                      ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Per outcome and treatment in ``frame``: mean predicted and true risk by month 0–72, extrapolated months flagged."""
    months = np.arange(1, MAX_HORIZON_MONTHS + 1)
    matrix = encode(frame)
    treatment = frame["treatment"].to_numpy()
    follow_up = model.follow_up_months()
    curves: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for outcome, risk in model.risks(matrix, months).items():
        truth = true_risk_at(simulator, frame, outcome, months)
        curves[outcome] = {}
        for arm in TREATMENTS:
            members = treatment == arm
            if not members.any():
                continue
            curves[outcome][arm] = {
                "months": np.concatenate([[0], months]),
                "predicted": np.concatenate([[0.0], risk[members].mean(axis=0)]),
                "true": np.concatenate([[0.0], truth[members].mean(axis=0)]),
                "extrapolated": np.concatenate([[False], months > follow_up[arm]]),
            }
    return curves


def falling_risks(model: RiskModel, frame: pd.DataFrame) -> int:
    """Patients whose risk of any outcome falls from one month to the next over months 1–72 (0 by construction)."""
    months = np.arange(1, MAX_HORIZON_MONTHS + 1)
    falling = np.zeros(len(frame), dtype=bool)
    for risk in model.risks(encode(frame), months).values():
        falling |= (np.diff(risk, axis=1) < 0).any(axis=1)
    return int(falling.sum())


def evaluate(model: RiskModel, cohorts: Cohorts, config: ExperimentConfig, simulator: SimulatorConfig) -> Evaluation:
    """Step 4: every metric of a fitted family (see :mod:`models.names` for the names)."""
    horizons = config.evaluation_horizons_months
    metrics, curves = evaluate_labels(model, cohorts.test, horizons, bootstrap=config.bootstrap, seed=config.split_seed)
    metrics |= evaluate_labels(model, cohorts.benchmark, horizons, prefix="bench_", bootstrap=config.bootstrap,
                               seed=config.split_seed)[0]
    for name, frame in cohorts.external.items():
        metrics |= evaluate_labels(model, frame, horizons, prefix=f"ext_{name}_")[0]
    table = subgroup_table(curves, cohorts.test)
    for row in table.itertuples():
        metrics |= {f"sub_{row.subgroup}_{row.endpoint}_{m}": getattr(row, m)
                    for m in SUBGROUP_METRICS if np.isfinite(getattr(row, m))}
    truth_rows, contrast_rows = [], []
    for cohort, frame in {"bench": cohorts.benchmark, **{f"ext_{n}": f for n, f in cohorts.external.items()}}.items():
        values, truth, contrast = evaluate_truth(model, simulator, frame, cohort, horizons)
        metrics |= values
        truth_rows += truth
        contrast_rows += contrast
    promotion = [metrics[endpoint_metric(endpoint(o, h), "log_loss_over_null")] for o in model.outcome_names
                 for h in horizons if endpoint_metric(endpoint(o, h), "log_loss_over_null") in metrics]
    metrics[PROMOTION_METRIC] = float(np.mean(promotion)) if promotion else float("nan")
    metrics["bench_patients_with_falling_risk"] = float(falling_risks(model, cohorts.benchmark))
    return Evaluation(metrics=metrics, curves=curves, subgroups=table, truth=pd.DataFrame(truth_rows),
                      contrast=pd.DataFrame(contrast_rows),
                      population=population_curves(model, simulator, cohorts.benchmark))


@dataclass(frozen=True)
class FamilyResult:
    """Outcome of training one model family."""

    family: str
    run_id: str
    model_version: str
    metrics: dict[str, float]


def run_experiment(config: ExperimentConfig, *, log=print) -> list[FamilyResult]:
    """Run one experiment against the current MLflow tracking URI and register each family's model."""
    from pipelines.registration import ExperimentRun

    simulator = load_simulator(config)
    started = time.perf_counter()
    cohorts = simulate(config, simulator)
    log(f"simulated {len(cohorts.train) + len(cohorts.test):,} patients ({len(cohorts.train):,} train / "
        f"{len(cohorts.test):,} test), {sum(map(len, cohorts.external.values())):,} external and "
        f"{len(cohorts.benchmark):,} benchmark in {time.perf_counter() - started:.1f} s")
    results = []
    with ExperimentRun(config, simulator, cohorts) as experiment:
        for name, spec in config.families.items():
            family_started = time.perf_counter()
            tuning = tune(name, spec, cohorts.train, config.outcomes, config.evaluation_horizons_months,
                          config.validation_fraction, config.split_seed, log) if spec.tuning else None
            outcome_params = tuning.params if tuning else {o: dict(spec.params) for o in config.outcomes}
            model = fit_family(name, spec, cohorts.train, outcome_params)
            fit_seconds = time.perf_counter() - family_started
            refits = None
            if config.interval_refits:
                from pipelines.intervals import evaluate_intervals, fit_intervals

                model, refits, interval_seconds = fit_intervals(model, cohorts.train, config.interval_refits,
                                                                config.split_seed)
            evaluation = evaluate(model, cohorts, config, simulator)
            evaluation.metrics["fit_seconds"] = fit_seconds
            if refits is not None:
                intervals = evaluate_intervals(model, refits, simulator, cohorts.benchmark,
                                               config.evaluation_horizons_months, seconds=interval_seconds,
                                               seed=config.split_seed)
                evaluation = dataclasses.replace(evaluation, intervals=intervals,
                                                 metrics=evaluation.metrics | intervals.metrics())
                log(f"  95% risk intervals from {config.interval_refits} refits ({interval_seconds:.0f} s): true risk "
                    "inside, benchmark: " + "; ".join(
                        f"{r.endpoint} {r.coverage:.0%}" for r in intervals.table.itertuples() if r.arm == "all"))
            if config.added_value:
                from pipelines.biomarker import measure_added_value

                value_started = time.perf_counter()
                biomarker = measure_added_value(name, spec, model, outcome_params, cohorts, config, log)
                evaluation = dataclasses.replace(evaluation, biomarker=biomarker, metrics=evaluation.metrics
                                                 | biomarker.metrics()
                                                 | {"added_value_seconds": time.perf_counter() - value_started})
            result = experiment.log_family(name, spec, model, outcome_params, tuning, evaluation)
            results.append(result)
            m = result.metrics
            summary = "; ".join(
                f"{endpoint(o, h)} AUROC {m.get(endpoint_metric(endpoint(o, h), 'auroc'), float('nan')):.3f} "
                f"(oracle {m.get(endpoint_metric(endpoint(o, h), 'oracle_auroc'), float('nan')):.3f})"
                for o in config.outcomes for h in PROMOTION_HORIZONS_MONTHS)
            log(f"{name}: {summary}; log loss / null {m[PROMOTION_METRIC]:.4f}; registered "
                f"{config.registered_model_name} v{result.model_version} ({time.perf_counter() - family_started:.0f} s)")
        experiment.finish(time.perf_counter() - started, results)
    return results
