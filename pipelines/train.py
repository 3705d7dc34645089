"""Training: simulate cohorts, fit every model family per endpoint, evaluate, log to MLflow.

Pure steps (:func:`simulate_cohorts`, :func:`split`, :func:`endpoint_labels`,
:func:`fit_family`, :func:`evaluate_model`, :func:`subgroup_table`) take and return
data; :func:`run_experiment` wires them to MLflow. One parent run per experiment, one
child run per model family (Optuna trials nested under it, one study per outcome); every
child run logs the same param, metric and tag names so the MLflow UI's compare view lines
them up. A family's hyperparameters are logged per outcome, ``model.<outcome>.<name>``.

Endpoints are the risk of each outcome by 24 and 48 months. Censoring-aware families fit
one classifier per endpoint on the patients whose status at the horizon is known, weighted
by the inverse probability of still being observed (IPCW, :mod:`models.survival`), and are
recalibrated on a held-out fold by Platt scaling (affine in log-odds, so SHAP stays exact).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from importlib.metadata import version

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from sklearn.metrics import roc_curve
from sklearn.model_selection import train_test_split

from features.drift import reference_profile
from features.schema import ID_COLUMN, INPUT_NAMES, endpoint_parts, mlflow_input_schema, mlflow_output_schema
from features.simulator import SimulatorConfig, load_simulator_config, simulate_cohort
from features.validation import encode
from models.estimators import FAMILIES, PlattCalibrated
from models.evaluation import (
    calibration_figure,
    decision_curve_figure,
    evaluate_at_horizon,
    net_benefit,
    weighted_log_loss,
)
from models.model_card import model_card
from models.pyfunc import AutoimmunityRiskModel
from models.scoring import RiskModel
from models.survival import HorizonLabels, horizon_labels
from pipelines.config import CohortSpec, ExperimentConfig, FamilySpec, deep_merge
from pipelines.tracking import ensure_experiment

PIP_PACKAGES = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn", "xgboost", "pydantic", "pyyaml")
SUBGROUP_METRICS = ("auroc", "calibration_slope", "calibration_intercept", "observed_over_expected")
THRESHOLDS = np.round(np.arange(0.01, 0.51, 0.01), 2)


@dataclass(frozen=True)
class FamilyResult:
    """Outcome of training one model family."""

    family: str
    run_id: str
    model_version: str
    metrics: dict[str, float]


def load_simulator(config: ExperimentConfig) -> SimulatorConfig:
    """The experiment's simulator: the assumptions file with the experiment's overrides."""
    base = load_simulator_config(config.simulator_config)
    if not config.simulator_overrides:
        return base
    return SimulatorConfig.model_validate(deep_merge(base.model_dump(), config.simulator_overrides))


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


def endpoint_labels(frame: pd.DataFrame, endpoint: str, censoring: str = "ipcw") -> HorizonLabels:
    """Status at the endpoint's horizon: IPCW-weighted, or (``"ignore"``) censored counted as non-events."""
    outcome, horizon = endpoint_parts(endpoint)
    time_months = frame[f"{outcome}_time_months"].to_numpy()
    event = frame[f"{outcome}_event"].to_numpy()
    if censoring == "ignore":
        return HorizonLabels(y=((event == 1) & (time_months <= horizon)).astype(int), weight=np.ones(len(frame)))
    return horizon_labels(time_months, event, horizon, groups=frame["profile"].to_numpy())


def outcomes_of(endpoints: tuple[str, ...]) -> tuple[str, ...]:
    """The outcomes of ``endpoints``, in order of first appearance: ``("thyroid", "itp")``."""
    return tuple(dict.fromkeys(endpoint_parts(e)[0] for e in endpoints))


