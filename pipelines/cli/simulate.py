"""``autorisk simulate`` and ``autorisk cohort-report``: synthetic cohorts, and the simulator against the
published targets."""

from __future__ import annotations

from features.simulator import simulate_cohort, write_frame
from pipelines.cli.common import console, fail, world_config
from pipelines.cli.options import CohortReportOptions, SimulateOptions
from pipelines.cohort_report import run_cohort_report
from models.tracking import configure_tracking


def simulate(given: SimulateOptions) -> None:
    """A cohort of a profile, written to ``--out``, with its onsets per arm printed."""
    simulator = world_config(given.world, given.config)
    try:
        frame = simulate_cohort(simulator, given.profile, given.n, given.seed, il21_assay=given.il21_assay)
        write_frame(frame, given.out)
    except ValueError as error:
        raise fail(str(error), 2) from error
    by_arm = frame.groupby("treatment")[["thyroid_event", "itp_event"]].mean()
    console.print(f"wrote {len(frame):,} patients of {given.profile} to {given.out}")
    for arm, row in by_arm.iterrows():
        console.print(f"  {arm}: thyroid {row.thyroid_event:.1%}, ITP {row.itp_event:.2%}")


def cohort_report(given: CohortReportOptions) -> None:
    """Each profile's report against its published targets, logged; exit 1 naming the profiles that miss one."""
    configure_tracking()
    simulator = world_config(given.world, given.config)
    profiles = given.profile or list(simulator.profiles)
    unknown = [p for p in profiles if p not in simulator.profiles]
    if unknown:
        raise fail(f"profile: unknown {', '.join(unknown)}; choose from {', '.join(simulator.profiles)}", 2)
    failed = []
    for name in profiles:
        report, path, run_id = run_cohort_report(simulator, name, given.n, given.seed, given.out)
        checks = report.checks
        bad = checks[~checks["passed"]]
        console.print(f"{name}: {len(checks) - len(bad)}/{len(checks)} targets within tolerance -> {path} "
                      f"(MLflow run {run_id})")
        for row in bad.itertuples():
            console.print(f"  [red]FAIL[/] {row.arm}: {row.target}: simulated {row.simulated:.4g}, "
                          f"published {row.published:.4g} ({row.tolerance})")
        if len(bad):
            failed.append(name)
    if failed:
        raise fail(f"targets outside tolerance in: {', '.join(failed)}")
