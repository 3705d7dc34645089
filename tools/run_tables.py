"""The docs' blocks that come from MLflow runs other than the champion's: the worlds, the current kit, the
sample size and the biomarker's added value. Each returns the block's text, or None where the store holds no
such run (the block is then left as it is).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIOMARKER_EXPERIMENTS = ("il21-value", "il21-no-effect")
BIOMARKER_REPORT = "biomarker/biomarker-value.md"
SAMPLE_SIZE_REPORT = "sample-size.md"


def store_client():
    """The project store's client, or None where there is no store on this machine."""
    if not (ROOT / "mlflow.db").is_file() and "MLFLOW_TRACKING_URI" not in os.environ:
        return None
    from mlflow import MlflowClient

    from models.tracking import configure_tracking

    configure_tracking()
    return MlflowClient()


def _newest_runs(client, experiment: str, *, filter_string: str = "attributes.status = 'FINISHED'") -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], filter_string=filter_string,
                              order_by=["attributes.start_time DESC"], max_results=200)


def _artifact(client, run_id: str, path: str) -> str | None:
    """The text of a run's artifact, or None where the run has none at that path."""
    import mlflow

    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    if path not in {a.path for a in client.list_artifacts(run_id, folder or None)}:
        return None
    return Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{path}")).read_text(encoding="utf-8")


def _section(markdown: str, heading: str) -> str:
    """The body of one ``## heading`` section of a report, without its pictures."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    body = match.group(1) if match else ""
    return "\n".join(line for line in body.splitlines() if not line.startswith("![")).strip()


def _when(run) -> str:
    """Which run, and when it was logged (a run is logged once its work is done, so no duration)."""
    from datetime import UTC, datetime

    started = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"MLflow run `{run.info.run_id}`, logged {started}"


def sample_size_answer() -> str | None:
    """docs/sample-size.md: the newest ``autorisk sample-size`` run's answer and Riley's table."""
    client = store_client()
    runs = [r for r in _newest_runs(client, "sample-size") if r.info.run_name.startswith("sample-size/")] \
        if client else []
    for run in runs:
        report = _artifact(client, run.info.run_id, SAMPLE_SIZE_REPORT)
        if report is None:
            continue
        answer = report.split("\n## ", 1)[0].split("\n", 2)[-1].strip()
        table = "\n".join(line for line in _section(report, "Riley's criteria").splitlines() if line.startswith("|"))
        computed = re.search(r"Computed in (\d+) s", report)
        took = f", computed in {int(computed.group(1)) / 60:.0f} min" if computed else ""
        return (f"From `autorisk sample-size` ({_when(run)}{took}, experiment `sample-size`; the run's "
                f"`{SAMPLE_SIZE_REPORT}` has the learning curves).\n\n{answer}\n\n{table}\n")
    return None


def _held_out_thyroid_24m(table: str) -> str | None:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 4 and cells[0].startswith("held-out") and cells[1] == "thyroid_24m":
            return cells[4]
    return None


def biomarker_results() -> str | None:
    """docs/biomarker-value.md: IL-21's added value per family in both worlds, from each experiment's newest
    training of each family (the family's ``biomarker-value.md``)."""
    client = store_client()
    if client is None:
        return None
    parts, targets = [], []
    for experiment in BIOMARKER_EXPERIMENTS:
        newest: dict[str, object] = {}
        for run in _newest_runs(client, experiment):
            family = run.data.tags.get("autorisk.family")
            if family and family not in newest and "mean_log_loss_over_null" in run.data.metrics:
                newest[family] = run
        ranked = sorted(newest.items(), key=lambda kv: kv[1].data.metrics["mean_log_loss_over_null"])
        for rank, (family, run) in enumerate(ranked):
            report = _artifact(client, run.info.run_id, BIOMARKER_REPORT)
            if report is None:
                continue
            table = _section(report, "il21_pg_ml")
            best = " (the lowest held-out log loss over the incidence's)" if rank == 0 else ""
            parts.append(f"### {experiment} / {family}{best}\n\n{_when(run)}; IL-21 (`il21_pg_ml`):\n\n{table}\n")
            if rank == 0:
                targets.append(f"`{experiment}` ({family}): **{_held_out_thyroid_24m(table) or '—'}**")
    if not parts:
        return None
    return ("IL-21's ΔAUROC for a thyroid disorder by 24 months on the held-out split, the family with the "
            "lowest held-out log loss of each experiment: " + "; ".join(targets) + ".\n\n" + "\n".join(parts))


def worlds_blocks() -> dict[str, object]:
    """The generators of docs/worlds.md's and docs/simulator.md's blocks (:mod:`tools.worlds_doc`)."""
    from tools import worlds_doc

    def with_client(make):
        def generate():
            client = store_client()
            if client is None:
                return None
            try:
                return make(client)
            except LookupError:  # no such run in this store: the block stays as it is
                return None
        return generate

    def sweep_block(render):
        return with_client(lambda client: render(client, worlds_doc.latest_sweep(client, quick=False)))

    def reports_block(render):
        return with_client(lambda client: render(client) if worlds_doc.newest_reports(client) else None)

    return {"world-list": worlds_doc.world_list,
            "cohort-reports": reports_block(worlds_doc.cohort_reports),
            "validation": reports_block(worlds_doc.validation_table),
            "worlds-table": sweep_block(worlds_doc.sweep),
            "worlds-families": sweep_block(worlds_doc.families_table)}


def current_kit() -> str | None:
    """docs/worlds.md: what a current-kit IL-21 value does to the champion's risks (:mod:`tools.current_kit_effect`)."""
    client = store_client()
    if client is None:
        return None
    from mlflow.exceptions import MlflowException

    from tools.current_kit_effect import effect_table

    try:
        client.get_model_version_by_alias("autoimmunity-risk", "champion")
    except MlflowException:
        return None
    return effect_table("autoimmunity-risk", "champion")
