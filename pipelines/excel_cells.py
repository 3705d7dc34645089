"""Cells of an ``.xlsx`` sheet whose value a reader cannot trust: formulas without a saved value, error
values and merged ranges.

python-calamine reads the values Excel saved. A formula that was never calculated (a workbook
written by a program rather than saved by Excel) has none, and an error value (``#DIV/0!``,
``#N/A``) reads as an empty cell; either would silently turn a value into "unknown" or a patient id
into a blank. A merged range holds its value in its first cell only, so the rows below it read
blank. Their rows are rejected with a reason naming the cell, as a clinic sees it in Excel.

Formulas and error values are found in the sheet's XML, streamed from the workbook, with a byte
search that costs nothing for a sheet that holds none; merged ranges come from python-calamine.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

READ_BYTES = 4 << 20
_RELATIONSHIP = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_ROW_END = re.compile(rb"</(?:[\w.-]+:)?row>")
_FORMULA = re.compile(rb"<(?:[\w.-]+:)?f[\s/>]")
_ERROR_CELL = re.compile(rb"<(?:[\w.-]+:)?c\b[^>]*?\bt=\"e\"[^>]*>")
_CELL_START = re.compile(rb"<(?:[\w.-]+:)?c\b[^>]*>")
_REFERENCE = re.compile(rb"\br=\"([A-Z]{1,3})([0-9]+)\"")
_TYPE = re.compile(rb"\bt=\"(\w+)\"")
_ERROR_CODE = re.compile(r"#[A-Z0-9/!?.]{1,15}")  # #DIV/0!, #N/A, #VALUE!, #REF!, #NAME?, #NUM!, #NULL!
_VALUE = re.compile(rb"<(?:[\w.-]+:)?v>([^<]*)</(?:[\w.-]+:)?v>")
NO_SAVED_VALUE = ("a formula without a saved value (a program wrote the workbook without calculating it): "
                  "open it in Excel and save it, so that the values are stored")


def column_index(letters: str) -> int:
    """0-based index of an Excel column (A -> 0, AA -> 26)."""
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


def column_letter(index: int) -> str:
    """Excel's name of the column at 0-based ``index`` of the sheet (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _sheet_part(archive: zipfile.ZipFile, sheet: str) -> str | None:
    """The zip member holding ``sheet``'s cells, from the workbook's sheet list and relationships."""
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    ids = {element.get("name"): element.get(_RELATIONSHIP) for element in workbook.iter() if element.tag.endswith("}sheet")}
    relationships = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {element.get("Id"): element.get("Target") for element in relationships}
    target = targets.get(ids.get(sheet))
    if not target:
        return None
    return target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))


def _pieces(member) -> Iterator[bytes]:
    """The part's bytes in pieces that end at a row's end tag, so that no cell is cut in two."""
    pending = b""
    while block := member.read(READ_BYTES):
        pending += block
        ends = list(_ROW_END.finditer(pending, max(len(pending) - len(block) - 16, 0)))
        if ends:
            cut = ends[-1].end()
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending


def _cell_at(piece: bytes, position: int) -> tuple[bytes, bytes] | None:
    """The start tag and the content of the cell around ``position``."""
    start = max(piece.rfind(b"<c ", 0, position), piece.rfind(b":c ", 0, position))
    if start < 0:
        return None
    start = piece.rfind(b"<", 0, start + 1)
    tag = _CELL_START.match(piece, start)
    if tag is None:
        return None
    end = piece.find(b"c>", tag.end())
    return tag.group(), piece[tag.end():end if end >= 0 else len(piece)]


def _problems_in(piece: bytes) -> Iterator[tuple[str, int, str]]:
    """(column letters, row, reason) of each formula without a saved value and each error value."""
    if b't="e"' in piece:
        for match in _ERROR_CELL.finditer(piece):
            reference = _REFERENCE.search(match.group())
            end = piece.find(b"c>", match.end())
            value = _VALUE.search(piece, match.end(), end if end >= 0 else len(piece))
            if reference:
                code = value[1].decode("ascii", "replace") if value else ""
                shown = f"the error {code}" if _ERROR_CODE.fullmatch(code) else "an error value"
                yield reference[1].decode(), int(reference[2]), f"{shown} instead of a value"
    if _FORMULA.search(piece) is None:
        return
    for match in _FORMULA.finditer(piece):
        cell = _cell_at(piece, match.start())
        if cell is None:
            continue
        tag, content = cell
        reference, kind = _REFERENCE.search(tag), _TYPE.search(tag)
        if reference is None or (kind is not None and kind[1] == b"e"):
            continue  # an error value is named above
        value = _VALUE.search(content)
        # A formula whose saved result is text may have saved an empty string: that is a value.
        saved = value is not None and (value[1] != b"" or (kind is not None and kind[1] == b"str"))
        if not saved:
            yield reference[1].decode(), int(reference[2]), NO_SAVED_VALUE


def formula_and_error_cells(path: Path, sheet: str) -> Iterator[tuple[int, int, str]]:
    """(Excel row, 0-based column, reason) of each cell of ``sheet`` that holds a formula without a
    saved value or an error value, in file order; nothing when the workbook's parts cannot be read
    (python-calamine has already read the sheet, and says what is wrong with a damaged one)."""
    try:
        with zipfile.ZipFile(path) as archive:
            part = _sheet_part(archive, sheet)
            if part is None:
                return
            with archive.open(part) as member:
                for piece in _pieces(member):
                    for letters, row, reason in _problems_in(piece):
                        yield row, column_index(letters), reason
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error, ElementTree.ParseError):
        return


def unreadable_cells(path: Path, sheet, header_row: int, first_column: int,
                     header: list[str]) -> tuple[dict[int, str], dict[int, str]]:
    """Why rows below the header cannot be read as they stand, by Excel row number.

    Returns
    -------
    formulas : dict of int to str
        Rows with a cell under the header that holds a formula without a saved value or an error
        value; such a row is rejected even when it reads as empty.
    merged : dict of int to str
        Rows with a cell under the header that belongs to a merged range without being its first
        (top-left) cell: it reads blank, though the range's value is meant for it.
    """
    formulas: dict[int, list[str]] = {}
    merged: dict[int, list[str]] = {}
    last = first_column + len(header) - 1

    def add(found: dict, row: int, column: int, reason: str) -> None:
        if row > header_row and first_column <= column <= last:
            found.setdefault(row, []).append(
                f"{header[column - first_column]} (cell {column_letter(column)}{row}): {reason}")

    for row, column, reason in formula_and_error_cells(path, sheet.name):
        add(formulas, row, column, reason)
    for (top, left), (bottom, right) in sheet.merged_cell_ranges or ():
        first = f"{column_letter(left)}{top + 1}"
        span = f"{first}:{column_letter(right)}{bottom + 1}"
        for row in range(max(top + 1, header_row + 1), bottom + 2):
            cells = [c for c in range(max(left, first_column), min(right, last) + 1) if (row, c) != (top + 1, left)]
            if cells:  # one reason per range and row
                add(merged, row, cells[0], f"part of the merged range {span}, whose value only {first} holds: "
                                           "unmerge it and fill in each cell")
    return ({row: "; ".join(reasons) for row, reasons in formulas.items()},
            {row: "; ".join(reasons) for row, reasons in merged.items()})
