"""`make lock-check`: the committed lockfiles match pyproject.toml, and each way of going stale is caught."""

import re
import shutil
from pathlib import Path

import pytest

from tools.lock import DEV_LOCK, FINGERPRINT, RUNTIME_LOCK, fingerprint, pins, problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    """A copy of pyproject.toml and both lockfiles, to break one way at a time."""
    for name in ("pyproject.toml", RUNTIME_LOCK, DEV_LOCK):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_committed_locks_match_pyproject():
    assert problems(ROOT) == []
    runtime, dev = pins(ROOT / RUNTIME_LOCK), pins(ROOT / DEV_LOCK)
    # The dev lock adds the tools and extras to exactly the runtime pins, every file hashed.
    assert all(dev[name][0] == version for name, (version, _) in runtime.items())
    assert {"pytest", "ruff", "mypy", "coverage", "pip-tools", "pyspark"} <= set(dev) - set(runtime)
    assert "setuptools" in dev  # the build backend, for the editable install without build isolation
    assert all(count > 0 for _, count in dev.values())


def test_a_changed_requirement_makes_the_locks_stale(project):
    edit(project / "pyproject.toml", '"xgboost>=3.1"', '"xgboost>=3.1,<9"')
    found = problems(project)
    assert (
        f"{RUNTIME_LOCK} was compiled from other requirements than pyproject.toml's now (its inputs-sha256 differs)"
        in found
    )
    assert any(line.startswith(DEV_LOCK) for line in found)


def test_a_new_requirement_must_be_pinned(project):
    edit(project / "pyproject.toml", '"numpy>=1.26",', '"numpy>=1.26",\n    "not-locked-anywhere>=1",')
    assert f"{RUNTIME_LOCK} does not pin not-locked-anywhere (not-locked-anywhere>=1)" in problems(project)


def test_a_pin_outside_its_range_a_pin_without_hashes_and_locks_that_disagree(project):
    lock = project / RUNTIME_LOCK
    version = pins(lock)["xgboost"][0]
    text = lock.read_text()
    # Moved by hand (the fingerprint still matches: only the pins are wrong).
    text = text.replace(f"\nxgboost=={version} \\", "\nxgboost==3.0.0 \\", 1)
    text = re.sub(r"(\nsix==[^ ]+) \\\n(    --hash=sha256:[0-9a-f]+ \\\n)*    --hash=sha256:[0-9a-f]+\n", r"\1\n", text)
    lock.write_text(text)
    found = problems(project)
    assert "requirements.lock pins xgboost==3.0.0, outside xgboost>=3.1" in found
    assert f"{RUNTIME_LOCK}: six=={pins(lock)['six'][0]} has no hash" in found
    assert f"{DEV_LOCK} pins xgboost=={version}, {RUNTIME_LOCK} 3.0.0" in found


def test_a_missing_lock_is_named(project):
    (project / DEV_LOCK).unlink()
    assert problems(project) == [f"{DEV_LOCK} is missing"]


def test_the_fingerprint_is_the_first_line_and_ignores_other_settings(project):
    assert (project / RUNTIME_LOCK).read_text().splitlines()[0] == f"{FINGERPRINT}{fingerprint(project)}"
    edit(project / "pyproject.toml", "max-complexity = 10", "max-complexity = 12")
    assert problems(project) == []