def fit_family(spec: FamilySpec, params: dict, train: pd.DataFrame, endpoints: tuple[str, ...],
               calibration_fraction: float, seed: int, *,
               outcome_params: dict[str, dict] | None = None) -> RiskModel:
    """One classifier per endpoint, recalibrated on a held-out fold when the family says so.

    Parameters
    ----------
    spec : FamilySpec
        Estimator, censoring and calibration of the family.
    params : dict
        Estimator parameters of every endpoint whose outcome has none in ``outcome_params``.
    train : DataFrame
        Training split; a ``calibration_fraction`` of it is held out for Platt scaling.
    endpoints : tuple of str
        Endpoints to fit, ``"<outcome>_<h>m"``.
    calibration_fraction : float
        Share of ``train`` held out for calibration.
    seed : int
        Seed of the calibration split.
    outcome_params : dict of str to dict, optional
        Estimator parameters per outcome (``"thyroid"``, ``"itp"``), used for all its horizons.

    Returns
    -------
    RiskModel
    """
    fit_part, calibration_part = split(train, calibration_fraction, seed) if spec.calibration == "platt" \
        else (train, None)
    matrix = encode(fit_part)
    estimators = {}
    for endpoint in endpoints:
        labels = endpoint_labels(fit_part, endpoint, spec.censoring)
        chosen = (outcome_params or {}).get(endpoint_parts(endpoint)[0], params)
        estimator = FAMILIES[spec.estimator](**chosen).fit(matrix, labels.y, sample_weight=labels.weight)
        if calibration_part is not None:
            held_out = endpoint_labels(calibration_part, endpoint, "ipcw")
            known = held_out.known
            estimator = PlattCalibrated.fit(estimator, encode(calibration_part)[known], held_out.y[known],
                                            sample_weight=held_out.weight[known])
        estimators[endpoint] = estimator
    return RiskModel(family=spec.estimator, estimators=estimators)


def evaluate_model(model: RiskModel, frame: pd.DataFrame, *, prefix: str = "", bootstrap: int = 0,
                   seed: int = 0, detail: bool = True) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Metrics named ``<prefix><endpoint>_<metric>`` and, per endpoint, the arrays behind them."""
    risks = model.risks(encode(frame))
    metrics: dict[str, float] = {}
    curves = {}
    for endpoint, risk in risks.items():
        labels = endpoint_labels(frame, endpoint, "ipcw")
        truth = frame[f"true_risk_{endpoint}"].to_numpy()
        values = evaluate_at_horizon(labels.y, risk, labels.weight, truth,
                                     bootstrap=bootstrap, seed=seed, detail=detail)
        metrics |= {f"{prefix}{endpoint}_{name}": value for name, value in values.items()}
        curves[endpoint] = {"y": labels.y, "weight": labels.weight, "model": risk, "oracle": truth}
    return metrics, curves


def subgroups(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks of the reported subgroups: sex, age band, prior treatment."""
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
    }


def subgroup_table(curves: dict[str, dict[str, np.ndarray]], frame: pd.DataFrame) -> pd.DataFrame:
    """The same metrics by subgroup, from the test split's curves: one row per subgroup and endpoint."""
    rows = []
    for name, mask in subgroups(frame).items():
        if mask.sum() < 50:
            continue
        for endpoint, c in curves.items():
            values = evaluate_at_horizon(c["y"][mask], c["model"][mask], c["weight"][mask], c["oracle"][mask],
                                         detail=False)
            rows.append({"subgroup": name, "endpoint": endpoint, "n": int(mask.sum())}
                        | {m: values.get(m, np.nan) for m in (*SUBGROUP_METRICS, "events")})
    return pd.DataFrame(rows)


def log_loss_over_null(y: np.ndarray, risk: np.ndarray, weight: np.ndarray) -> float:
    """Weighted log loss of ``risk`` divided by that of the best constant risk on the same rows.

    The constant is the weighted incidence, so the ratio is 1 for a model that knows only the
    incidence and falls towards 0 as it separates events from non-events (one minus
    McFadden's R²). Unlike the log loss itself it does not grow with the incidence, so
    horizons with few and with many events count alike.

    Parameters
    ----------
    y, risk, weight : ndarray of shape (n,)
        Status at the horizon (0/1), predicted risk and IPCW weight, all weights positive.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When ``y`` holds only events or only non-events (the constant risk has no loss).
    """
    incidence = float(np.average(y, weights=weight))
    if not 0.0 < incidence < 1.0:
        raise ValueError(f"log loss over null: needs events and non-events, got an incidence of {incidence:g}")
    null = weighted_log_loss(y, np.full(len(y), incidence), weight)
    return weighted_log_loss(y, risk, weight) / null


