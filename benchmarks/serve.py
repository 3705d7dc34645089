"""Benchmark: the REST endpoint against ``mlflow models serve`` of the same champion, and a load test.

Run: make bench-serve   (or .venv/bin/python benchmarks/serve.py --duration 20 --repeats 3)
     make bench-load    (or .venv/bin/python benchmarks/serve.py --load --duration 60)

- Model: a champion trained as in ``benchmarks/score.py`` (the default experiment's cox-xgboost,
  untuned) in a temporary MLflow store; or the champion of ``--store DIR``.
- Servers, started once and driven in turn: ``autorisk serve`` (BentoML, one single-threaded
  worker per core) and ``mlflow models serve -m models:/autoimmunity-risk@champion
  --env-manager local`` with as many uvicorn workers (``--mlflow-workers``; MLflow's own
  default is 1). Both return risks and SHAP values: the registered pyfunc carries them.
- Load: ``wrk`` on loopback (one thread, ``--connections`` open connections, each sending the
  next request as soon as the last is answered), the same simulated patients as JSON: one
  patient per request, then 100. The two servers alternate within each repeat, so background
  load on the shared machine hits both alike; the table shows medians over ``--repeats``.
  Every response must be a 2xx (wrk counts the others; the run fails if there are any).
- In-process limit (100 patients): in a fresh process, the same champion's boosters' own margin
  prediction (``inplace_predict``, one thread as in a worker) on the same 100 rows, already a
  model matrix, repeated for a few seconds; and the CPU time of the in-process handler
  (validation, risks, SHAP values, the year-by-year view and the response) for 1 and 100 patients.
- Clinical front doors (``benchmarks/clinical_handlers.py``, in a fresh process): the CPU of one patient
  through CDS Hooks (``order-select`` with its prefetch, to its cards) and FHIR ``$assess``, beside
  ``/predict``'s with and without the contrast, each from the request's bytes to the answer's
  (``--clinical-only`` runs just this).
- ``--load``: only ``autorisk serve``, ``--connections 32``, one 100-patient request in ten and
  single patients otherwise, for ``--duration`` seconds after a warm-up; the resident memory of
  the server's processes (all workers) is sampled every second. The run fails when any
  request fails or memory grows by more than ``--max-growth-mib`` over the warmed-up level.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.score import _prepare, cohort_files  # noqa: E402 - the shared preparation steps
from pipelines.servers import ServerError, free_port, running_server  # noqa: E402 - run as a script

AUTORISK = Path(sys.executable).with_name("autorisk")
MLFLOW = Path(sys.executable).with_name("mlflow")

LIMIT_CHILD = """
import json, statistics, time
import numpy as np, pandas as pd
from features.validation import validate_frame, validate_records
from models.registry import load_model
from models.scoring import ScoringOptions
from serving.schemas import ModelIdentity, PredictRequest
from serving.service import to_response

model = load_model()
model.risk_model.use_threads(1)  # as in a server worker
estimators = [m.estimator_ for m in model.risk_model.outcomes.values()]
frame = pd.read_parquet("{parquet}").head({n})
matrix = validate_frame(frame).matrix
records = [p.model_dump() for p in PredictRequest.model_validate({{"patients": json.loads(frame.to_json(orient="records"))}}).patients]
identity = ModelIdentity(name=model.name, version=model.version, run_id=model.run_id)

def per_call(call, seconds):
    for _ in range(20):  # warm-up
        call()
    cpu, started, calls = [], time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        before = time.process_time()
        call()
        cpu.append(time.process_time() - before)
        calls += 1
    return {{"calls_per_s": calls / (time.perf_counter() - started), "cpu_ms": 1000 * statistics.median(cpu)}}

margin = per_call(lambda: [e.booster_.inplace_predict(matrix, predict_type="margin", missing=np.nan) for e in estimators],
                  {seconds})
