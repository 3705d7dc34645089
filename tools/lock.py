"""The lockfiles: compile them from pyproject.toml with pip-tools, and check that they are not stale.

Two files, both with a sha256 for every distribution, so that ``pip install --require-hashes``
installs exactly what was tested:

- ``requirements.lock``: the ``[project]`` dependencies, which the Bento installs (bentofile.yaml);
- ``requirements-dev.lock``: the same pins plus the ``dev`` and ``spark`` extras and the build
  backend, which ``make install`` installs (and so ``make demo``, ``make test`` and ``make check``).

Each file starts with a fingerprint: the sha256 of the inputs it was compiled from (``requires-python``,
the dependencies, every extra and the build system's requirements, as written in pyproject.toml, and
the options below). ``check`` recomputes it, as Poetry's ``content-hash`` does: any change to those
inputs without ``make lock`` makes CI fail. It also checks, without the network, that every
requirement of pyproject.toml is pinned at a version it allows, that every pin has hashes and that
the two files pin the same versions; ``pip install --require-hashes`` then refuses any dependency
the lock left out.

Usage::

    python tools/lock.py compile                      # keep the pins, add what pyproject.toml asks for
    python tools/lock.py compile --upgrade xgboost    # move one package (and what it needs) to its newest
    python tools/lock.py compile --upgrade-all        # move everything
    python tools/lock.py check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK, DEV_LOCK = "requirements.lock", "requirements-dev.lock"
# The Python the locks are compiled for (environment markers, wheels); bentofile.yaml's image uses the same.
LOCK_PYTHON = "3.11"
EXTRAS = ("dev", "spark")
INDEX = "https://pypi.org/simple"
COMMON = [
    "--generate-hashes",
    "--allow-unsafe",
    "--strip-extras",
    "--no-emit-index-url",
    "--no-emit-find-links",
    "--no-emit-trusted-host",
    "--resolver=backtracking",
    "--quiet",
]
FINGERPRINT = "# inputs-sha256: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def fingerprint(root: Path = ROOT) -> str:
    """The sha256 of what the locks are compiled from: pyproject's requirements and the compile options."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    project = data["project"]
    inputs = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-system": data.get("build-system", {}).get("requires", []),
        "extras": EXTRAS,
        "options": COMMON,
        "python": LOCK_PYTHON,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """``{canonical name: (version, number of hashes)}`` of a compiled lock."""
    found: dict[str, tuple[str, int]] = {}
    name = None
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonical(match.group(1))
            found[name] = (match.group(2), 0)
        if name is not None and "--hash=sha256:" in line:
            version, count = found[name]
            found[name] = (version, count + line.count("--hash=sha256:"))
    return found


def _pip_compile(output: str, *extra: str) -> None:
    # PyPI alone, whatever this machine's pip configuration adds (local mirrors, find-links): the
    # hashes must be those of the files every machine downloads.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    environment["PIP_CONFIG_FILE"] = os.devnull
    environment["CUSTOM_COMPILE_COMMAND"] = "make lock"
    command = [
        sys.executable,
        "-m",
        "piptools",
        "compile",
        *COMMON,
        "--index-url",
        INDEX,
        "--output-file",
        output,
        *extra,
        "pyproject.toml",
    ]
    subprocess.run(command, cwd=ROOT, env=environment, check=True)


def _stamp(lock: Path, stamp: str) -> None:
    lines = [line for line in lock.read_text().splitlines() if not line.startswith(FINGERPRINT)]
    lock.write_text("\n".join([f"{FINGERPRINT}{stamp}", *lines]) + "\n")


def compile_locks(upgrade: list[str], upgrade_all: bool) -> None:
    """Compile both locks (the dev lock constrained to the runtime lock's pins) and stamp them."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != LOCK_PYTHON:
        raise SystemExit(
            f"the locks are compiled for Python {LOCK_PYTHON} (bentofile.yaml's image too); this is Python {running}"
        )
    moving = ["--upgrade"] if upgrade_all else [arg for name in upgrade for arg in ("--upgrade-package", name)]
    _pip_compile(RUNTIME_LOCK, *moving)
    _pip_compile(
        DEV_LOCK,
        *moving,
        *(arg for extra in EXTRAS for arg in ("--extra", extra)),
        "--all-build-deps",
        "--constraint",
        RUNTIME_LOCK,
    )
    stamp = fingerprint()
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        _stamp(ROOT / lock, stamp)
    print(
        f"wrote {RUNTIME_LOCK} ({len(pins(ROOT / RUNTIME_LOCK))} packages) and {DEV_LOCK} "
        f"({len(pins(ROOT / DEV_LOCK))} packages)"
    )


def _requirements(root: Path, extras: tuple[str, ...]) -> list[str]:
    data = tomllib.loads((root / "pyproject.toml").read_text())
    project = data["project"]
    found = list(project.get("dependencies", []))
    for extra in extras:
        found += project.get("optional-dependencies", {}).get(extra, [])
    if extras:
        found += data.get("build-system", {}).get("requires", [])
    return found


def problems(root: Path = ROOT) -> list[str]:
    """Why the locks in ``root`` do not match its pyproject.toml; empty when they do."""
    from packaging.requirements import Requirement

    found = []
    stamp = fingerprint(root)
    runtime, dev_lock = root / RUNTIME_LOCK, root / DEV_LOCK
    for lock, extras in ((runtime, ()), (dev_lock, EXTRAS)):
        if not lock.is_file():
            found.append(f"{lock.name} is missing")
            continue
        first = lock.read_text().splitlines()[:1]
        if first != [f"{FINGERPRINT}{stamp}"]:
            found.append(
                f"{lock.name} was compiled from other requirements than pyproject.toml's now "
                "(its inputs-sha256 differs)"
            )
        pinned = pins(lock)
        for text in _requirements(root, extras):
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            entry = pinned.get(canonical(requirement.name))
            if entry is None:
                found.append(f"{lock.name} does not pin {requirement.name} ({text})")
            elif not requirement.specifier.contains(entry[0], prereleases=True):
                found.append(f"{lock.name} pins {requirement.name}=={entry[0]}, outside {text}")
        found += [
            f"{lock.name}: {name}=={version} has no hash" for name, (version, count) in pinned.items() if count == 0
        ]
    if runtime.is_file() and dev_lock.is_file():
        dev = pins(dev_lock)
        found += [
            f"{DEV_LOCK} pins {name}=={dev[name][0]}, {RUNTIME_LOCK} {version}"
            for name, (version, _) in pins(runtime).items()
            if name in dev and dev[name][0] != version
        ]
        found += [f"{DEV_LOCK} lacks {name}, which {RUNTIME_LOCK} pins" for name in pins(runtime) if name not in dev]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compiling = commands.add_parser("compile", help="compile requirements.lock and requirements-dev.lock")
    compiling.add_argument(
        "--upgrade",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="move PACKAGE to its newest version allowed (may be repeated)",
    )
    compiling.add_argument("--upgrade-all", action="store_true", help="move every package to its newest version")
    commands.add_parser("check", help="fail when a lock is stale against pyproject.toml")
    args = parser.parse_args()
    if args.command == "compile":
        compile_locks(args.upgrade, args.upgrade_all)
        return
    found = problems()
    if found:
        print(
            "the lockfiles are stale:\n  " + "\n  ".join(found) + "\nrun `make lock` and commit both files",
            file=sys.stderr,
        )
        raise SystemExit(1)
    print(f"{RUNTIME_LOCK} and {DEV_LOCK} match pyproject.toml")


if __name__ == "__main__":
    main()
