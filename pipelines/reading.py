"""Chunked readers of cohort files: every record with its physical line (CSV), row (Parquet) or
Excel row number (``.xlsx``).

Delimited text (``.csv`` with a comma, semicolon or tab separator, detected from the header
line; ``.tsv``; either gzip-compressed as ``.csv.gz`` / ``.tsv.gz``) is read in byte blocks. A block without quote characters, bare carriage returns or
bytes that are not UTF-8 takes the fast path: one record per physical line, field counts
checked with numpy, values parsed by pyarrow. Any other block goes through Python's
:mod:`csv` module line by line (quoted line breaks, stray quotes, bad bytes), continuing
past the block's end while a quoted record is still open. Both paths give the same
records, line numbers and reasons (a test checks them against each other). A record of more
than :data:`MAX_RECORD_BYTES` is rejected alone, with its line number, on both paths: a legitimate
patient record is a few hundred bytes, and a record of megabytes (a broken export, a pasted
document) must neither stop the run nor hold the memory.

Excel workbooks are read by :mod:`pipelines.excel`, Parquet by pyarrow. What a file that cannot
be read looks like, and what to do with it, is said by :mod:`pipelines.sniffing`.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import excel
from pipelines.excel_cells import unreadable_cells
from pipelines.sniffing import (
    OUTPUT_EXTENSIONS,
    InputKind,
    advice,
    control_character,
    file_content,
    has_control_bytes,
    input_kind,
    looks_like,
    mismatch,
)

CHUNK_ROWS = 50_000
MAX_RECORD_BYTES = 64 << 10
# Separators of delimited text, in the order that breaks ties; a .tsv file is tab-separated.
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
BLOCK_BYTES = 4 << 20
_BOM = b"\xef\xbb\xbf"
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, kept by errors="surrogateescape"
# Bytes that are not spaces, tabs or line ends, counted to find lines of nothing but those.
_VISIBLE = np.ones(256, dtype=bool)
_VISIBLE[[9, 10, 13, 32]] = False
# RE2 (pyarrow) spelling of sniffing.CONTROL_CHARACTER.
_CONTROL_RE2 = "[\\x{00}-\\x{08}\\x{0b}\\x{0c}\\x{0e}-\\x{1f}\\x{7f}-\\x{9f}]"


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


def file_format(path: Path, role: str = "input") -> str:
    """``csv`` or ``parquet`` for an output file, from the extension (any case)."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_EXTENSIONS:
        raise InputFileError(f"{role} {path}: unsupported extension {Path(path).suffix!r}; use .csv or .parquet")
    return suffix[1:]


def check_input_name(path: Path) -> InputKind:
    """The kind of input ``path``'s name promises; InputFileError for a name autorisk does not read."""
    kind = input_kind(path)
    if kind is None:
        content = file_content(path) if Path(path).is_file() else "text"
        raise InputFileError(advice(path, content))
    return kind


