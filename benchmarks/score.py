"""Benchmark: ``autorisk score`` end to end on simulated cohorts, against the in-process limit.

Run: make bench-score   (or .venv/bin/python benchmarks/score.py --sizes 100000 1000000 --repeats 3 1)
About ten minutes on two cores (training the champion included); ``--store`` and ``--work`` let a
second run reuse the trained champion and the simulated files.

- Cohorts: ``simulate_cohort(profile care-ms1)``, the input columns only, written as CSV and
  Parquet in a temporary folder.
- Models, side by side in one run: the default experiment (experiments/baseline-comparison.yaml)
  with its two tree families only, the mixture-cure ``cure-xgboost`` and the proportional-hazards
  ``cox-xgboost`` that was the champion before it, untuned (their stated hyperparameters), no
  bootstrap and no external cohorts, with :data:`INTERVAL_REFITS` refits behind the intervals
  (what a scored patient costs does not depend on their number: the tree families serve a learned
  spread), trained into a temporary MLflow store (``MLFLOW_TRACKING_URI`` points there, never at
  the project's mlflow.db); or ``--versions`` of the store in ``--store DIR``.
- Every score is a whole answer: both outcomes' risks at the default horizons, their 95%
  intervals (the refits' spread, extrapolation and the inputs a patient lacks), the treatment
  contrast and the exact SHAP values.
- End to end: ``autorisk score IN --out OUT`` in a fresh process per run; rows/s from the
  time the command reports for reading, validating, scoring, writing and the drift report
  (start-up and model loading are a fixed cost, given below the table);
  peak memory is the process's ru_maxrss (``os.wait4``).
- In-process limit: in a fresh process, the same champion's boosters' own margin prediction
  (``inplace_predict``, all cores) on the same rows already in memory as a model matrix, one
  call per outcome; for a cohort over ``--limit-rows`` (100,000) on its first rows only, since
  it is a rate per row. Beside it, on the same rows: the exact SHAP tables autorisk uses, and
  what a user would otherwise run for exact SHAP values: xgboost's ``pred_contribs`` (all
  cores) and shap's ``TreeExplainer`` (on the first ``--shap-rows`` rows).
- Profile: where the time of one run goes, phase by phase (reading and parsing, validation,
  risks and SHAP values, Arrow columns, drift counts, writing), in-process on the first size.
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
import json, os, time
import numpy as np, pandas as pd, xgboost as xgb
from features.validation import validate_frame
from models.registry import load_model

model = load_model(version="{version}")
estimators = [m.estimator_ for m in model.risk_model.outcomes.values()]
if not all(hasattr(e, "booster_") for e in estimators):
    raise SystemExit("the champion is not a tree model: no in-process limit to compare with")
matrix = validate_frame(pd.read_parquet("{parquet}").head({rows})).matrix  # the same rows, already in memory

def timed(call, rows=matrix):
    call(rows[:1000])  # warm-up (thread pools, caches): each method at its best
    wall, cpu = time.perf_counter(), time.process_time()
    call(rows)
    return {{"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu, "rows": len(rows)}}

def every_outcome(method):
    return lambda rows: [method(e, rows) for e in estimators]

subset = matrix[:{shap_rows}]  # shap's TreeExplainer: a rate per row, on fewer rows
import shap
explainers = [shap.TreeExplainer(e.booster_) for e in estimators]
print(json.dumps({{
    "margin": timed(every_outcome(lambda e, X: e.booster_.inplace_predict(X, predict_type="margin", missing=np.nan))),
    "tables": timed(every_outcome(lambda e, X: e.shap_tables_.contributions(X, n_threads=os.cpu_count()))),
    "pred_contribs": timed(every_outcome(lambda e, X: e.booster_.predict(xgb.DMatrix(X, missing=np.nan),
                                                                         pred_contribs=True))),
    "shap": timed(lambda X: [explainer.shap_values(X) for explainer in explainers], subset),
    "outcomes": len(estimators), "trees": [e.shap_tables_.n_trees for e in estimators],
}}))
"""

