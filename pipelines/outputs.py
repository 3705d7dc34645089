"""Output files that are complete or absent as a set, one writer per stem, safe to open in a spreadsheet.

- **One writer per stem.** :func:`lock_outputs` takes an exclusive ``flock`` on a lock file
  beside each output, named after the output's stem (``scores.csv`` and ``scores.parquet`` share
  ``.scores.lock``), before anything is loaded or read: every file a run writes beside its scores
  (``scores.rejects.csv``, ``scores.drift.md``, ``scores.report.html``) carries that stem, so no two
  runs can write the same report. A second run fails at once, naming the lock. The kernel releases
  the lock when its process ends, however it ends; the file itself is removed at the end of the
  run, and one left by a killed run is reused and removed by the next.
- **Complete or absent, as a set.** :class:`OutputGroup` writes every output of a run to an unnamed
  file (Linux ``O_TMPFILE``) in its folder; they can be read back while unnamed
  (:meth:`OutputGroup.readable`, for the run's report). At :meth:`OutputGroup.commit` they are
  flushed to disk (where a full disk shows itself), given hidden names, and a journal naming them
  is written: that is the moment the run completes. Then the previous run's files of the set are
  removed and the new ones renamed into place, with SIGTERM and Ctrl-C held back until the last
  rename. A run that fails, is stopped or is killed before the journal leaves no file holding
  patient ids or risks (an unnamed file has no name to leave, and hidden names a ``kill -9`` left
  are removed by the next run on that stem); one killed after it never leaves another run's
  report beside its scores, and the next run on the stem completes the set from the journal.
  Where the file system cannot make unnamed files, hidden named files are used from the start.
- **The user's umask.** Outputs are created with mode 0666 less the umask, as any program's
  are, so that colleagues sharing a folder can read them.
- **Errors name the output.** A full disk or another write error raises :class:`OutputError`
  naming the file that could not be written.
- **Spreadsheet formulas defused.** :func:`defuse_formulas`: in CSV outputs a text cell that
  begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe,
  as OWASP advises against CSV injection, so that a patient id such as ``=HYPERLINK(...)`` is
  shown as text, never run as a formula. Parquet keeps values unchanged.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

TEMPORARY_SUFFIX = ".autorisk-tmp"
JOURNAL_SUFFIX = ".autorisk-commit"
_HIDDEN_NAME = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{8}" + re.escape(TEMPORARY_SUFFIX))
# Held back while a set of outputs is put in place, so that it is put in place whole.
DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# OWASP, CSV injection: cells beginning with these are read as formulas by spreadsheet programs.
FORMULA_START = r"^[=+\-@\t\r]"


class OutputError(OSError):
    """An output file could not be written; the message names it.

    Attributes
    ----------
    path : str
        The output.
    """

    def __init__(self, code: int | None, message: str, path: str) -> None:
        super().__init__(message)
        self.errno = code
        self.path = path


class OutputLockedError(OutputError):
    """Another run holds the lock of an output."""


def lock_path(output: Path) -> Path:
    """``scores.csv`` -> ``.scores.lock`` in the same folder: one lock for every output of that stem."""
    output = Path(output)
    return output.with_name(f".{output.stem}.lock")


def journal_path(output: Path) -> Path:
    """``scores.csv`` -> ``.scores.autorisk-commit``: the set of outputs being put in place."""
    output = Path(output)
    return output.with_name(f".{output.stem}{JOURNAL_SUFFIX}")


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" by process {pid}" if pid.isdigit() else ""


def _lock_one(output: Path) -> int:
    """The descriptor of ``output``'s lock file, locked exclusively; OutputLockedError when taken."""
    path = lock_path(output)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise OutputLockedError(
                errno.EWOULDBLOCK,
                f"{output} is being written by another autorisk run (its lock {path} is held{_holder(path)}); "
                "wait for that run to finish, or choose another output", str(output)) from None
        # The previous holder removes the file as it releases it: if this descriptor's file is
        # no longer the one at the path, the lock is on a removed file and is worth nothing.
        try:
            same = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode("ascii"))
            return descriptor
        os.close(descriptor)


def _unlock_one(output: Path, descriptor: int) -> None:
    lock_path(output).unlink(missing_ok=True)  # while still held, so no other run holds this file
    os.close(descriptor)


