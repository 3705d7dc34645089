"""Batch scoring on Apache Spark: the local engine's per-chunk step, run in Spark tasks.

``autorisk score --engine spark`` gives the same files as the local engine (the same
columns, rows, line numbers, rejects and drift report; a test checks them to 1e-9).

How the work is split, and why:

- **The driver reads the file**, with the same reader as the local engine. Line numbers
  are physical lines of the file, and a CSV record with a quoted line break shifts every
  later line; only a pass over the file in order can number records correctly (Spark's
  own CSV reader numbers nothing and splits files at arbitrary bytes). Records that
  cannot be parsed into fields become rejects right there, with their line and reason.
  Reading takes about a microsecond a record (some 20 through the csv module, for blocks
  with quotes), scoring about a millisecond of CPU (exact SHAP values for four endpoints),
  so one driver keeps hundreds of executor cores busy.
- **Spark tasks score**: the parsed records travel with their line numbers as Arrow
  batches; ``mapInArrow`` runs :meth:`pipelines.chunks.ChunkScorer.score_records`
  (``validate_frame`` then ``score_columns``, the code every front door uses) and returns the scored rows
  (with their inputs as the batch report's beeswarm shows them), the rejected rows, and per batch a tally
  (records read, training-range warnings, drift histogram counts: aggregates only). The scorer (model, version, options, drift reference)
  travels once, as a broadcast variable.
- **Waves**: the driver submits one chunk (``--chunk-rows`` records) per task slot at a
  time and writes each wave's results before reading on, so driver memory is bounded by
  one wave whatever the file size.

pyspark (4.0 or later) is an optional dependency (``pip install 'autorisk[spark]'``); this
module is imported only when the Spark engine is asked for. On a cluster, the executors need
autorisk installed (they import ``features``, ``models`` and ``pipelines``) and
``PYSPARK_PYTHON`` pointing at that interpreter; for ``local[...]`` masters it defaults to
this process's interpreter.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.drift import DriftCounts
from features.schema import FEATURE_NAMES
from features.validation import KNOWN_COLUMNS
from pipelines.chunks import REJECTS_SCHEMA, ChunkResult, ChunkScorer, malformed_rejects, sorted_rejects
from pipelines.records import Chunk, InputFile

try:
    from pyspark.sql import SparkSession
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError("the Spark engine needs pyspark: pip install 'autorisk[spark]' "
                      "(or pip install 'pyspark>=4.0')") from error

LINE = "__autorisk_line"
RECORD = "__autorisk_record"
# The scored rows' inputs (ChunkResult.values), one column per input, beside their scores.
VALUES = [f"__autorisk_value_{name}" for name in FEATURE_NAMES]
_LOG4J2 = """\
# autorisk: Spark's own logs quiet (no banners, no per-stage chatter); errors still shown.
# The root stays at WARN so that PySpark's start-up does not announce a level change; the
# loggers that warn about the machine itself are kept to errors.
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
"""


def _log4j2_file() -> Path:
    """A log4j2 configuration that keeps Spark's JVM quiet (written once per machine)."""
    path = Path(tempfile.gettempdir()) / "autorisk-spark-log4j2.properties"
    if not path.is_file() or path.read_text(encoding="utf-8") != _LOG4J2:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".autorisk-log4j2.")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(_LOG4J2)
        os.replace(temporary, path)
    return path


def build_session(master: str = "local[*]", conf: dict[str, str] | None = None) -> SparkSession:
    """Start a Spark session for scoring, with Spark's own logs kept to errors.

    Parameters
    ----------
    master : str
        Spark master URL: ``local[*]``, ``local[2]``, ``spark://host:7077``, ``yarn``, ...
    conf : dict, optional
        Further Spark settings (they win over the defaults here).

    Returns
    -------
    SparkSession
    """
    settings = {
        "spark.app.name": "autorisk-score",
        "spark.ui.showConsoleProgress": "false",  # autorisk shows its own progress
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={_log4j2_file().as_uri()}",
    }
    if master.startswith("local"):
        # PySpark starts its workers with $PYSPARK_PYTHON (else "python3"): use this interpreter.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings |= conf or {}
    builder = SparkSession.builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextmanager
def session(master: str = "local[*]", conf: dict[str, str] | None = None) -> Iterator[SparkSession]:
    """The active Spark session if there is one (left running), else a new one stopped at the end."""
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    spark = build_session(master, conf)
    try:
        yield spark
    finally:
        spark.stop()


def output_schema(scorer: ChunkScorer) -> pa.Schema:
    """Arrow schema of the tasks' output: scored rows, rejected rows and one tally per batch.

    ``__autorisk_record`` says which; a tally carries its JSON in ``reason``; scored rows carry their inputs
    in :data:`VALUES`.
    """
    scores = scorer.schema()
    return pa.schema([pa.field(RECORD, pa.string()), *scores, pa.field("reason", pa.string()),
                      *(pa.field(name, pa.float64()) for name in VALUES)])


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

    types = {pa.string(): StringType(), pa.int64(): LongType(), pa.float64(): DoubleType(),
             pa.bool_(): BooleanType()}
    return StructType([StructField(f.name, types[f.type], True) for f in schema])


