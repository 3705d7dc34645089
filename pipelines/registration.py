"""Step 5 of training: one MLflow run per experiment, one nested run per family, the model registered.

Everything logged is an aggregate or a digest: datasets are logged by digest and schema (never
their rows), the drift reference as histograms.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from sklearn.metrics import roc_curve

from features.drift import REFERENCE_ARTIFACT, reference_profile
from features.schema import (
    FEATURES,
    endpoint,
    mlflow_input_schema,
    mlflow_output_schema,
    mlflow_params_schema,
)
from features.simulator import SimulatorConfig
from features.validation import encode
from models.domain import domain_section
from models.evaluation import calibration_figure, decision_curve_figure, net_benefit, population_curve_figure
from models.headline import HEADLINE_ARTIFACT, HEADLINE_TABLE, headline_frame, headline_markdown, run_description
from models.model_card import CardSections, CardSubject, model_card
from models.names import (
    BELOW_MINIMUM_SAMPLE_SIZE_TAG,
    BENCHMARK_COHORT,
    CONFIG_DIGEST_TAG,
    EXPERIMENT_TAG,
    FAMILY_TAG,
    ORIGIN_TRAINING,
    OUTCOME_TAG,
    PROMOTION_METRIC,
    ROLE_MODEL,
    ROLE_PARENT,
    ROLE_TAG,
    ROLE_TRIAL,
    VERSION_EXPERIMENT_TAG,
    VERSION_FAMILY_TAG,
    VERSION_METRIC_TAG,
    VERSION_ORIGIN_TAG,
    added_value_metric,
    endpoint_metric,
    interval_metric,
    trial_metric,
)
from models.persistence import save_risk_model
from models.pyfunc import MODEL_CODE, RISK_MODEL_ARTIFACT
from models.scoring import RiskModel
from models.tracking import NOTE_TAG, ensure_experiment
from pipelines.biomarker import log_added_value
from pipelines.config import ExperimentConfig, FamilySpec, FileCohort
from pipelines.evaluation import Evaluation
from pipelines.explanation_pictures import log_explanations
from pipelines.intervals import log_intervals
from pipelines.observed import file_digest
from pipelines.steps import Cohorts, FamilyResult, TuningResult

PIP_PACKAGES = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn", "scikit-survival", "xgboost", "pydantic",
                "pyyaml")
THRESHOLDS = np.round(np.arange(0.01, 0.51, 0.01), 2)


def digest(payload: object) -> str:
    """Short content digest of a JSON-able payload (the config and simulator a run used)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _dataset(frame: pd.DataFrame, name: str):
    # Events as floats: MLflow's schema inference warns that integer columns cannot hold missing values.
    events = {c: float for c in frame.columns if c.endswith("_event")}
    return mlflow.data.from_pandas(frame.astype(events), name=name)


def published_points(simulator: SimulatorConfig, outcome: str) -> list[tuple[str, float, float, str]]:
    """The published incidences the simulator targets, as ``(treatment, month, risk, label)``."""
    points = []
    for name, profile in simulator.profiles.items():
        kind = {"observed": "observed", "cumulative": "cumulative"}.get(profile.target_kind)
        for arm, spec in profile.arms.items():
            if kind and spec.targets and outcome in spec.targets:
                points.append((arm, profile.follow_up_months, spec.targets[outcome], f"{name} ({kind})"))
    return points


def _log_endpoint_figures(family: str, curves: dict[str, dict[str, np.ndarray]]) -> None:
    from matplotlib.figure import Figure

    for name, c in curves.items():
        known = c["weight"] > 0
        if c["y"][known].sum() < 5:
            continue
        y, w = c["y"][known], c["weight"][known]
        risks = {family: c["model"][known]}
        if c["oracle"] is not None:  # a simulated cohort: the true risk beside the model's
            risks["oracle (true risk)"] = c["oracle"][known]
        figure = Figure(figsize=(5, 5))
        axes = figure.subplots()
        for label, risk in risks.items():
            fpr, tpr, _ = roc_curve(y, risk, sample_weight=w)
            axes.plot(fpr, tpr, label=label)
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
        axes.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{name}: ROC (IPCW), held-out")
        axes.legend(loc="lower right")
        mlflow.log_figure(figure, f"plots/roc_{name}.png")
        mlflow.log_figure(calibration_figure(y, risks, f"{name}: calibration, held-out", weight=w),
                          f"plots/calibration_{name}.png")
        decision = {label: net_benefit(y, risk, w, THRESHOLDS) for label, risk in risks.items()}
        mlflow.log_figure(decision_curve_figure(decision, f"{name}: decision curve"),
                          f"plots/decision_curve_{name}.png")
        table = pd.DataFrame({"threshold": THRESHOLDS, "treat_all": decision[family]["treat_all"]}
                             | {f"net_benefit_{label}": d["model"] for label, d in decision.items()})
        mlflow.log_text(table.to_csv(index=False), f"decision_curves/{name}.csv")


def model_signature() -> ModelSignature:
    """The pyfunc's signature: every input by name, the score columns at the default horizons, the params."""
    return ModelSignature(inputs=mlflow_input_schema(), outputs=mlflow_output_schema(), params=mlflow_params_schema())