handler = {{k: per_call(lambda k=k: to_response(identity, validate_records(records[:k]), model.risk_model, ScoringOptions()),
                       {seconds}) for k in (1, len(records))}}
print(json.dumps({{"patients_per_s": margin["calls_per_s"] * len(matrix), "margin_cpu_ms": margin["cpu_ms"],
                  "handler_cpu_ms": {{str(k): v["cpu_ms"] for k, v in handler.items()}}}}))
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{ {bodies} }}
local every = {every}
local sent = 0
request = function()
  sent = sent + 1
  local body = bodies[1]
  if #bodies > 1 and sent % every == 0 then body = bodies[2] end
  return wrk.format(nil, nil, nil, body)
end
"""


@contextmanager
def server(command: list[str], ready_url: str, log: Path, env: dict):
    """A server of the benchmark, started and stopped whole (:func:`pipelines.servers.running_server`); the
    benchmark stops with the server's log when it does not start."""
    try:
        with running_server(command, ready_url=ready_url, log=log, env=env, timeout_s=180, cwd=ROOT,
                            stop_timeout_s=30) as process:
            yield process
    except ServerError as error:
        raise SystemExit(str(error)) from error


def lua_string(text: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def wrk(url: str, bodies: list[str], *, connections: int, duration: float, folder: Path, every: int = 1) -> dict:
    """One wrk run; requests/s, latency percentiles (ms) and failures."""
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT.format(bodies=", ".join(lua_string(b) for b in bodies), every=every))
    result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "30s", "--latency",
                             "-s", str(script), url], capture_output=True, text=True, check=True)
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    percentiles = {p: _milliseconds(v) for p, v in re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return {"rate": rate, "requests": requests, "p50": percentiles["50"], "p99": percentiles["99"],
            "failures": failures, "output": out}


def _milliseconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def tree_rss_mib(process: subprocess.Popen) -> float:
    """Resident memory of a server and all its children (workers), MiB."""
    root = psutil.Process(process.pid)
    total = 0
    for member in [root, *root.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def patients_json(parquet: Path, n: int) -> list[dict]:
    import pandas as pd

    frame = pd.read_parquet(parquet).head(n)
    return json.loads(frame.to_json(orient="records"))  # NaN -> null, as a client would send


def check_answers(url: str, body: str, n: int, shape: str) -> None:
    """One request before the load: a 200 with a prediction per patient, so that wrk measures real answers.

    Both servers answer ``{"predictions": [...]}``, one entry per patient.
    """
    response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code} {response.text[:500]}")
    answer = response.json()
    count = len(answer["predictions"])
    if count != n:
        raise SystemExit(f"{url}: {count} predictions for {n} patients ({shape})")


def in_process_limit(parquet: Path, n: int, seconds: float = 5.0) -> dict:
    """The boosters' own margin on ``n`` rows in memory (the limit), and the handler's CPU per request."""
    out = subprocess.run([sys.executable, "-c", LIMIT_CHILD.format(parquet=parquet, n=n, seconds=seconds)],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def clinical_handlers(parquet: Path, seconds: float = 5.0) -> dict:
    """Handler CPU per request (ms) of /predict, CDS Hooks and FHIR $assess for one patient, in a fresh process."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "clinical_handlers.py"), str(parquet),
                          str(seconds)], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_clinical(parquet: Path) -> None:
    cpu = clinical_handlers(parquet)
    beyond = cpu["cds_hooks"] - cpu["predict"]
    print(f"- one patient, handler CPU per request from the body's bytes to the answer's: /predict "
          f"{cpu['predict']:.2f} ms ({cpu['predict_contrast']:.2f} ms with the contrast the cards need); CDS Hooks "
          f"order-select with its prefetch to its cards {cpu['cds_hooks']:.2f} ms, {beyond:+.2f} ms beyond /predict's "
          f"(target at most +2 ms); FHIR $assess to its Bundle {cpu['fhir_assess']:.2f} ms "
          f"({cpu['fhir_assess'] - cpu['predict']:+.2f} ms)")


def compare(args, folder: Path, env: dict, patients: list[dict], parquet: Path) -> None:
    ports = {"autorisk serve (BentoML)": free_port(), "mlflow models serve": free_port()}
    commands = {
        "autorisk serve (BentoML)": [str(AUTORISK), "serve", "--port", str(ports["autorisk serve (BentoML)"])],
        "mlflow models serve": [str(MLFLOW), "models", "serve", "-m", "models:/autoimmunity-risk@champion",
                                "--env-manager", "local", "--host", "127.0.0.1",
                                "--port", str(ports["mlflow models serve"]), "--workers", str(args.mlflow_workers)],
    }
    predict = {"autorisk serve (BentoML)": "/predict", "mlflow models serve": "/invocations"}
    wrap = {"autorisk serve (BentoML)": lambda p: {"patients": p}, "mlflow models serve": lambda p: {"dataframe_records": p}}
    sizes = (1, 100)
    results: dict[tuple[str, int], list[dict]] = {}
    with server(commands["autorisk serve (BentoML)"], f"http://127.0.0.1:{ports['autorisk serve (BentoML)']}/readyz",
                folder / "bentoml.log", env) as bento, \
            server(commands["mlflow models serve"], f"http://127.0.0.1:{ports['mlflow models serve']}/health",
                   folder / "mlflow.log", env) as _:
        del bento
        urls = {name: f"http://127.0.0.1:{ports[name]}{predict[name]}" for name in commands}
        bodies = {(name, n): json.dumps(wrap[name](patients[:n])) for name in commands for n in sizes}
        for (name, n), body in bodies.items():
            check_answers(urls[name], body, n, name)
            wrk(urls[name], [body], connections=args.connections, duration=3, folder=folder)  # warm-up
        for repeat in range(args.repeats):
            for n in sizes:
                for name in commands:
                    run = wrk(urls[name], [bodies[(name, n)]], connections=args.connections,
                              duration=args.duration, folder=folder)
                    if run["failures"]:
                        raise SystemExit(f"{name}, {n} patients: {run['failures']} failed requests\n{run['output']}")
                    results.setdefault((name, n), []).append(run)
                    print(f"repeat {repeat + 1}, {n} patients, {name}: {run['rate']:.1f} req/s, "
                          f"p50 {run['p50']:.1f} ms, p99 {run['p99']:.1f} ms", file=sys.stderr, flush=True)
    measured = in_process_limit(parquet, 100)
    limit = measured["patients_per_s"]

    print("| patients per request | server | requests/s | patients/s | p50 latency (ms) | p99 latency (ms) |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for n in sizes:
        for name in commands:
            runs = results[(name, n)]
            rate = statistics.median(r["rate"] for r in runs)
            medians[(name, n)] = rate
            print(f"| {n} | {name} | {rate:,.1f} | {rate * n:,.0f} | {statistics.median(r['p50'] for r in runs):.1f} | "
                  f"{statistics.median(r['p99'] for r in runs):.1f} |")
    print()
    for n in sizes:
        ratio = medians[("autorisk serve (BentoML)", n)] / medians[("mlflow models serve", n)]
        print(f"- {n} patient(s) per request: autorisk serve / mlflow models serve = {ratio:.2f}x requests/s")
    ours = medians[("autorisk serve (BentoML)", 100)] * 100
    print(f"- 100 patients per request: in-process limit (the trees' own margin, one thread) {limit:,.0f} "
          f"patients/s; autorisk serve reaches {ours:,.0f} ({ours / limit:.2f} of the limit)")
    handler = measured["handler_cpu_ms"]
    print(f"- the in-process handler (validation, risks, SHAP values, year-by-year view, response), CPU per request: "
          f"{handler['1']:.2f} ms for 1 patient, {handler['100']:.2f} ms for 100 (the trees' own margin for 100: "
          f"{measured['margin_cpu_ms']:.2f} ms)")
    print_clinical(parquet)
    print(f"\n{args.connections} connections, wrk on loopback (1 thread), {args.duration:g} s per run, medians over "
          f"{args.repeats} repeats; {os.cpu_count()} cores; BentoML workers: {os.cpu_count()}, "
          f"mlflow uvicorn workers: {args.mlflow_workers}")


def load_test(args, folder: Path, env: dict, patients: list[dict]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/predict"
    bodies = [json.dumps({"patients": patients[:1]}), json.dumps({"patients": patients[:100]})]
    with server([str(AUTORISK), "serve", "--port", str(port)], f"http://127.0.0.1:{port}/readyz",
                folder / "bentoml.log", env) as process:
        for body, n in zip(bodies, (1, 100), strict=True):
            check_answers(url, body, n, "load")
        wrk(url, bodies, connections=args.connections, duration=15, folder=folder, every=10)  # warm-up
        warmed = tree_rss_mib(process)
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(tree_rss_mib(process))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run = wrk(url, bodies, connections=args.connections, duration=args.duration, folder=folder, every=10)
        done.set()
        sampler.join()
        final = tree_rss_mib(process)
        alive = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    growth = final - warmed
    print("| duration (s) | connections | requests | requests/s | failed | p50 (ms) | p99 (ms) | "
          "memory after warm-up (MiB) | peak (MiB) | at the end (MiB) | growth (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.duration:g} | {args.connections} | {run['requests']:,} | {run['rate']:,.1f} | {run['failures']} | "
          f"{run['p50']:.1f} | {run['p99']:.1f} | {warmed:,.0f} | {max(samples or [final]):,.0f} | {final:,.0f} | "
          f"{growth:+.0f} |")
    print(f"\nmix: one request in ten carries 100 patients, the others one; memory: resident set of the server and "
          f"its {os.cpu_count()} workers; bound: growth at most {args.max_growth_mib:g} MiB; server ready after: {alive}")
    if run["failures"] or growth > args.max_growth_mib or not alive:
        raise SystemExit(f"load test failed: {run['failures']} failed requests, memory growth {growth:.0f} MiB, "
                         f"ready afterwards: {alive}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", action="store_true", help="Run the load test instead of the comparison.")
    parser.add_argument("--duration", type=float, help="Seconds per wrk run (default 20; 60 with --load).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, help="Open connections (default 16; 32 with --load).")
    parser.add_argument("--mlflow-workers", type=int, default=os.cpu_count())
    parser.add_argument("--max-growth-mib", type=float, default=50.0)
    parser.add_argument("--store", type=Path, help="Folder with an MLflow store (mlflow.db) and a champion to use.")
    parser.add_argument("--clinical-only", action="store_true",
                        help="Only the in-process CPU of CDS Hooks and FHIR against /predict's (no servers).")
    args = parser.parse_args()
    args.duration = args.duration or (60.0 if args.load else 20.0)
    args.connections = args.connections or (32 if args.load else 16)
    if shutil.which("wrk") is None and not args.clinical_only:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="autorisk-bench-serve-") as temporary:
        folder = Path(temporary)
        store = args.store or folder / "store"
        store.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key != "AUTORISK_API_TOKEN"}
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store.resolve() / 'mlflow.db'}"
        env["PATH"] = f"{AUTORISK.parent}{os.pathsep}{env.get('PATH', '')}"  # mlflow starts uvicorn from PATH
        os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
        if not args.store:
            _prepare("train_champion()")
        parquet = cohort_files(folder, "care-ms1", 1000, seed=3)["parquet"]
        patients = patients_json(parquet, 100)
        if args.clinical_only:
            print_clinical(parquet)
        elif args.load:
            load_test(args, folder, env, patients)
        else:
            compare(args, folder, env, patients, parquet)


if __name__ == "__main__":
    main()
