"""Patient ids scored more than once in a file: scored all the same, counted, and named in ``warnings``.

A repeated id is usually an export that joined two visits, or two patients who share an id by
mistake; either way each record is scored, and every repeat says on which line the id was first
scored, so that the clinic can look. Memory stays small whatever the file: ids are kept as 64-bit
hashes with the line of their first score (16 bytes an id; two different ids among a million share a
hash with probability about 3e-8).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features.schema import ID_COLUMN


class SeenIds:
    """Ids scored so far in one file, with the line each was first scored on."""

    def __init__(self) -> None:
        self.hashes = np.empty(0, dtype=np.uint64)  # sorted
        self.lines = np.empty(0, dtype=np.int64)    # in the order of hashes
        self.repeats = 0

    def first_lines(self, ids: np.ndarray, lines: np.ndarray) -> np.ndarray:
        """For each id, the line it was first scored on if that was an earlier record, else -1; remembers them.

        Parameters
        ----------
        ids : ndarray of object, shape (n,)
            Patient ids in file order (None or "" for records without one).
        lines : ndarray of int64, shape (n,)
            Their lines, increasing.

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        first = np.full(len(ids), -1, dtype=np.int64)
        present = np.array([i is not None and i != "" for i in ids], dtype=bool)
        if not present.any():
            return first
        where = np.flatnonzero(present)
        hashes = pd.util.hash_array(np.asarray(ids[where], dtype=object), categorize=False)
        # Repeats within this batch point at the batch's own first record of the id.
        unique, start, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        batch_first = lines[where][start][inverse]
        first[where] = np.where(batch_first < lines[where], batch_first, -1)
        # Repeats of earlier batches point at the earliest line of all.
        position = np.searchsorted(self.hashes, hashes)
        known = position < len(self.hashes)
        known[known] = self.hashes[position[known]] == hashes[known]
        first[where[known]] = self.lines[position[known]]
        new = ~np.isin(unique, self.hashes, assume_unique=True)
        merged = np.concatenate([self.hashes, unique[new]])
        order = np.argsort(merged, kind="stable")
        self.hashes = merged[order]
        self.lines = np.concatenate([self.lines, lines[where][start][new]])[order]
        self.repeats += int((first >= 0).sum())
        return first


def mark_repeats(scores: pa.Table, seen: SeenIds) -> pa.Table:
    """``scores`` with a warning on every record whose patient id was scored on an earlier line.

    Parameters
    ----------
    scores : pyarrow.Table
        Scored records in line order, with ``line``, ``patient_id`` and ``warnings``.
    seen : SeenIds
        The ids scored before these records; updated.

    Returns
    -------
    pyarrow.Table
        The same rows; ``warnings`` of a repeat ends with ``patient_id: also scored on line N``.
    """
    if scores.num_rows == 0:
        return scores
    ids = scores.column(ID_COLUMN).to_numpy(zero_copy_only=False)
    lines = scores.column("line").to_numpy()
    first = seen.first_lines(ids, lines)
    repeat = first >= 0
    if not repeat.any():
        return scores
    warnings = scores.column("warnings").to_numpy(zero_copy_only=False).astype(object)
    for i in np.flatnonzero(repeat):
        note = f"{ID_COLUMN}: also scored on line {first[i]}"
        warnings[i] = f"{warnings[i]}; {note}" if warnings[i] else note
    index = scores.schema.get_field_index("warnings")
    return scores.set_column(index, scores.schema.field(index), pa.array(warnings, pa.string()))

