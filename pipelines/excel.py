"""Excel workbooks (``.xlsx``) as cohort files, read with python-calamine.

One sheet is read: the first, or the one ``--sheet`` names. The header is the first row that
holds anything; each later row is a record numbered by its Excel row number, as the clinic sees
it in Excel. Cells become text as a CSV export would write them (a whole number without ``.0``,
booleans as ``true``/``false``, dates in ISO 8601), so that a workbook and its CSV export give the
same records and the same risks, and validation treats both alike. Formulas are read as the
values Excel last computed and saved; a row with a formula that has none, an error value or a cell
of a merged range other than its first is rejected, naming the cell (:mod:`pipelines.excel_cells`),
and so is one with a control character in a cell.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.excel_cells import column_letter
from pipelines.sniffing import control_character

MAX_EXACT_INTEGER = 2**53  # floats above this are not whole numbers one can trust digit by digit
ROWS_PER_PIECE = 10_000


class WorkbookError(ValueError):
    """The workbook or the requested sheet cannot be read."""


def cell_text(value: object) -> str:
    """A cell's value as the text a CSV export would hold ("" for an empty cell).

    Parameters
    ----------
    value : str, bool, int, float, date, datetime, time, timedelta or None
        As python-calamine returns it.

    Returns
    -------
    str
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < MAX_EXACT_INTEGER:
            return str(int(value))  # 1001, not 1001.0: patient ids and whole numbers as typed
        return repr(value)  # the shortest text that reads back as the same double
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    return str(value)


def open_sheet(path: Path, sheet: str | None):
    """The workbook and the sheet to read (the first when ``sheet`` is None).

    Returns
    -------
    (CalamineWorkbook, CalamineSheet, str)
        The workbook (to close), the sheet, and a description such as
        ``sheet 'Patients' (the first of 3)``.

    Raises
    ------
    WorkbookError
        When the workbook is unreadable or password-protected, or has no sheet of that name.
    """
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except python_calamine.PasswordError as error:
        raise WorkbookError(f"{path} is password-protected: save an unprotected copy and score that") from error
    except (python_calamine.CalamineError, OSError, ValueError) as error:
        raise WorkbookError(f"{path}: not a readable .xlsx workbook ({error})") from error
    names = list(workbook.sheet_names)
    if not names:
        workbook.close()
        raise WorkbookError(f"{path}: the workbook has no sheets")
    if sheet is None:
        chosen = names[0]
        where = f"sheet {chosen!r}" + (f" (the first of {len(names)}; --sheet chooses another)" if len(names) > 1 else "")
    elif sheet in names:
        chosen, where = sheet, f"sheet {sheet!r}"
    else:
        workbook.close()
        raise WorkbookError(f"--sheet: {path} has no sheet {sheet!r}; its sheets: "
                            + ", ".join(repr(n) for n in names))
    try:
        return workbook, workbook.get_sheet_by_name(chosen), where
    except (python_calamine.CalamineError, OSError, ValueError) as error:
        workbook.close()
        raise WorkbookError(f"{path}: sheet {chosen!r} cannot be read ({error})") from error


def sheet_rows(sheet) -> tuple[list[str], int, Iterator[tuple[int, list[str]]]]:
    """The header and the rows of a sheet, each row with its Excel row number.

    python-calamine yields every row from row 1 (leading empty rows included) and the columns
    from the first one that holds anything; the test on a sheet with a header on row 3 and a
    gap checks this numbering.

    Returns
    -------
    header : list of str
        The first non-empty row as text, surrounding spaces kept (trailing empty cells dropped).
    header_row : int
        Its Excel row number.
    rows : iterator of (int, list of str)
        Every later row as text, with its Excel row number.

    Raises
    ------
    WorkbookError
        When the sheet holds nothing.
    """
    rows = enumerate(sheet.iter_rows(), start=1)
    for number, cells in rows:
        texts = [cell_text(c) for c in cells]
        if any(t.strip() for t in texts):
            while texts and not texts[-1].strip():
                texts.pop()
            return texts, number, ((n, [cell_text(c) for c in row]) for n, row in rows)
    raise WorkbookError(f"sheet {sheet.name!r} is empty: expected a header row with column names")


def row_pieces(rows: Iterator[tuple[int, list[str]]], width: int, first_column: int, max_bytes: int,
               piece_rows: int = ROWS_PER_PIECE, *, names: list[str] | None = None,
               unreadable: tuple[dict[int, str], dict[int, str]] = ({}, {}),
               ) -> Iterator[tuple[list[list[str]], list[int], list[tuple[int, str]], int]]:
    """Records of a sheet in pieces: values, row numbers, malformed rows with reasons, empty rows.

    Parameters
    ----------
    rows : iterator of (int, list of str)
        From :func:`sheet_rows`.
    width : int
        Columns under the header.
    first_column : int
        0-based sheet column of the header's first cell (for naming columns in reasons).
    max_bytes : int
        A row whose cells hold more UTF-8 bytes than this is rejected alone.
    piece_rows : int
        Rows per piece, at most.
    names : list of str, optional
        The header's names, for reasons that name a column.
    unreadable : (dict of int to str, dict of int to str)
        From :func:`pipelines.excel_cells.unreadable_cells`: rows rejected even when they read as
        empty (formulas without a saved value, error values), and rows rejected unless empty
        (cells of merged ranges).
    """
    formulas, merged = unreadable
    names = names or [column_letter(first_column + i) for i in range(width)]
    values: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str]] = []
    blank = 0
    number = 0
    for number, cells in rows:
        extra = [i for i in range(width, len(cells)) if cells[i].strip()]
        size = sum(len(c.encode("utf-8", "surrogatepass")) for c in cells)
        if number in formulas:
            malformed.append((number, formulas[number]))
        elif not any(c.strip() for c in cells):
            blank += 1
        elif size > max_bytes:
            malformed.append((number, f"record of {size:,} bytes is over the limit of {max_bytes:,} bytes"))
        elif extra:
            malformed.append((number, f"a value in column {column_letter(first_column + extra[0])}, "
                                      "which has no header"))
        elif number in merged:
            malformed.append((number, merged[number]))
        elif reason := control_character(cells, names):
            malformed.append((number, reason))
        else:
            values.append(cells[:width] + [""] * (width - len(cells)))
            numbers.append(number)
        if len(values) + len(malformed) + blank >= piece_rows:
            yield values, numbers, malformed, blank
            values, numbers, malformed, blank = [], [], [], 0
    # The sheet's rows end at its last value: rows below it holding only formulas without one.
    malformed += [(row, formulas[row]) for row in sorted(formulas) if row > number]
    if values or malformed or blank:
        yield values, numbers, malformed, blank


def piece_frame(values: list[list[str]], header: list[str]) -> pd.DataFrame:
    """A piece's records as a text frame with the header's columns."""
    if not values:
        return pd.DataFrame({name: pd.Series([], dtype=object) for name in header})
    return pd.DataFrame(np.array(values, dtype=object).reshape(len(values), len(header)), columns=header)


def first_column(sheet) -> int:
    """0-based index of the sheet's first column that holds anything."""
    start = sheet.start
    return int(start[1]) if start else 0
