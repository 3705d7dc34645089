"""``autorisk promote`` and ``autorisk report``: the @champion alias, and a registered version's model card."""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from rich.table import Table

from models.registry import Promotion, resolve_version
from models.registry import promote as promote_version
from pipelines.cli.common import console, print_table, registered_version, store_faults
from pipelines.cli.options import PromoteOptions, ReportOptions
from models.tracking import configure_tracking


def decision_table(decision: Promotion) -> Table:
    """Each candidate's held-out calibration slope and O/E per outcome, and its log loss against the null's."""
    table = Table("version", "family", "held-out calibration slope [95% interval]", "held-out O/E [95% interval]",
                  "log loss / null", "")
    for candidate in decision.candidates:
        mark = "chosen" if candidate.version == decision.chosen.version else (
            "" if candidate.calibrated else "calibration off")
        found = (candidate.calibration or {}).items()
        slopes = "\n".join(f"{e} {c['slope']:.2f} [{c['slope_lo']:.2f}, {c['slope_hi']:.2f}]" for e, c in found)
        ratios = "\n".join(f"{e} {c['oe']:.2f} [{c['oe_lo']:.2f}, {c['oe_hi']:.2f}]" for e, c in found)
        table.add_row(candidate.version, candidate.family, slopes, ratios, f"{candidate.metric:.5f}", mark)
    return table


def promote(given: PromoteOptions) -> None:
    """The decision by the stated rule, shown, and made unless ``--dry-run``."""
    uri = configure_tracking()
    with store_faults(uri):
        decision = promote_version(MlflowClient(), given.model_name, experiment=given.experiment,
                                   dry_run=given.dry_run)
    chosen = decision.chosen
    console.print(f"candidates: the versions of experiment {chosen.experiment!r}, config {chosen.config_digest}")
    print_table(decision_table(decision))
    console.print(f"rule: {decision.rule}")
    verb = "would set" if given.dry_run else "set"
    console.print(f"{verb} {given.model_name}@champion -> version {chosen.version} "
                  f"({chosen.family}); previous champion: {decision.previous or 'none'}"
                  + (" -> @challenger" if decision.previous and decision.previous != chosen.version else ""))
    if not given.dry_run:
        console.print("the decision is logged as a run of the MLflow experiment 'promotions'")


def report(given: ReportOptions) -> None:
    """The model card of the version, as logged with its run, written into ``--out``."""
    version = registered_version(given.version, "VERSION")
    uri = configure_tracking()
    with store_faults(uri):
        found = resolve_version(given.model_name, version=version)
    given.out.mkdir(parents=True, exist_ok=True)
    for suffix in ("md", "html"):
        text = mlflow.artifacts.load_text(f"runs:/{found.run_id}/model_card/model_card.{suffix}")
        path = given.out / f"model-card-{given.model_name}-v{found.version}.{suffix}"
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
