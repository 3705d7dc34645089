"""Benchmark: exact SHAP values from tables against xgboost and shap, on the same rows.

Run: .venv/bin/python benchmarks/treeshap.py   (about three and a half minutes, most of it
``pred_contribs`` and shap on 100,000 rows; ``--sizes`` and ``--repeats`` shorten it)

- Models: ``binary:logistic`` boosters trained on 20,000 synthetic rows of 11 features (a tenth
  of the values missing): 400 trees of depth 3 and 200 trees of depth 1, ``eta`` 0.05; and the
  mixture-cure family's booster (``models.cure.CureXGBoost``, its likelihood as the objective) with
  the default experiment's stated hyperparameters, on the same rows as censored onset times.
- Methods, each on the same rows (1, 100 and 100,000 rows by default):
  ``TreeShapTables.contributions`` (models/treeshap.py; tables built before the timing);
  xgboost's ``predict(pred_contribs=True)``, the DMatrix built inside the timing as a caller
  must; ``shap.TreeExplainer(booster).shap_values`` (explainer built before the timing); and
  the booster's own margin prediction ``inplace_predict``: the cost of a prediction.
- Threads: one everywhere (``--threads``): a server runs one worker process per core.
- Timing: a repeat makes enough consecutive calls to last about 0.2 s (one call for large
  batches) and reports the time per call; the table gives medians over ``--repeats`` of wall
  seconds (``perf_counter``) and CPU seconds of the whole process (``process_time``). On a
  shared machine wall time also measures the neighbours; CPU time does not.
- One-off costs, below the table: building the tables from a booster, rebuilding them from
  their stored state (arrays, or JSON already parsed), and importing the module in a fresh
  process after xgboost (numpy only: no JIT compilation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from models.treeshap import TreeShapTables

ROOT = Path(__file__).resolve().parents[1]

N_FEATURES = 11
MODELS = {"400 trees, depth 3": (3, 400), "200 trees, depth 1": (1, 200), "cure-xgboost": None}
TARGET_SECONDS = 0.2


def synthetic_rows(n: int, seed: int) -> np.ndarray:
    """Rows of shape (n, N_FEATURES), normal values, a tenth of them missing."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


def train(shape: tuple[int, int] | None, threads: int) -> xgb.Booster:
    """A ``binary:logistic`` booster of ``(max_depth, rounds)``, or with ``None`` the cure family's."""
    X = synthetic_rows(20_000, seed=0)
    filled = np.nan_to_num(X)
    score = filled[:, 0] + filled[:, 1] * filled[:, 2] - filled[:, 3] ** 2 + 0.5 * filled[:, 4:].sum(axis=1)
    y = (score + np.random.default_rng(1).normal(size=len(X)) > 0).astype(float)
    if shape is None:
        return cure_booster(X, y, threads)
    max_depth, rounds = shape
    return xgb.train({"objective": "binary:logistic", "max_depth": max_depth, "eta": 0.05,
                      "nthread": threads, "seed": 0}, xgb.DMatrix(X, label=y, missing=np.nan),
                     num_boost_round=rounds)


def cure_booster(X: np.ndarray, ever: np.ndarray, threads: int) -> xgb.Booster:
    """The cure family's booster: onsets of the rows that ever have one, uniform over 24 months, censored at
    up to 48 months; the stated hyperparameters of the default experiment's ``cure-xgboost``."""
    from models.cure import CureXGBoost
    from models.survival import survival_target
    from pipelines.config import DEFAULT_EXPERIMENT, load_experiment

    rng = np.random.default_rng(3)
    onset = np.where(ever == 1, rng.uniform(0, 24, len(X)), np.inf)
    censor = rng.uniform(12, 48, len(X))
    event, time = onset <= censor, np.minimum(onset, censor)
    timing = np.where(event, 1.0, np.minimum(time / 24.0, 1.0))
    params = load_experiment(DEFAULT_EXPERIMENT).families["cure-xgboost"].params
    fitted = CureXGBoost(**params | {"n_jobs": threads}).fit(X, survival_target(event, time), timing=timing)
    return fitted.booster_


