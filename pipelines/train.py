"""Training: simulate cohorts, fit every model family per outcome, evaluate, log to MLflow.

Pure steps (:func:`simulate_cohorts`, :func:`split`, :func:`fit_family`,
:func:`evaluate_family`) take and return data; :func:`run_experiment` wires them
to MLflow. One parent run per experiment, one child run per model family; every
child run logs the same param, metric and tag names so the MLflow UI's compare
view lines them up.
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
from sklearn.model_selection import train_test_split

from features.schema import ID_COLUMN, INPUT_NAMES, mlflow_input_schema, mlflow_output_schema
from features.drift import reference_profile
from features.simulator import SimulatorConfig, load_simulator_config, simulate_cohort
from features.validation import encode
from models.estimators import FAMILIES
from models.evaluation import calibration_figure, evaluate, roc_figure
from models.pyfunc import AutoimmunityRiskModel
from models.scoring import RiskModel
from pipelines.config import CohortSpec, ExperimentConfig
from pipelines.tracking import ensure_experiment

PIP_PACKAGES = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn", "xgboost", "pydantic", "pyyaml")


@dataclass(frozen=True)
class FamilyResult:
    """Outcome of training one model family."""

    family: str
    run_id: str
    model_version: str
    metrics: dict[str, float]


def simulate_cohorts(simulator: SimulatorConfig, cohorts: list[CohortSpec]) -> pd.DataFrame:
    """Pooled cohorts with a ``profile`` column."""
    frames = [simulate_cohort(simulator, c.profile, c.n, c.seed).assign(profile=c.profile)
              for c in cohorts]
    return pd.concat(frames, ignore_index=True)


def split(pooled: pd.DataFrame, test_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test split stratified by profile and treatment arm."""
    strata = pooled["profile"].astype(str) + "/" + pooled["treatment"].astype(str)
    train, test = train_test_split(pooled, test_size=test_fraction, random_state=seed, stratify=strata)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def make_estimator(family: str, params: dict):
    """An unfitted classifier of ``family`` with the experiment's hyperparameters."""
    return FAMILIES[family](**params)


def fit_family(family: str, params: dict, train: pd.DataFrame, outcomes: tuple[str, ...]) -> RiskModel:
    """Fit one classifier per outcome on the training frame."""
    matrix = encode(train)
    estimators = {outcome: make_estimator(family, params).fit(matrix, train[f"{outcome}_event"].to_numpy())
                  for outcome in outcomes}
    return RiskModel(family=family, estimators=estimators)


def evaluate_family(model: RiskModel, frame: pd.DataFrame) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Metrics named ``<outcome>_<metric>`` plus ``mean_log_loss``, and the risks behind them."""
    scores = model.explain(encode(frame))
    metrics: dict[str, float] = {}
    curves = {}
    for outcome, outcome_scores in scores.items():
        y = frame[f"{outcome}_event"].to_numpy()
        truth = frame[f"true_risk_{outcome}"].to_numpy()
        for name, value in evaluate(y, outcome_scores.risk, truth).items():
            metrics[f"{outcome}_{name}"] = value
        curves[outcome] = {"y": y, "model": outcome_scores.risk, "oracle": truth}
    metrics["mean_log_loss"] = float(np.mean([metrics[f"{o}_log_loss"] for o in scores]))
    return metrics, curves


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _dataset(frame: pd.DataFrame, name: str):
    # Synthetic cohorts only: no patient data reaches MLflow.
    # Events as floats: MLflow's schema inference warns that integer columns cannot hold missing values.
    events = {c: float for c in frame.columns if c.endswith("_event")}
    return mlflow.data.from_pandas(frame.astype(events), name=name)


def run_experiment(config: ExperimentConfig, *, log=print) -> list[FamilyResult]:
    """Run one experiment against the current MLflow tracking URI and register each family's model."""
    simulator = load_simulator_config(config.simulator_config)
    started = time.perf_counter()
    pooled = simulate_cohorts(simulator, config.train_cohorts)
    train, test = split(pooled, config.test_fraction, config.split_seed)
    external = {c.profile: simulate_cohorts(simulator, [c]) for c in config.external_cohorts}
    log(f"simulated {len(pooled):,} patients ({len(train):,} train / {len(test):,} test) "
        f"in {time.perf_counter() - started:.1f} s")

    params = config.params() | simulator.assumption_params()
    config_digest = _digest(config.model_dump(mode="json") | {"simulator": simulator.model_dump()})
    train_set = _dataset(train, "+".join(c.label() for c in config.train_cohorts) + ":train")
    test_set = _dataset(test, "+".join(c.label() for c in config.train_cohorts) + ":test")
    example = test.loc[:4, [ID_COLUMN, *INPUT_NAMES]]
    signature = ModelSignature(inputs=mlflow_input_schema(), outputs=mlflow_output_schema(config.outcomes))
    pip_requirements = [f"{p}=={version(p)}" for p in PIP_PACKAGES]
    tags = {"autorisk.experiment": config.name, "autorisk.config_digest": config_digest}

    ensure_experiment(config.name)
    results = []
    with mlflow.start_run(run_name=config.name, tags=tags | {"autorisk.role": "parent"},
                          description=config.description):
        mlflow.log_params(params)
        mlflow.log_dict(config.model_dump(mode="json"), "config/experiment.json")
        mlflow.log_dict(simulator.model_dump(mode="json"), "config/simulator_assumptions.json")
        for family, family_params in config.families.items():
            fit_started = time.perf_counter()
            with mlflow.start_run(run_name=f"{config.name}/{family}", nested=True,
                                  tags=tags | {"autorisk.role": "model", "autorisk.family": family}) as run:
                mlflow.log_params(params | {"family": family}
                                  | {f"model.{k}": str(v) for k, v in family_params.items()})
                mlflow.log_input(train_set, context="training")
                mlflow.log_input(test_set, context="evaluation")
                # Aggregates only: per-feature histograms for drift checks when scoring.
                mlflow.log_dict(reference_profile(encode(train)), "reference/feature_profile.json")
                model = fit_family(family, family_params, train, config.outcomes)
                fit_seconds = time.perf_counter() - fit_started
                metrics, curves = evaluate_family(model, test)
                for profile, frame in external.items():
                    external_metrics, _ = evaluate_family(model, frame)
                    metrics |= {f"external_{profile}_{o}_auroc": external_metrics[f"{o}_auroc"]
                                for o in config.outcomes if f"{o}_auroc" in external_metrics}
                metrics["fit_seconds"] = fit_seconds
                mlflow.log_metrics(metrics)
                for outcome, curve in curves.items():
                    risks = {family: curve["model"], "oracle (true risk)": curve["oracle"]}
                    mlflow.log_figure(roc_figure(curve["y"], risks, f"{outcome}: ROC, held-out"),
                                      f"plots/roc_{outcome}.png")
                    mlflow.log_figure(calibration_figure(curve["y"], risks, f"{outcome}: calibration, held-out"),
                                      f"plots/calibration_{outcome}.png")
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
                results.append(FamilyResult(family, run.info.run_id, model_version, metrics))
                summary = ", ".join(f"{o} AUROC {metrics.get(f'{o}_auroc', float('nan')):.3f} "
                                    f"(oracle {metrics.get(f'{o}_oracle_auroc', float('nan')):.3f})"
                                    for o in config.outcomes)
                log(f"{family}: {summary}; mean log loss {metrics['mean_log_loss']:.4f}; "
                    f"registered {config.registered_model_name} v{model_version}")
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
    return results
