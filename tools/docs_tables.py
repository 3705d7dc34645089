"""Rewrite the marked tables of the docs from what they came from: ``<!-- name:start -->`` ... ``<!-- name:end -->``.

Each block is owned by one generator below, which reads the run, model or benchmark output behind it, so that
no figure in the docs is typed by hand. ``make docs-tables`` runs them all; a generator whose source is absent
(a run not made on this machine) leaves its block as it is and says so.

    .venv/bin/python tools/docs_tables.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def features_table() -> str:
    from features.schema import markdown_table

    return markdown_table()


def validation_loop_table(source: Path = ROOT / "outputs" / "registry" / "registry-loop.json") -> str | None:
    """docs/validation.md: the registry loop of ``make demo`` (true, observed and predicted risks, O/E)."""
    if not source.is_file():
        return None
    loop = json.loads(source.read_text(encoding="utf-8"))

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    def ratio(r, when):
        if r[f"{when}_o_e"] is None:
            return "—"
        lo, hi = r[f"{when}_o_e_lo"], r[f"{when}_o_e_hi"]
        return f"{r[f'{when}_o_e']:.2f}" + ("" if lo is None else f" ({lo:.2f}–{hi:.2f})")

    lines = [f"Test file: {loop['test']['patients']:,} registry patients; recalibrated (`baseline`) on "
             f"{loop['development']['patients']:,} others. Champion v{loop['champion']}, recalibrated "
             f"v{loop['recalibrated']} (@{loop['alias']}).", "",
             "| outcome | treatment | month | true risk | observed (Kaplan–Meier) | predicted, champion | "
             "predicted, recalibrated | O/E before (95% CI) | O/E after (95% CI) | AUROC before / after |",
             "|" + "---|" * 10]
    for r in loop["rows"]:
        auroc = "—" if r["before_auroc"] is None else f"{r['before_auroc']:.3f} / {r['after_auroc']:.3f}"
        lines.append(f"| {r['outcome']} | {r['treatment']} | {r['horizon_months']} | {pct(r['true'])} | "
                     f"{pct(r['observed'])} | {pct(r['before'])} | {pct(r['after'])} | {ratio(r, 'before')} | "
                     f"{ratio(r, 'after')} | {auroc} |")
    return "\n".join(lines)


def _champion_metrics() -> tuple[str, str, dict[str, float]] | None:
    """The project store's champion: its version, family and run metrics (None without a store or champion)."""
    import os

    if not (ROOT / "mlflow.db").is_file() and "MLFLOW_TRACKING_URI" not in os.environ:
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.tracking import configure_tracking

    configure_tracking()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias("autoimmunity-risk", "champion")
    except MlflowException:
        return None
    run = client.get_run(version.run_id)
    return version.version, run.data.tags.get("autorisk.family", "?"), run.data.metrics


def champion_table() -> str | None:
    """README: the demo champion against the truth on the benchmark cohort, per arm, outcome and horizon."""
    found = _champion_metrics()
    if found is None:
        return None
    version, family, m = found
    from features.schema import TREATMENTS
    from models.names import BENCHMARK_COHORT, interval_metric, truth_metric

    def get(key, fmt):
        return fmt(m[key]) if key in m else "—"

    lines = [f"Champion v{version} (`{family}`), benchmark cohort; mean predicted / mean true risk, expected AUROC "
             "over the true risk's own, expected calibration slope, and the share of patients whose true risk the "
             "95% interval held, with its mean width.", "",
             "| arm | endpoint | mean predicted / true | AUROC / oracle's | calibration slope | true risk inside the "
             "interval | mean width |", "|---|---|---|---|---|---|---|"]
    for arm in TREATMENTS:
        for e in ("thyroid_24m", "thyroid_48m", "itp_24m", "itp_48m"):
            mean = (f"{100 * m[truth_metric(BENCHMARK_COHORT, arm, e, 'mean_risk')]:.2f}% / "
                    f"{100 * m[truth_metric(BENCHMARK_COHORT, arm, e, 'mean_true_risk')]:.2f}%"
                    if truth_metric(BENCHMARK_COHORT, arm, e, "mean_risk") in m else "—")
            lines.append(f"| {arm} | {e} | {mean} | {get(truth_metric(BENCHMARK_COHORT, arm, e, 'auroc_over_oracle'), '{:.3f}'.format)} | "
                         f"{get(truth_metric(BENCHMARK_COHORT, arm, e, 'calibration_slope'), '{:.3f}'.format)} | "
                         f"{get(interval_metric(BENCHMARK_COHORT, arm, e, 'coverage'), lambda v: f'{100 * v:.0f}%')} | "
                         f"{get(interval_metric(BENCHMARK_COHORT, arm, e, 'mean_width'), lambda v: f'{100 * v:.2f} pts')} |")
    return "\n".join(lines)


