"""Nothing lost, nothing unsafe: outputs locked by stem and put in place as a set, no temporary file a
crash can leave, the user's umask, the disk-full message, oversized records, repeated ids and defused
spreadsheet formulas.

Real files, real processes (``autorisk score`` killed with SIGKILL, between two renames by strace's
fault injection, stopped with SIGSTOP and SIGTERM) and a real full file system (a small tmpfs) where
the machine allows mounting one."""

from __future__ import annotations

import csv
import json
import math
import os
import re
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
from pipelines.batch_job import ScoreJob
from pipelines.cli import app
from pipelines.outputs import defuse_formulas, journal_path, lock_outputs, lock_path
from pipelines.reading import MAX_RECORD_BYTES
from pipelines.score import score_batch

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


def test_outputs_that_share_a_stem_are_locked_together(mlflow_store, tmp_path):
    # scores.csv and scores.parquet both write scores.report.html and scores.drift.*: one lock for the stem.
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER + "p1,34,F,2\n")
    with lock_outputs([tmp_path / "scores.csv"]):
        result = run_score(source, "--out", tmp_path / "scores.parquet")
    assert result.exit_code == 2, result.output
    assert f"its lock {tmp_path / '.scores.lock'} is held by process {os.getpid()}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinic.csv"]


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
    assert left == [".scores.lock", ".scores.rejects.lock"], left
    assert all(len((folder / name).read_bytes()) < 16 for name in left)
    small = tmp_path / "small.csv"
    pd.read_csv(big_cohort, nrows=50).to_csv(small, index=False)
    assert run_score(small, "--out", out).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "scores.csv", "scores.drift.json", "scores.drift.md", "scores.rejects.csv", "scores.report.html"]


def test_sigterm_while_the_outputs_go_in_place_waits_for_the_last_rename(mlflow_store, champion, big_cohort,
                                                                         tmp_path):
    strace = shutil.which("strace")
    if strace is None or subprocess.run([strace, "-o", "/dev/null", "true"], capture_output=True).returncode:
        pytest.skip("strace cannot trace processes here (not installed, or ptrace is not allowed)")
    folder = tmp_path / "out"
    out = folder / "scores.csv"
    earlier, later = tmp_path / "earlier.csv", tmp_path / "later.csv"
    pd.read_csv(big_cohort, nrows=150).to_csv(earlier, index=False)
    pd.read_csv(big_cohort, nrows=1).to_csv(later, index=False)
    score_batch(ScoreJob.to(earlier, out), champion)
    injected = [strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2",
                "-e", "inject=rename,renameat,renameat2:signal=SIGTERM:when=3"]
    stopped = subprocess.run([*injected, AUTORISK, "score", str(later), "--out", str(out)], capture_output=True,
                             text=True, timeout=300)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout + stopped.stderr
    assert "error: stopped by SIGTERM" in stopped.stderr
    # The signal came as the rejects went in place; it was held back until the set was whole.
    assert _describe(folder) == {"scores.csv": "1 patients", "scores.drift.json": "1 patients",
                                 "scores.report.html": "later.csv", "scores.rejects.csv": "0 rejected"}
    assert not journal_path(out).exists()


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


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_run_stopped_with_sigterm_or_ctrl_c_while_writing_leaves_nothing_and_says_so(mlflow_store, big_cohort,
                                                                                        tmp_path, stop):
    folder = tmp_path / "out"
    out = folder / "scores.csv"
    log = tmp_path / "score.log"
    command = [AUTORISK, "score", str(big_cohort), "--out", str(out), "--chunk-rows", "100"]
    with open(log, "w") as output, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT) as process:
        # The scores, rejects, drift report and data and the HTML report, all unnamed from the start.
        _wait_for(lambda: len(_unnamed_outputs(process.pid, folder)) == 5, process, log)
        process.send_signal(stop)
        assert process.wait(timeout=120) == 128 + stop, log.read_text()
    assert list(folder.iterdir()) == []
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines == [f"error: stopped by {stop.name}: a run's outputs are put in place only when it completes, so "
                     "none of this run's is left half-written"], lines  # it was exit 143 without a word


def _describe(folder: Path) -> dict[str, str]:
    """Which run each output in ``folder`` came from: the patients scored, the cohort size the drift
    report compared, the input the report names."""
    described = {}
    if (folder / "scores.csv").exists():
        described["scores.csv"] = f"{len(pd.read_csv(folder / 'scores.csv'))} patients"
    if (folder / "scores.drift.json").exists():
        described["scores.drift.json"] = f"{json.loads((folder / 'scores.drift.json').read_text())['n']} patients"
    if (folder / "scores.report.html").exists():
        described["scores.report.html"] = re.search(r"input (\S+?);", (folder / "scores.report.html").read_text())[1]
    if (folder / "scores.rejects.csv").exists():
        described["scores.rejects.csv"] = f"{len(pd.read_csv(folder / 'scores.rejects.csv'))} rejected"
    return described