def input_example() -> pd.DataFrame:
    """A made-up patient from the schema's examples: no patient's row goes into MLflow."""
    return pd.DataFrame([{f.name: f.example for f in FEATURES}])


def register_risk_model(model: RiskModel, registered_name: str, tags: dict[str, str]) -> str:
    """Log ``model`` to the active run as a pyfunc that carries its code and its files, register it as a new
    version of ``registered_name`` with ``tags``, and return the version."""
    with tempfile.TemporaryDirectory(prefix="autorisk-model-") as folder:
        files = save_risk_model(model, Path(folder) / RISK_MODEL_ARTIFACT)
        info = mlflow.pyfunc.log_model(name="model", python_model=MODEL_CODE, artifacts={RISK_MODEL_ARTIFACT: str(files)},
                                       signature=model_signature(), input_example=input_example(),
                                       registered_model_name=registered_name,
                                       pip_requirements=[f"{p}=={version(p)}" for p in PIP_PACKAGES])
    model_version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, model_version, key, value)
    return model_version


def log_headline(config: ExperimentConfig, family: str, version: str | None, metrics: dict[str, float]) -> str:
    """The headline table of the active run: its description (shown first on the run page), an MLflow
    table and a Markdown artifact. Returns the table's Markdown."""
    endpoints = [endpoint(o, h) for o in config.outcomes for h in config.evaluation_horizons_months]
    frame = headline_frame(metrics, endpoints, config.added_value, coverage_metric=(
        (lambda e: interval_metric(BENCHMARK_COHORT, "alemtuzumab", e, "coverage")) if config.interval_refits else None))
    table = headline_markdown(frame, config.added_value)
    mlflow.set_tag(NOTE_TAG, run_description(experiment=config.name, family=family, version=version, table=table))
    # Text as object dtype: MLflow looks for images among object columns, and pandas warns when that
    # search also picks up its string dtype.
    mlflow.log_table(frame.astype({"endpoint": object}), HEADLINE_TABLE)
    mlflow.log_text(f"# {config.name} / {family}: headline\n\n{table}\n", HEADLINE_ARTIFACT)
    return table


