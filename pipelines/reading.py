"""Chunked readers of cohort files: every record with its physical line (CSV), row (Parquet) or
Excel row number (``.xlsx``), opened by name and checked against the content.

Delimited text (``.csv`` with a comma, semicolon or tab separator, detected from the header line;
``.tsv``; either gzip-compressed as ``.csv.gz`` / ``.tsv.gz``) is read by :mod:`pipelines.delimited`,
Excel workbooks by :mod:`pipelines.excel`, Parquet by pyarrow here; all of them yield the chunks of
:mod:`pipelines.records`. A record of more than :data:`MAX_RECORD_BYTES` is rejected alone, with its
line number, in every format: a legitimate patient record is a few hundred bytes, and a record of
megabytes (a broken export, a pasted document) must neither stop the run nor hold the memory. What a
file that cannot be read looks like, and what to do with it, is said by :mod:`pipelines.sniffing`.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import excel
from pipelines.delimited import BLOCK_BYTES, open_delimited
from pipelines.excel_cells import unreadable_cells
from pipelines.records import CHUNK_ROWS, MAX_RECORD_BYTES, Chunk, InputFile, InputFileError, Piece, rechunk
from pipelines.sniffing import (
    OUTPUT_EXTENSIONS,
    InputKind,
    advice,
    control_character,
    file_content,
    input_kind,
    looks_like,
    mismatch,
)

__all__ = ["CHUNK_ROWS", "MAX_RECORD_BYTES", "Chunk", "InputFile", "InputFileError", "check_input_name",
           "control_rows", "file_format", "open_input", "record_bytes"]

# RE2 (pyarrow) spelling of sniffing.CONTROL_CHARACTER.
_CONTROL_RE2 = "[\\x{00}-\\x{08}\\x{0b}\\x{0c}\\x{0e}-\\x{1f}\\x{7f}-\\x{9f}]"


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
    return open_delimited(path, chunk_rows, block_bytes, kind)


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
    pieces = (Piece(excel.piece_frame(values, header), np.array(numbers, dtype=np.int64), malformed, blank)
              for values, numbers, malformed, blank
              in excel.row_pieces(rows, len(header), first_column, MAX_RECORD_BYTES, names=header,
                                  unreadable=unreadable))
    schema = pa.schema([(name, pa.string()) for name in header])
    return InputFile(header, schema, rechunk(pieces, header, chunk_rows), workbook,
                     description=f"Excel workbook, {where}, header on row {header_row}")


