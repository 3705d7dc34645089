"""Batch scoring of cohort files (CSV or Parquet), chunk by chunk, with nothing lost.

Every input record ends up in the output (scored) or in the rejects file with its
line number and reason. Outputs are written to a temporary file beside the
target and renamed at the end, so an interrupted run leaves no file that looks
complete.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.schema import ID_COLUMN, output_columns
from features.validation import check_columns, validate_frame
from models.registry import LoadedModel
from models.scoring import score_batch

CHUNK_ROWS = 50_000


@dataclass
class Chunk:
    """Raw records of one chunk and where they came from.

    Attributes
    ----------
    frame : DataFrame
        Records that have the right number of fields (values as in the file).
    lines : ndarray of int
        Line number (CSV, header = line 1) or row number (Parquet, first row = 1) of each record.
    malformed : list of (int, str)
        Line number and reason of each record that could not be parsed into fields.
    blank_lines : int
        Empty lines skipped (not records).
    """

    frame: pd.DataFrame
    lines: np.ndarray
    malformed: list[tuple[int, str]] = field(default_factory=list)
    blank_lines: int = 0


@dataclass
class Summary:
    """Counts of a scoring run; ``read == scored + rejected``."""

    read: int = 0
    scored: int = 0
    rejected: int = 0
    blank_lines: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    outside_training_range: int = 0


class InputFileError(ValueError):
    """The input file cannot be scored at all."""


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, kept by errors="surrogateescape"


def read_csv_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Stream a CSV file as text values, with the physical line number where each record starts.

    A record with the wrong number of fields, or with bytes that are not UTF-8, is reported
    in ``Chunk.malformed``; a rejected record that spans several lines (a quoted line break,
    or an unterminated quote) says which lines. Empty lines are skipped (counted, not records).
    """
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise InputFileError(f"{path}: empty file, expected a header line with column names")
        if any(_NOT_UTF8.search(name) for name in header):
            raise InputFileError(f"{path}: the header line is not valid UTF-8 text")
        header = [name.strip() for name in header]
        check_columns(header, allow_extra=True)  # fail fast on missing or duplicated columns
        rows: list[list[str]] = []
        lines: list[int] = []
        malformed: list[tuple[int, str]] = []
        blank = 0
        start = reader.line_num + 1
        for record in reader:
            end = reader.line_num
            span = f" (record spans lines {start}–{end})" if end > start else ""
            if not record:
                blank += 1
            elif len(record) != len(header):
                malformed.append((start, f"wrong number of fields: {len(record)}, expected {len(header)}{span}"))
            elif _NOT_UTF8.search("\x1f".join(record)):
                malformed.append((start, f"not valid UTF-8 text{span}"))
            else:
                rows.append(record)
                lines.append(start)
            start = end + 1
            if len(rows) >= chunk_rows:
                yield Chunk(pd.DataFrame(rows, columns=header, dtype=object), np.array(lines), malformed, blank)
                rows, lines, malformed, blank = [], [], [], 0
        yield Chunk(pd.DataFrame(rows, columns=header, dtype=object), np.array(lines, dtype=np.int64),
                    malformed, blank)


def read_parquet_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Stream a Parquet file; the "line" of a record is its row number (first row = 1)."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputFileError(f"{path}: not a readable Parquet file ({error})") from error
    check_columns(parquet.schema_arrow.names, allow_extra=True)
    first = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        yield Chunk(frame, np.arange(first, first + len(frame)))
        first += len(frame)


def file_format(path: Path, role: str = "input") -> str:
    """``csv`` or ``parquet``, from the extension (any case)."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputFileError(f"{role} {path}: unsupported extension {path.suffix!r}; use .csv or .parquet")
    return suffix[1:]


def read_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Stream an input file by its extension."""
    reader = read_csv_chunks if file_format(path) == "csv" else read_parquet_chunks
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    return reader(path, chunk_rows)


