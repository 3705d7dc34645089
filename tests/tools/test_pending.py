"""`make check-pending`: the rule set without pyproject.toml's phase-1 blocks, which it reports on."""

import tomllib
from pathlib import Path

from tools.pending import MYPY_BLOCK, RUFF_BLOCK, _ruff_config, _without_block, table

PYPROJECT = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()


def test_the_ruff_config_keeps_the_rules_and_drops_only_the_phase_1_ignores():
    config = tomllib.loads(_ruff_config(PYPROJECT))
    ruff = tomllib.loads(PYPROJECT)["tool"]["ruff"]
    assert config["lint"]["select"] == ruff["lint"]["select"]
    assert config["lint"]["mccabe"] == ruff["lint"]["mccabe"] and config["lint"]["pylint"] == ruff["lint"]["pylint"]
    assert config["lint"]["per-file-ignores"] == ruff["lint"]["per-file-ignores"]
    assert "extend-per-file-ignores" in ruff["lint"] and "extend-per-file-ignores" not in config["lint"]


def test_the_mypy_config_drops_only_the_ignore_errors_override():
    mypy = tomllib.loads(PYPROJECT)["tool"]["mypy"]
    kept = tomllib.loads(_without_block(PYPROJECT, MYPY_BLOCK))["tool"]["mypy"]
    assert [o for o in mypy["overrides"] if not o.get("ignore_errors")] == kept["overrides"]
    assert any(o.get("ignore_errors") for o in mypy["overrides"])
    assert {k: v for k, v in kept.items() if k != "overrides"} == {k: v for k, v in mypy.items() if k != "overrides"}
    assert _without_block(PYPROJECT, RUFF_BLOCK) != PYPROJECT


def test_the_table_counts_per_folder_rule_and_file():
    findings = [("models/cure.py", "ANN001"), ("models/cure.py", "ANN001"), ("models/survival.py", "B905")]
    assert table("pending", findings).splitlines() == [
        "pending: 3",
        "  models/: 3",
        "    ANN001 2: cure.py 2",
        "    B905 1: survival.py 1",
    ]
