"""``autorisk demo``: the main job on embedded defaults, from simulated trials to one patient's risks."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from mlflow import MlflowClient
from rich.table import Table

from features.schema import ID_COLUMN, INPUT_NAMES, MONITORING_YEARS, RESEARCH_NOTICE, TREATMENTS
from features.simulator import SimulatorConfig, simulate_cohort, write_frame
from features.validation import validate_records
from models.registry import LoadedModel, load_model
from models.registry import promote as promote_version
from pipelines.batch_job import ScoreJob
from pipelines.cli.common import console, print_table, quiet_downloads
from pipelines.cli.options import DemoOptions, ReportOptions
from pipelines.cli.registry import report
from pipelines.cli.score import print_caveats
from pipelines.cohort_report import run_cohort_report
from pipelines.config import DEFAULT_EXPERIMENT, CohortSpec, ExperimentConfig, load_experiment
from pipelines.observed_loop import run_loop
from pipelines.score import score_batch
from pipelines.steps import load_simulator
from models.tracking import configure_tracking
from pipelines.train import run_experiment

# A typical candidate for alemtuzumab with high IL-21 on the original kit and thyroid antibodies.
DEMO_PATIENT = {"patient_id": "demo", "age_years": 34, "sex": "female", "disease_duration_years": 2.5, "edss": 2.0,
                "relapses_prior_2y": 2, "prior_dmt": False, "il21_pg_ml": 620.0, "il21_assay": "legacy_elisa",
                "smoker": False, "family_history_autoimmunity": False, "thyroid_antibodies": True}


def patient_risk_table(model: LoadedModel, record: dict) -> Table:
    """One patient's risk by year under each treatment and the difference, as a console table."""
    batch = validate_records([record])
    months = tuple(12 * year for year in range(1, MONITORING_YEARS + 1))
    contrast = model.risk_model.contrast(batch.matrix, months)
    follow_up = model.risk_model.follow_up_months()
    peaks = {o: int(v.peak_year[0]) for o, v in model.risk_model.monitoring(batch.matrix).items()}
    treatment = record.get("treatment") or "alemtuzumab"
    table = Table("outcome", "year", "on alemtuzumab", "on interferon beta-1a", "excess (alemtuzumab minus interferon)",
                  title=f"patient {record.get('patient_id', '')}: risk of onset by the end of each year after the "
                        f"first course (model v{model.version})",
                  caption=f"* extrapolated beyond the training data's follow-up on that treatment "
                          f"({', '.join(f'{t}: {m:g} months' for t, m in follow_up.items())}). "
                          f"On {treatment}, onsets are likeliest in year "
                          f"{', '.join(f'{y} ({o})' for o, y in peaks.items())}. " + RESEARCH_NOTICE)
    for outcome, by_treatment in contrast.items():
        for k, month in enumerate(months):
            cells = [f"{100 * by_treatment[t][0, k]:.1f}%" + ("*" if month > follow_up[t] else "") for t in TREATMENTS]
            excess = by_treatment["alemtuzumab"][0, k] - by_treatment["interferon_beta_1a"][0, k]
            table.add_row(outcome if k == 0 else "", str(month // 12), *cells, f"{100 * excess:+.1f} points")
    return table


def loop_table(loop: dict) -> Table:
    """The registry loop's figures: true, observed and predicted risk before and after the recalibration."""
    table = Table("outcome", "treatment", "month", "true risk", "observed (Kaplan-Meier)",
                  f"predicted, v{loop['champion']}", f"predicted, v{loop['recalibrated']} (@{loop['alias']})",
                  "O/E before", "O/E after",
                  title=f"registry test file ({loop['test']['patients']:,} patients): champion against its "
                        f"recalibration on {loop['development']['patients']:,} others")
    for r in loop["rows"]:
        table.add_row(r["outcome"], r["treatment"], str(r["horizon_months"]),
                      *[("—" if r[k] is None else f"{100 * r[k]:.1f}%") for k in ("true", "observed", "before", "after")],
                      *[("—" if r[k] is None else f"{r[k]:.2f}") for k in ("before_o_e", "after_o_e")])
    return table


def cohort_files(experiment: ExperimentConfig, folder: Path) -> list[tuple[CohortSpec, Path]]:
    """Each simulated cohort of an experiment with a file of its own: training, external and benchmark cohorts.

    Named by role and name (``train-care-ms1.parquet``, ``external-current-assay.parquet``,
    ``benchmark-care-ms1.parquet``), with the seed added where two would share a name, so that no
    cohort's file replaces another's.
    """
    named = [("train", c.profile, c) for c in experiment.train_cohorts if isinstance(c, CohortSpec)]
    named += [("external", c.name, c) for c in experiment.external_cohorts if isinstance(c, CohortSpec)]
    if experiment.benchmark_cohort is not None:
        named.append(("benchmark", experiment.benchmark_cohort.profile, experiment.benchmark_cohort))
    counts = Counter(f"{role}-{name}" for role, name, _ in named)
    return [(cohort, folder / (f"{role}-{name}" + (f"-seed{cohort.seed}" if counts[f"{role}-{name}"] > 1 else "")
                               + ".parquet")) for role, name, cohort in named]


def _simulate_and_check(experiment: ExperimentConfig, simulator: SimulatorConfig, outputs: Path) -> None:
    """Steps 1 and 2: the experiment's cohorts as files, and the simulator against the published targets."""
    cohorts_dir = outputs / "cohorts"
    cohorts_dir.mkdir(parents=True, exist_ok=True)
    console.rule("1. synthetic trial cohorts")
    for cohort, path in cohort_files(experiment, cohorts_dir):
        frame = simulate_cohort(simulator, cohort.profile, cohort.n, cohort.seed, il21_assay=cohort.il21_assay)
        write_frame(frame, path)
        rates = frame.groupby("treatment")[["thyroid_event", "itp_event"]].mean()
        text = "; ".join(f"{arm}: thyroid {r.thyroid_event:.1%}, ITP {r.itp_event:.2%}"
                         for arm, r in rates.iterrows())
        console.print(f"{path} ({len(frame):,} patients) {text}")

    console.rule("2. check the simulator against the published targets")
    for profile in simulator.profiles:
        validation, path, _ = run_cohort_report(simulator, profile, 200_000, 1, outputs / "cohort-reports")
        passed = int(validation.checks["passed"].sum())
        console.print(f"{profile}: {passed}/{len(validation.checks)} targets within tolerance -> {path}")


def _train_and_promote(experiment: ExperimentConfig, outputs: Path) -> None:
    """Steps 3 and 4: every family trained and registered, a champion promoted and its model card written."""
    console.rule("3. train and compare model families")
    run_experiment(experiment, log=console.print)
    console.rule("4. promote a champion")
    decision = promote_version(MlflowClient(), experiment.registered_model_name)
    console.print(f"rule: {decision.rule}")
    console.print(f"champion: version {decision.chosen.version} ({decision.chosen.family}, held-out log loss over "
                  f"the incidence's {decision.chosen.metric:.4f}); challenger: {decision.previous or 'none'}")
    report(ReportOptions(decision.chosen.version, outputs, experiment.registered_model_name))


def _score_clinic(experiment: ExperimentConfig, simulator: SimulatorConfig, outputs: Path,
                  clinic_n: int) -> LoadedModel:
    """Step 5: a simulated real-world clinic cohort scored with the champion as a clinic would score its file;
    returns the champion."""
    console.rule("5. score a simulated real-world clinic cohort")
    clinic = simulate_cohort(simulator, "clinic", clinic_n, 2026)[[ID_COLUMN, *INPUT_NAMES]]
    clinic_path, scores_path = outputs / "clinic.csv", outputs / "clinic_scores.csv"
    write_frame(clinic, clinic_path)
    model = load_model(experiment.registered_model_name)
    job = ScoreJob.to(clinic_path, scores_path)
    summary = score_batch(job, model)
    console.print(f"scored {summary.scored:,} of {summary.read:,} patients "
                  f"({summary.rejected} rejected) -> {scores_path}")
    print_caveats(summary, model.risk_model.follow_up_months(), job.options)
    return model


def demo(given: DemoOptions) -> None:
    """Every step of the main job, each under its own rule, and what to run next."""
    started = time.perf_counter()
    quiet_downloads()
    uri = configure_tracking()
    experiment = load_experiment(given.config or DEFAULT_EXPERIMENT)
    simulator = load_simulator(experiment)
    _simulate_and_check(experiment, simulator, given.outputs)
    _train_and_promote(experiment, given.outputs)
    model = _score_clinic(experiment, simulator, given.outputs, given.clinic_n)

    console.rule("6. a registry's own patients: validate the champion, recalibrate it, validate again")
    print_table(loop_table(run_loop(model, simulator, given.outputs / "registry", log=console.print)))

    console.rule("7. one patient's risks over time, under alemtuzumab and under interferon beta-1a")
    console.print(patient_risk_table(model, DEMO_PATIENT))

    console.rule("done")
    console.print(f"finished in {time.perf_counter() - started:.0f} s")
    console.print(f"MLflow store: {uri}")
    console.print(f"open the MLflow UI:   .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000")
    console.print("start the REST server: .venv/bin/autorisk serve --port 3000")
    console.print("score a file:          .venv/bin/autorisk score outputs/clinic.csv --out scores.csv")
    console.print("validate on outcomes:  .venv/bin/autorisk validate outputs/registry/registry-test.csv --out outputs/v")
    console.print("other experiments:     .venv/bin/autorisk train --config experiments/il21-no-effect.yaml")
    console.print("Research tool on synthetic data: not for clinical decisions.")
