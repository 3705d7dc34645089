"""From a file's records to the columns validation expects: header names, the file's IL-21 kit,
decimal commas.

Clinic exports differ in small ways that are not the patient's data: ``Age_Years`` for
``age_years``, a semicolon file from a European Excel with ``1,5`` for 1.5, an IL-21 column
without the kit that measured it (the clinic knows its laboratory's kit; the file does not say
it). These are settled once per file here, before validation, so that every record is judged by
the same rules as everywhere else (:mod:`features.validation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from features.schema import FEATURES, IL21_KITS
from features.validation import KNOWN_COLUMNS, MISSING_TOKENS
from pipelines.reading import InputFile, InputFileError

IL21, ASSAY = "il21_pg_ml", "il21_assay"
NUMERIC_COLUMNS = tuple(f.name for f in FEATURES if f.kind in ("number", "integer"))
# A decimal comma: digits, one comma, digits ("1,5", "-0,25", ",5"); "1.234,5" is left alone
# (and rejected by validation), since a thousands separator is not a decimal one.
_DECIMAL_COMMA = r"^(\s*[+-]?\d*),(\d+\s*)$"


def canonical_names(columns: Sequence[str]) -> list[str]:
    """Each column's feature name when it names one ignoring case and surrounding spaces, else as written.

    Parameters
    ----------
    columns : sequence of str
        Header names as in the file.

    Returns
    -------
    list of str
        Same length; unknown names stripped of surrounding spaces, otherwise unchanged (so that
        an error message quotes them as the file has them).
    """
    by_key = {name.lower(): name for name in KNOWN_COLUMNS}
    return [by_key.get(str(c).strip().lower(), str(c).strip()) for c in columns]


def check_distinct(columns: Sequence[str], names: Sequence[str]) -> None:
    """InputFileError when two different headers name the same feature (``Age_Years`` and ``age_years``)."""
    seen: dict[str, str] = {}
    for written, name in zip(columns, names):
        if name in KNOWN_COLUMNS and name in seen and seen[name] != written:
            raise InputFileError(f"columns {seen[name]!r} and {written!r} both name {name}; keep one of them")
        seen.setdefault(name, written)


def check_kit(kit: str) -> str:
    """The canonical name of an IL-21 kit given on the command line (any case)."""
    name = kit.strip().lower()
    if name not in IL21_KITS:
        raise InputFileError(f"--il21-assay: {kit!r} is not a kit autorisk knows; use one of {', '.join(IL21_KITS)}")
    return name


def missing_mask(values: pd.Series) -> np.ndarray:
    """Where a value means "unknown", by validation's rule: null, blank, ``NA``, ``NaN``, ``null``, ..."""
    text = values.astype("string").str.strip().str.lower()
    return (text.isna() | text.isin(MISSING_TOKENS)).to_numpy(dtype=bool)


def with_kit(frame: pd.DataFrame, kit: str) -> pd.DataFrame:
    """``frame`` with ``kit`` as the IL-21 kit of every record that names none.

    Parameters
    ----------
    frame : DataFrame of shape (n, n_columns)
    kit : str
        A key of :data:`features.schema.IL21_KITS`.

    Returns
    -------
    DataFrame of shape (n, n_columns) or (n, n_columns + 1)
        With an ``il21_assay`` column; a kit the record names is kept.
    """
    if ASSAY not in frame.columns:
        return frame.assign(**{ASSAY: kit})
    column = frame[ASSAY].astype(object)
    return frame.assign(**{ASSAY: column.where(~missing_mask(column), kit)})


def first_line_without_kit(frame: pd.DataFrame, lines: np.ndarray) -> int | None:
    """Line of the first record with an IL-21 value when the file has no kit column; else None."""
    if IL21 not in frame.columns or ASSAY in frame.columns or frame.empty:
        return None
    present = ~missing_mask(frame[IL21])
    return int(lines[np.argmax(present)]) if present.any() else None


def no_kit_message(line: int) -> str:
    return (f"il21_pg_ml has values (the first on line {line}) but the file has no il21_assay column, so "
            "nothing says which kit measured them, and the kits read about ten times apart: pass "
            f"--il21-assay {' or --il21-assay '.join(IL21_KITS)}, the kit the laboratory used")


def decimal_commas(frame: pd.DataFrame, columns: Sequence[str] = NUMERIC_COLUMNS) -> pd.DataFrame:
    """``frame`` with decimal commas in its numeric text ``columns`` read as points (``1,5`` -> ``1.5``)."""
    changed = {}
    for name in columns:
        if name in frame.columns and not pd.api.types.is_numeric_dtype(frame[name]):
            changed[name] = frame[name].astype("string").str.replace(_DECIMAL_COMMA, r"\1.\2", regex=True)
    return frame.assign(**changed) if changed else frame


def prepare(source: InputFile, *, il21_assay: str | None = None) -> InputFile:
    """The input with feature names as headers, decimal commas read, and the file's IL-21 kit applied.

    Parameters
    ----------
    source : InputFile
        As opened by :func:`pipelines.reading.open_input`.
    il21_assay : str, optional
        The kit of every IL-21 value without one of its own (``--il21-assay``).

    Returns
    -------
    InputFile
        Its chunks raise :class:`InputFileError` at the first IL-21 value of a file that has no
        ``il21_assay`` column when no kit was given: a file-level error, raised before that
        chunk is scored (nothing is written then).

    Raises
    ------
    InputFileError
        When two headers name the same feature, or the kit is unknown.
    """
    names = canonical_names(source.columns)
    check_distinct(source.columns, names)
    kit = check_kit(il21_assay) if il21_assay is not None else None
    fields = [pa.field(name, field.type) for name, field in zip(names, source.schema)]
    columns = list(names)
    if kit is not None and ASSAY not in names:
        columns.append(ASSAY)
        fields.append(pa.field(ASSAY, pa.string()))
    decimal = source.delimiter == ";"

    def chunks() -> Iterator:
        try:
            for chunk in source.chunks:
                frame = chunk.frame.set_axis(names, axis=1)
                if decimal:
                    frame = decimal_commas(frame)
                if kit is not None:
                    frame = with_kit(frame, kit)
                elif (line := first_line_without_kit(frame, chunk.lines)) is not None:
                    raise InputFileError(no_kit_message(line))
                yield dataclasses.replace(chunk, frame=frame)
        finally:
            source.chunks.close()

    return dataclasses.replace(source, columns=columns, schema=pa.schema(fields), chunks=chunks())
