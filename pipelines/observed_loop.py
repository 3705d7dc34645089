"""The loop a group with data of its own runs, shown on a simulated registry: validate the champion on the
registry's observed outcomes, recalibrate it on part of the registry, validate the result on the rest.

The registry is simulated (the ``registry`` profile: its incidences differ from the trials'), so that the
loop's figures can be set beside the truth; the files the commands read have the truth columns dropped, as
a registry would export them. Written to ``<folder>/registry-loop.json``, from which docs/validation.md's
table is generated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.simulator import SimulatorConfig, simulate_cohort, write_frame
from models.registry import LoadedModel, load_model
from pipelines.observed import ObservedFile
from pipelines.recalibrate import RecalibrationJob, run_recalibration
from pipelines.validate import run_validation

LOOP_HORIZONS = (24, 48)
DEVELOPMENT, TEST = (3000, 2027), (10000, 2028)  # patients, seed


def registry_files(simulator: SimulatorConfig, folder: Path) -> tuple[Path, Path, pd.DataFrame]:
    """The registry's development and test files (truth dropped), and the test patients with their truth."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, frames = [], []
    for name, (n, seed) in (("dev", DEVELOPMENT), ("test", TEST)):
        frame = simulate_cohort(simulator, "registry", n, seed)
        path = folder / f"registry-{name}.csv"
        write_frame(frame[[c for c in frame.columns if not c.startswith("true_")]], path)
        paths.append(path)
        frames.append(frame)
    return paths[0], paths[1], frames[1]


def loop_rows(before, after, truth: pd.DataFrame) -> list[dict]:
    """Per outcome, arm and horizon: the true mean risk, the observed (Kaplan–Meier) risk, and the mean predicted
    risk and O/E before and after the recalibration."""
    rows = []
    for m in after.metrics:
        if m["treatment"] == "all" or m["horizon_months"] not in LOOP_HORIZONS:
            continue
        b = before.find(m["outcome"], m["treatment"], m["horizon_months"])
        members = truth["treatment"] == m["treatment"]
        rows.append({"outcome": m["outcome"], "treatment": m["treatment"], "horizon_months": m["horizon_months"],
                     "n": m["n"], "true": float(truth.loc[members, f"true_risk_{m['outcome']}_{m['horizon_months']}m"]
                                                 .mean()),
                     "observed": m["observed_risk"], "before": b["mean_predicted"], "after": m["mean_predicted"],
                     "before_o_e": b["o_e"], "before_o_e_lo": b["o_e_lo"], "before_o_e_hi": b["o_e_hi"],
                     "after_o_e": m["o_e"], "after_o_e_lo": m["o_e_lo"], "after_o_e_hi": m["o_e_hi"],
                     "before_auroc": b["auroc"], "after_auroc": m["auroc"]})
    return rows


def run_loop(champion: LoadedModel, simulator: SimulatorConfig, folder: Path, *, alias: str = "registry",
             log=print) -> dict:
    """Validate ``champion`` on the registry, recalibrate it on the development file, validate the result."""
    dev, test, truth = registry_files(simulator, folder)
    log(f"registry files (truth dropped): {dev} ({DEVELOPMENT[0]:,} patients), {test} ({TEST[0]:,})")
    before, _, run_before = run_validation(ObservedFile(test), folder / "validation-champion", champion,
                                           horizons=LOOP_HORIZONS)
    log(f"validated v{champion.version} on {test.name}: MLflow run {run_before}")
    result = run_recalibration(RecalibrationJob(ObservedFile(dev), alias, folder / f"recalibrate-{alias}",
                                                holdout_fraction=0.0, horizons=LOOP_HORIZONS), champion)
    log(f"recalibrated on {dev.name}: v{result.version} (@{alias})")
    recalibrated = load_model(champion.name, alias=alias)
    after, _, run_after = run_validation(ObservedFile(test), folder / f"validation-{alias}", recalibrated,
                                         horizons=LOOP_HORIZONS)
    log(f"validated v{recalibrated.version} on {test.name}: MLflow run {run_after}")
    summary = {"champion": champion.version, "recalibrated": recalibrated.version, "alias": alias,
               "development": {"file": dev.name, "patients": DEVELOPMENT[0]},
               "test": {"file": test.name, "patients": TEST[0]}, "rows": loop_rows(before, after, truth),
               "warnings_before": before.report["warnings"]}
    (folder / "registry-loop.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n",
                                               encoding="utf-8")
    return summary
