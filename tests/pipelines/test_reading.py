"""The chunked CSV reader: the fast (pyarrow) path and the csv-module path give the same records.

The reference is the straightforward reader every record goes through Python's csv module
(the batch scorer's reader before the fast path); the chunked reader must agree with it on
records, values, physical line numbers, reasons and blank lines, whatever the block size.
"""

from __future__ import annotations

import csv
import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.delimited import _fast_piece
from pipelines.reading import InputFileError, open_input

_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
HEADER = ["patient_id", "age_years", "sex", "disease_duration_years"]


def reference_records(path):
    """(records, malformed, blank lines) by the plain csv module, line numbers as physical lines.

    Empty lines and lines of spaces and tabs only are blank; a record with a control character in a
    field is rejected naming the field."""
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    physical = re.findall(r"[^\r\n]*(?:\r\n|\r|\n|$)", text)
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader)]
        records, malformed, blank = [], [], 0
        start = reader.line_num + 1
        for record in reader:
            end = reader.line_num
            span = f" (record spans lines {start}–{end})" if end > start else ""
            controls = [(name, _CONTROL.search(value)) for name, value in zip(header, record, strict=False)]
            controls = [(name, found) for name, found in controls if found]
            if not record or (end == start and not physical[start - 1].strip(" \t\r\n")):
                blank += 1
            elif len(record) != len(header):
                malformed.append((start, f"wrong number of fields: {len(record)}, expected {len(header)}{span}"))
            elif _NOT_UTF8.search("\x1f".join(record)):
                malformed.append((start, f"not valid UTF-8 text{span}"))
            elif controls:
                name, found = controls[0]
                malformed.append((start, f"{name}: holds the control character U+{ord(found.group()):04X}; a value "
                                         f"must be plain text{span}"))
            else:
                records.append((start, tuple(record)))
            start = end + 1
    return header, records, malformed, blank


def chunked_records(path, chunk_rows, block_bytes):
    source = open_input(path, chunk_rows, block_bytes=block_bytes)
    records, malformed, blank, sizes, last = [], [], 0, [], 0
    for chunk in source.chunks:
        values = chunk.frame.astype(object).to_numpy()
        records += [(int(line), tuple(row)) for line, row in zip(chunk.lines, values, strict=True)]
        malformed += chunk.malformed
        blank += chunk.blank_lines
        sizes.append(len(chunk.frame))
        lines = sorted([int(x) for x in chunk.lines] + [m[0] for m in chunk.malformed])
        if lines:  # chunks do not interleave: rejects written chunk by chunk stay in line order
            assert lines[0] > last
            last = lines[-1]
    return source.columns, records, malformed, blank, sizes


GOOD = ["p{i},34,F,2", "p{i},40.5,male,0.5", "p{i}, 35 ,f,1", "p{i},,M,"]
ODD = [
    "", "\r", '"p{i}","34","F","2"', '"p{i}, quoted comma",34,F,2', '"p{i}\nsecond line",34,F,2',
    'p{i},34,F', 'p{i},34,F,2,extra', 'p{i}\xe9,34,F,2', '"p{i} unterminated,34,F,2',
    'p{i},3"4,F,2', ' ', ',,,', 'p{i},34,F,2\r', '\t', ' \t  ', 'p{i}\x00nul,34,F,2', 'p{i},3\x1b4,F,2',
    '"p{i}\x85",34,F,2', 'p{i},34,F,2\x7f',
]


def random_file(rng: random.Random, odd_share: float, n: int) -> bytes:
    lines = []
    for i in range(n):
        pool = ODD if rng.random() < odd_share else GOOD
        lines.append(rng.choice(pool).format(i=i))
    ending = rng.choice(["\n", "\r\n"])
    text = ",".join(HEADER) + ending + ending.join(lines) + rng.choice(["", ending])
    return text.encode("utf-8", "surrogateescape").replace("\xe9".encode(), b"\xe9")


@pytest.mark.parametrize("seed", range(12))
def test_chunked_reader_agrees_with_the_csv_module(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "in.csv"
    path.write_bytes((b"\xef\xbb\xbf" if seed % 3 == 0 else b"") + random_file(rng, [0.0, 0.02, 0.3][seed % 3], 400))
    expected = reference_records(path)
    for chunk_rows, block_bytes in [(50_000, 1 << 20), (7, 64), (1, 1), (100, 333)]:
        header, records, malformed, blank, sizes = chunked_records(path, chunk_rows, block_bytes)
        assert (header, records, malformed, blank) == expected
        assert max(sizes) <= chunk_rows


def test_plain_blocks_take_the_fast_path_and_odd_ones_do_not():
    header = ["a", "b"]
    piece = _fast_piece(b"1,2\n\n3,4,5\r\n6,7", header, first_line=2)
    assert piece.lines.tolist() == [2, 5] and piece.blank_lines == 1
    assert piece.malformed == [(4, "wrong number of fields: 3, expected 2")]
    assert piece.frame.astype(object).to_numpy().tolist() == [["1", "2"], ["6", "7"]]
    for odd in (b'"1",2\n', b"1,2\r3,4\n", b"1,\xe9\n"):
        assert _fast_piece(odd, header, first_line=2) is None


def test_many_malformed_lines_are_flushed_without_waiting_for_good_ones(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n" + "x\n" * 25 + "1,2\n")
    chunks = list(open_input(path, chunk_rows=10, block_bytes=8).chunks)  # blocks of 4 lines
    assert max(len(c.malformed) for c in chunks) <= 10 + 4  # flushed at the end of the block that fills it
    assert sum(len(c.malformed) for c in chunks) == 25 and sum(len(c.frame) for c in chunks) == 1
    lines = [m[0] for c in chunks for m in c.malformed] + [int(x) for c in chunks for x in c.lines]
    assert lines == list(range(2, 28))


def test_parquet_rows_are_numbered_from_one(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"age_years": np.arange(25.0)}), path, row_group_size=7)
    source = open_input(path, chunk_rows=10)
    lines = np.concatenate([c.lines for c in source.chunks])
    assert lines.tolist() == list(range(1, 26)) and source.columns == ["age_years"]


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"a,\xe9\n1,2\n", "not valid UTF-8"),
])
def test_unusable_headers_fail_clearly(tmp_path, content, message):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        open_input(path)
