"""Nothing lost, nothing unsafe: locked outputs, no temporary file a crash can leave, the user's umask,
the disk-full message, oversized records, repeated ids and defused spreadsheet formulas.

Real files, real processes (``autorisk score`` killed with SIGKILL, stopped with SIGSTOP) and a
real full file system (a small tmpfs) where the machine allows mounting one."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.schema import ID_COLUMN, INPUT_NAMES
from pipelines.cli import app
from pipelines.outputs import defuse_formulas, lock_outputs, lock_path
from pipelines.reading import MAX_RECORD_BYTES
from pipelines.score import score_file

pytestmark = pytest.mark.integration
runner = CliRunner()
AUTORISK = str(Path(sys.executable).with_name("autorisk"))
HEADER = "patient_id,age_years,sex,disease_duration_years\n"


def run_score(*args):
    return runner.invoke(app, ["score", *map(str, args)])


def read_csv_cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# --- spreadsheet formulas ----------------------------------------------------------------------

def test_text_that_a_spreadsheet_would_run_gets_an_apostrophe_in_csv_outputs(mlflow_store, tmp_path):
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER
                      + '"=HYPERLINK(""http://x"",""open"")",34,F,2\n'
                      + "+1-555,35,F,1\n"
                      + "-2,36,M,1\n"
                      + "@SUM(A1),37,M,1\n"
                      + '"\t=cmd|\' /C calc\'!A0",38,F,1\n'  # a leading tab, stripped with the spaces
                      + "p-ok,39,F,1\n"
                      + "=rejected,abc,F,1\n")
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    ids = [row[1] for row in read_csv_cells(out)[1:]]
    assert ids == ["'=HYPERLINK(\"http://x\",\"open\")", "'+1-555", "'-2", "'@SUM(A1)", "'=cmd|' /C calc'!A0", "p-ok"]
    rejects = read_csv_cells(tmp_path / "scores.rejects.csv")
    assert rejects[1][1] == "'=rejected"
    assert rejects[1][2].startswith("age_years: 'abc' is not a number")


def test_parquet_outputs_keep_the_values_unchanged(mlflow_store, tmp_path):
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER + "=1+1,34,F,2\n-7,35,F,1\n")
    out = tmp_path / "scores.parquet"
    assert run_score(source, "--out", out).exit_code == 0
    assert pd.read_parquet(out)["patient_id"].tolist() == ["=1+1", "-7"]


def test_defusing_covers_tab_and_carriage_return_and_leaves_numbers_alone():
    table = pa.table({"text": ["\tx", "\rx", "ok", None, "", "a=b"], "number": [-1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    defused = defuse_formulas(table)
    assert defused.column("text").to_pylist() == ["'\tx", "'\rx", "ok", None, "", "a=b"]
    assert defused.column("number").to_pylist() == [-1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


# --- one writer per output ---------------------------------------------------------------------

def test_a_second_run_on_a_locked_output_fails_at_once_naming_the_lock(mlflow_store, tmp_path):
    source, out = tmp_path / "clinic.csv", tmp_path / "scores.csv"
    source.write_text(HEADER + "p1,34,F,2\n")
    out.write_text("the first run's scores\n")
    with lock_outputs([out]):  # held as another run holds it: an flock on the lock file
        started = time.perf_counter()
        result = run_score(source, "--out", out)
        elapsed = time.perf_counter() - started
    assert result.exit_code == 2, result.output
    assert f"is being written by another autorisk run (its lock {lock_path(out)} is held by process {os.getpid()})" \
        in result.output
    assert elapsed < 5, "it must fail before the model loads"
    assert out.read_text() == "the first run's scores\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinic.csv", "scores.csv"]  # lock file removed


def _unnamed_outputs(pid: int, folder: Path) -> list[str]:
    """The open files of ``pid`` that are unnamed files in ``folder`` (O_TMPFILE shows as '#ino (deleted)')."""
    found = []
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith(f"{folder}/") and target.endswith("(deleted)"):
            found.append(target)
    return found


def _unnamed_bytes(pid: int, folder: Path) -> int:
    """Bytes written so far to the unnamed files of ``pid`` in ``folder``."""
    total = 0
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(entry).startswith(f"{folder}/") and os.readlink(entry).endswith("(deleted)"):
                total += os.stat(entry).st_size
        except OSError:
            continue
    return total


def _wait_for(condition, process, log: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.fixture(scope="module")
def big_cohort(make_cohort, tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "cohort.csv"
    make_cohort("care-ms1", 20_000, 43)[[ID_COLUMN, *INPUT_NAMES]].to_csv(path, index=False)
    return path


def test_two_real_runs_on_one_output_the_second_exits_2_and_the_first_completes(mlflow_store, big_cohort, tmp_path):
    out = tmp_path / "scores.csv"
    source = tmp_path / "small.csv"
    pd.read_csv(big_cohort, nrows=300).to_csv(source, index=False)
    log = tmp_path / "first.log"
    with open(log, "w") as output, subprocess.Popen([AUTORISK, "score", str(source), "--out", str(out),
                                                     "--chunk-rows", "50"],
                                                    stdout=output, stderr=subprocess.STDOUT) as first:
        _wait_for(lambda: _unnamed_outputs(first.pid, tmp_path), first, log)
        first.send_signal(signal.SIGSTOP)  # the first run holds its lock, mid-way, while the second starts
        try:
            second = subprocess.run([AUTORISK, "score", str(source), "--out", str(out)], capture_output=True,
                                    text=True, timeout=120)
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, log.read_text()
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"its lock {lock_path(out)} is held by process {first.pid}" in second.stderr
    assert "scores:" not in second.stdout
    assert len(pd.read_csv(out)) == 300  # the first run's result, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "first.log", "scores.csv", "scores.drift.json", "scores.drift.md", "scores.rejects.csv", "scores.report.html",
        "small.csv"]


def test_kill_9_leaves_no_temporary_file_and_the_next_run_completes(mlflow_store, big_cohort, tmp_path):
    folder = tmp_path / "out"
    out = folder / "scores.csv"
    log = tmp_path / "score.log"
    command = [AUTORISK, "score", str(big_cohort), "--out", str(out), "--chunk-rows", "100"]
    with open(log, "w") as output, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT) as process:
        # Until scores are being written: the outputs exist, as unnamed files in the folder.
        _wait_for(lambda: _unnamed_bytes(process.pid, folder) > 0, process, log)
        process.kill()
        assert process.wait(timeout=60) == -signal.SIGKILL
    # No file holds a patient id or a risk: only the (empty) lock files, which hold a process id.
    left = sorted(p.name for p in folder.iterdir())
    assert left == [".scores.csv.lock", ".scores.rejects.csv.lock"], left
    assert all(len((folder / name).read_bytes()) < 16 for name in left)
    small = tmp_path / "small.csv"
    pd.read_csv(big_cohort, nrows=50).to_csv(small, index=False)
    assert run_score(small, "--out", out).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "scores.csv", "scores.drift.json", "scores.drift.md", "scores.rejects.csv", "scores.report.html"]


def test_named_temporary_files_of_a_crashed_run_are_removed_by_the_next(mlflow_store, tmp_path):
    # Where the file system has no unnamed files, a run writes hidden named ones: a crash leaves them.
    source, out = tmp_path / "clinic.csv", tmp_path / "scores.csv"
    source.write_text(HEADER + "p1,34,F,2\n")
    stale = [tmp_path / ".scores.csv.0badc0de.autorisk-tmp", tmp_path / ".scores.drift.md.12345678.autorisk-tmp",
             tmp_path / ".scores.csv.qvphroo0.csv"]  # as earlier versions named them
    for path in stale:
        path.write_text("patient ids and risks of a crashed run\n")
    unrelated = tmp_path / ".notes.csv.0badc0de.autorisk-tmp"
    unrelated.write_text("another output's\n")
    assert run_score(source, "--out", out).exit_code == 0
    assert not any(p.exists() for p in stale)
    assert unrelated.exists()


def test_a_run_stopped_with_sigterm_while_writing_leaves_nothing(mlflow_store, big_cohort, tmp_path):
    folder = tmp_path / "out"
    out = folder / "scores.csv"
    log = tmp_path / "score.log"
    command = [AUTORISK, "score", str(big_cohort), "--out", str(out), "--chunk-rows", "100"]
    with open(log, "w") as output, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT) as process:
        _wait_for(lambda: len(_unnamed_outputs(process.pid, folder)) == 4, process, log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()
    assert list(folder.iterdir()) == []


# --- the user's umask ----------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_are_created_with_the_users_umask(mlflow_store, champion, tmp_path, umask, mode):
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER + "p1,34,F,2\n=x,abc,F,1\n")
    previous = os.umask(umask)
    try:
        score_file(source, tmp_path / "scores.csv", champion)
    finally:
        os.umask(previous)
    for name in ("scores.csv", "scores.rejects.csv", "scores.drift.md", "scores.drift.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# --- a full disk ---------------------------------------------------------------------------------

def _mount_tmpfs_command(folder: Path, size: str) -> list[str] | None:
    """A command prefix that runs what follows with a ``size`` tmpfs mounted on ``folder``, or None."""
    if shutil.which("unshare") is None:
        return None
    script = f'mount -t tmpfs -o size={size} tmpfs "{folder}" && exec "$@"'
    prefixes = [["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]]
    for prefix in prefixes:
        probe = subprocess.run([*prefix, "sh", "-c", script, "sh", "true"], capture_output=True)
        if probe.returncode == 0:
            return [*prefix, "sh", "-c", script, "sh"]
    return None


def test_a_full_disk_names_the_output_that_could_not_be_written(mlflow_store, big_cohort, tmp_path):
    folder = tmp_path / "small-disk"
    folder.mkdir()
    prefix = _mount_tmpfs_command(folder, "256k")
    if prefix is None:
        pytest.skip("no way to mount a small tmpfs here (needs unshare with mount namespaces)")
    source = tmp_path / "cohort.csv"
    pd.read_csv(big_cohort, nrows=2000).to_csv(source, index=False)  # about 2 MB of scores
    out = folder / "scores.csv"
    result = subprocess.run([*prefix, AUTORISK, "score", str(source), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot write {out}: No space left on device" in result.stderr
    assert str(source) not in result.stderr
    assert "Traceback" not in result.stderr


# --- oversized records ---------------------------------------------------------------------------

def test_an_oversized_record_is_rejected_alone_with_its_line(mlflow_store, tmp_path):
    huge = "x" * (5 << 20)
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER
                      + "p1,34,F,2\n"
                      + f"{huge},35,F,1\n"                      # line 3: 5 MB on one line
                      + "p3,36,M,1\n"
                      + f'"p4 {huge[:100_000]}\nmore",37,M,1\n'  # lines 5-6: quoted, over the limit
                      + "p5,38,F,1\n")
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    scores, rejects = pd.read_csv(out), pd.read_csv(tmp_path / "scores.rejects.csv")
    assert scores["line"].tolist() == [2, 4, 7]
    assert rejects["line"].tolist() == [3, 5]
    size = len(f"{huge},35,F,1\n")
    assert rejects["reason"][0] == f"record of {size:,} bytes is over the limit of {MAX_RECORD_BYTES:,} bytes"
    assert rejects["reason"][1].startswith("record of ") and "(record spans lines 5–6)" in rejects["reason"][1]


def test_an_unterminated_quote_is_rejected_without_holding_the_rest_of_the_file(mlflow_store, tmp_path):
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER + "p1,34,F,2\n" + '"p2,35,F,1\n' + "p3,36,M,1\n" * 20_000)
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    rejects = pd.read_csv(tmp_path / "scores.rejects.csv")
    assert pd.read_csv(out)["line"].tolist() == [2]
    assert rejects["line"].tolist() == [3]
    assert f"over the limit of {MAX_RECORD_BYTES:,} bytes (record spans lines 3–20003)" in rejects["reason"][0]


def test_an_oversized_parquet_row_is_rejected_alone(mlflow_store, tmp_path):
    source = tmp_path / "cohort.parquet"
    pq.write_table(pa.table({"patient_id": ["p1", "y" * 100_000, "p3"], "age_years": [34.0, 35.0, 36.0],
                             "sex": ["F", "F", "M"], "disease_duration_years": [2.0, 1.0, 1.0]}), source)
    out = tmp_path / "scores.csv"
    assert run_score(source, "--out", out).exit_code == 0
    assert pd.read_csv(out)["line"].tolist() == [1, 3]
    assert pd.read_csv(tmp_path / "scores.rejects.csv")["line"].tolist() == [2]


# --- repeated patient ids -------------------------------------------------------------------------

def test_repeated_patient_ids_are_scored_counted_and_named_in_warnings(mlflow_store, champion, tmp_path):
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER + "p1,34,F,2\np2,35,F,1\np1,34,F,2\np3,36,M,1\np2,35,F,1\np1,40,F,2\n,30,F,1\n,31,F,1\n")
    out = tmp_path / "scores.csv"
    summary = score_file(source, out, champion, chunk_rows=2)  # repeats across chunks too
    assert (summary.scored, summary.repeated_ids) == (8, 3)
    scores = pd.read_csv(out, keep_default_na=False)
    warnings = dict(zip(scores["line"], scores["warnings"]))
    assert warnings[4] == "patient_id: also scored on line 2"
    assert warnings[6] == "patient_id: also scored on line 3"
    assert warnings[7].endswith("patient_id: also scored on line 2")
    assert "patient_id" not in warnings[2] + warnings[3] + warnings[5] + warnings[8] + warnings[9]
    result = run_score(source, "--out", tmp_path / "again.csv")
    assert "3 scored records repeat a patient_id scored on an earlier line" in result.output