def remove_stale_temporaries(output: Path) -> list[Path]:
    """Remove named temporary files that an earlier run on ``output`` left behind; return them.

    Only safe while holding ``output``'s lock: then no live run is writing them.
    """
    output = Path(output)
    if not output.parent.is_dir():
        return []
    prefix = f".{output.name}."
    # Also the names earlier versions gave their temporary files (tempfile.mkstemp: eight characters
    # of [a-z0-9_] between the output's name and its suffix), which a killed run left behind.
    legacy = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(output.suffix) + "$")
    stale = [entry for entry in output.parent.iterdir()
             if entry.is_file() and entry.name.startswith(prefix)
             and (entry.name.endswith(TEMPORARY_SUFFIX) or legacy.match(entry.name))]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def complete_interrupted_commit(output: Path) -> list[Path]:
    """Finish putting in place the set of outputs a killed run had committed; return the files put in place.

    The journal beside ``output`` (:func:`journal_path`) lists hidden files and their targets; it is
    written only once every file of the set is on disk, so the set is complete and is put in place.
    A journal that cannot be read, or that names files other than hidden outputs beside their
    targets, is removed with nothing moved. Only safe while holding ``output``'s lock.
    """
    journal = journal_path(output)
    remove_stale_temporaries(journal)  # a journal cut short while written: the set was never committed
    try:
        entries = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        journal.unlink(missing_ok=True)
        return []
    pairs = []
    for hidden, target in entries if isinstance(entries, list) else []:
        hidden, target = Path(hidden), Path(target)
        match = _HIDDEN_NAME.fullmatch(hidden.name)
        if hidden.parent != target.parent or match is None or match["target"] != target.name:
            journal.unlink(missing_ok=True)
            return []
        pairs.append((hidden, target))
    placed = [target for hidden, target in pairs if hidden.exists()]
    _put_in_place(pairs)
    journal.unlink(missing_ok=True)
    _sync_folder(journal.parent)
    return placed


@contextmanager
def lock_outputs(outputs: Sequence[Path], companions: Sequence[Path] = ()) -> Iterator[None]:
    """Hold an exclusive lock on the stem of each of ``outputs`` (their folders are created) for the block.

    Parameters
    ----------
    outputs : sequence of Path
        Files whose stems to lock (``scores.csv`` locks every ``scores.*`` a run writes).
    companions : sequence of Path
        Files written only by whoever holds the first output's lock (the drift report and the
        report beside the scores): not locked themselves, but their stale temporary files are
        removed too.

    Raises
    ------
    OutputLockedError
        At once, when another run holds one of the locks; nothing is changed then.
    OutputError
        When a folder or lock file cannot be created.
    """
    with ExitStack() as stack:
        locked = {}
        for output in sorted({Path(o).resolve() for o in outputs}):
            if lock_path(output) in locked:
                continue
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                descriptor = _lock_one(output)
            except OutputLockedError:
                raise
            except OSError as error:
                raise OutputError(error.errno, f"cannot create {output}: {error.strerror or error}",
                                  str(output)) from error
            locked[lock_path(output)] = output
            stack.callback(_unlock_one, output, descriptor)
        for output in locked.values():
            complete_interrupted_commit(output)
        for path in [*outputs, *companions]:
            remove_stale_temporaries(Path(path))
        yield


@contextmanager
def signals_deferred(signals: Sequence[int] = DEFERRED_SIGNALS) -> Iterator[None]:
    """Hold ``signals`` back for the block, then deliver any that came to the handlers they had.

    Python runs signal handlers between bytecodes of the main thread, so a handler that raises
    (a stopped command unwinding) could otherwise interrupt the block half-way. Outside the main
    thread, where handlers cannot be changed, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {number: signal.signal(number, lambda received, frame: arrived.append(received))
                for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default then.
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(arrived):
            signal.raise_signal(number)


def _unnamed_file(folder: Path) -> int | None:
    """A descriptor of a new unnamed file in ``folder``, or None where the file system has none."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # no O_TMPFILE on this file system
        raise


def _hidden_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def _named_file(target: Path) -> tuple[int, Path]:
    while True:
        path = _hidden_name(target)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), path
        except FileExistsError:
            continue


def _link(descriptor: int, target: Path) -> Path:
    """Give an unnamed file a hidden name beside ``target``: link() never overwrites, so a fresh one."""
    named = _hidden_name(target)
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # linkat(AT_SYMLINK_FOLLOW) on the descriptor's /proc entry, as open(2) documents for
        # O_TMPFILE; Python calls linkat rather than link() only when a folder descriptor is given.
        os.link(f"/proc/self/fd/{descriptor}", named.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)
    return named


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)  # the new names survive a power cut
    finally:
        os.close(descriptor)


def _write_journal(journal: Path, pairs: list[tuple[Path, Path]]) -> None:
    """The journal, complete or absent: written under a hidden name, flushed, then renamed."""
    text = json.dumps([[str(hidden), str(target)] for hidden, target in pairs]) + "\n"
    descriptor, named = _named_file(journal)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(named, journal)
    except BaseException:
        named.unlink(missing_ok=True)
        raise
    _sync_folder(journal.parent)


