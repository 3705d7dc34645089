"""Chunked readers of cohort files: every record with its physical line (CSV) or row (Parquet).

CSV is read in byte blocks. A block without quote characters, bare carriage returns or
bytes that are not UTF-8 takes the fast path: one record per physical line, field counts
checked with numpy, values parsed by pyarrow. Any other block goes through Python's
:mod:`csv` module line by line (quoted line breaks, stray quotes, bad bytes), continuing
past the block's end while a quoted record is still open. Both paths give the same
records, line numbers and reasons (a test checks them against each other).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CHUNK_ROWS = 50_000
BLOCK_BYTES = 4 << 20
_BOM = b"\xef\xbb\xbf"
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, kept by errors="surrogateescape"


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
        Empty lines skipped (not records).
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
    """

    columns: list[str]
    schema: pa.Schema
    chunks: Iterator[Chunk]
    resource: object = None

    def close(self) -> None:
        """Release the file (also done when the chunks are exhausted)."""
        self.chunks.close()
        if self.resource is not None:
            self.resource.close()


def file_format(path: Path, role: str = "input") -> str:
    """``csv`` or ``parquet``, from the extension (any case)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputFileError(f"{role} {path}: unsupported extension {Path(path).suffix!r}; use .csv or .parquet")
    return suffix[1:]


def open_input(path: Path, chunk_rows: int = CHUNK_ROWS, *, block_bytes: int = BLOCK_BYTES) -> InputFile:
    """Open a CSV or Parquet file (by extension) for chunked reading.

    Parameters
    ----------
    path : Path
        ``.csv`` or ``.parquet``.
    chunk_rows : int
        Records per chunk, at most.
    block_bytes : int
        CSV bytes read at a time (memory is bounded by this and ``chunk_rows``).

    Raises
    ------
    InputFileError
        When the file is missing, unreadable, or its header is not text.
    """
    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    if kind == "parquet":
        return _open_parquet(path, chunk_rows)
    return _open_csv(path, chunk_rows, block_bytes)


# --- Parquet ---------------------------------------------------------------------------------

def _open_parquet(path: Path, chunk_rows: int) -> InputFile:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputFileError(f"{path}: not a readable Parquet file ({error})") from error
    return InputFile(list(parquet.schema_arrow.names), parquet.schema_arrow, _parquet_chunks(parquet, chunk_rows))


def _parquet_chunks(parquet: pq.ParquetFile, chunk_rows: int) -> Iterator[Chunk]:
    first = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        yield Chunk(batch.to_pandas(), np.arange(first, first + batch.num_rows, dtype=np.int64))
        first += batch.num_rows


# --- CSV: header ------------------------------------------------------------------------------

def _split_lines(block: bytes) -> list[str]:
    """Bytes as text lines, endings kept, split as ``open(newline="")`` splits them.

    ``bytes.splitlines`` splits at ``\\r\\n``, ``\\r`` and ``\\n`` only (unlike ``str.splitlines``);
    UTF-8 never uses those bytes inside a character, so decoding line by line is exact.
    """
    return [line.decode("utf-8", "surrogateescape") for line in block.splitlines(keepends=True)]


class _Lines:
    """Physical lines of a CSV file as text: first those of ``buffer``, then more from ``handle``.

    Lines end as ``open(newline="")`` ends them (``\\r\\n``, ``\\r`` or ``\\n``); bytes that are
    not UTF-8 are kept as surrogates (UTF-8 never uses the bytes of ``\\r`` or ``\\n`` inside a
    character, so decoding line by line or all at once is the same). ``pulled`` counts the
    lines handed out.
    """

    def __init__(self, handle, buffer: bytes = b"") -> None:
        self.handle = handle
        if buffer and not buffer.endswith(b"\n"):
            buffer += handle.readline()  # complete the last line
        self.pending: deque[str] = deque(_split_lines(buffer))
        self.pulled = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if not self.pending:
            raw = self.handle.readline()
            if not raw:
                raise StopIteration
            self.pending.extend(_split_lines(raw))
        self.pulled += 1
        return self.pending.popleft()

    def at_boundary(self) -> bool:
        """Whether every line read so far has been handed out."""
        return not self.pending


def _read_header(handle, path: Path) -> tuple[list[str], _Lines]:
    start = handle.read(len(_BOM))
    lines = _Lines(handle, b"" if start == _BOM else start)
    header = next(csv.reader(lines), None)
    if not header:
        raise InputFileError(f"{path}: empty file, expected a header line with column names")
    if any(_NOT_UTF8.search(name) for name in header):
        raise InputFileError(f"{path}: the header line is not valid UTF-8 text")
    return [name.strip() for name in header], lines


def _open_csv(path: Path, chunk_rows: int, block_bytes: int) -> InputFile:
    handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
    try:
        header, lines = _read_header(handle, path)
    except BaseException:
        handle.close()
        raise
    schema = pa.schema([(name, pa.string()) for name in header])
    return InputFile(header, schema, _csv_chunks(handle, header, lines, chunk_rows, block_bytes), handle)


# --- CSV: pieces (records of one block or one slow segment) -------------------------------------

@dataclass
class _Piece:
    frame: pd.DataFrame
    lines: np.ndarray
    malformed: list[tuple[int, str]]
    blank_lines: int


def _wrong_fields(count: int, expected: int, span: str = "") -> str:
    return f"wrong number of fields: {count}, expected {expected}{span}"


def _slow_piece(handle, block_lines: list[str], header: list[str], first_line: int) -> tuple[_Piece, int]:
    """Records of ``block_lines`` through the csv module; a record still open at their end
    continues with lines from ``handle``, up to its end.

    Returns the piece and the number of the next physical line.
    """
    more = _Lines(handle)  # read only when a quoted record runs past the block
    reader = csv.reader(itertools.chain(block_lines, more))
    in_block = len(block_lines)
    rows: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str]] = []
    blank = 0
    start = first_line
    while reader.line_num < in_block or not more.at_boundary():
        record = next(reader, None)
        if record is None:
            break
        end = first_line + reader.line_num - 1
        span = f" (record spans lines {start}–{end})" if end > start else ""
        if not record:
            blank += 1
        elif len(record) != len(header):
            malformed.append((start, _wrong_fields(len(record), len(header), span)))
        elif _NOT_UTF8.search("\x1f".join(record)):
            malformed.append((start, f"not valid UTF-8 text{span}"))
        else:
            rows.append(record)
            numbers.append(start)
        start = end + 1
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else _empty_frame(header)
    return _Piece(frame, np.array(numbers, dtype=np.int64), malformed, blank), first_line + reader.line_num


def _empty_frame(header: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in header})


def _fast_piece(block: bytes, header: list[str], first_line: int) -> _Piece | None:
    """Records of a block of whole lines, one per line; None when it needs the csv module."""
    if b'"' in block or (b"\r" in block and block.count(b"\r") != block.count(b"\r\n")):
        return None
    if not block.endswith(b"\n"):
        block += b"\n"  # the last line of a file without a final line break
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    commas = np.flatnonzero(data == 44)
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    content = ends - starts - (data[np.maximum(ends - 1, 0)] == 13)
    blank = content == 0
    good = ~blank & (fields == len(header))
    numbers = first_line + np.arange(len(ends), dtype=np.int64)
    malformed = [(int(numbers[i]), _wrong_fields(int(fields[i]), len(header)))
                 for i in np.flatnonzero(~blank & ~good)]
    if not good.any():
        return _Piece(_empty_frame(header), np.empty(0, dtype=np.int64), malformed, int(blank.sum()))
    body = block if good.all() else b"".join(block[s:e + 1] for s, e in zip(starts[good], ends[good]))
    names = [f"f{j}" for j in range(len(header))]
    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(quote_char=False, escape_char=False, newlines_in_values=False,
                                          ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                             strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    frame = table.rename_columns(header).to_pandas()
    return _Piece(frame, numbers[good], malformed, int(blank.sum()))


def _read_block(handle, block_bytes: int) -> bytes:
    """About ``block_bytes`` bytes, extended to the end of a line (or of the file)."""
    block = handle.read(block_bytes)
    if block and not block.endswith(b"\n"):
        block += handle.readline()
    return block


def _csv_pieces(handle, header: list[str], lines: _Lines, block_bytes: int) -> Iterator[_Piece]:
    """Pieces of records in file order; ``lines`` holds whatever the header left unread."""
    line = lines.pulled + 1
    if not lines.at_boundary():  # the header's line also held the first records (or bare CRs split it)
        piece, line = _slow_piece(handle, list(lines.pending), header, line)
        yield piece
    while block := _read_block(handle, block_bytes):
        piece = _fast_piece(block, header, line)
        if piece is not None:
            line += block.count(b"\n") + (not block.endswith(b"\n"))
        else:
            piece, line = _slow_piece(handle, _split_lines(block), header, line)
        yield piece


# --- CSV: chunks --------------------------------------------------------------------------------

def _csv_chunks(handle, header: list[str], lines: _Lines, chunk_rows: int, block_bytes: int) -> Iterator[Chunk]:
    with handle:
        yield from rechunk(_csv_pieces(handle, header, lines, block_bytes), header, chunk_rows)


def rechunk(pieces: Iterable[_Piece], header: list[str], chunk_rows: int) -> Iterator[Chunk]:
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
    frame = pd.concat(frames, ignore_index=True) if frames else _empty_frame(header)
    lines = np.concatenate(numbers) if numbers else np.empty(0, dtype=np.int64)
    return Chunk(frame, lines, malformed, blank)