def open_input(path: Path, chunk_rows: int = CHUNK_ROWS, *, block_bytes: int = BLOCK_BYTES,
               sheet: str | None = None) -> InputFile:
    """Open a cohort file for chunked reading, by its name and checked against its content.

    Parameters
    ----------
    path : Path
        ``.csv`` (comma, semicolon or tab, detected), ``.tsv``, ``.csv.gz``, ``.tsv.gz``,
        ``.xlsx`` or ``.parquet``, in any case.
    chunk_rows : int
        Records per chunk, at most.
    block_bytes : int
        Delimited text bytes read at a time (memory is bounded by this and ``chunk_rows``).
    sheet : str, optional
        The sheet of an ``.xlsx`` workbook (default: the first).

    Raises
    ------
    InputFileError
        When the file is missing or unreadable, is not what its name says, is in a format
        autorisk does not read (the message says what it looks like and what to do), or its
        header is not text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    kind = check_input_name(path)
    if sheet is not None and kind.format != "xlsx":
        raise InputFileError(f"--sheet: {path} is not an Excel workbook; --sheet applies to .xlsx files only")
    content = file_content(path)
    if kind.compression == "gzip":
        if content != "gzip":
            raise InputFileError(f"{path} is not gzip-compressed: name it .csv (or .tsv)" if content == "text"
                                 else advice(path, content))
        content = _gzip_content(path)
        if content != "text":
            raise InputFileError(advice(Path(f"{path} (once decompressed)"), content))
    elif problem := mismatch(path, kind, content):
        raise InputFileError(problem)
    if kind.format == "parquet":
        return _open_parquet(path, chunk_rows)
    if kind.format == "xlsx":
        return _open_xlsx(path, chunk_rows, sheet)
    return _open_csv(path, chunk_rows, block_bytes, kind)


def _gzip_content(path: Path) -> str:
    try:
        with gzip.open(path, "rb") as handle:
            return looks_like(handle.read(8192))
    except (OSError, EOFError, zlib.error) as error:
        raise InputFileError(f"{path}: the gzip data cannot be read ({error})") from error


# --- Parquet ---------------------------------------------------------------------------------

def _open_parquet(path: Path, chunk_rows: int) -> InputFile:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputFileError(f"{path}: not a readable Parquet file ({error})") from error
    return InputFile(list(parquet.schema_arrow.names), parquet.schema_arrow,
                     _parquet_chunks(parquet, chunk_rows), parquet, description="Parquet")


def record_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """UTF-8 bytes of the text and binary values of each row, shape (n_rows,); other types count 0."""
    sizes = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
                or pa.types.is_large_binary(kind):
            values = column.cast(kind) if pa.types.is_dictionary(column.type) else column
            sizes += pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    return sizes


def _oversize(number: int, size: int) -> tuple[int, str]:
    return number, f"record of {size:,} bytes is over the limit of {MAX_RECORD_BYTES:,} bytes"


def control_rows(batch: pa.RecordBatch) -> dict[int, str]:
    """Row index -> reason, for the rows of ``batch`` with a control character in a text value."""
    found: dict[int, str] = {}
    for name, column in zip(batch.schema.names, batch.columns):
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            continue
        values = column.cast(kind) if pa.types.is_dictionary(column.type) else column
        hits = pc.fill_null(pc.match_substring_regex(values, _CONTROL_RE2), False).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(hits):
            found.setdefault(int(i), control_character([values[int(i)].as_py()], [name]))
    return found


def _parquet_chunks(parquet: pq.ParquetFile, chunk_rows: int) -> Iterator[Chunk]:
    first = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        numbers = np.arange(first, first + batch.num_rows, dtype=np.int64)
        sizes = record_bytes(batch)
        over = sizes > MAX_RECORD_BYTES
        reasons = {int(i): _oversize(int(numbers[i]), int(sizes[i]))[1] for i in np.flatnonzero(over)}
        for i, reason in control_rows(batch.filter(pa.array(~over)) if over.any() else batch).items():
            reasons.setdefault(int(np.flatnonzero(~over)[i]), reason)
        bad = np.zeros(batch.num_rows, dtype=bool)
        bad[list(reasons)] = True
        malformed = [(int(numbers[i]), reasons[i]) for i in sorted(reasons)]
        if bad.any():
            batch = batch.filter(pa.array(~bad))
        yield Chunk(batch.to_pandas(), numbers[~bad], malformed)
        first += len(numbers)


# --- Excel ---------------------------------------------------------------------------------------

def _open_xlsx(path: Path, chunk_rows: int, sheet: str | None) -> InputFile:
    try:
        workbook, chosen, where = excel.open_sheet(path, sheet)
    except excel.WorkbookError as error:
        raise InputFileError(str(error)) from error
    try:
        names, header_row, rows = excel.sheet_rows(chosen)
    except excel.WorkbookError as error:
        workbook.close()
        raise InputFileError(f"{path}: {error}") from error
    header = [name.strip() for name in names]
    first_column = excel.first_column(chosen)
    unreadable = unreadable_cells(path, chosen, header_row, first_column, header)
    pieces = (_Piece(excel.piece_frame(values, header), np.array(numbers, dtype=np.int64), malformed, blank)
              for values, numbers, malformed, blank
              in excel.row_pieces(rows, len(header), first_column, MAX_RECORD_BYTES, names=header,
                                  unreadable=unreadable))
    schema = pa.schema([(name, pa.string()) for name in header])
    return InputFile(header, schema, rechunk(pieces, header, chunk_rows), workbook,
                     description=f"Excel workbook, {where}, header on row {header_row}")


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

    def peek(self) -> str | None:
        """The next line without handing it out; None at the end of the file."""
        if not self.pending:
            raw = self.handle.readline()
            if not raw:
                return None
            self.pending.extend(_split_lines(raw))
        return self.pending[0]


def detect_delimiter(line: str, candidates: tuple[str, ...] = DELIMITERS) -> str:
    """The separator of a header line: the candidate that splits it into the most fields.

    A header names a dozen columns, so the true separator splits it many times; a tie (a
    single column) goes to the first candidate, the comma.
    """
    counts = [len(next(csv.reader([line], delimiter=d), [])) for d in candidates]
    return candidates[counts.index(max(counts))]


def _read_header(handle, path: Path, candidates: tuple[str, ...]) -> tuple[list[str], str, _Lines]:
    start = handle.read(len(_BOM))
    lines = _Lines(handle, b"" if start == _BOM else start)
    first = lines.peek()
    if first is None:
        raise InputFileError(f"{path}: empty file, expected a header line with column names")
    delimiter = detect_delimiter(first, candidates)
    header = next(csv.reader(lines, delimiter=delimiter), None)
    if not header:
        raise InputFileError(f"{path}: empty file, expected a header line with column names")
    if any(_NOT_UTF8.search(name) for name in header):
        raise InputFileError(f"{path}: the header line is not valid UTF-8 text (save the file as 'CSV UTF-8')")
    return [name.strip() for name in header], delimiter, lines


def _open_csv(path: Path, chunk_rows: int, block_bytes: int, kind: InputKind) -> InputFile:
    # Closed by the chunk generator, or by InputFile.close.
    handle = gzip.open(path, "rb") if kind.compression == "gzip" else open(path, "rb")  # noqa: SIM115
    try:
        header, delimiter, lines = _read_header(handle, path, ("\t",) if kind.format == "tsv" else DELIMITERS)
    except (OSError, EOFError, zlib.error) as error:
        handle.close()
        raise InputFileError(f"{path}: cannot be read ({error})") from error
    except BaseException:
        handle.close()
        raise
    schema = pa.schema([(name, pa.string()) for name in header])
    text = "TSV" if kind.format == "tsv" else "CSV"
    description = f"{'gzip-compressed ' if kind.compression else ''}{text}, separator {DELIMITER_NAMES[delimiter]}" \
        + (" (decimal commas accepted)" if delimiter == ";" else "")
    chunks = _csv_chunks(handle, header, lines, chunk_rows, block_bytes, delimiter, path)
    return InputFile(header, schema, chunks, handle, description=description, delimiter=delimiter)


# --- CSV: pieces (records of one block or one slow segment) -------------------------------------

@dataclass
class _Piece:
    frame: pd.DataFrame
    lines: np.ndarray
    malformed: list[tuple[int, str]]
    blank_lines: int


def _wrong_fields(count: int, expected: int, span: str = "") -> str:
    return f"wrong number of fields: {count}, expected {expected}{span}"


class _RecordTooLarge(Exception):
    """The record being parsed has passed :data:`MAX_RECORD_BYTES`."""


class _Tracked:
    """The lines the csv module reads, with the bytes and quote characters of the current record.

    Raises :class:`_RecordTooLarge` as soon as the current record passes ``max_bytes``, so
    that an oversized record (an unterminated quote running to the end of the file, say) is
    never held whole in memory.
    """

    def __init__(self, lines: Iterator[str], max_bytes: int) -> None:
        self.lines = lines
        self.max_bytes = max_bytes
        self.count = 0  # lines handed out
        self.last = ""  # the last line handed out
        self.size = 0   # bytes of the current record so far, line breaks included
        self.quotes = 0  # quote characters of the current record so far

    def __iter__(self) -> _Tracked:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.last = line
        self.count += 1
        self.size += len(line.encode("utf-8", "surrogateescape"))
        self.quotes += line.count('"')
        if self.size > self.max_bytes:
            raise _RecordTooLarge
        return line

    def new_record(self) -> None:
        self.size = self.quotes = 0

    def skip_rest_of_record(self) -> None:
        """Read on to the end of the current record: the first line end outside quotes.

        With CSV's doubled quotes inside quoted fields, a line break is inside a quoted
        field exactly when the record so far holds an odd number of quote characters.
        """
        for line in self.lines:
            self.count += 1
            self.size += len(line.encode("utf-8", "surrogateescape"))
            self.quotes += line.count('"')
            if self.quotes % 2 == 0:
                return
        # The file ended inside quotes: the record runs to its end.


def _slow_piece(handle, block_lines: list[str], header: list[str], first_line: int, delimiter: str = ",",
                max_bytes: int = MAX_RECORD_BYTES) -> tuple[_Piece, int]:
    """Records of ``block_lines`` through the csv module; a record still open at their end
    continues with lines from ``handle``, up to its end.

    Returns the piece and the number of the next physical line.
    """
    more = _Lines(handle)  # read only when a quoted record runs past the block
    source = _Tracked(itertools.chain(block_lines, more), max_bytes)
    reader = csv.reader(source, delimiter=delimiter)
    in_block = len(block_lines)
    rows: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str]] = []
    blank = 0
    start = first_line
    while source.count < in_block or not more.at_boundary():
        source.new_record()
        unreadable = None
        try:
            record = next(reader, None)
        except (_RecordTooLarge, csv.Error) as error:  # csv.Error: a field over the csv module's own limit
            source.skip_rest_of_record()
            reader = csv.reader(source, delimiter=delimiter)  # a fresh parser after the skipped record
            record, unreadable = [], error
        if record is None:
            break
        end = first_line + source.count - 1
        span = f" (record spans lines {start}–{end})" if end > start else ""
        if source.size > max_bytes:
            malformed.append((start, f"record of {source.size:,} bytes is over the limit of {max_bytes:,} bytes{span}"))
        elif unreadable is not None:
            malformed.append((start, f"unreadable record ({unreadable}){span}"))
        elif not record or (end == start and not source.last.strip(" \t\r\n")):
            blank += 1  # an empty line, or one of spaces and tabs only
        elif len(record) != len(header):
            malformed.append((start, _wrong_fields(len(record), len(header), span)))
        elif _NOT_UTF8.search("\x1f".join(record)):
            malformed.append((start, f"not valid UTF-8 text{span}"))
        elif reason := control_character(record, header):
            malformed.append((start, reason + span))
        else:
            rows.append(record)
            numbers.append(start)
        start = end + 1
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else _empty_frame(header)
    return _Piece(frame, np.array(numbers, dtype=np.int64), malformed, blank), first_line + source.count


def _empty_frame(header: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in header})


def _fast_piece(block: bytes, header: list[str], first_line: int, delimiter: str = ",",
                max_bytes: int = MAX_RECORD_BYTES) -> _Piece | None:
    """Records of a block of whole lines, one per line; None when it needs the csv module."""
    if b'"' in block or (b"\r" in block and block.count(b"\r") != block.count(b"\r\n")) \
            or has_control_bytes(block):
        return None
    unterminated = not block.endswith(b"\n")
    if unterminated:
        block += b"\n"  # the last line of a file without a final line break
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    separators = np.flatnonzero(data == ord(delimiter))
    fields = np.searchsorted(separators, ends) - np.searchsorted(separators, starts) + 1
    content = ends - starts - (data[np.maximum(ends - 1, 0)] == 13)
    sizes = ends - starts + 1  # line break included, as the csv path counts
    if unterminated:
        sizes[-1] -= 1
    if block[:1] in (b" ", b"\t") or b"\n " in block or b"\n\t" in block:  # a line may be blank but for spaces
        visible = np.concatenate([[0], np.cumsum(_VISIBLE[data])])
        blank = visible[ends + 1] == visible[starts]
    else:
        blank = content == 0
    oversize = sizes > max_bytes
    good = ~blank & ~oversize & (fields == len(header))
    numbers = first_line + np.arange(len(ends), dtype=np.int64)
    malformed = [(int(numbers[i]), f"record of {int(sizes[i]):,} bytes is over the limit of {max_bytes:,} bytes"
                  if oversize[i] else _wrong_fields(int(fields[i]), len(header)))
                 for i in np.flatnonzero(~blank & ~good)]
    if not good.any():
        return _Piece(_empty_frame(header), np.empty(0, dtype=np.int64), malformed, int(blank.sum()))
    body = block if good.all() else b"".join(block[s:e + 1] for s, e in zip(starts[good], ends[good]))
    names = [f"f{j}" for j in range(len(header))]
    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False,
                                          newlines_in_values=False, ignore_empty_lines=False),
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


def _csv_pieces(handle, header: list[str], lines: _Lines, block_bytes: int, delimiter: str) -> Iterator[_Piece]:
    """Pieces of records in file order; ``lines`` holds whatever the header left unread."""
    line = lines.pulled + 1
    if not lines.at_boundary():  # the header's line also held the first records (or bare CRs split it)
        piece, line = _slow_piece(handle, list(lines.pending), header, line, delimiter)
        yield piece
    while block := _read_block(handle, block_bytes):
        piece = _fast_piece(block, header, line, delimiter)
        if piece is not None:
            line += block.count(b"\n") + (not block.endswith(b"\n"))
        else:
            piece, line = _slow_piece(handle, _split_lines(block), header, line, delimiter)
        yield piece


# --- CSV: chunks --------------------------------------------------------------------------------

def _csv_chunks(handle, header: list[str], lines: _Lines, chunk_rows: int, block_bytes: int,
                delimiter: str = ",", path: Path | None = None) -> Iterator[Chunk]:
    with handle:
        try:
            yield from rechunk(_csv_pieces(handle, header, lines, block_bytes, delimiter), header, chunk_rows)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:  # damaged or truncated gzip data
            raise InputFileError(f"{path}: the compressed data is damaged or cut short ({error})") from error


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
