"""Regenerate the tables of docs/worlds.md from the shipped world files and the project's MLflow store.

- the worlds: each world's form, interferon's hazard after month 24, patient timing and effects,
  read from ``experiments/worlds/*.yaml`` applied to ``cohorts.yaml``;
- the cohort reports: per world and profile, the newest ``autorisk cohort-report --world W`` run's
  checks passed (MLflow experiment ``cohorts``);
- docs/simulator.md: the default world's §2-§4 checks, from the same reports' checks.csv artifacts;
- the judgement: the tables of the newest finished ``autorisk worlds`` sweep (or ``--run ID``), read
  from its child runs (:func:`pipelines.worlds.worlds_table`).

    .venv/bin/python tools/worlds_doc.py [--run PARENT_RUN_ID] [--quick]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mlflow import MlflowClient  # noqa: E402 - run as a script from the root

from models.tracking import configure_tracking  # noqa: E402
from pipelines.config import load_world, world_names  # noqa: E402
from pipelines.worlds import families_table, latest_sweep, worlds_table  # noqa: E402

DOC = ROOT / "docs" / "worlds.md"
SIMULATOR_DOC = ROOT / "docs" / "simulator.md"


def _interferon(cdf: tuple[float, ...], months: tuple[float, ...]) -> str:
    if len(cdf) == 2:
        return "constant"
    before = cdf[1] / months[1]
    after = (cdf[-1] - cdf[1]) / (months[-1] - months[1])
    ratio = after / before
    return f"{'rising' if ratio > 1 else 'declining'} ({ratio:.2g}× after month {months[1]:g})"


def world_list() -> str:
    lines = ["| world | form | interferon's hazard | onset timing | family history | smoking | thyroid antibodies "
             "(thyroid) | IL-21, high vs low | source |", "|---|---|---|---|---|---|---|---|---|"]
    for name in world_names():
        world = load_world(name)
        effects = world.risk["thyroid"]
        scale = "HR" if world.event_model.form == "proportional-hazards" else "OR"
        timing = world.event_model.patient_timing
        timing_text = ("the arm's own" if timing is None else
                       "earlier with " + " and ".join("IL-21" if k == "il21" else k.replace("_", " ")
                                                      for k in timing.weights)
                       + f" (strength {timing.strength:g})")
        onset = world.onset["interferon_beta_1a"]
        lines.append(
            f"| `{name}` | {world.event_model.form} | {_interferon(tuple(onset.cdf), tuple(onset.months))} | "
            f"{timing_text} | {scale} {effects.family_history_autoimmunity.odds_ratio:g} | "
            f"{scale} {effects.smoker.odds_ratio:g} | {scale} {effects.thyroid_antibodies.odds_ratio:g} | "
            f"{scale} {effects.il21.max_odds_ratio:g} | {world.world_source} |")
    return "\n".join(lines) + "\n"


def newest_reports(client: MlflowClient) -> dict[tuple[str, str], object]:
    """The newest cohort-report run per (world, profile)."""
    experiment = client.get_experiment_by_name("cohorts")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=5000) if experiment else []
    newest: dict[tuple[str, str], object] = {}
    for run in runs:
        newest.setdefault((run.data.params.get("sim.world", "default"), run.data.params.get("profile", "?")), run)
    return newest


def validation_table(client: MlflowClient) -> str:
    """docs/simulator.md: the §2-§4 checks of the default world's newest report of each profile."""
    import mlflow
    import pandas as pd

    lines = ["| profile | arm | target | published | simulated | tolerance | |", "|---|---|---|---|---|---|---|"]
    newest = newest_reports(client)
    for profile in load_world("default").profiles:
        run = newest.get(("default", profile))
        if run is None:
            continue
        path = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/report/{profile}_checks.csv")
        checks = pd.read_csv(path)
        for r in checks[checks["section"].str.startswith(("§2", "§3", "§4"))].itertuples():
            verdict = "departs" if "departs:" in r.tolerance else ("pass" if r.passed else "**FAIL**")
            lines.append(f"| {profile} | {r.arm} | {r.target} | {r.published:.4g} | {r.simulated:.4g} | "
                         f"{r.tolerance} | {verdict} |")
    return "\n".join(lines) + "\n"


def cohort_reports(client: MlflowClient) -> str:
    newest = newest_reports(client)
    profiles = sorted({p for _, p in newest})
    lines = ["| world | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
    for name in world_names():
        cells = []
        for profile in profiles:
            run = newest.get((name, profile))
            if run is None:
                cells.append("not run")
                continue
            total, failed = run.data.metrics["checks"], run.data.metrics["checks_failed"]
            cells.append(f"{total - failed:.0f} / {total:.0f}" + ("" if failed == 0 else " **FAILED**"))
        n = next((r.data.params.get("n") for (w, _), r in newest.items() if w == name), None)
        lines.append(f"| `{name}`" + (f" (n {int(n):,})" if n else "") + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep(client: MlflowClient, run_id: str) -> str:
    run = client.get_run(run_id)
    started = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    seconds = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else math.nan
    quick = run.data.params.get("quick") == "True"
    header = (f"From MLflow run `{run_id}` (experiment `worlds`), `autorisk worlds{' --quick' if quick else ''}`, "
              f"started {started}, {seconds / 60:.0f} minutes in all: the CARE-MS I benchmark cohort of each world "
              "(no model saw it), the champion of that world's training.\n\n")
    return header + worlds_table(client, run_id)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start[^>]*-->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- {name}:start --> ... <!-- {name}:end --> block to fill")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="The sweep's parent run id (default: the newest finished sweep).")
    parser.add_argument("--quick", action="store_true", help="The newest --quick sweep instead of a full one.")
    args = parser.parse_args()
    configure_tracking()
    client = MlflowClient()
    text = DOC.read_text(encoding="utf-8")
    text = replace_block(text, "world-list", world_list())
    text = replace_block(text, "cohort-reports", cohort_reports(client))
    try:
        run_id = args.run or latest_sweep(client, quick=args.quick)
    except LookupError as error:
        raise SystemExit(f"error: {error}") from None
    text = replace_block(text, "worlds-table", sweep(client, run_id))
    text = replace_block(text, "worlds-families", families_table(client, run_id))
    DOC.write_text(text, encoding="utf-8")
    SIMULATOR_DOC.write_text(replace_block(SIMULATOR_DOC.read_text(encoding="utf-8"), "validation",
                                           validation_table(client)), encoding="utf-8")
    print(f"wrote {DOC} and {SIMULATOR_DOC}")


if __name__ == "__main__":
    main()
