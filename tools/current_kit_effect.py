"""What a current-kit IL-21 value does to a champion's risks, against leaving IL-21 out.

The benchmark cohort's alemtuzumab patients with IL-21 measured, scored three ways by the registered
champion: IL-21 as the legacy kit reads it, as the current kit reads it (the same patients,
``simulate_cohort(..., il21_assay="current_elisa")``), and not given. Prints, per outcome and
horizon, the mean (90th percentile, maximum) absolute change in risk, in points, from leaving IL-21
out to giving each kit's value.

    .venv/bin/python tools/current_kit_effect.py [--model autoimmunity-risk] [--alias champion] [--doc]

``--doc`` writes the table into docs/worlds.md (between its ``current-kit`` markers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.validation import encode
from models.registry import load_model
from models.tracking import configure_tracking
from pipelines.config import DEFAULT_EXPERIMENT, load_experiment
from pipelines.steps import load_simulator

HORIZONS = (24, 48)


def effect_table(model_name: str, alias: str) -> str:
    """The table: per outcome, horizon and kit, the absolute change in risk from IL-21 not given."""
    from features.simulator import simulate_cohort

    experiment = load_experiment(DEFAULT_EXPERIMENT)
    simulator = load_simulator(experiment)
    spec = experiment.benchmark_cohort
    legacy = simulate_cohort(simulator, spec.profile, spec.n, spec.seed, il21_assay="legacy_elisa")
    current = simulate_cohort(simulator, spec.profile, spec.n, spec.seed, il21_assay="current_elisa")
    rows = ((legacy["treatment"] == "alemtuzumab") & legacy["il21_pg_ml"].notna()).to_numpy()
    legacy, current = legacy[rows], current[rows]
    unknown = legacy.assign(il21_pg_ml=np.nan, il21_assay=None)
    model = load_model(model_name, alias)
    risks = {name: model.risk_model.risks(encode(frame), HORIZONS)
             for name, frame in (("legacy", legacy), ("current", current), ("not given", unknown))}
    lines = [f"`{model_name}` v{model.version} ({model.risk_model.family}), {rows.sum():,} alemtuzumab patients "
             f"of the benchmark cohort ({spec.profile}, n {spec.n:,}, seed {spec.seed}): the absolute change "
             "in risk, in points, from IL-21 not given to each kit's reading of the same patients.", "",
             "| endpoint | kit | mean | 90th percentile | maximum |", "|---|---|---|---|---|"]
    for outcome in risks["legacy"]:
        for k, horizon in enumerate(HORIZONS):
            for kit in ("legacy", "current"):
                change = 100 * np.abs(risks[kit][outcome][:, k] - risks["not given"][outcome][:, k])
                lines.append(f"| {outcome} {horizon} m | {kit} | {change.mean():.2f} | "
                             f"{np.percentile(change, 90):.2f} | {change.max():.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="autoimmunity-risk")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--doc", action="store_true", help="Write the table into docs/worlds.md.")
    args = parser.parse_args()
    configure_tracking()
    table = effect_table(args.model, args.alias)
    print(table)
    if args.doc:
        from tools.worlds_doc import DOC, replace_block

        DOC.write_text(replace_block(DOC.read_text(encoding="utf-8"), "current-kit", table), encoding="utf-8")
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