def time_per_call(call, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one ``call()`` over ``repeats`` timed runs."""
    started = time.perf_counter()
    call()  # warm-up, and the size of a run
    calls = max(1, int(TARGET_SECONDS / max(time.perf_counter() - started, 1e-7)))
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call()
        walls.append((time.perf_counter() - wall) / calls)
        cpus.append((time.process_time() - cpu) / calls)
    return statistics.median(walls), statistics.median(cpus)


IMPORT_CHILD = """
import json, time
started = time.perf_counter()
import xgboost
imported = time.perf_counter()
import models.treeshap
print(json.dumps([imported - started, time.perf_counter() - imported]))
"""


def import_seconds(repeats: int) -> tuple[float, float]:
    """Median seconds, in fresh processes, of ``import xgboost`` and then of the extra
    ``import models.treeshap``: the module's own start-up cost."""
    runs = [json.loads(subprocess.run([sys.executable, "-c", IMPORT_CHILD], cwd=ROOT, check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def seconds_text(seconds: float) -> str:
    return f"{seconds:.3g}"


def state_costs(booster) -> tuple[TreeShapTables, tuple[float, float, float, int, int]]:
    """The booster's tables and their one-off costs: seconds to build them from the booster, to rebuild them
    from their state as arrays and as parsed JSON, and the state's size as arrays (bytes) and as JSON (chars)."""
    started = time.perf_counter()
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    build_seconds = time.perf_counter() - started
    state = tables.to_state()
    state_json = json.dumps({key: value.tolist() if isinstance(value, np.ndarray) else value
                             for key, value in state.items()})
    started = time.perf_counter()
    TreeShapTables.from_state(state)
    state_seconds = time.perf_counter() - started
    started = time.perf_counter()
    TreeShapTables.from_state(json.loads(state_json))
    json_seconds = time.perf_counter() - started
    state_bytes = sum(value.nbytes for value in state.values() if isinstance(value, np.ndarray))
    return tables, (build_seconds, state_seconds, json_seconds, state_bytes, len(state_json))


def compare_methods(label: str, booster, tables: TreeShapTables, explainer, X: np.ndarray, args
                    ) -> tuple[float, float]:
    """One row per method on ``X`` printed; returns the tables' cost over the margin's (wall, CPU)."""
    n = len(X)
    methods = {
        "tables (models.treeshap)": lambda: tables.contributions(X, n_threads=args.threads),
        "xgboost pred_contribs": lambda: booster.predict(xgb.DMatrix(X, missing=np.nan, nthread=args.threads),
                                                         pred_contribs=True),
        "shap.TreeExplainer": lambda: explainer.shap_values(X),
        "xgboost inplace_predict (margin)": lambda: booster.inplace_predict(X, predict_type="margin",
                                                                            missing=np.nan),
    }
    timings = {name: time_per_call(call, args.repeats) for name, call in methods.items()}
    reference = timings["xgboost pred_contribs"][0]
    for name, (wall, cpu) in timings.items():
        print(f"| {label} | {n:,} | {name} | {seconds_text(wall)} | {seconds_text(cpu)} "
              f"| {wall / n * 1e6:.3g} | {reference / wall:.3g} |")
    tables_cost, margin_cost = timings["tables (models.treeshap)"], timings["xgboost inplace_predict (margin)"]
    return tables_cost[0] / margin_cost[0], tables_cost[1] / margin_cost[1]


def print_summaries(ratios: list, one_off: list) -> None:
    """The tables' cost over the margin, their one-off costs, and the imports' start-up cost."""
    print("\n| model | rows | tables over the margin, wall | CPU |")
    print("|---|---:|---:|---:|")
    for label, n, wall_ratio, cpu_ratio in ratios:
        print(f"| {label} | {n:,} | {wall_ratio:.2f}x | {cpu_ratio:.2f}x |")

    print("\n| model | build from booster s | from state s (arrays) | from state s (JSON parsed) "
          "| state arrays MB | state JSON MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, build, from_arrays, from_json, arrays_bytes, json_chars in one_off:
        print(f"| {label} | {build:.3f} | {from_arrays:.4f} | {from_json:.4f} "
              f"| {arrays_bytes / 1e6:.2f} | {json_chars / 1e6:.2f} |")
    xgboost_seconds, module_seconds = import_seconds(3)
    print(f"\nimports in a fresh process (median of 3): xgboost {xgboost_seconds:.2f} s, then "
          f"models.treeshap {module_seconds * 1000:.0f} ms more (numpy only: no JIT compilation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import shap  # here, not at the top: its import is slow and only this script needs it

    rows = synthetic_rows(max(args.sizes), seed=2)
    print(f"threads: {args.threads}; medians of {args.repeats} repeats; seconds per call\n")
    print("| model | rows | method | wall s | CPU s | wall µs per row | pred_contribs wall / this |")
    print("|---|---:|---|---:|---:|---:|---:|")
    one_off, ratios = [], []
    for label, shape in MODELS.items():
        booster = train(shape, args.threads)
        booster.set_param({"nthread": args.threads})
        tables, costs = state_costs(booster)
        one_off.append((label, *costs))
        explainer = shap.TreeExplainer(booster)

        check = rows[:100]
        error = np.abs(tables.contributions(check)
                       - booster.predict(xgb.DMatrix(check, missing=np.nan), pred_contribs=True)).max()
        if error > 1e-5:
            raise SystemExit(f"{label}: tables differ from pred_contribs by {error:.2g}")
        for n in args.sizes:
            ratios.append((label, n, *compare_methods(label, booster, tables, explainer, rows[:n], args)))
    print_summaries(ratios, one_off)


if __name__ == "__main__":
    main()