PROFILE_CHILD = """
import json, time
from collections import defaultdict
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.csv, pyarrow.parquet
from features.drift import bin_counts
from features.validation import validate_frame
from models.registry import load_model
from models.scoring import ScoringOptions, score_columns
from pipelines.reading import open_input
from pipelines.score import ChunkScorer, load_reference

model = load_model(version="{version}")
reference, _ = load_reference(model)
scorer = ChunkScorer(model.risk_model, model.version, ScoringOptions(), False, reference)
phases = defaultdict(lambda: [0.0, 0.0])

def timed(name, call, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = call(*args)
    phases[name][0] += time.perf_counter() - wall
    phases[name][1] += time.process_time() - cpu
    return result

source = Path("{source}")
chunks = iter(open_input(source, 50_000).chunks)
out = source.with_name("profile" + source.suffix)
writer = pa.csv.CSVWriter(out, scorer.schema()) if source.suffix == ".csv" else pa.parquet.ParquetWriter(out, scorer.schema())
while (chunk := timed("reading and parsing", next, chunks, None)) is not None:
    batch = timed("validation", validate_frame, chunk.frame)
    columns = timed("risks, intervals and exact SHAP values (both outcomes)", score_columns, model.risk_model, batch, ScoringOptions())
    columns["line"] = chunk.lines[batch.rows]
    columns["model_version"] = np.full(len(batch.rows), model.version, dtype=object)
    table = timed("columns to an Arrow table", lambda: pa.table({{c: columns[c] for c in scorer.schema().names}},
                                                                schema=scorer.schema()))
    timed("drift counts", bin_counts, batch.matrix, reference)
    timed("writing", writer.write_table, table)
timed("writing", writer.close)
out.unlink()
print(json.dumps(dict(phases)))
"""

REPORTED = re.compile(r"read ([\d,]+) records, scored ([\d,]+), rejected ([\d,]+) \(([\d.]+) s,")


PREPARE_CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
from benchmarks.score import derived_config

def train_versions(path):
    import json
    import mlflow

    from pipelines.train import run_experiment

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    started = time.perf_counter()
    results = run_experiment(derived_config(), log=lambda *_: None)
    versions = {{r.family: str(r.model_version) for r in results}}
    with open(path, "w") as out:
        json.dump(versions, out)
    print(f"trained {{versions}} in {{time.perf_counter() - started:.0f}} s", file=sys.stderr)

def write_cohort(folder, profile, n, seed):
    from pathlib import Path
    from features.schema import ID_COLUMN, INPUT_NAMES
    from features.simulator import load_simulator_config, simulate_cohort

    frame = simulate_cohort(load_simulator_config(), profile, n, seed)[[ID_COLUMN, *INPUT_NAMES]]
    frame.to_csv(Path(folder) / f"{{profile}}-{{n}}.csv", index=False)
    frame.to_parquet(Path(folder) / f"{{profile}}-{{n}}.parquet", index=False)

{call}
"""


FAMILIES = ("cure-xgboost", "cox-xgboost")
INTERVAL_REFITS = 5


def derived_config():
    """The default experiment, its tree families only and untuned, without bootstrap or external cohorts."""
    from pipelines.config import DEFAULT_EXPERIMENT, load_experiment

    config = load_experiment(DEFAULT_EXPERIMENT)
    families = {name: config.families[name].model_copy(update={"tuning": None}) for name in FAMILIES}
    updates = {"name": "bench-score", "families": families, "interval_refits": INTERVAL_REFITS}
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


def _child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def in_process_limit(parquet: Path, rows: int, shap_rows: int, version: str) -> dict:
    """A version's boosters and the alternatives on the first ``rows`` rows, in memory, in a fresh process."""
    return _child(LIMIT_CHILD.format(parquet=parquet, rows=rows, shap_rows=shap_rows, version=version))


def profile(source: Path, version: str) -> dict:
    """Seconds and CPU seconds per phase of scoring ``source`` with ``version``, in a fresh process."""
    return _child(PROFILE_CHILD.format(source=source, version=version))


def _popen_wait4(args: list[str], folder: Path, **kwargs) -> tuple[subprocess.CompletedProcess, object]:
    """Run ``args``; return its result and its own resource usage (``os.wait4``)."""
    with open(folder / "stdout.txt", "w+") as stdout, open(folder / "stderr.txt", "w+") as stderr:
        process = subprocess.Popen(args, stdout=stdout, stderr=stderr, text=True, **kwargs)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(args, process.returncode, stdout.read(), stderr.read()), usage


