"""Benchmark: ``autorisk score`` end to end on simulated cohorts, against the in-process limit.

Run: make bench-score   (or .venv/bin/python benchmarks/score.py --sizes 100000 1000000 --repeats 3 1)
The champion's exact SHAP values (``pred_contribs``) cost about a millisecond of CPU per patient,
so the defaults (100,000 patients three times from CSV and Parquet, 1,000,000 once from CSV) take
about half an hour on two idle cores; ``--store`` and ``--work`` let a second run reuse the
trained champion and the simulated files.

- Cohorts: ``simulate_cohort(profile care-ms1)``, the input columns only, written as CSV and
  Parquet in a temporary folder.
- Champion: the default experiment (experiments/baseline-comparison.yaml) with its xgboost
  family only, untuned (its stated hyperparameters), no bootstrap and no external cohorts,
  trained into a temporary MLflow store (``MLFLOW_TRACKING_URI`` points there, never at the
  project's mlflow.db); or the champion of ``--store DIR`` when given.
- End to end: ``autorisk score IN --out OUT`` in a fresh process per run; rows/s from the
  time the command reports for reading, validating, scoring, writing and the drift report
  (start-up and model loading are a fixed cost, given below the table);
  peak memory is the process's ru_maxrss (``os.wait4``).
- In-process limit: in a fresh process, the same champion's xgboost boosters called
  directly on the same rows already in memory as a model matrix: ``predict`` (margin) plus
  ``predict(pred_contribs=True)``, one call per endpoint over all rows, all cores; for a
  cohort over ``--limit-rows`` (100,000) on its first rows only, since it is a rate per row.
  ``autorisk score`` reads each risk off its SHAP values (base + contributions), so it makes
  no ``predict`` call: the table also gives the limit without it (``pred_contribs`` alone).
- Runs are interleaved (limit, CSV, Parquet, repeat) so that background load hits all
  alike; the table shows medians over ``--repeats`` (per size). On a shared machine wall time also
  measures the neighbours, so the ratio is given a second time from CPU seconds (all
  threads): the limit's, against the command's less its fixed start-up cost (the same
  command on a 100-patient file).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTORISK = Path(sys.executable).with_name("autorisk")

LIMIT_CHILD = """
import json, sys, time
import numpy as np, pandas as pd, xgboost as xgb
from features.validation import validate_frame
from models.registry import load_model

def booster(estimator):
    while not hasattr(estimator, "booster_"):
        if not hasattr(estimator, "estimator"):
            sys.exit(f"the champion is not xgboost ({{type(estimator).__name__}}): no in-process limit to compare with")
        estimator = estimator.estimator
    return estimator.booster_

model = load_model()
boosters = [booster(e) for e in model.risk_model.estimators.values()]
matrix = validate_frame(pd.read_parquet("{parquet}").head({rows})).matrix  # the same rows, already in memory
for b in boosters:  # warm-up (thread pool, caches): the limit is the best case
    b.predict(xgb.DMatrix(matrix[:1000], missing=np.nan), pred_contribs=True)
started, cpu = time.perf_counter(), time.process_time()
margin_seconds = 0.0
for b in boosters:
    rows = xgb.DMatrix(matrix, missing=np.nan)
    margin_started = time.perf_counter()
    b.predict(rows, output_margin=True)
    margin_seconds += time.perf_counter() - margin_started
    b.predict(rows, pred_contribs=True)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "rows": len(matrix), "endpoints": len(boosters),
                  "contribs_seconds": seconds - margin_seconds}}))
"""

REPORTED = re.compile(r"read ([\d,]+) records, scored ([\d,]+), rejected ([\d,]+) \(([\d.]+) s,")


PREPARE_CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
from benchmarks.score import derived_config

def train_champion():
    import mlflow
    from mlflow import MlflowClient

    from models.registry import CHAMPION, MODEL_NAME
    from pipelines.train import run_experiment

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    started = time.perf_counter()
    results = run_experiment(derived_config(), log=lambda *_: None)
    version = str(results[-1].model_version)
    MlflowClient().set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    print(f"trained the champion (xgboost, version {{version}}) in {{time.perf_counter() - started:.0f}} s",
          file=sys.stderr)

def write_cohort(folder, profile, n, seed):
    from pathlib import Path
    from features.schema import ID_COLUMN, INPUT_NAMES
    from features.simulator import load_simulator_config, simulate_cohort

    frame = simulate_cohort(load_simulator_config(), profile, n, seed)[[ID_COLUMN, *INPUT_NAMES]]
    frame.to_csv(Path(folder) / f"{{profile}}-{{n}}.csv", index=False)
    frame.to_parquet(Path(folder) / f"{{profile}}-{{n}}.parquet", index=False)

{call}
"""