def _experiment_versions() -> list[tuple[str, str, dict[str, float]]] | None:
    """Every family the champion's experiment trained, latest training version first per family:
    ``(family, version, run metrics)``, the champion's family first (None without a store or champion)."""
    found = _champion_metrics()
    if found is None:
        return None
    import mlflow

    from models.names import (
        ORIGIN_TRAINING,
        VERSION_EXPERIMENT_TAG,
        VERSION_FAMILY_TAG,
        VERSION_ORIGIN_TAG,
    )

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("autoimmunity-risk", "champion")
    experiment = champion.tags.get(VERSION_EXPERIMENT_TAG)
    latest: dict[str, object] = {}
    for version in client.search_model_versions("name='autoimmunity-risk'"):
        tags = version.tags
        trained = tags.get(VERSION_ORIGIN_TAG, ORIGIN_TRAINING) == ORIGIN_TRAINING
        if tags.get(VERSION_EXPERIMENT_TAG) != experiment or not trained:
            continue
        family = tags.get(VERSION_FAMILY_TAG, "?")
        if family not in latest or int(version.version) > int(latest[family].version):
            latest[family] = version
    ordered = sorted(latest.values(), key=lambda v: (v.version != champion.version, v.tags.get(VERSION_FAMILY_TAG)))
    return [(v.tags.get(VERSION_FAMILY_TAG, "?"), v.version, client.get_run(v.run_id).data.metrics) for v in ordered]


def _percent(digits: int) -> Callable[[float], str]:
    return lambda v: f"{100 * v:.{digits}f}%"


def families_table() -> str | None:
    """docs/models.md: every family of the champion's experiment against the truth, per arm, outcome and horizon."""
    versions = _experiment_versions()
    if versions is None:
        return None
    from features.schema import TREATMENTS
    from models.names import (
        BENCHMARK_COHORT,
        PROMOTION_METRIC,
        interval_metric,
        truth_metric,
    )

    lines = ["Benchmark cohort (CARE-MS I, 20,000 patients no model saw), each family's latest version of the "
             "champion's experiment, the champion first. Mean predicted / true risk, expected AUROC over the "
             "oracle's, expected calibration slope against the true risk, the share of patients whose true risk "
             "the 95% interval holds and its mean width.", "",
             "| family (version) | held-out log loss over the incidence's | arm | endpoint | mean predicted / true "
             "| AUROC / oracle's | slope | true risk inside | mean width |", "|---|---|---|---|---|---|---|---|---|"]
    for family, version, m in versions:
        loss = f"{m[PROMOTION_METRIC]:.4f}" if PROMOTION_METRIC in m else "—"
        for arm in TREATMENTS:
            for e in ("thyroid_24m", "thyroid_48m", "itp_24m", "itp_48m"):
                def get(key, fmt, m=m):
                    return fmt(m[key]) if key in m and m[key] == m[key] else "—"
                mean = (f"{get(truth_metric(BENCHMARK_COHORT, arm, e, 'mean_risk'), _percent(2))} / "
                        f"{get(truth_metric(BENCHMARK_COHORT, arm, e, 'mean_true_risk'), _percent(2))}")
                lines.append(f"| {family} (v{version}) | {loss} | {arm} | {e} | {mean} | "
                             f"{get(truth_metric(BENCHMARK_COHORT, arm, e, 'auroc_over_oracle'), '{:.3f}'.format)} | "
                             f"{get(truth_metric(BENCHMARK_COHORT, arm, e, 'calibration_slope'), '{:.3f}'.format)} | "
                             f"{get(interval_metric(BENCHMARK_COHORT, arm, e, 'coverage'), _percent(1))} | "
                             f"{get(interval_metric(BENCHMARK_COHORT, arm, e, 'mean_width'), lambda v: f'{100 * v:.2f} pts')} |")
    return "\n".join(lines)