def _tagged(table: pa.Table, record: str, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: its columns, the others null, ``__autorisk_record`` set."""
    n = table.num_rows
    columns = [pa.array([record] * n, pa.string()) if f.name == RECORD
               else table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def encode_result(result: ChunkResult, schema: pa.Schema) -> pa.Table:
    """One task batch's result as rows of :func:`output_schema`."""
    tally = {"read": result.read, "outside_training_range": result.outside_training_range,
             "drift": None if result.drift is None else result.drift.to_json()}
    values = {name: pa.array(result.values[:, j], pa.float64()) for j, name in enumerate(VALUES)}
    scored = pa.Table.from_arrays([*result.scores.columns, *values.values()],
                                  names=[*result.scores.column_names, *values])
    parts = [_tagged(scored, "scored", schema), _tagged(result.rejects, "rejected", schema),
             _tagged(pa.table({"reason": [json.dumps(tally)]}), "tally", schema)]
    return pa.concat_tables(parts)


def _scorer(broadcast):
    """The function ``mapInArrow`` runs in each task (``broadcast`` holds the :class:`ChunkScorer`)."""

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = broadcast.value
        # Spark runs one task per core: a task's own model calls stay on one thread.
        scorer.risk_model.use_threads(1)
        schema = output_schema(scorer)
        for batch in batches:
            table = pa.Table.from_batches([batch])
            lines = table.column(LINE).to_numpy()
            frame = table.drop_columns([LINE]).to_pandas()
            yield from encode_result(scorer.score_records(frame, lines), schema).to_batches()

    return score_batches


def _input_schema(source: InputFile) -> pa.Schema:
    """Arrow schema of the records sent to Spark: the line, then the known columns."""
    fields = [pa.field(LINE, pa.int64())]
    for name in source.columns:
        if name not in KNOWN_COLUMNS:
            continue  # an ignored extra column (columns were checked before)
        kind = source.schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_large_string(kind) or pa.types.is_null(kind):
            kind = pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def _waves(chunks: Iterator[Chunk], size: int) -> Iterator[list[Chunk]]:
    wave: list[Chunk] = []
    for chunk in chunks:
        wave.append(chunk)
        if len(wave) == size:
            yield wave
            wave = []
    if wave:
        yield wave


def _records_table(wave: list[Chunk], schema: pa.Schema) -> pa.Table:
    names = schema.names[1:]
    tables = [pa.Table.from_pandas(chunk.frame[names], schema=pa.schema(list(schema)[1:]), preserve_index=False)
              .add_column(0, LINE, pa.array(chunk.lines, pa.int64())) for chunk in wave]
    return pa.concat_tables(tables)


def _score_wave(spark: SparkSession, wave: list[Chunk], task, schemas, target: pa.Schema) -> ChunkResult:
    input_schema, spark_out = schemas
    records = _records_table(wave, input_schema)
    malformed = malformed_rejects([m for chunk in wave for m in chunk.malformed])
    blank = sum(chunk.blank_lines for chunk in wave)
    if records.num_rows == 0:
        return ChunkResult(target.empty_table(), malformed, malformed.num_rows, blank, 0, None,
                           np.empty((0, len(VALUES))))
    out = spark.createDataFrame(records).mapInArrow(task, spark_out).toArrow()
    kind = out.column(RECORD)
    scored = out.filter(pc.equal(kind, "scored")).sort_by("line")
    scores = scored.select(target.names).cast(target)
    values = np.column_stack([scored.column(name).to_numpy(zero_copy_only=False) for name in VALUES]) \
        if scored.num_rows else np.empty((0, len(VALUES)))
    rejects = out.filter(pc.equal(kind, "rejected")).select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA)
    tallies = [json.loads(t) for t in out.filter(pc.equal(kind, "tally")).column("reason").to_pylist()]
    drift = [DriftCounts.from_json(t["drift"]) for t in tallies if t["drift"] is not None]
    read = sum(t["read"] for t in tallies)
    if read != records.num_rows:  # a lost task result; never the input's fault
        raise RuntimeError(f"internal error: Spark returned tallies for {read} of {records.num_rows} records")
    return ChunkResult(
        scores=scores,
        rejects=sorted_rejects([rejects, malformed]),
        read=read + malformed.num_rows,
        blank_lines=blank,
        outside_training_range=sum(t["outside_training_range"] for t in tallies),
        drift=sum(drift[1:], drift[0]) if drift else None,
        values=values,
    )


def score_chunks(spark: SparkSession, source: InputFile, scorer: ChunkScorer) -> Iterator[ChunkResult]:
    """Score an opened input on Spark, one wave of chunks at a time, in file order.

    Parameters
    ----------
    spark : SparkSession
        A running session.
    source : InputFile
        The opened input (columns already checked).
    scorer : ChunkScorer
        The model, its version, the options and the drift reference; sent to the tasks once,
        as a broadcast variable.

    Yields
    ------
    ChunkResult
        One per wave: ``defaultParallelism`` chunks.
    """
    slots = max(1, int(spark.sparkContext.defaultParallelism))
    broadcast = spark.sparkContext.broadcast(scorer)
    schemas = (_input_schema(source), _spark_schema(output_schema(scorer)))
    task = _scorer(broadcast)
    try:
        for wave in _waves(source.chunks, slots):
            yield _score_wave(spark, wave, task, schemas, scorer.schema())
    finally:
        broadcast.destroy()


__all__ = ["LINE", "RECORD", "build_session", "encode_result", "output_schema", "score_chunks", "session"]