def run_end_to_end(source: Path, folder: Path, version: str) -> dict:
    """One ``autorisk score`` run in a fresh process: reported seconds, process seconds, peak MiB."""
    out = folder / f"scores{source.suffix}"
    started = time.perf_counter()
    command = [str(AUTORISK), "score", str(source), "--out", str(out), "--model-version", version]
    result, usage = _popen_wait4(command, folder, cwd=ROOT,
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--profile", default="care-ms1")
    parser.add_argument("--repeats", type=int, nargs="+",
                        help="Runs per size: one number for all sizes, or one per size "
                             "(default: 3 for the first size, 1 for the others).")
    parser.add_argument("--formats", nargs="+",
                        help="Inputs per size, comma-separated: one entry for all sizes, or one per size "
                             "(default: csv,parquet for every size).")
    parser.add_argument("--limit-rows", type=int, default=100_000,
                        help="The in-process limit is measured on the first rows of each cohort, at most this many.")
    parser.add_argument("--shap-rows", type=int, default=10_000, help="Rows for shap's TreeExplainer (a rate per row).")
    parser.add_argument("--store", type=Path, help="Folder with an MLflow store (mlflow.db) holding --versions.")
    parser.add_argument("--versions", nargs="+", metavar="FAMILY=VERSION",
                        help="With --store: the registered versions to compare, e.g. cure-xgboost=3 cox-xgboost=2.")
    parser.add_argument("--work", type=Path, help="Folder for the cohorts and scores (default: a temporary one).")
    args = parser.parse_args()
    if bool(args.store) != bool(args.versions):
        parser.error("--store and --versions go together")
    args.repeats = args.repeats or [3] + [1] * (len(args.sizes) - 1)
    args.formats = args.formats or ["csv,parquet"]
    if len(args.repeats) not in (1, len(args.sizes)):
        parser.error("--repeats takes one number or one per size")
    if len(args.formats) not in (1, len(args.sizes)):
        parser.error("--formats takes one entry or one per size")
    args.repeats = dict(zip(args.sizes, args.repeats * len(args.sizes) if len(args.repeats) == 1 else args.repeats, strict=True))
    entries = args.formats * len(args.sizes) if len(args.formats) == 1 else args.formats
    args.formats = {n: tuple(entry.split(",")) for n, entry in zip(args.sizes, entries, strict=True)}
    if any(fmt not in ("csv", "parquet") for entry in args.formats.values() for fmt in entry):
        parser.error("--formats: csv or parquet")
    return args


def measure_size(args, work: Path, n: int, versions: dict[str, str], tiny: dict[str, Path]) -> tuple[list, dict]:
    """Every version on one cohort size, runs interleaved: table rows and the in-process figures per version."""
    paths = cohort_files(work, args.profile, n, seed=1)
    runs = {(family, kind): [] for family in versions for kind in ("limit", "fixed", *args.formats[n])}
    for repeat in range(args.repeats[n]):
        for family, version in versions.items():
            runs[family, "limit"].append(in_process_limit(paths["parquet"], min(n, args.limit_rows), args.shap_rows,
                                                          version))
            runs[family, "fixed"].append(run_end_to_end(tiny["csv"], work, version))
            for fmt in args.formats[n]:
                runs[family, fmt].append(run_end_to_end(paths[fmt], work, version))
                assert runs[family, fmt][-1]["read"] == n, runs[family, fmt][-1]
        print(f"{n:,} patients, repeat {repeat + 1}: " + json.dumps(
            {f"{k[0]} {k[1]}": v[-1] for k, v in runs.items() if v}), file=sys.stderr, flush=True)
    rows, limits = [], {}
    for family in versions:
        limit_runs = runs[family, "limit"]
        limits[family] = {method: {key: statistics.median(r[method][key] / r[method]["rows"] for r in limit_runs)
                                   for key in ("seconds", "cpu_seconds")}
                          for method in ("margin", "tables", "pred_contribs", "shap")}
        fixed_cpu = statistics.median(r["cpu_seconds"] for r in runs[family, "fixed"])
        for fmt in args.formats[n]:
            done = runs[family, fmt]
            rows.append({"n": n, "fmt": fmt, "family": family, "version": versions[family],
                         "seconds": statistics.median(r["seconds"] for r in done),
                         "cpu": statistics.median(r["cpu_seconds"] for r in done) - fixed_cpu,
                         "process": statistics.median(r["process_seconds"] for r in done),
                         "peak": statistics.median(r["peak_mib"] for r in done),
                         "fixed": statistics.median(r["process_seconds"] for r in runs[family, "fixed"]),
                         "outcomes": limit_runs[0]["outcomes"], "trees": limit_runs[0]["trees"]})
    return rows, limits


def print_end_to_end(rows: list[dict], limits: dict) -> None:
    print("| model | patients | input | scoring (s) | whole command (s) | CPU (s) | rows/s | in-process limit "
          "(rows/s) | ratio | CPU per row: limit / end to end | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        limit = limits[r["n"]][r["family"]]["margin"]
        print(f"| {r['family']} v{r['version']} | {r['n']:,} | {'CSV' if r['fmt'] == 'csv' else 'Parquet'} "
              f"| {r['seconds']:.1f} | {r['process']:.1f} | {r['cpu']:.1f} | {r['n'] / r['seconds']:,.0f} "
              f"| {1 / limit['seconds']:,.0f} | {r['n'] / r['seconds'] * limit['seconds']:.2f} "
              f"| {limit['cpu_seconds'] * r['n'] / r['cpu']:.2f} | {r['peak']:,.0f} |")
    first = {(r["n"], r["fmt"]): r for r in rows if r["family"] == rows[0]["family"]}
    for r in rows:
        if r["family"] != rows[0]["family"]:
            base = first[r["n"], r["fmt"]]
            print(f"\n{base['family']} / {r['family']}, {r['n']:,} patients, {r['fmt']}: wall "
                  f"{base['seconds'] / r['seconds']:.2f}x, CPU {base['cpu'] / r['cpu']:.2f}x")


def print_in_memory(limits: dict) -> None:
    print("\nPer patient, both outcomes, the same rows in memory (microseconds, medians):\n")
    print("| model | patients | method | wall (µs/row) | CPU (µs/row) | CPU over the margin's |")
    print("|---|---|---|---|---|---|")
    names = {"margin": "the trees' own margin (xgboost inplace_predict): the limit",
             "tables": "exact SHAP, autorisk's tables", "pred_contribs": "exact SHAP, xgboost pred_contribs",
             "shap": "exact SHAP, shap TreeExplainer"}
    for n, per_family in limits.items():
        for family, median in per_family.items():
            for method, label in names.items():
                m = median[method]
                print(f"| {family} | {n:,} | {label} | {1e6 * m['seconds']:.2f} | {1e6 * m['cpu_seconds']:.2f} | "
                      f"{m['cpu_seconds'] / median['margin']['cpu_seconds']:.1f} |")


def print_profiles(profiles: dict, n: int) -> None:
    print(f"\nProfile of one run of {n:,} patients (seconds / CPU seconds):\n")
    print("| phase | " + " | ".join(profiles) + " |")
    print("|---|" + "---|" * len(profiles))
    for phase in next(iter(profiles.values())):
        print(f"| {phase} | " + " | ".join(f"{p[phase][0]:.2f} / {p[phase][1]:.2f}" for p in profiles.values()) + " |")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="autorisk-bench-score-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        store = args.store or work / "store"
        store.mkdir(parents=True, exist_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store.resolve() / 'mlflow.db'}"
        if args.versions:
            versions = dict(entry.split("=", 1) for entry in args.versions)
        else:
            _prepare(f"train_versions({str(work / 'versions.json')!r})")
            versions = json.loads((work / "versions.json").read_text())
        rows, limits = [], {}
        tiny = cohort_files(work, args.profile, 100, seed=2)
        for n in args.sizes:
            size_rows, limits[n] = measure_size(args, work, n, versions, tiny)
            rows += size_rows
        first = args.sizes[0]
        paths = cohort_files(work, args.profile, first, seed=1)
        profiles = {f"{family} {fmt}": profile(paths[fmt], version)
                    for family, version in versions.items() for fmt in args.formats[first]}

    print_end_to_end(rows, limits)
    print_in_memory(limits)
    sizes = sorted({r["n"] for r in rows})
    for family in versions:
        for fmt in ("csv", "parquet"):
            peaks = {r["n"]: r["peak"] for r in rows if r["fmt"] == fmt and r["family"] == family}
            if len(peaks) >= 2:
                print(f"\npeak memory {family} {fmt}: {sizes[-1]:,} / {sizes[0]:,} patients = "
                      f"{peaks[sizes[-1]] / peaks[sizes[0]]:.2f}x")
    print_profiles(profiles, first)
    runs_per_size = ", ".join(f"{n:,}: {k}" for n, k in args.repeats.items())
    trees = "; ".join(f"{r['family']}: {', '.join(map(str, r['trees']))}" for r in rows if r["n"] == first
                      and r["fmt"] == args.formats[first][0])
    print(f"\n{rows[0]['outcomes']} outcomes (trees per outcome, {trees}); medians over the runs per size "
          f"({runs_per_size}); {os.cpu_count()} cores; fixed start-up of the command (imports, model loading): "
          f"{rows[0]['fixed']:.1f} s; in-process figures on the first {args.limit_rows:,} rows of each cohort "
          f"(shap: {args.shap_rows:,})")


if __name__ == "__main__":
    main()