def coverage_table() -> str | None:
    """docs/intervals.md: per family, arm and endpoint, how often the interval held the true risk, and how wide
    it was, for every patient and for those who gave every input."""
    versions = _experiment_versions()
    if versions is None:
        return None
    from features.schema import TREATMENTS
    from models.names import BENCHMARK_COHORT, interval_metric

    lines = ["Benchmark cohort (CARE-MS I, 20,000 patients no model saw), each family's latest version of the "
             "champion's experiment, the champion first.", "",
             "| family (version) | arm | endpoint | true risk inside | mean width | inside, every input given "
             "| mean width, every input given | patients with every input |", "|---|---|---|---|---|---|---|---|"]
    for family, version, m in versions:
        for arm in TREATMENTS:
            for e in ("thyroid_12m", "thyroid_24m", "thyroid_48m", "itp_12m", "itp_24m", "itp_48m"):
                def get(metric, fmt, m=m, arm=arm, e=e):
                    value = m.get(interval_metric(BENCHMARK_COHORT, arm, e, metric))
                    return "—" if value is None or value != value else fmt(value)
                width = lambda v: f"{100 * v:.2f} pts"  # noqa: E731
                lines.append(f"| {family} (v{version}) | {arm} | {e} | {get('coverage', _percent(1))} | "
                             f"{get('mean_width', width)} | {get('coverage_complete', _percent(1))} | "
                             f"{get('mean_width_complete', width)} | {get('complete_share', _percent(0))} |")
    return "\n".join(lines)


def fhir_codes_table() -> str:
    from serving.fhir import input_codes_table

    return input_codes_table()


def _generators() -> dict[str, tuple[Path, Callable[[], str | None]]]:
    """Every marked block of the docs: block name -> (file, generator); a generator returns the block's text,
    or None when its source is absent (a run or benchmark not made on this machine)."""
    from tools import bench_tables, run_tables

    docs = ROOT / "docs"
    worlds = run_tables.worlds_blocks()
    return {
        "features": (ROOT / "README.md", features_table),
        "champion": (ROOT / "README.md", champion_table),
        "validation-loop": (docs / "validation.md", validation_loop_table),
        "families": (docs / "models.md", families_table),
        "coverage": (docs / "intervals.md", coverage_table),
        "fhir-codes": (docs / "fhir.md", fhir_codes_table),
        "answer": (docs / "sample-size.md", run_tables.sample_size_answer),
        "results": (docs / "biomarker-value.md", run_tables.biomarker_results),
        "world-list": (docs / "worlds.md", worlds["world-list"]),
        "cohort-reports": (docs / "worlds.md", worlds["cohort-reports"]),
        "worlds-table": (docs / "worlds.md", worlds["worlds-table"]),
        "worlds-families": (docs / "worlds.md", worlds["worlds-families"]),
        "current-kit": (docs / "worlds.md", run_tables.current_kit),
        "validation": (docs / "simulator.md", worlds["validation"]),
        "before-after": (docs / "benchmarks.md", bench_tables.speed_table),
        "score": (docs / "benchmarks.md", lambda: bench_tables.block("score")),
        "shap": (docs / "benchmarks.md", lambda: bench_tables.block("shap")),
        "serve": (docs / "benchmarks.md", lambda: bench_tables.block("serve")),
        "clinical": (docs / "benchmarks.md", bench_tables.clinical_block),
        "load": (docs / "benchmarks.md", lambda: bench_tables.block("load")),
        "simulate": (docs / "benchmarks.md", lambda: bench_tables.block("simulate")),
    }


GENERATORS = _generators()
_BLOCK = r"(<!-- {name}:start[^>]*-->\n)(.*?)(<!-- {name}:end -->)"


def rewrite(name: str, check: bool = False) -> str:
    """Rewrite one block; return what happened, in a word."""
    path, generate = GENERATORS[name]
    text = generate()
    if text is None:
        return "source absent, left as it is"
    document = path.read_text(encoding="utf-8")
    pattern = re.compile(_BLOCK.format(name=re.escape(name)), re.S)
    if not pattern.search(document):
        raise SystemExit(f"{path}: no block <!-- {name}:start --> ... <!-- {name}:end -->")
    updated = pattern.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(3), document)
    if updated == document:
        return "up to date"
    if check:
        return "stale"
    path.write_text(updated, encoding="utf-8")
    return "rewritten"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only say which blocks are stale.")
    parser.add_argument("blocks", nargs="*", metavar="BLOCK",
                        help=f"Only these blocks (default: all): {', '.join(GENERATORS)}.")
    args = parser.parse_args()
    unknown = [name for name in args.blocks if name not in GENERATORS]
    if unknown:
        parser.error(f"no generator for block(s) {', '.join(unknown)}; known: {', '.join(GENERATORS)}")
    stale = False
    for name in args.blocks or GENERATORS:
        outcome = rewrite(name, check=args.check)
        stale |= outcome == "stale"
        print(f"{GENERATORS[name][0].relative_to(ROOT)} [{name}]: {outcome}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
