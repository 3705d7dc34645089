"""Run a benchmark and keep what it printed, for the docs' tables: ``outputs/benchmarks/<name>.txt``.

The file starts with one line saying what ran, when, on how many cores and at which commit; the rest is the
benchmark's own output, shown on the terminal as it comes. ``tools/docs_tables.py`` renders the docs' benchmark
blocks from these files, so no figure of a benchmark is typed into the docs by hand.

    .venv/bin/python tools/bench_record.py NAME -- COMMAND [ARG ...]

Exits with the benchmark's own status; a failed benchmark leaves its output beside (``NAME.failed.txt``), never
in place of the last good one.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "outputs" / "benchmarks"
HEADER_PREFIX = "# benchmark:"


def commit() -> str:
    """The checkout's commit, with ``+changes`` where the tree differs from it."""
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if found.returncode:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return found.stdout.strip() + ("+changes" if dirty else "")


def header(name: str, command: list[str]) -> str:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    shown = " ".join(shlex.quote(part) for part in command)
    return f"{HEADER_PREFIX} {name} | {started} | {os.cpu_count()} cores | commit {commit()} | {shown}\n"


def record(name: str, command: list[str], folder: Path = FOLDER) -> int:
    """Run ``command``, echoing and keeping its output as ``folder/<name>.txt``; returns its exit status."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{name}.partial.txt"
    with partial.open("w", encoding="utf-8") as out:
        out.write(header(name, command))
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
            assert process.stdout is not None
            for line in process.stdout:
                sys.stdout.write(line)
                out.write(line)
    target = folder / (f"{name}.txt" if process.returncode == 0 else f"{name}.failed.txt")
    partial.replace(target)
    print(f"recorded {target}", file=sys.stderr)
    return process.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="The benchmark's name: the file's, and the docs block's source.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the benchmark's command line.")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is needed after --")
    return record(args.name, command)


if __name__ == "__main__":
    raise SystemExit(main())