def tune(spec: FamilySpec, train: pd.DataFrame, endpoints: tuple[str, ...], calibration_fraction: float,
         seed: int, log) -> dict[str, dict]:
    """Optuna search of the family's hyperparameters, one study per outcome, each trial a nested MLflow run.

    Thyroid disorder and ITP differ in incidence by more than an order of magnitude, so a
    shared objective is all but blind to the rare outcome: each outcome gets its own study
    and its own hyperparameters, shared by its horizons. Objective of an outcome's study:
    the mean over its endpoints of :func:`log_loss_over_null` on the held-out calibration
    fold, so each horizon counts alike whatever its incidence.

    Called inside the family's MLflow run: the trials are nested under it, in its experiment.

    Parameters
    ----------
    spec : FamilySpec
        The family; ``spec.tuning`` gives the space, trials, time limit and seed of each study.
    train : DataFrame
        Training split; the same calibration fold as :func:`fit_family` is held out for validation.
    endpoints : tuple of str
        Endpoints of the experiment.
    calibration_fraction, seed : float, int
        Size and seed of the held-out fold.
    log : callable
        Progress messages.

    Returns
    -------
    dict of str to dict
        Per outcome, the estimator parameters: ``spec.params`` updated with the study's best trial.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = time.perf_counter() + spec.tuning.timeout_s
    experiment_id = mlflow.active_run().info.experiment_id
    fit_part, validation = split(train, calibration_fraction, seed)
    validation_matrix = encode(validation)
    chosen: dict[str, dict] = {}
    outcomes = outcomes_of(endpoints)
    for index, outcome in enumerate(outcomes):
        studied = tuple(e for e in endpoints if endpoint_parts(e)[0] == outcome)
        # Each study may use an equal share of the time left, so time one study leaves unused
        # goes to the next and the family's tuning stays within timeout_s.
        time_limit = max(deadline - time.perf_counter(), 0.0) / (len(outcomes) - index)
        # The same sampler seed for every outcome: the random start-up trials of every study try
        # the same points, so where the studies' choices differ, the outcomes differ, not the draws.
        study = optuna.create_study(direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=spec.tuning.seed))
        objective = _objective(spec, outcome, studied, fit_part, validation, validation_matrix,
                               calibration_fraction, seed, experiment_id)
        started = time.perf_counter()
        # One trial whatever the time left, so that every outcome has parameters.
        study.optimize(objective, n_trials=1)
        left = time_limit - (time.perf_counter() - started)
        if spec.tuning.n_trials > 1 and left > 0:
            study.optimize(objective, n_trials=spec.tuning.n_trials - 1, timeout=left)
        chosen[outcome] = dict(spec.params) | study.best_params
        best = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in study.best_params.items())
        cut = f" (time limit of {time_limit:.0f} s reached: {spec.tuning.n_trials} planned)" \
            if len(study.trials) < spec.tuning.n_trials else ""
        log(f"  {outcome}: tuned over {len(study.trials)} trials{cut}, best validation log loss / null "
            f"{study.best_value:.4f} ({best})")
        mlflow.log_metrics({f"tuning_{outcome}_trials": len(study.trials),
                            f"tuning_{outcome}_best_log_loss_over_null": study.best_value})
    return chosen


def _objective(spec: FamilySpec, outcome: str, studied: tuple[str, ...], fit_part: pd.DataFrame,
               validation: pd.DataFrame, validation_matrix: np.ndarray, calibration_fraction: float, seed: int,
               experiment_id: str):
    """The Optuna objective of one outcome's study: fit its endpoints, score them on the validation fold."""
    import optuna

    uncalibrated = spec.model_copy(update={"calibration": "none"})
    held_out = {e: endpoint_labels(validation, e) for e in studied}

    def objective(trial: optuna.Trial) -> float:
        params = dict(spec.params)
        for name, (low, high) in spec.tuning.space.items():
            if isinstance(low, int) and isinstance(high, int):
                params[name] = trial.suggest_int(name, low, high)
            else:
                params[name] = trial.suggest_float(name, low, high, log=True)
        with mlflow.start_run(run_name=f"{outcome}/trial-{trial.number}", nested=True, experiment_id=experiment_id,
                              tags={"autorisk.role": "tuning-trial", "autorisk.outcome": outcome}):
            model = fit_family(uncalibrated, params, fit_part, studied, calibration_fraction, seed)
            risks = model.risks(validation_matrix)
            losses, ratios = {}, []
            for endpoint, labels in held_out.items():
                known = labels.known
                y, risk, weight = labels.y[known], risks[endpoint][known], labels.weight[known]
                losses[f"validation_{endpoint}_log_loss"] = weighted_log_loss(y, risk, weight)
                ratios.append(log_loss_over_null(y, risk, weight))
            loss = float(np.mean(ratios))
            mlflow.log_params({f"model.{outcome}.{k}": v for k, v in params.items()})
            mlflow.log_metrics(losses | {"validation_log_loss_over_null": loss})
        return loss

    return objective


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _dataset(frame: pd.DataFrame, name: str):
    # Events as floats: MLflow's schema inference warns that integer columns cannot hold missing values.
    events = {c: float for c in frame.columns if c.endswith("_event")}
    return mlflow.data.from_pandas(frame.astype(events), name=name)


