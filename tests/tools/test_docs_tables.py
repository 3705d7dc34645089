"""The docs' marked blocks: each has a generator, the ones from the tree alone are up to date, and the
benchmark blocks are rendered from a real recording of a benchmark's output."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools import bench_record, bench_tables, docs_tables

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!-- ([a-z0-9-]+):start")


def marked_blocks() -> dict[str, Path]:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found: dict[str, Path] = {}
    for path in documents:
        for name in MARKER.findall(path.read_text(encoding="utf-8")):
            assert name not in found, f"block {name} is marked in {found.get(name)} and {path}"
            found[name] = path
    return found


def test_every_marked_block_has_a_generator_for_its_file_and_every_generator_a_block():
    blocks = marked_blocks()
    assert set(blocks) == set(docs_tables.GENERATORS), (
        f"blocks without a generator: {sorted(set(blocks) - set(docs_tables.GENERATORS))}; "
        f"generators without a block: {sorted(set(docs_tables.GENERATORS) - set(blocks))}")
    for name, path in blocks.items():
        assert docs_tables.GENERATORS[name][0] == path, name
        text = path.read_text(encoding="utf-8")
        assert f"<!-- {name}:end -->" in text, f"{path.name}: block {name} has no end marker"


@pytest.mark.parametrize("name", ["features", "fhir-codes", "world-list"])
def test_the_blocks_from_the_tree_alone_are_up_to_date(name):
    assert docs_tables.rewrite(name, check=True) == "up to date", f"run: .venv/bin/python tools/docs_tables.py {name}"


def test_a_recorded_benchmark_becomes_its_block(tmp_path, monkeypatch):
    command = [sys.executable, "benchmarks/simulate.py", "--sizes", "2000", "--repeats", "1"]
    assert bench_record.record("simulate", command, folder=tmp_path) == 0
    monkeypatch.setattr(bench_tables, "FOLDER", tmp_path)
    found = bench_tables.recorded("simulate")
    assert found is not None and found.cores.endswith("cores") and "benchmarks/simulate.py" in found.command
    text = bench_tables.block("simulate")
    rows = bench_tables.tables(text.splitlines())[0]
    assert [r["patients"] for r in rows] == ["2,000"]
    assert float(rows[0]["median seconds"]) > 0 and bench_tables.number(rows[0]["peak memory (MiB)"]) > 50


def test_a_failed_benchmark_keeps_the_last_good_recording(tmp_path):
    good = [sys.executable, "-c", "print('| a |'); print('|---|'); print('| 1 |')"]
    assert bench_record.record("x", good, folder=tmp_path) == 0
    assert bench_record.record("x", [sys.executable, "-c", "raise SystemExit(3)"], folder=tmp_path) == 3
    assert bench_tables.recorded("x", tmp_path).report() == "| a |\n|---|\n| 1 |"
    assert (tmp_path / "x.failed.txt").is_file()


SCORE_REPORT = """# benchmark: score | 2026-12-08 03:00 UTC | 2 cores | commit abc1234 | python benchmarks/score.py
1,000,000 patients, repeat 1: {"cure-xgboost limit": {}}
| model | patients | input | scoring (s) | whole command (s) | CPU (s) | rows/s | in-process limit (rows/s) | ratio | CPU per row: limit / end to end | peak memory (MiB) |
|---|---|---|---|---|---|---|---|---|---|---|
| cure-xgboost v1 | 100,000 | Parquet | 3.0 | 9.0 | 4.0 | 33,333 | 300,000 | 0.11 | 0.40 | 600 |
| cure-xgboost v1 | 1,000,000 | Parquet | 24.0 | 31.5 | 40.0 | 41,667 | 300,000 | 0.14 | 0.45 | 840 |

| model | patients | method | wall (µs/row) | CPU (µs/row) | CPU over the margin's |
|---|---|---|---|---|---|
| cure-xgboost | 100,000 | exact SHAP, autorisk's tables | 10.0 | 15.0 | 1.9 |
"""


def test_the_speed_table_judges_each_recorded_figure_against_its_goal(tmp_path, monkeypatch):
    (tmp_path / "score.txt").write_text(SCORE_REPORT, encoding="utf-8")
    monkeypatch.setattr(bench_tables, "FOLDER", tmp_path)
    rows = {r["measure"]: r for r in bench_tables.tables(bench_tables.speed_table().splitlines())[0]}
    million = rows["a million patients, `autorisk score` from Parquet, intervals and exact SHAP (cure-xgboost v1): "
                   "scoring / whole command, CPU"]
    assert million["measured"] == "24.0 s / 31.5 s, 40.0 s CPU" and million[""] == "**not met**"  # 31.5 > 30
    memory = rows["peak memory, a million over 100,000 patients (cure-xgboost v1, Parquet)"]
    assert memory["measured"] == "1.40×" and memory[""] == "met"
    assert rows["the same, end to end over the in-process limit, by CPU"][""] == "**not met**"  # 0.45 < 0.5
    shap = rows["exact SHAP CPU per patient over the trees' own margin, all cores (cure-xgboost, 100,000 rows)"]
    assert shap["measured"] == "1.9×" and shap[""] == "met"


def test_the_script_refuses_an_unknown_block():
    result = subprocess.run([sys.executable, "tools/docs_tables.py", "--check", "nonsense"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no generator for block(s) nonsense" in result.stderr