def test_a_run_killed_between_two_renames_never_leaves_another_runs_report_and_the_next_completes_it(
        mlflow_store, champion, big_cohort, tmp_path):
    strace = shutil.which("strace")
    if strace is None or subprocess.run([strace, "-o", "/dev/null", "true"], capture_output=True).returncode:
        pytest.skip("strace cannot trace processes here (not installed, or ptrace is not allowed)")
    folder = tmp_path / "out"
    out = folder / "scores.csv"
    earlier, later = tmp_path / "earlier.csv", tmp_path / "later.csv"
    pd.read_csv(big_cohort, nrows=150).to_csv(earlier, index=False)
    pd.read_csv(big_cohort, nrows=1).to_csv(later, index=False)
    score_batch(ScoreJob.to(earlier, out), champion)
    # The run's renames are its journal's, then one per output in the order scores, rejects, drift,
    # report: SIGKILL on the third, as the rejects go in place, once the scores are.
    injected = [strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2",
                "-e", "inject=rename,renameat,renameat2:signal=SIGKILL:when=3"]
    killed = subprocess.run([*injected, AUTORISK, "score", str(later), "--out", str(out)], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), killed.stdout + killed.stderr
    assert _describe(folder) == {"scores.csv": "1 patients"}  # the earlier run's files are gone first
    assert journal_path(out).exists()
    # The next run on the stem, even one that fails at once, puts the killed run's committed set in place.
    broken = tmp_path / "broken.csv"
    broken.write_text("patient_id,age\np1,3\n")
    assert run_score(broken, "--out", out).exit_code == 2
    assert _describe(folder) == {"scores.csv": "1 patients", "scores.drift.json": "1 patients",
                                 "scores.report.html": "later.csv", "scores.rejects.csv": "0 rejected"}
    assert sorted(p.name for p in folder.iterdir()) == [
        "scores.csv", "scores.drift.json", "scores.drift.md", "scores.rejects.csv", "scores.report.html"]


# --- the user's umask ----------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_are_created_with_the_users_umask(mlflow_store, champion, tmp_path, umask, mode):
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER + "p1,34,F,2\n=x,abc,F,1\n")
    previous = os.umask(umask)
    try:
        score_batch(ScoreJob.to(source, tmp_path / "scores.csv"), champion)
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


def test_a_full_disk_while_the_report_is_written_leaves_nothing_of_the_run(mlflow_store, champion, big_cohort,
                                                                         tmp_path):
    source = tmp_path / "cohort.csv"
    pd.read_csv(big_cohort, nrows=300).to_csv(source, index=False)
    sized = tmp_path / "sized"
    score_batch(ScoreJob.to(source, sized / "scores.csv"), champion)
    pages = {p.name: math.ceil(p.stat().st_size / 4096) * 4096 for p in sized.iterdir()}
    report = pages.pop("scores.report.html")
    assert report > 16 * 4096, report  # a disk that holds the other outputs and not the report
    folder = tmp_path / "small-disk"
    folder.mkdir()
    prefix = _mount_tmpfs_command(folder, str(sum(pages.values()) + 8 * 4096))
    if prefix is None:
        pytest.skip("no way to mount a small tmpfs here (needs unshare with mount namespaces)")
    listing = tmp_path / "left.txt"
    script = f'"$@"; code=$?; ls -A "{folder}" > "{listing}"; exit $code'
    result = subprocess.run([*prefix, "sh", "-c", script, "sh", AUTORISK, "score", str(source), "--out",
                             str(folder / "scores.csv")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot write {folder / 'scores.report.html'}: No space left on device" in result.stderr
    assert listing.read_text().split() == []  # the scores, rejects and drift fitted, and are gone too


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
    summary = score_batch(ScoreJob.to(source, out, chunk_rows=2), champion)  # repeats across chunks too
    assert (summary.scored, summary.repeated_ids) == (8, 3)
    scores = pd.read_csv(out, keep_default_na=False)
    warnings = dict(zip(scores["line"], scores["warnings"], strict=True))
    assert warnings[4] == "patient_id: also scored on line 2"
    assert warnings[6] == "patient_id: also scored on line 3"
    assert warnings[7].endswith("patient_id: also scored on line 2")
    assert "patient_id" not in warnings[2] + warnings[3] + warnings[5] + warnings[8] + warnings[9]
    result = run_score(source, "--out", tmp_path / "again.csv")
    assert "3 scored records repeat a patient_id scored on an earlier line" in result.output