def _log_endpoint_figures(family: str, curves: dict[str, dict[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    for endpoint, c in curves.items():
        known = c["weight"] > 0
        if c["y"][known].sum() < 5:
            continue
        y, w = c["y"][known], c["weight"][known]
        risks = {family: c["model"][known], "oracle (true risk)": c["oracle"][known]}
        figure = Figure(figsize=(5, 5))
        axes = figure.subplots()
        for label, risk in risks.items():
            fpr, tpr, _ = roc_curve(y, risk, sample_weight=w)
            axes.plot(fpr, tpr, label=label)
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
        axes.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{endpoint}: ROC (IPCW), held-out")
        axes.legend(loc="lower right")
        mlflow.log_figure(figure, f"plots/roc_{endpoint}.png")
        mlflow.log_figure(calibration_figure(y, risks, f"{endpoint}: calibration, held-out", weight=w),
                          f"plots/calibration_{endpoint}.png")
        decision = {label: net_benefit(y, risk, w, THRESHOLDS) for label, risk in risks.items()}
        mlflow.log_figure(decision_curve_figure(decision, f"{endpoint}: decision curve"),
                          f"plots/decision_curve_{endpoint}.png")
        table = pd.DataFrame({"threshold": THRESHOLDS, "treat_all": decision[family]["treat_all"]}
                             | {f"net_benefit_{label}": d["model"] for label, d in decision.items()})
        mlflow.log_text(table.to_csv(index=False), f"decision_curves/{endpoint}.csv")


def run_experiment(config: ExperimentConfig, *, log=print) -> list[FamilyResult]:
    """Run one experiment against the current MLflow tracking URI and register each family's model."""
    simulator = load_simulator(config)
    started = time.perf_counter()
    pooled = simulate_cohorts(simulator, config.train_cohorts)
    train, test = split(pooled, config.test_fraction, config.split_seed)
    external = {c.name: simulate_cohorts(simulator, [c]) for c in config.external_cohorts}
    benchmark = simulate_cohorts(simulator, [config.benchmark_cohort])
    log(f"simulated {len(pooled):,} patients ({len(train):,} train / {len(test):,} test), "
        f"{sum(map(len, external.values())):,} external and {len(benchmark):,} benchmark "
        f"in {time.perf_counter() - started:.1f} s")

    params = config.params() | simulator.assumption_params()
    config_digest = _digest(config.model_dump(mode="json") | {"simulator": simulator.model_dump()})
    label = "+".join(c.label() for c in config.train_cohorts)
    train_set, test_set = _dataset(train, f"{label}:train"), _dataset(test, f"{label}:test")
    example = test.loc[:4, [ID_COLUMN, *INPUT_NAMES]]
    signature = ModelSignature(inputs=mlflow_input_schema(), outputs=mlflow_output_schema(config.endpoints))
    pip_requirements = [f"{p}=={version(p)}" for p in PIP_PACKAGES]
    tags = {"autorisk.experiment": config.name, "autorisk.config_digest": config_digest}
    reference = reference_profile(encode(train))

    ensure_experiment(config.name)
    results = []
    with mlflow.start_run(run_name=config.name, tags=tags | {"autorisk.role": "parent"},
                          description=config.description):
        mlflow.log_params(params)
        mlflow.log_dict(config.model_dump(mode="json"), "config/experiment.json")
        mlflow.log_dict(simulator.model_dump(mode="json"), "config/simulator_assumptions.json")
        for family, spec in config.families.items():
            family_started = time.perf_counter()
            with mlflow.start_run(run_name=f"{config.name}/{family}", nested=True,
                                  tags=tags | {"autorisk.role": "model", "autorisk.family": family,
                                               "autorisk.censoring": spec.censoring}) as run:
                mlflow.log_input(train_set, context="training")
                mlflow.log_input(test_set, context="evaluation")
                # Aggregates only: per-feature histograms for drift checks when scoring.
                mlflow.log_dict(reference, "reference/feature_profile.json")
                outcome_params = tune(spec, train, config.endpoints, config.calibration_fraction,
                                      config.split_seed, log) if spec.tuning \
                    else {outcome: dict(spec.params) for outcome in outcomes_of(config.endpoints)}
                mlflow.log_params(params | {"family": family, "estimator": spec.estimator,
                                            "censoring": spec.censoring, "calibration": spec.calibration}
                                  | {f"model.{outcome}.{k}": str(v)
                                     for outcome, chosen in outcome_params.items() for k, v in chosen.items()})
                model = fit_family(spec, spec.params, train, config.endpoints, config.calibration_fraction,
                                   config.split_seed, outcome_params=outcome_params)
                fit_seconds = time.perf_counter() - family_started
                metrics, curves = evaluate_model(model, test, bootstrap=config.bootstrap, seed=config.split_seed)
                metrics["mean_log_loss"] = float(np.mean([metrics[f"{e}_log_loss"] for e in config.endpoints
                                                          if f"{e}_log_loss" in metrics]))
                bench, _ = evaluate_model(model, benchmark, prefix="bench_", bootstrap=config.bootstrap,
                                          seed=config.split_seed)
                metrics |= bench
                for name, frame in external.items():
                    metrics |= evaluate_model(model, frame, prefix=f"ext_{name}_")[0]
                table = subgroup_table(curves, test)
                for row in table.itertuples():
                    metrics |= {f"sub_{row.subgroup}_{row.endpoint}_{m}": getattr(row, m)
                                for m in SUBGROUP_METRICS if np.isfinite(getattr(row, m))}
                metrics["fit_seconds"] = fit_seconds
                mlflow.log_metrics(metrics)
                mlflow.log_text(table.to_csv(index=False), "subgroups.csv")
                _log_endpoint_figures(family, curves)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=AutoimmunityRiskModel(model),
                    signature=signature,
                    input_example=example,
                    registered_model_name=config.registered_model_name,
                    pip_requirements=pip_requirements,
                )
                model_version = str(info.registered_model_version)
                client = mlflow.MlflowClient()
                for key, value in {"family": family, "experiment": config.name,
                                   "mean_log_loss": f"{metrics['mean_log_loss']:.6f}"}.items():
                    client.set_model_version_tag(config.registered_model_name, model_version, key, value)
                card = model_card(name=config.registered_model_name, version=model_version, family=family,
                                  spec=spec, config=config, simulator=simulator, metrics=metrics,
                                  subgroup_rows=table)
                mlflow.log_text(card.markdown, "model_card/model_card.md")
                mlflow.log_text(card.html, "model_card/model_card.html")
                results.append(FamilyResult(family, run.info.run_id, model_version, metrics))
                summary = "; ".join(
                    f"{e} AUROC {metrics.get(f'{e}_auroc', float('nan')):.3f} "
                    f"(oracle {metrics.get(f'{e}_oracle_auroc', float('nan')):.3f})" for e in config.endpoints)
                log(f"{family}: {summary}; mean log loss {metrics['mean_log_loss']:.4f}; "
                    f"registered {config.registered_model_name} v{model_version} "
                    f"({time.perf_counter() - family_started:.0f} s)")
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
    return results
