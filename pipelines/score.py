"""Batch scoring of cohort files (CSV or Parquet), chunk by chunk, with nothing lost.

Every input record ends up in the output (scored) or in the rejects file with its
line number and reason. Outputs are written to a temporary file beside the
target and renamed at the end, so an interrupted run leaves no file that looks
complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from features.schema import ID_COLUMN
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
    """

    frame: pd.DataFrame
    lines: np.ndarray
    malformed: list[tuple[int, str]] = field(default_factory=list)


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


def _csv_header(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise InputFileError(f"{path}: empty file, expected a header line with column names")
    return [name.strip() for name in header]


def read_csv_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Stream a CSV file as text values, with physical line numbers.

    A record with the wrong number of fields is reported in ``Chunk.malformed``;
    a blank line is skipped (counted, not a record).
    """
    header = _csv_header(path)
    check_columns(header, allow_extra=True)  # fail fast on missing or duplicated columns
    malformed: list[tuple[int, int, str]] = []  # (line, physical lines spanned, reason)

    def on_invalid(row) -> str:
        spanned = 1 + (row.text or "").count("\n")
        malformed.append((row.number, spanned,
                          f"wrong number of fields: {row.actual_columns}, expected {row.expected_columns}"))
        return "skip"

    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(use_threads=False, block_size=1 << 22, encoding="utf8",
                                        column_names=header, skip_rows=1),
        parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True,
                                          ignore_empty_lines=False),
        convert_options=pa_csv.ConvertOptions(column_types={name: pa.string() for name in header},
                                              strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    next_line = 2
    for batch in reader:
        frame = batch.to_pandas()
        # Physical extent of each record: 1 + the line breaks inside its quoted values.
        extent = np.ones(len(frame), dtype=np.int64)
        for name in frame.columns:
            extent += frame[name].str.count("\n").to_numpy(dtype=np.int64)
        starts = next_line + np.concatenate([[0], np.cumsum(extent)[:-1]]).astype(np.int64)
        end = next_line + int(extent.sum())
        here = []
        for item in sorted(malformed):  # skipped records that lie among this batch's lines
            line, spanned, _ = item
            if line >= end:
                break
            starts[starts >= line] += spanned
            end += spanned
            here.append(item)
        for item in here:
            malformed.remove(item)
        next_line = end
        for start in range(0, len(frame), chunk_rows):
            stop = start + chunk_rows
            yield Chunk(frame.iloc[start:stop].reset_index(drop=True), starts[start:stop],
                        [(line, reason) for line, _, reason in here] if start == 0 else [])
    if malformed:  # invalid rows after the last good one
        yield Chunk(pd.DataFrame(columns=header, dtype=object), np.empty(0, dtype=np.int64),
                    [(line, reason) for line, _, reason in sorted(malformed)])


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


def read_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Stream an input file by its extension."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.suffix == ".csv":
        return read_csv_chunks(path, chunk_rows)
    if path.suffix == ".parquet":
        return read_parquet_chunks(path, chunk_rows)
    raise InputFileError(f"{path}: unsupported extension {path.suffix!r}; use .csv or .parquet")


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
        if self.path.suffix == ".parquet":
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, self.schema)
            self._parquet.write_table(table)
        else:
            frame.to_csv(self.path, mode="a" if self._csv_started else "w",
                         header=not self._csv_started, index=False, float_format="%.10g")
            self._csv_started = True

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif not self._csv_started:
            self.write(pd.DataFrame({c: pd.Series(dtype=object) for c in self.columns}))


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
    chunks = read_chunks(input_path, chunk_rows)
    summary = Summary()
    score_columns = None
    reject_columns = ["line", ID_COLUMN, "reason"]
    with _atomic_path(output_path) as output_tmp, _atomic_path(rejects_path) as rejects_tmp:
        rejects = _TableWriter(rejects_tmp, reject_columns, {ID_COLUMN, "reason"})
        scores_writer = None
        for chunk in chunks:
            raw = chunk.frame
            blank = _blank_records(raw)
            summary.blank_lines += int(blank.sum())
            raw, lines = raw.loc[~blank].reset_index(drop=True), chunk.lines[~blank]
            if not summary.ignored_columns:
                summary.ignored_columns = check_columns(raw.columns, allow_extra=allow_extra)
            batch = validate_frame(raw, allow_extra=allow_extra)
            scored = score_batch(model.risk_model, batch)
            scored.insert(0, "line", lines[batch.rows])
            scored["model_version"] = model.version
            if scores_writer is None:
                score_columns = list(scored.columns)
                scores_writer = _TableWriter(output_tmp, score_columns,
                                             {ID_COLUMN, "warnings", "model_version"})
            scores_writer.write(scored)
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
            summary.outside_training_range += int((batch.warnings != "").sum())
            on_progress(summary.read + summary.blank_lines)
        if scores_writer is None:
            raise InputFileError(f"{input_path}: no records")
        scores_writer.close()
        rejects.close()
    return summary


def _blank_records(raw: pd.DataFrame) -> np.ndarray:
    """Records whose every field is empty text (blank lines in a CSV)."""
    if raw.empty or not all(pd.api.types.is_string_dtype(raw[c]) for c in raw.columns):
        return np.zeros(len(raw), dtype=bool)
    return np.logical_and.reduce([(raw[c].fillna("").str.strip() == "").to_numpy() for c in raw.columns])