def derived_config():
    """The default experiment, xgboost only and untuned, without bootstrap or external cohorts."""
    from pipelines.config import DEFAULT_EXPERIMENT, load_experiment

    config = load_experiment(DEFAULT_EXPERIMENT)
    xgboost = config.families["xgboost"]
    if hasattr(xgboost, "tuning"):
        xgboost = xgboost.model_copy(update={"tuning": None})
    updates = {"name": "bench-score", "families": {"xgboost": xgboost}}
    fields = type(config).model_fields
    if "bootstrap" in fields:
        updates["bootstrap"] = 0
    if "external_cohorts" in fields:
        updates["external_cohorts"] = []
    return config.model_copy(update=updates)


def _prepare(call: str) -> None:
    """Heavy preparation in a child process, so that this process stays small: a child's
    ru_maxrss starts from its parent's resident memory at fork."""
    subprocess.run([sys.executable, "-c", PREPARE_CHILD.format(root=str(ROOT), call=call)], cwd=ROOT, check=True)


def cohort_files(folder: Path, profile: str, n: int, seed: int) -> dict[str, Path]:
    """Simulate ``n`` patients (once); their input columns as CSV and Parquet."""
    paths = {fmt: folder / f"{profile}-{n}.{fmt}" for fmt in ("csv", "parquet")}
    if not all(p.is_file() for p in paths.values()):
        _prepare(f"write_cohort({str(folder)!r}, {profile!r}, {n}, {seed})")
    return paths


