"""Observed cohorts from files: a registry's or a study's own patients with their outcomes.

Read through the same intake as ``autorisk score`` (every format, ``--il21-assay``, ``--sheet``,
headers in any case: :mod:`pipelines.reading`, :mod:`pipelines.intake`), validated by the same
rules (:mod:`features.validation`), with each outcome's columns read by :mod:`features.outcomes`.
Nothing is lost: every record is used or rejected alone, with its line and reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.outcomes import check_outcome_columns, outcome_columns, read_outcomes, time_column
from features.schema import ID_COLUMN, MODEL_COLUMNS
from features.validation import check_columns, validate_frame
from pipelines.intake import decimal_commas, prepare
from pipelines.reading import InputFileError, open_input

READ_ROWS = 50_000


@dataclass(frozen=True)
class ObservedCohort:
    """The usable records of a file with outcomes, and the rest with their reasons.

    Attributes
    ----------
    frame : DataFrame of shape (n_used, ...)
        Per usable record: ``patient_id``, the inputs as in the file, each outcome's event and time, and
        ``profile`` (the file's name: the cohort it came from, as the simulator's cohorts carry theirs).
    matrix : ndarray of shape (n_used, n_columns)
        The model matrix of the same records (:mod:`features.validation`).
    lines : ndarray of int64, shape (n_used,)
        The line (CSV), row (Parquet) or Excel row of each usable record.
    rejects : DataFrame
        ``line``, ``patient_id``, ``reason`` of every record that could not be used.
    read : int
        Records read (used plus rejected).
    digest : str
        SHA-256 of the file's bytes: which file, without its content.
    source : str
        What was read (format, separator, sheet).
    """

    frame: pd.DataFrame
    matrix: np.ndarray
    lines: np.ndarray
    rejects: pd.DataFrame
    read: int
    digest: str
    source: str

    def events(self, outcome: str) -> int:
        return int(self.frame[f"{outcome}_event"].sum())


@dataclass(frozen=True)
class ObservedFile:
    """A file of patients with their observed outcomes, and how to read it.

    Attributes
    ----------
    path : Path
        Any format ``autorisk score`` reads.
    il21_assay : str, optional
        The IL-21 kit of every IL-21 value without one of its own (``--il21-assay``).
    sheet : str, optional
        The sheet of an ``.xlsx`` workbook (default: the first).
    """

    path: Path
    il21_assay: str | None = None
    sheet: str | None = None

    def read(self, outcomes: tuple[str, ...]) -> ObservedCohort:
        """Every record with ``outcomes``' columns, used or rejected (:func:`read_observed`)."""
        return read_observed(self.path, outcomes, il21_assay=self.il21_assay, sheet=self.sheet)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _outcome_names(columns: list[str], outcomes: tuple[str, ...]) -> dict[str, str]:
    """Headers that name an outcome column ignoring case and surrounding spaces, to that column's name."""
    wanted = {name.lower(): name for name in outcome_columns(outcomes)}
    return {c: wanted[c.strip().lower()] for c in columns if c.strip().lower() in wanted}


def read_observed(path: Path, outcomes: tuple[str, ...], *, il21_assay: str | None = None,
                  sheet: str | None = None) -> ObservedCohort:
    """Every record of a file with outcomes, used or rejected with its line and reason.

    Raises
    ------
    InputFileError, features.validation.InputSchemaError
        When the file cannot be used at all: unreadable, an input column required for scoring missing,
        or an outcome's columns missing (naming them).
    """
    path = Path(path)
    source = prepare(open_input(path, READ_ROWS, sheet=sheet), il21_assay=il21_assay)
    try:
        renamed = _outcome_names(source.columns, outcomes)
        columns = [renamed.get(c, c) for c in source.columns]
        check_columns(columns, allow_extra=True)
        check_outcome_columns(columns, outcomes)
        used, rejected, read = [], [], 0
        times = [time_column(o) for o in outcomes]
        for chunk in source.chunks:
            frame = chunk.frame.set_axis(columns, axis=1)
            if source.delimiter == ";":  # a European export: its months have decimal commas, as its inputs do
                frame = decimal_commas(frame, times)
            read += chunk.records
            rejected += [(line, None, reason) for line, reason in chunk.malformed]
            batch = validate_frame(frame, allow_extra=True)
            values, outcome_reasons = read_outcomes(frame, outcomes)
            reasons = np.full(len(frame), "", dtype=object)
            reasons[batch.rejects["row"].to_numpy(dtype=int)] = batch.rejects["reason"].to_numpy(dtype=object)
            both = (reasons != "") & (outcome_reasons != "")
            reasons = np.where(both, reasons + "; " + outcome_reasons, np.where(outcome_reasons != "",
                                                                                outcome_reasons, reasons))
            ids = frame[ID_COLUMN].astype("string").str.strip().to_numpy(dtype=object, na_value=None) \
                if ID_COLUMN in frame.columns else np.full(len(frame), None, dtype=object)
            bad = reasons != ""
            rejected += list(zip(chunk.lines[bad].tolist(), ids[bad].tolist(), reasons[bad].tolist()))
            accepted = np.zeros(len(frame), dtype=bool)
            accepted[batch.rows] = True
            keep = accepted & ~bad
            matrix = batch.matrix[keep[batch.rows]]
            records = frame.loc[keep].drop(columns=[c for c in outcome_columns(outcomes) if c in frame.columns])
            used.append((records.assign(**{c: values.loc[keep, c].to_numpy() for c in values.columns}),
                         matrix, chunk.lines[keep]))
    finally:
        source.close()
    if used:
        frame = pd.concat([f for f, _, _ in used], ignore_index=True)
        matrix = np.vstack([m for _, m, _ in used])
        lines = np.concatenate([line for _, _, line in used]).astype(np.int64)
    else:  # a header and no record
        frame = pd.DataFrame(columns=[ID_COLUMN, *outcome_columns(outcomes)])
        matrix, lines = np.empty((0, len(MODEL_COLUMNS))), np.empty(0, dtype=np.int64)
    frame = frame.assign(profile=path.name)
    if ID_COLUMN not in frame.columns:
        frame.insert(0, ID_COLUMN, None)
    rejects = pd.DataFrame(sorted(rejected, key=lambda r: r[0]), columns=["line", ID_COLUMN, "reason"])
    return ObservedCohort(frame=frame, matrix=matrix, lines=lines, rejects=rejects, read=read,
                          digest=file_digest(path), source=source.description)


__all__ = ["InputFileError", "ObservedCohort", "ObservedFile", "file_digest", "read_observed"]