def _put_in_place(pairs: list[tuple[Path, Path]]) -> None:
    """Remove every target of the set, then rename each hidden file onto its target.

    The previous run's files go first, last one first (its report before its scores), so that
    whatever stops this half-way never leaves one run's report beside another's scores; the new
    ones come in the order given (the scores first, the report last). Renames need no space; a
    failure names its target.
    """
    for hidden, target in reversed(pairs):
        if hidden.exists():
            try:
                target.unlink(missing_ok=True)
            except IsADirectoryError as error:
                raise write_error(target, error) from error
    for hidden, target in pairs:
        try:
            if hidden.exists():
                os.replace(hidden, target)
        except OSError as error:
            raise write_error(target, error) from error


class OutputGroup:
    """Files written together and put in place together: all of them when the run completes, else none.

    Each file is unnamed while written (or hidden and named, see the module's notes). At
    :meth:`commit` every file is flushed to disk first, where a full disk shows itself, then named,
    journaled and renamed into place, which needs no space.

    Parameters
    ----------
    journal : Path, optional
        Where to journal the set while it is put in place (:func:`journal_path` of the first output
        by default), beside the lock that guards it.
    """

    def __init__(self, journal: Path | None = None) -> None:
        self._files: list[tuple[Path, object, Path | None]] = []  # target, file object, hidden name
        self.journal = journal
        self._journaled = False  # from then on the hidden files belong to the set being put in place

    def open(self, target: Path):
        """A buffered binary file object for ``target``; its folder must exist."""
        target = Path(target)
        named = None
        try:
            descriptor = _unnamed_file(target.parent)
            if descriptor is None:
                descriptor, named = _named_file(target)
        except OSError as error:
            raise OutputError(error.errno, f"cannot create {target}: {error.strerror or error}",
                              str(target)) from error
        handle = os.fdopen(descriptor, "wb", buffering=1 << 20)
        self._files.append((target, handle, named))
        return handle

    def readable(self, target: Path) -> Path:
        """A path to read what has been written to ``target`` so far (flushed first), before it is in place."""
        for path, handle, named in self._files:
            if path == Path(target):
                try:
                    handle.flush()
                except OSError as error:
                    raise write_error(path, error) from error
                return named if named is not None else Path(f"/proc/self/fd/{handle.fileno()}")
        raise KeyError(f"{target} is not an output of this group")

    def commit(self) -> None:
        """Put every file in place; OutputError naming the first that cannot be written."""
        if not self._files:
            return
        for target, handle, _ in self._files:
            if target.is_dir():
                raise OutputError(errno.EISDIR, f"cannot write {target}: it is a folder", str(target))
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as error:
                raise write_error(target, error) from error
        for i, (target, handle, named) in enumerate(self._files):
            if named is None:
                try:
                    self._files[i] = (target, handle, _link(handle.fileno(), target))
                except OSError as error:
                    raise write_error(target, error) from error
        pairs = [(named, target) for target, _, named in self._files]
        journal = self.journal or journal_path(self._files[0][0])
        with signals_deferred():
            try:
                _write_journal(journal, pairs)
            except OSError as error:
                raise write_error(journal, error) from error
            self._journaled = True
            _put_in_place(pairs)  # from here on the set is whole: a kill is completed by the next run
            journal.unlink(missing_ok=True)
            for folder in {target.parent for _, target in pairs}:
                _sync_folder(folder)

    def discard(self) -> None:
        """Close every file and remove any hidden name still there (an unnamed file leaves nothing)."""
        for _, handle, named in self._files:
            # Buffered data that cannot be written here belongs to a run that has already failed and says so.
            with suppress(OSError):
                handle.close()
            if named is not None and not self._journaled:
                named.unlink(missing_ok=True)
        self._files = []


@contextmanager
def atomic_outputs(journal: Path | None = None) -> Iterator[OutputGroup]:
    """An :class:`OutputGroup` committed when the block completes, discarded when it raises."""
    group = OutputGroup(journal)
    try:
        yield group
        group.commit()
    finally:
        group.discard()


def write_error(target: Path, error: OSError) -> OutputError:
    """``error``, raised while writing ``target``, as an :class:`OutputError` naming it."""
    if isinstance(error, OutputError):
        return error
    reason = error.strerror or str(error)
    return OutputError(error.errno, f"cannot write {target}: {reason}", str(target))


def defuse_formulas(table: pa.Table) -> pa.Table:
    """``table`` with an apostrophe before every text cell a spreadsheet would read as a formula.

    Parameters
    ----------
    table : pyarrow.Table of shape (n, k)

    Returns
    -------
    pyarrow.Table of shape (n, k)
        Text cells beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return get a
        leading ``'`` (OWASP's advice against CSV injection); other columns are unchanged.
    """
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_START), False)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)
