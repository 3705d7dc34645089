"""Output files that are complete or absent, one writer at a time, safe to open in a spreadsheet.

- **One writer per output.** :func:`lock_outputs` takes an exclusive ``flock`` on a lock file
  beside each output (``.scores.csv.lock``) before anything is loaded or read, so that a second
  run on the same output fails at once, naming the lock, instead of silently replacing the
  first run's result. The kernel releases the lock when its process ends, however it ends; the
  file itself is removed at the end of the run, and one left by a killed run is reused and
  removed by the next.
- **Complete or absent.** :func:`atomic_outputs` writes to an unnamed file (Linux ``O_TMPFILE``)
  in the output's folder and links it into place only when the run completes: a run killed
  with ``kill -9`` leaves no temporary file holding patient ids behind, because there was never
  a name to leave. Where the file system cannot make unnamed files, a hidden named file is used
  instead, and the next run on that output removes any it finds (it holds the lock, so none can
  belong to a live run).
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
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

TEMPORARY_SUFFIX = ".autorisk-tmp"
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
    """``scores.csv`` -> ``.scores.csv.lock`` in the same folder."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


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


@contextmanager
def lock_outputs(outputs: Sequence[Path], companions: Sequence[Path] = ()) -> Iterator[None]:
    """Hold an exclusive lock on each of ``outputs`` (their folders are created) for the block.

    Parameters
    ----------
    outputs : sequence of Path
        Files to lock.
    companions : sequence of Path
        Files written only by whoever holds the first output's lock (the drift report beside
        the scores): not locked themselves, but their stale temporary files are removed too.

    Raises
    ------
    OutputLockedError
        At once, when another run holds one of the locks; nothing is changed then.
    OutputError
        When a folder or lock file cannot be created.
    """
    with ExitStack() as stack:
        for output in sorted({Path(o).resolve() for o in outputs}):
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                descriptor = _lock_one(output)
            except OutputLockedError:
                raise
            except OSError as error:
                raise OutputError(error.errno, f"cannot create {output}: {error.strerror or error}",
                                  str(output)) from error
            stack.callback(_unlock_one, output, descriptor)
        for path in [*outputs, *companions]:
            remove_stale_temporaries(Path(path))
        yield


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


def _named_file(target: Path) -> tuple[int, Path]:
    while True:
        path = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), path
        except FileExistsError:
            continue


def _link(descriptor: int, target: Path) -> Path:
    """Give an unnamed file a hidden name beside ``target``: link() never overwrites, so a fresh one."""
    named = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
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


class OutputGroup:
    """Files written together and put in place together: all of them when the run completes, else none.

    Each file is unnamed while written (or hidden and named, see the module's notes). At
    :meth:`commit` every file is flushed to disk first, where a full disk shows itself, and only
    then are they renamed into place, which needs no space.
    """

    def __init__(self) -> None:
        self._files: list[tuple[Path, object, Path | None]] = []  # target, file object, hidden name

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

    def commit(self) -> None:
        """Put every file in place; OutputError naming the first that cannot be written."""
        for target, handle, _ in self._files:
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as error:
                raise write_error(target, error) from error
        for i, (target, handle, named) in enumerate(self._files):
            try:
                if named is None:
                    named = _link(handle.fileno(), target)
                    self._files[i] = (target, handle, named)
                os.replace(named, target)
            except OSError as error:
                raise write_error(target, error) from error
        for folder in {target.parent for target, _, _ in self._files}:
            _sync_folder(folder)

    def discard(self) -> None:
        """Close every file and remove any hidden name still there (an unnamed file leaves nothing)."""
        for _, handle, named in self._files:
            # Buffered data that cannot be written here belongs to a run that has already failed and says so.
            with suppress(OSError):
                handle.close()
            if named is not None:
                named.unlink(missing_ok=True)
        self._files = []


@contextmanager
def atomic_outputs() -> Iterator[OutputGroup]:
    """An :class:`OutputGroup` committed when the block completes, discarded when it raises."""
    group = OutputGroup()
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