class _TableWriter:
    """Appends frames to a CSV or Parquet file with a fixed column order."""

    def __init__(self, path: Path, columns: list[str], string_columns: set[str]) -> None:
        self.path = path
        self.columns = columns
        self.string_columns = string_columns
        self._parquet: pq.ParquetWriter | None = None
        self._csv_started = False
        fields = [pa.field(c, pa.string() if c in string_columns else
                           pa.int64() if c == "line" else pa.float64()) for c in columns]
        self.schema = pa.schema(fields)

    def write(self, frame: pd.DataFrame) -> None:
        frame = frame[self.columns]
        if file_format(self.path) == "parquet":
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, self.schema)
            self._parquet.write_table(table)
        else:
            frame.to_csv(self.path, mode="a" if self._csv_started else "w",
                         header=not self._csv_started, index=False, float_format="%.10g")
            self._csv_started = True

    def close(self) -> None:
        if self._parquet is None and not self._csv_started:  # no records: a file with the columns only
            self.write(pd.DataFrame({c: pd.Series(dtype=float if c not in self.string_columns else object)
                                     for c in self.columns}).astype({"line": np.int64}))
        if self._parquet is not None:
            self._parquet.close()


@contextmanager
def _atomic_path(target: Path):
    """A temporary path beside ``target``, renamed onto it only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix,
                                         dir=target.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def default_rejects_path(output: Path) -> Path:
    """``scores.csv`` -> ``scores.rejects.csv``."""
    return output.with_name(f"{output.stem}.rejects{output.suffix}")


def score_file(
    input_path: Path,
    output_path: Path,
    model: LoadedModel,
    *,
    rejects_path: Path | None = None,
    allow_extra: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    on_progress: Callable[[int], None] = lambda rows: None,
) -> Summary:
    """Score every record of ``input_path`` with ``model``.

    Parameters
    ----------
    input_path, output_path : Path
        ``.csv`` or ``.parquet``.
    model : LoadedModel
        The registered model version to score with.
    rejects_path : Path, optional
        Where rejected records go; ``<output>.rejects.<ext>`` by default.
    allow_extra : bool
        Ignore columns that are not features instead of failing.
    chunk_rows : int
        Records per chunk; memory is bounded by the chunk, not the file.
    on_progress : callable
        Called with the number of records read after each chunk.

    Returns
    -------
    Summary

    Raises
    ------
    InputFileError, features.validation.InputSchemaError
        When the file cannot be scored at all; nothing is written then.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    rejects_path = Path(rejects_path) if rejects_path else default_rejects_path(output_path)
    for role, path in (("input", input_path), ("--out", output_path), ("--rejects", rejects_path)):
        file_format(path, role)
    resolved = [p.resolve() for p in (input_path, output_path, rejects_path)]
    if len(set(resolved)) < 3:
        raise InputFileError("the input, --out and --rejects must be three different files")
    if chunk_rows < 1:
        raise InputFileError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    chunks = read_chunks(input_path, chunk_rows)
    summary = Summary()
    score_columns = ["line", ID_COLUMN, *output_columns(model.risk_model.outcomes), "warnings", "model_version"]
    with _atomic_path(output_path) as output_tmp, _atomic_path(rejects_path) as rejects_tmp:
        scores = _TableWriter(output_tmp, score_columns, {ID_COLUMN, "warnings", "model_version"})
        rejects = _TableWriter(rejects_tmp, ["line", ID_COLUMN, "reason"], {ID_COLUMN, "reason"})
        for chunk in chunks:
            raw, lines = chunk.frame, chunk.lines
            if not summary.ignored_columns:
                summary.ignored_columns = check_columns(raw.columns, allow_extra=allow_extra)
            batch = validate_frame(raw, allow_extra=allow_extra)
            scored = score_batch(model.risk_model, batch)
            scored.insert(0, "line", lines[batch.rows])
            scored["model_version"] = model.version
            scores.write(scored)
            reject_frame = pd.concat([
                pd.DataFrame({"line": [line for line, _ in chunk.malformed],
                              ID_COLUMN: [None] * len(chunk.malformed),
                              "reason": [reason for _, reason in chunk.malformed]}, dtype=object),
                pd.DataFrame({"line": lines[batch.rejects["row"].to_numpy(dtype=int)],
                              ID_COLUMN: batch.rejects[ID_COLUMN].to_numpy(dtype=object),
                              "reason": batch.rejects["reason"].to_numpy(dtype=object)}),
            ], ignore_index=True).astype({"line": np.int64}).sort_values("line", kind="stable")
            if len(reject_frame):
                rejects.write(reject_frame)
            summary.scored += len(scored)
            summary.rejected += len(reject_frame)
            summary.read += len(raw) + len(chunk.malformed)
            summary.blank_lines += chunk.blank_lines
            summary.outside_training_range += int((batch.warnings != "").sum())
            on_progress(summary.read + summary.blank_lines)
        scores.close()
        rejects.close()
    return summary