def in_process_limit(parquet: Path, rows: int) -> dict:
    """The champion's boosters on the first ``rows`` rows, already in memory, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", LIMIT_CHILD.format(parquet=parquet, rows=rows)], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _popen_wait4(args: list[str], folder: Path, **kwargs) -> tuple[subprocess.CompletedProcess, object]:
    """Run ``args``; return its result and its own resource usage (``os.wait4``)."""
    with open(folder / "stdout.txt", "w+") as stdout, open(folder / "stderr.txt", "w+") as stderr:
        process = subprocess.Popen(args, stdout=stdout, stderr=stderr, text=True, **kwargs)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(args, process.returncode, stdout.read(), stderr.read()), usage


def run_end_to_end(source: Path, folder: Path) -> dict:
    """One ``autorisk score`` run in a fresh process: reported seconds, process seconds, peak MiB."""
    out = folder / f"scores{source.suffix}"
    started = time.perf_counter()
    result, usage = _popen_wait4([str(AUTORISK), "score", str(source), "--out", str(out)], folder, cwd=ROOT,
                                 env=os.environ | {"COLUMNS": "400"})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"autorisk score failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    found = REPORTED.search(result.stdout)
    if found is None:
        raise SystemExit(f"unexpected output of autorisk score:\n{result.stdout}")
    read, scored = (int(found.group(i).replace(",", "")) for i in (1, 2))
    for path in folder.glob("scores*"):
        path.unlink()
    return {"seconds": float(found.group(4)), "process_seconds": wall, "read": read, "scored": scored,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--profile", default="care-ms1")
    parser.add_argument("--repeats", type=int, nargs="+",
                        help="Runs per size: one number for all sizes, or one per size "
                             "(default: 3 for the first size, 1 for the others).")
    parser.add_argument("--formats", nargs="+",
                        help="Inputs per size, comma-separated: one entry for all sizes, or one per size "
                             "(default: csv,parquet for the first size, csv for the others).")
    parser.add_argument("--limit-rows", type=int, default=100_000,
                        help="The in-process limit is measured on the first rows of each cohort, at most this many "
                             "(a rate per row; a million rows would only add minutes).")
    parser.add_argument("--store", type=Path, help="Folder with an MLflow store (mlflow.db) and a champion to use.")
    parser.add_argument("--work", type=Path, help="Folder for the cohorts and scores (default: a temporary one).")
    args = parser.parse_args()
    args.repeats = args.repeats or [3] + [1] * (len(args.sizes) - 1)
    args.formats = args.formats or ["csv,parquet"] + ["csv"] * (len(args.sizes) - 1)
    if len(args.repeats) not in (1, len(args.sizes)):
        parser.error("--repeats takes one number or one per size")
    repeats = dict(zip(args.sizes, args.repeats * len(args.sizes) if len(args.repeats) == 1 else args.repeats))
    if len(args.formats) not in (1, len(args.sizes)):
        parser.error("--formats takes one entry or one per size")
    entries = args.formats * len(args.sizes) if len(args.formats) == 1 else args.formats
    formats = {n: tuple(entry.split(",")) for n, entry in zip(args.sizes, entries)}
    if any(fmt not in ("csv", "parquet") for entry in formats.values() for fmt in entry):
        parser.error("--formats: csv or parquet")

    with tempfile.TemporaryDirectory(prefix="autorisk-bench-score-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        store = args.store or work / "store"
        store.mkdir(parents=True, exist_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store.resolve() / 'mlflow.db'}"
        if not args.store:
            _prepare("train_champion()")
        rows = []
        tiny = cohort_files(work, args.profile, 100, seed=2)
        for n in args.sizes:
            paths = cohort_files(work, args.profile, n, seed=1)
            runs: dict[str, list[dict]] = {"limit": [], "csv": [], "parquet": [], "fixed": []}
            for repeat in range(repeats[n]):
                runs["limit"].append(in_process_limit(paths["parquet"], min(n, args.limit_rows)))
                runs["fixed"].append(run_end_to_end(tiny["csv"], work))
                for fmt in formats[n]:
                    runs[fmt].append(run_end_to_end(paths[fmt], work))
                    assert runs[fmt][-1]["read"] == n, runs[fmt][-1]
                print(f"{n:,} patients, repeat {repeat + 1}: " + json.dumps(
                    {k: v[-1] for k, v in runs.items() if v}), file=sys.stderr, flush=True)
            limit = statistics.median(r["rows"] / r["seconds"] for r in runs["limit"])
            contribs_only = statistics.median(r["rows"] / r["contribs_seconds"] for r in runs["limit"])
            limit_cpu_per_row = statistics.median(r["cpu_seconds"] / r["rows"] for r in runs["limit"])
            fixed_cpu = statistics.median(r["cpu_seconds"] for r in runs["fixed"])
            for fmt in formats[n]:
                rate = n / statistics.median(r["seconds"] for r in runs[fmt])
                cpu = statistics.median(r["cpu_seconds"] for r in runs[fmt]) - fixed_cpu
                rows.append({"n": n, "fmt": fmt, "rate": rate, "limit": limit, "cpu_ratio": limit_cpu_per_row * n / cpu,
                             "limit_rows": runs["limit"][0]["rows"], "contribs_only": contribs_only,
                             "peak": statistics.median(r["peak_mib"] for r in runs[fmt]),
                             "fixed": statistics.median(r["process_seconds"] for r in runs["fixed"]),
                             "endpoints": runs["limit"][0]["endpoints"], "repeats": repeats[n]})

    print("| patients | input | end to end (rows/s) | in-process limit (rows/s) | ratio | ratio by CPU time "
          "| limit without predict (rows/s) | ratio to it | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['fmt'].upper() if r['fmt'] == 'csv' else 'Parquet'} | {r['rate']:,.0f} | "
              f"{r['limit']:,.0f} | {r['rate'] / r['limit']:.2f} | {r['cpu_ratio']:.2f} | {r['contribs_only']:,.0f} | "
              f"{r['rate'] / r['contribs_only']:.2f} | {r['peak']:,.0f} |")
    sizes = sorted({r["n"] for r in rows})
    if len(sizes) > 1:
        for fmt in ("csv", "parquet"):
            peaks = {r["n"]: r["peak"] for r in rows if r["fmt"] == fmt}
            if len(peaks) < 2:
                continue
            print(f"\npeak memory {fmt}: {sizes[-1]:,} / {sizes[0]:,} patients = {peaks[sizes[-1]] / peaks[sizes[0]]:.2f}x")
    runs_per_size = ", ".join(f"{n:,}: {k}" for n, k in repeats.items())
    print(f"\n{rows[0]['endpoints']} endpoints; medians over the runs per size ({runs_per_size}); {os.cpu_count()} cores; "
          f"fixed start-up of the command (imports, model loading): {rows[0]['fixed']:.1f} s; in-process limit measured "
          f"on the first {min(r['limit_rows'] for r in rows):,} rows of each cohort")


if __name__ == "__main__":
    main()
