"""The reader of delimited text (``.csv`` with a comma, semicolon or tab separator, ``.tsv``, either
gzip-compressed): every record with its physical line number.

The separator is detected from the header line. Text is read in byte blocks. A block without quote
characters, bare carriage returns or bytes that are not UTF-8 takes the fast path: one record per
physical line, field counts checked with numpy, values parsed by pyarrow. Any other block goes
through Python's :mod:`csv` module line by line (quoted line breaks, stray quotes, bad bytes),
continuing past the block's end while a quoted record is still open. Both paths give the same
records, line numbers and reasons (a test checks them against each other). A record of more than
:data:`pipelines.records.MAX_RECORD_BYTES` is rejected alone, with its line number, on both paths.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import re
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipelines.records import MAX_RECORD_BYTES, Chunk, InputFile, InputFileError, Piece, empty_frame, rechunk
from pipelines.sniffing import InputKind, control_character, has_control_bytes

# Separators of delimited text, in the order that breaks ties; a .tsv file is tab-separated.
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
BLOCK_BYTES = 4 << 20
_BOM = b"\xef\xbb\xbf"
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, kept by errors="surrogateescape"
# Bytes that are not spaces, tabs or line ends, counted to find lines of nothing but those.
_VISIBLE = np.ones(256, dtype=bool)
_VISIBLE[[9, 10, 13, 32]] = False


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


def open_delimited(path: Path, chunk_rows: int, block_bytes: int, kind: InputKind) -> InputFile:
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
                max_bytes: int = MAX_RECORD_BYTES) -> tuple[Piece, int]:
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
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else empty_frame(header)
    return Piece(frame, np.array(numbers, dtype=np.int64), malformed, blank), first_line + source.count


def _fast_piece(block: bytes, header: list[str], first_line: int, delimiter: str = ",",
                max_bytes: int = MAX_RECORD_BYTES) -> Piece | None:
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
        return Piece(empty_frame(header), np.empty(0, dtype=np.int64), malformed, int(blank.sum()))
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
    return Piece(frame, numbers[good], malformed, int(blank.sum()))


def _read_block(handle, block_bytes: int) -> bytes:
    """About ``block_bytes`` bytes, extended to the end of a line (or of the file)."""
    block = handle.read(block_bytes)
    if block and not block.endswith(b"\n"):
        block += handle.readline()
    return block


def _csv_pieces(handle, header: list[str], lines: _Lines, block_bytes: int, delimiter: str) -> Iterator[Piece]:
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
