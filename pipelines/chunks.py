"""The one per-chunk step of every batch engine: validate parsed records, score them, count them.

:class:`ChunkScorer` carries everything a chunk needs (the model, its version, the options, the
drift reference) as one object; the local engine maps it over the chunks in this process
(:func:`pipelines.score.score_locked`), the Spark engine runs it in tasks
(:mod:`pipelines.spark_engine`). Both import this module and not each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.drift import DriftCounts, bin_counts
from features.schema import ID_COLUMN, TREATMENT_FEATURE, output_columns
from features.validation import input_values, validate_frame
from models.scoring import RiskModel, ScoringOptions, score_columns
from pipelines.records import Chunk

REJECTS_SCHEMA = pa.schema([("line", pa.int64()), (ID_COLUMN, pa.string()), ("reason", pa.string())])


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk (or one Spark wave of chunks) gave.

    Attributes
    ----------
    scores : pyarrow.Table
        Scored records, in line order, columns as :meth:`ChunkScorer.schema`.
    rejects : pyarrow.Table
        Rejected records, in line order: ``line``, ``patient_id``, ``reason``.
    read : int
        Records read (scored + rejected).
    blank_lines : int
        Empty lines skipped.
    outside_training_range : int
        Scored records with a training-range warning.
    drift : DriftCounts or None
        Accepted records counted on the drift reference's bins (None without a reference).
    values : ndarray of shape (n_scored, n_inputs)
        The scored records' inputs as :func:`features.validation.input_values` gives them, row for row
        with ``scores``: the batch report's beeswarm colours its sample by them.
    """

    scores: pa.Table
    rejects: pa.Table
    read: int
    blank_lines: int
    outside_training_range: int
    drift: DriftCounts | None
    values: np.ndarray


@dataclass(frozen=True)
class ChunkScorer:
    """Everything a chunk of records needs to be scored, as one object: the one per-chunk step
    of every engine (the local loop, Spark tasks, which receive it as a broadcast variable).

    Attributes
    ----------
    risk_model : RiskModel
        The model to score with.
    version : str
        Registered model version, written into every scored row.
    options : ScoringOptions
        Horizons and whether to add the treatment contrast.
    allow_extra : bool
        Ignore columns that are not features.
    reference : dict or None
        Drift reference (:func:`features.drift.reference_profile`); None to skip the counts.
    """

    risk_model: RiskModel
    version: str
    options: ScoringOptions = ScoringOptions()
    allow_extra: bool = False
    reference: dict | None = None

    def columns(self) -> list[str]:
        """Output columns, in order: ``line``, ``patient_id``, ``treatment``, the scores, ``warnings``, ``model_version``."""
        return ["line", ID_COLUMN, TREATMENT_FEATURE, *output_columns(self.risk_model.outcome_names, self.options.horizons,
                                                   self.options.contrast, self.risk_model.gives_timing_share),
                "warnings", "model_version"]

    def schema(self) -> pa.Schema:
        """Arrow schema of the scores file."""
        text = {ID_COLUMN, TREATMENT_FEATURE, "warnings", "model_version"}
        return pa.schema([(c, pa.int64() if c == "line" else pa.string() if c in text else pa.float64())
                          for c in self.columns()])

    def score_records(self, frame: pd.DataFrame, lines: np.ndarray) -> ChunkResult:
        """Validate and score parsed records.

        Parameters
        ----------
        frame : DataFrame of shape (n, n_columns)
            Raw records (text or typed values).
        lines : ndarray of int64, shape (n,)
            Line (CSV) or row (Parquet) number of each record.

        Returns
        -------
        ChunkResult
            With the validation rejects only (no malformed lines).
        """
        batch = validate_frame(frame, allow_extra=self.allow_extra)
        scored = score_columns(self.risk_model, batch, self.options)
        n = len(batch.rows)
        schema = self.schema()
        columns = {"line": pa.array(np.asarray(lines, dtype=np.int64)[batch.rows], pa.int64())}
        columns |= {name: pa.array(scored[name], schema.field(name).type)
                    for name in schema.names if name in scored}
        columns["model_version"] = pa.array([self.version] * n, pa.string())
        rows = batch.rejects["row"].to_numpy(dtype=np.int64)
        rejects = pa.table({"line": pa.array(np.asarray(lines, dtype=np.int64)[rows], pa.int64()),
                            ID_COLUMN: pa.array(batch.rejects[ID_COLUMN].to_numpy(dtype=object), pa.string()),
                            "reason": pa.array(batch.rejects["reason"].to_numpy(dtype=object), pa.string())},
                           schema=REJECTS_SCHEMA)
        return ChunkResult(
            scores=pa.table(columns, schema=schema),
            rejects=rejects,
            read=len(frame),
            blank_lines=0,
            outside_training_range=int(self.risk_model.domain.outside(batch.matrix).sum()),
            drift=bin_counts(batch.matrix, self.reference) if self.reference is not None else None,
            values=input_values(batch.matrix),
        )

    def score_chunk(self, chunk: Chunk) -> ChunkResult:
        """Score one chunk in this process: its records, plus its malformed lines as rejects."""
        result = self.score_records(chunk.frame, chunk.lines)
        return dataclasses.replace(result, rejects=sorted_rejects([result.rejects, malformed_rejects(chunk.malformed)]),
                                   read=chunk.records, blank_lines=chunk.blank_lines)


def malformed_rejects(malformed: list[tuple[int, str]]) -> pa.Table:
    """Rejects table of records that could not be parsed into fields (no patient id)."""
    return pa.table({"line": pa.array([line for line, _ in malformed], pa.int64()),
                     ID_COLUMN: pa.nulls(len(malformed), pa.string()),
                     "reason": pa.array([reason for _, reason in malformed], pa.string())},
                    schema=REJECTS_SCHEMA)


def sorted_rejects(tables: Iterable[pa.Table]) -> pa.Table:
    """Rejects of several tables in line order (line numbers are unique)."""
    table = pa.concat_tables([t.cast(REJECTS_SCHEMA) for t in tables])
    return table.sort_by("line") if table.num_rows > 1 else table
