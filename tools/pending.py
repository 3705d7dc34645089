"""What the package code still breaks under the final rule set: the findings the phase-1 blocks of pyproject.toml hide.

pyproject.toml holds three temporary blocks, marked "phase 1": a
``[tool.ruff.lint.extend-per-file-ignores]`` table, the formatter's ``exclude`` list and a mypy
override with ``ignore_errors``. This runs ruff and mypy with those blocks removed and prints, per
folder, each rule with its count and files, so the work left is visible in every ``make check``. It
never fails: the blocks are what ``make check`` enforces until they are deleted.

Usage: ``python tools/pending.py`` (``make check-pending``).
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUFF_BLOCK = "[tool.ruff.lint.extend-per-file-ignores]"
MYPY_BLOCK = "# Phase 1: the errors these packages hold today"
MYPY_LINE = re.compile(r"^(?P<path>[^:]+):\d+: error: .*\[(?P<code>[a-z-]+)\]$")


def _without_block(text: str, start: str) -> str:
    """``text`` less the TOML table that begins at the line ``start`` (up to the next table)."""
    head, found, tail = text.partition(start)
    if not found:
        return text
    following = re.search(r"^\[", tail, flags=re.MULTILINE)
    if head.endswith("\n[[tool.mypy.overrides]]\n"):  # the comment sits inside the array-of-tables entry
        head = head.removesuffix("[[tool.mypy.overrides]]\n")
    return head + (tail[following.start() :] if following else "")


def _ruff_config(pyproject: str) -> str:
    """pyproject's [tool.ruff*] tables, less the phase-1 block, as a ruff.toml."""
    kept, keep = [], False
    for line in _without_block(pyproject, RUFF_BLOCK).splitlines():
        if line.startswith("["):
            keep = line.startswith("[tool.ruff")
            if keep:
                line = "[" + line[len("[tool.ruff") :].lstrip(".") if line != "[tool.ruff]" else ""
        if keep:
            kept.append(line)
    return "\n".join(kept) + "\n"


def ruff_findings(pyproject: str) -> list[tuple[str, str]]:
    config = ROOT / ".ruff-pending.toml"
    config.write_text(_ruff_config(pyproject))
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                "check",
                "--config",
                str(config),
                "--output-format",
                "json",
                "--exit-zero",
                ".",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        config.unlink()
    return [(str(Path(f["filename"]).relative_to(ROOT)), f["code"] or "syntax") for f in json.loads(result.stdout)]


def format_findings() -> list[tuple[str, str]]:
    """The files ``ruff format`` would rewrite were its phase-1 ``exclude`` list empty."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--check",
            "--output-format",
            "concise",
            "--config",
            "format.exclude = []",
            ".",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    files = sorted({line.split(":", 1)[0] for line in result.stdout.splitlines() if "unformatted" in line})
    return [(path, "unformatted") for path in files]


def mypy_findings(pyproject: str) -> list[tuple[str, str]]:
    config = ROOT / ".mypy-pending.toml"
    config.write_text(_without_block(pyproject, MYPY_BLOCK))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-pretty", "--no-error-summary"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        config.unlink()
    return [(m["path"], m["code"]) for m in map(MYPY_LINE.match, result.stdout.splitlines()) if m]


def table(title: str, findings: list[tuple[str, str]]) -> str:
    by_folder: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for path, code in findings:
        by_folder[path.split("/")[0]][code].append(path)
    lines = [f"{title}: {len(findings)}"]
    for folder, codes in sorted(by_folder.items()):
        lines.append(f"  {folder}/: {sum(map(len, codes.values()))}")
        for code, paths in sorted(codes.items(), key=lambda item: -len(item[1])):
            files = collections.Counter(Path(p).name for p in paths)
            listed = ", ".join(f"{name} {n}" for name, n in files.most_common())
            lines.append(f"    {code} {len(paths)}: {listed}")
    return "\n".join(lines)


def main() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    print(table("ruff findings pending (phase-1 block of pyproject.toml)", ruff_findings(pyproject)))
    print(table("files to format pending (phase-1 exclude of [tool.ruff.format])", format_findings()))
    print(table("mypy errors pending (phase-1 override of pyproject.toml)", mypy_findings(pyproject)))


if __name__ == "__main__":
    main()
