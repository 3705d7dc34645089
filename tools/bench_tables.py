"""The docs' benchmark blocks, rendered from what the benchmarks printed (``outputs/benchmarks/<name>.txt``).

``make bench-score`` and the other benchmark targets record their output through ``tools/bench_record.py``;
each function here returns a block's text from those files, or None where the benchmark has not been run on
this machine (the block is then left as it is). The goals are the project's targets, stated here once; every
measured figure comes from a recorded file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "outputs" / "benchmarks"
HEADER_PREFIX = "# benchmark:"
# Lines a benchmark prints while it runs, not part of its report.
_PROGRESS = re.compile(r"^(repeat \d|[\d,]+ patients, repeat \d|trained \{|recorded |\s*$)")

# The targets each measure is judged against.
GOAL_SECONDS = {"Parquet": 30.0, "CSV": 35.0}  # a million patients, whole command
GOAL_SHAP_OVER_MARGIN = 2.0
GOAL_LIMIT_SHARE = 0.5  # end to end over the in-process limit, CPU per row
GOAL_MEMORY_RATIO = 1.5  # peak memory, a million patients over 100,000
GOAL_REST_RATIO = 5.0  # one patient per request, autorisk serve over mlflow models serve
GOAL_HANDLER_MS = (1.0, 10.0)  # in-process handler CPU, 1 and 100 patients
GOAL_CDS_BEYOND_MS = 2.0
GOAL_LOAD_GROWTH_MIB = 50.0


@dataclass(frozen=True)
class Recorded:
    """One benchmark's recorded output: what ran, when, where, and its report's lines."""

    name: str
    started: str
    cores: str
    commit: str
    command: str
    lines: list[str]

    def provenance(self) -> str:
        return (f"Recorded by `{self.command}` on {self.started} ({self.cores}, commit `{self.commit}`; "
                f"`outputs/benchmarks/{self.name}.txt`).")

    def report(self) -> str:
        """The report from its first table or note on, without the progress lines."""
        start = next((i for i, line in enumerate(self.lines) if line.startswith(("|", "threads:", "- "))), 0)
        kept = [line for line in self.lines[start:] if not _PROGRESS.match(line) or line == ""]
        return "\n".join(kept).strip("\n")


def recorded(name: str, folder: Path | None = None) -> Recorded | None:
    """The newest recording of a benchmark (in ``folder``, by default ``outputs/benchmarks``), or None."""
    path = (folder or FOLDER) / f"{name}.txt"
    if not path.is_file():
        return None
    first, *rest = path.read_text(encoding="utf-8").splitlines()
    if not first.startswith(HEADER_PREFIX):
        raise SystemExit(f"{path}: not written by tools/bench_record.py (no '{HEADER_PREFIX}' line)")
    name_, started, cores, commit, command = (part.strip() for part in first[len(HEADER_PREFIX):].split("|", 4))
    return Recorded(name_, started, cores, commit.removeprefix("commit "), command, rest)


def tables(lines: list[str]) -> list[list[dict[str, str]]]:
    """Every markdown table in ``lines``, each as its rows keyed by the header's cells."""
    found, current, header = [], [], None
    for line in [*lines, ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-:"):
                current.append(dict(zip(header, cells, strict=False)))
            continue
        if header is not None:
            found.append(current)
        current, header = [], None
    return found


def number(cell: str) -> float:
    """``'1,234.5'``, ``'**8.3×**'``, ``'+17'``, ``'2.30x'``: the number."""
    match = re.search(r"[-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?", cell)
    if match is None:
        raise ValueError(f"no number in {cell!r}")
    return float(match.group().replace(",", ""))


def block(name: str, intro: str = "") -> str | None:
    """A block of a benchmark's own report under its provenance."""
    found = recorded(name)
    if found is None:
        return None
    return "\n\n".join(part for part in (intro, found.provenance(), found.report()) if part) + "\n"


def clinical_block() -> str | None:
    """The clinical front doors' CPU, from ``make bench-serve``'s report (or ``make bench-clinical``'s)."""
    found = newest_clinical()
    if found is None:
        return None
    lines = [line for line in found.lines if line.startswith("- one patient, handler CPU")]
    return found.provenance() + "\n\n" + "\n".join(lines) + "\n"


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _score_rows(found: Recorded) -> list[str]:
    ends, per_row = (tables(found.lines) + [[], []])[:2]
    rows = []
    for r in ends:
        if number(r["patients"]) == 1_000_000 and r["input"] in GOAL_SECONDS:
            goal, whole = GOAL_SECONDS[r["input"]], number(r["whole command (s)"])
            rows.append(f"| a million patients, `autorisk score` from {r['input']}, intervals and exact SHAP "
                        f"({r['model']}): scoring / whole command, CPU | {r['scoring (s)']} s / {whole:g} s, "
                        f"{r['CPU (s)']} s CPU | ≤ {goal:g} s | {_verdict(whole <= goal)} |")
            share = number(r["CPU per row: limit / end to end"])
            rows.append(f"| the same, end to end over the in-process limit, by CPU | {share:g} | "
                        f"≥ {GOAL_LIMIT_SHARE:g} | {_verdict(share >= GOAL_LIMIT_SHARE)} |")
            small = [s for s in ends if s["model"] == r["model"] and s["input"] == r["input"]
                     and number(s["patients"]) == 100_000]
            if small:
                ratio = number(r["peak memory (MiB)"]) / number(small[0]["peak memory (MiB)"])
                rows.append(f"| peak memory, a million over 100,000 patients ({r['model']}, {r['input']}) | "
                            f"{ratio:.2f}× | ≤ {GOAL_MEMORY_RATIO:g}× | {_verdict(ratio <= GOAL_MEMORY_RATIO)} |")
    for r in per_row:
        if r.get("method") == "exact SHAP, autorisk's tables":
            ratio = number(r["CPU over the margin's"])
            rows.append(f"| exact SHAP CPU per patient over the trees' own margin, all cores ({r['model']}, "
                        f"{r['patients']} rows) | {ratio:g}× | ≤ {GOAL_SHAP_OVER_MARGIN:g}× | "
                        f"{_verdict(ratio <= GOAL_SHAP_OVER_MARGIN)} |")
    return rows


def _shap_rows(found: Recorded) -> list[str]:
    rows = []
    for table in tables(found.lines):
        for r in table:
            if "tables over the margin, wall" in r and number(r["rows"]) >= 100_000:
                cpu = number(r["CPU"])
                rows.append(f"| exact SHAP tables over the trees' own margin, one thread ({r['model']}, {r['rows']} "
                            f"rows): wall, CPU | {r['tables over the margin, wall']}, {r['CPU']} | "
                            f"≤ {GOAL_SHAP_OVER_MARGIN:g}× by CPU | {_verdict(cpu <= GOAL_SHAP_OVER_MARGIN)} |")
    return rows


def _serve_rows(found: Recorded) -> list[str]:
    rows = []
    for line in found.lines:
        ratio = re.match(r"- 1 patient\(s\) per request: autorisk serve / mlflow models serve = ([\d.]+)x", line)
        if ratio:
            value = float(ratio.group(1))
            rows.append(f"| REST, one patient per request: `autorisk serve` over `mlflow models serve`, requests/s "
                        f"| {value:.2f}× | ≥ {GOAL_REST_RATIO:g}× | {_verdict(value >= GOAL_REST_RATIO)} |")
        handler = re.search(r"CPU per request: ([\d.]+) ms for 1 patient, ([\d.]+) ms for 100", line)
        if handler:
            one, hundred = float(handler.group(1)), float(handler.group(2))
            met = one < GOAL_HANDLER_MS[0] and hundred < GOAL_HANDLER_MS[1]
            rows.append(f"| in-process REST handler CPU, 1 / 100 patients | {one:.2f} ms / {hundred:.2f} ms | "
                        f"< {GOAL_HANDLER_MS[0]:g} ms / < {GOAL_HANDLER_MS[1]:g} ms | {_verdict(met)} |")
    return rows


def _clinical_rows(found: Recorded) -> list[str]:
    rows = []
    for line in found.lines:
        beyond = re.search(r"([-+][\d.]+) ms beyond /predict's", line)
        if beyond:
            value = float(beyond.group(1))
            rows.append(f"| CDS Hooks order-select beyond `/predict`, handler CPU per patient | {value:+.2f} ms | "
                        f"≤ +{GOAL_CDS_BEYOND_MS:g} ms | {_verdict(value <= GOAL_CDS_BEYOND_MS)} |")
    return rows


def newest_clinical() -> Recorded | None:
    """The newer of ``make bench-clinical``'s recording and ``make bench-serve``'s, which ends with the same."""
    candidates = [r for r in (recorded("clinical"), recorded("serve")) if r is not None]
    return max(candidates, key=lambda r: r.started) if candidates else None


def _load_rows(found: Recorded) -> list[str]:
    rows = []
    for r in (tables(found.lines) or [[]])[0]:
        failed, growth = number(r["failed"]), number(r["growth (MiB)"])
        rows.append(f"| load: {r['duration (s)']} s at {r['connections']} connections | {r['requests']} requests, "
                    f"{r['failed']} failed, {r['growth (MiB)']} MiB | 0 failed, ≤ +{GOAL_LOAD_GROWTH_MIB:g} MiB | "
                    f"{_verdict(failed == 0 and growth <= GOAL_LOAD_GROWTH_MIB)} |")
    return rows


SPEED_SOURCES = {"score": _score_rows, "shap": _shap_rows, "serve": _serve_rows, "clinical": _clinical_rows,
                 "load": _load_rows}


def speed_table() -> str | None:
    """Each measure against its goal, from the newest recording of each benchmark."""
    rows, sources = [], []
    for name, measure in SPEED_SOURCES.items():
        found = newest_clinical() if name == "clinical" else recorded(name)
        if found is None:
            continue
        rows += measure(found)
        source = f"`{found.command}` {found.started}"
        sources += [] if source in sources else [source]
    if not rows:
        return None
    return ("| measure | measured | goal | |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\nFrom "
            + "; ".join(sources) + " (`outputs/benchmarks/`).\n")
