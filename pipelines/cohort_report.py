"""Write a cohort validation report to files and log it to MLflow (experiment ``cohorts``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from features.cohort_report import CohortReport, build_report
from features.simulator import SimulatorConfig
from models.tracking import ensure_experiment

EXPERIMENT = "cohorts"


def write_report(report: CohortReport, config: SimulatorConfig, folder: Path) -> Path:
    """``<folder>/<profile>.md``, ``<profile>_incidence.png`` and ``<profile>_checks.csv``; returns the Markdown path."""
    folder.mkdir(parents=True, exist_ok=True)
    figure_name = f"{report.profile}_incidence.png"
    report.figure.savefig(folder / figure_name, dpi=110)
    report.checks.to_csv(folder / f"{report.profile}_checks.csv", index=False)
    markdown = folder / f"{report.profile}.md"
    markdown.write_text(report.markdown(config, figure_name), encoding="utf-8")
    return markdown


def log_report(report: CohortReport, config: SimulatorConfig) -> str:
    """One run in the ``cohorts`` experiment: assumptions as params, the checks as metrics, the report as artifacts."""
    ensure_experiment(EXPERIMENT, description=(
        "Simulated cohorts checked against every published figure they target, one run per profile "
        "(`autorisk cohort-report`): the checks as metrics (`checks_failed` should be 0), the report under "
        "Artifacts, the assumptions as params."))
    checks = report.checks
    with mlflow.start_run(run_name=f"cohort-report/{report.profile}",
                          tags={"autorisk.role": "cohort-report", "autorisk.profile": report.profile}) as run:
        mlflow.log_params({"profile": report.profile, "n": report.n, "seed": report.seed}
                          | config.assumption_params())
        mlflow.log_metrics({"checks": len(checks), "checks_failed": int((~checks["passed"]).sum())})
        with tempfile.TemporaryDirectory() as folder:
            write_report(report, config, Path(folder))
            mlflow.log_artifacts(folder, artifact_path="report")
        mlflow.log_dict(config.model_dump(mode="json"), "config/simulator_assumptions.json")
    return run.info.run_id


def run_cohort_report(config: SimulatorConfig, profile: str, n: int, seed: int, folder: Path) -> tuple[CohortReport, Path, str]:
    """Build, write and log the report of one profile."""
    report = build_report(config, profile, n, seed)
    path = write_report(report, config, folder)
    run_id = log_report(report, config)
    return report, path, run_id
