"""Records of an input file, as every reader yields them: chunks of parsed records with their line
numbers, the records that could not be parsed with their reasons, and the re-chunking of the pieces a
reader parses into chunks of a fixed number of records.

The readers (:mod:`pipelines.reading` for Parquet and Excel, :mod:`pipelines.delimited` for delimited
text) import this module and not each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

CHUNK_ROWS = 50_000
# A legitimate patient record is a few hundred bytes; a longer one is rejected alone, with its line.
MAX_RECORD_BYTES = 64 << 10


class InputFileError(ValueError):
    """The input file cannot be scored at all."""


@dataclass
class Chunk:
    """Raw records of one chunk and where they came from.

    Attributes
    ----------
    frame : DataFrame of shape (n_records, n_columns)
        Records that have the right number of fields (values as in the file: text for CSV).
    lines : ndarray of int64, shape (n_records,)
        Line number (CSV, header = line 1) or row number (Parquet, first row = 1) of each record.
    malformed : list of (int, str)
        Line number and reason of each record that could not be parsed into fields.
    blank_lines : int
        Empty lines, and lines of nothing but spaces and tabs, skipped (not records).
    """

    frame: pd.DataFrame
    lines: np.ndarray
    malformed: list[tuple[int, str]] = field(default_factory=list)
    blank_lines: int = 0

    @property
    def records(self) -> int:
        """Records read: parsed plus malformed (blank lines are not records)."""
        return len(self.frame) + len(self.malformed)


@dataclass
class InputFile:
    """An opened input: its columns (known before any record is read) and its chunks.

    Attributes
    ----------
    columns : list of str
        Column names as in the file (CSV names stripped of surrounding spaces).
    schema : pyarrow.Schema
        Arrow types of the raw values: strings for CSV, the file's types for Parquet.
    chunks : iterator of Chunk
        The records, in file order; iterate once.
    resource : object with ``close()``, optional
        The open file or workbook.
    description : str
        What was read, for the summary: ``CSV, separator ';'``, ``Excel workbook, sheet 'Patients'``.
    delimiter : str or None
        The separator of delimited text (None for Excel and Parquet).
    """

    columns: list[str]
    schema: pa.Schema
    chunks: Iterator[Chunk]
    resource: object = None
    description: str = ""
    delimiter: str | None = None

    def close(self) -> None:
        """Release the file (also done when the chunks are exhausted)."""
        self.chunks.close()
        if self.resource is not None:
            self.resource.close()


@dataclass
class Piece:
    """Records of one block (or one segment read line by line), as a reader parsed them."""

    frame: pd.DataFrame
    lines: np.ndarray
    malformed: list[tuple[int, str]]
    blank_lines: int


def empty_frame(header: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in header})


def rechunk(pieces: Iterable[Piece], header: list[str], chunk_rows: int) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` parsed records, in line order.

    Malformed records go with the chunk whose lines surround them, so that rejects written
    chunk after chunk stay in line order; a long run of malformed records is flushed
    without waiting for parsed ones (a chunk then holds at most ``chunk_rows`` plus one
    block's malformed records). At least one chunk is yielded.
    """
    frames: list[pd.DataFrame] = []
    numbers: list[np.ndarray] = []
    malformed: list[tuple[int, str]] = []
    blank = held = 0
    yielded = False
    for piece in pieces:
        if len(piece.frame):
            frames.append(piece.frame)
            numbers.append(piece.lines)
            held += len(piece.frame)
        malformed += piece.malformed
        blank += piece.blank_lines
        if held >= chunk_rows:
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            lines = np.concatenate(numbers)
            start = 0
            while held - start >= chunk_rows:
                stop = start + chunk_rows
                boundary = lines[stop] if stop < held else np.iinfo(np.int64).max
                yield Chunk(frame.iloc[start:stop].reset_index(drop=True), lines[start:stop],
                            [m for m in malformed if m[0] < boundary], blank)
                yielded = True
                malformed = [m for m in malformed if m[0] >= boundary]
                blank, start = 0, stop
            frames = [frame.iloc[start:].reset_index(drop=True)] if start < held else []
            numbers = [lines[start:]] if start < held else []
            held -= start
        if len(malformed) >= chunk_rows:  # every held record precedes the current position
            yield _gather(frames, numbers, malformed, blank, header)
            yielded = True
            frames, numbers, malformed, blank, held = [], [], [], 0, 0
    if held or malformed or blank or not yielded:
        yield _gather(frames, numbers, malformed, blank, header)


def _gather(frames, numbers, malformed, blank, header) -> Chunk:
    frame = pd.concat(frames, ignore_index=True) if frames else empty_frame(header)
    lines = np.concatenate(numbers) if numbers else np.empty(0, dtype=np.int64)
    return Chunk(frame, lines, malformed, blank)