def family_table(results: list[FamilyResult], predictors=()) -> str:
    """Markdown: per family its registered version, the promotion metric and the held-out AUROC at 24
    months (with each predictor's ΔAUROC there), for the experiment's parent run."""
    outcomes = [o for o in ("thyroid", "itp") if any(endpoint_metric(endpoint(o, 24), "auroc") in r.metrics
                                                     for r in results)]
    header = ["family", "version", "log loss / null (lower is better)",
              *[f"{o} 24 m AUROC" for o in outcomes], *[f"ΔAUROC {p}, thyroid 24 m" for p in predictors]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        m = r.metrics
        cells = [r.family, r.model_version, f"{m.get(PROMOTION_METRIC, float('nan')):.4f}",
                 *[f"{m.get(endpoint_metric(endpoint(o, 24), 'auroc'), float('nan')):.3f}" for o in outcomes],
                 *[f"{m.get(added_value_metric(p, 'thyroid_24m', 'delta_auroc'), float('nan')):+.4f}"
                   for p in predictors]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class ExperimentRun:
    """The parent MLflow run of one experiment; :meth:`log_family` adds a family's run and registers its model."""

    def __init__(self, config: ExperimentConfig, simulator: SimulatorConfig | None, cohorts: Cohorts,
                 notes: list[str] = ()) -> None:
        self.config = config
        self.simulator = simulator
        self.cohorts = cohorts
        self.notes = list(notes)
        self.params = config.params() | (simulator.assumption_params() if simulator is not None else {})
        files = {c.profile: file_digest(c.file) for c in [*config.train_cohorts, *config.external_cohorts]
                 if isinstance(c, FileCohort)}
        self.params |= {f"file_sha256.{name}": value for name, value in files.items()}
        self.tags = {EXPERIMENT_TAG: config.name,
                     CONFIG_DIGEST_TAG: digest(config.model_dump(mode="json") | {"files": files} | {
                         "simulator": simulator.model_dump() if simulator is not None else None})}
        if any("Riley's minimum" in note for note in self.notes):
            self.tags[BELOW_MINIMUM_SAMPLE_SIZE_TAG] = "; ".join(n.split(":")[0] for n in self.notes
                                                                  if "Riley's minimum" in n)
        label = "+".join(c.label() for c in config.train_cohorts)
        self.datasets = (_dataset(cohorts.train, f"{label}:train"), _dataset(cohorts.test, f"{label}:test"))
        # Aggregates only: per-feature histograms for drift checks when scoring.
        self.reference = reference_profile(encode(cohorts.train))

    def __enter__(self) -> ExperimentRun:
        self.experiment_id = ensure_experiment(self.config.name, description=self.config.description)
        self.run = mlflow.start_run(run_name=self.config.name, tags=self.tags | {ROLE_TAG: ROLE_PARENT},
                                    description=self.config.description)
        mlflow.log_params(self.params)
        mlflow.log_dict(self.config.model_dump(mode="json"), "config/experiment.json")
        if self.simulator is not None:
            mlflow.log_dict(self.simulator.model_dump(mode="json"), "config/simulator_assumptions.json")
        if self.notes:
            mlflow.log_text("\n".join(f"- {n}" for n in self.notes) + "\n", "notes.md")
        return self

    def __exit__(self, kind, error, traceback) -> None:
        mlflow.end_run("FINISHED" if kind is None else "FAILED")

    def finish(self, seconds: float, results: list[FamilyResult] = ()) -> None:
        """Log the experiment's time, and its description followed by one row per family."""
        mlflow.log_metric("train_seconds", seconds)
        if results:
            notes = "".join(f"\n- {n}" for n in self.notes)
            mlflow.set_tag(NOTE_TAG, f"{self.config.description.strip()}\n\n"
                                     f"{family_table(results, self.config.added_value)}\n{notes}")

    def _log_trials(self, run_id: str, tuning: TuningResult) -> None:
        """Each trial as a run nested under the family's, with its own start and end time."""
        client = mlflow.MlflowClient()
        for trial in tuning.trials:
            nested = client.create_run(
                self.experiment_id, start_time=trial.started_ms, run_name=f"{trial.outcome}/trial-{trial.number}",
                tags={"mlflow.parentRunId": run_id, ROLE_TAG: ROLE_TRIAL, OUTCOME_TAG: trial.outcome,
                      NOTE_TAG: f"Optuna trial {trial.number} of the {trial.outcome} study: validation log loss "
                                f"over the incidence's {trial.value:.4f} (lower is better)."})
            mlflow.log_params({f"model.{trial.outcome}.{k}": v for k, v in trial.params.items()},
                              run_id=nested.info.run_id)
            mlflow.log_metrics({trial_metric(e): v for e, v in trial.losses.items()}
                               | {trial_metric(): trial.value}, run_id=nested.info.run_id)
            client.set_terminated(nested.info.run_id, end_time=trial.finished_ms)

    def log_family(self, name: str, spec: FamilySpec, model: RiskModel, outcome_params: dict[str, dict],
                   tuning: TuningResult | None, evaluation: Evaluation) -> FamilyResult:
        """Log one family's run (params, metrics, tables, plots, model card) and register its model."""
        config = self.config
        with mlflow.start_run(run_name=f"{config.name}/{name}", nested=True,
                              tags=self.tags | {ROLE_TAG: ROLE_MODEL, FAMILY_TAG: name}) as run:
            train_set, test_set = self.datasets
            mlflow.log_input(train_set, context="training")
            mlflow.log_input(test_set, context="evaluation")
            mlflow.log_dict(self.reference, REFERENCE_ARTIFACT)
            mlflow.log_params(self.params | {"family": name, "estimator": spec.estimator}
                              | {f"model.{outcome}.{k}": str(v)
                                 for outcome, chosen in outcome_params.items() for k, v in chosen.items()})
            metrics = dict(evaluation.metrics)
            if tuning is not None:
                metrics |= tuning.summary
                self._log_trials(run.info.run_id, tuning)
            mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
            mlflow.log_text(evaluation.subgroups.to_csv(index=False), "subgroups.csv")
            mlflow.log_text(evaluation.truth.to_csv(index=False), "truth/per_arm.csv")
            mlflow.log_text(evaluation.contrast.to_csv(index=False), "truth/contrast.csv")
            _log_endpoint_figures(name, evaluation.curves)
            for outcome, curves in evaluation.population.items():  # only where the benchmark carries the truth
                figure = population_curve_figure(
                    curves, published_points(self.simulator, outcome),
                    f"{outcome}: mean risk by month, benchmark cohort ({config.benchmark_cohort.profile})")
                mlflow.log_figure(figure, f"plots/population_{outcome}.png")
            model_version = register_risk_model(model, config.registered_model_name, {
                VERSION_FAMILY_TAG: name, VERSION_EXPERIMENT_TAG: config.name, VERSION_ORIGIN_TAG: ORIGIN_TRAINING,
                VERSION_METRIC_TAG: f"{metrics[PROMOTION_METRIC]:.6f}"})
            intervals = log_intervals(evaluation.intervals) if evaluation.intervals is not None else None
            added_value = (log_added_value(evaluation.biomarker, config.name) if evaluation.biomarker is not None
                           else None)
            subject = CardSubject(name=config.registered_model_name, version=model_version, family=name,
                                  estimator=spec.estimator, follow_up=model.follow_up_months())
            sections = CardSections(headline=log_headline(config, name, model_version, metrics),
                                    added_value=added_value, intervals=intervals, domain=domain_section(model.domain))
            card = model_card(subject, config=config, simulator=self.simulator, metrics=metrics, evaluation=evaluation,
                              sections=sections)
            card = log_explanations(model, self.cohorts.test, card)
            mlflow.log_text(card.markdown, "model_card/model_card.md")
            mlflow.log_text(card.html, "model_card/model_card.html")
        return FamilyResult(name, run.info.run_id, model_version, metrics)
