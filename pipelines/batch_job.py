"""A batch-scoring job, checked once: what to read and how, what to write, how and where to score, with
which registered version.

``autorisk score`` builds one :class:`ScoreJob` from its options before anything is locked, loaded or
read; :func:`pipelines.score.score_batch` and everything below it take the job as it is and check
nothing about it again. A job that exists is a job that can run: its files have names autorisk reads
and writes, the input exists, no two roles share a file, and the engine is installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from models.registry import version_or_alias
from models.scoring import ScoringOptions
from pipelines.intake import check_kit
from pipelines.outputs import journal_path
from pipelines.reading import CHUNK_ROWS, InputFileError, check_input_name, file_format

ENGINES = ("local", "spark")


@dataclass(frozen=True)
class BatchOutputs:
    """Every file a run writes, all named after the scores' stem (``scores.csv`` -> ``scores.*``).

    Attributes
    ----------
    scores : Path
        ``.csv`` or ``.parquet``.
    rejects : Path
        ``<stem>.rejects.<ext>`` unless named.
    drift_md, drift_json : Path
        ``<stem>.drift.md`` and ``<stem>.drift.json``.
    report : Path
        ``<stem>.report.html`` (:mod:`pipelines.batch_report`).
    """

    scores: Path
    rejects: Path
    drift_md: Path
    drift_json: Path
    report: Path

    @classmethod
    def beside(cls, scores: Path, rejects: Path | None = None) -> BatchOutputs:
        """The outputs of a run whose scores go to ``scores``: ``scores.csv`` -> ``scores.rejects.csv``,
        ``scores.drift.md``, ``scores.drift.json``, ``scores.report.html``."""
        scores = Path(scores)
        return cls(scores=scores,
                   rejects=Path(rejects) if rejects else scores.with_name(f"{scores.stem}.rejects{scores.suffix}"),
                   drift_md=scores.with_name(f"{scores.stem}.drift.md"),
                   drift_json=scores.with_name(f"{scores.stem}.drift.json"),
                   report=scores.with_name(f"{scores.stem}.report.html"))

    @property
    def locked(self) -> tuple[Path, Path]:
        """The outputs whose stems a run locks (:func:`pipelines.outputs.lock_outputs`)."""
        return self.scores, self.rejects

    @property
    def companions(self) -> tuple[Path, Path, Path]:
        """The outputs written only by whoever holds the scores' lock."""
        return self.drift_md, self.drift_json, self.report

    @property
    def in_order(self) -> tuple[Path, ...]:
        """Every output in the order they are put in place: the scores first, the report last."""
        return (*self.locked, *self.companions)

    @property
    def journal(self) -> Path:
        """Where the set is journaled while it is put in place, beside the scores' lock."""
        return journal_path(self.scores)

    def by_role(self) -> dict[str, Path]:
        """The outputs by the name an error gives them (``--out``, ``--rejects``, ``drift report``, ...)."""
        return {"--out": self.scores, "--rejects": self.rejects, "drift report": self.drift_md,
                "drift data": self.drift_json, "report": self.report}


@dataclass(frozen=True)
class ScoreJob:
    """One batch-scoring run, checked when it is made.

    Attributes
    ----------
    input : Path
        The cohort file: ``.csv`` (comma, semicolon or tab), ``.tsv``, ``.csv.gz``, ``.tsv.gz``, ``.xlsx``
        or ``.parquet``, in any case.
    outputs : BatchOutputs
        Where the scores, rejects, drift report and HTML report go.
    options : ScoringOptions
        Horizons and whether to add the treatment contrast.
    sheet : str, optional
        The sheet of an ``.xlsx`` input (default: the first).
    il21_assay : str, optional
        The IL-21 kit of every IL-21 value without one of its own; made canonical (any case is accepted).
    allow_extra : bool
        Ignore columns that are not features instead of failing.
    chunk_rows : int
        Records per chunk; memory is bounded by the chunk, not the file.
    engine : {"local", "spark"}
        Where the chunks are scored: this process, or Spark tasks.
    spark_master : str
        Spark master URL with ``engine="spark"``.
    model_version : str, optional
        The registered version to score with, as ``--model-version`` takes it (``"3"``, ``"@alias"``;
        None for ``@champion``). The caller loads it (:attr:`model`); the scores carry the loaded number.

    Raises
    ------
    ValueError
        For a model version or an engine that cannot be used (the message names the option).
    InputFileError
        For a file name autorisk does not read or write, two roles that share a file, an output that is a
        folder, a missing input, ``sheet`` for a file that is no workbook, ``chunk_rows`` under 1 or an unknown
        kit.
    """

    input: Path
    outputs: BatchOutputs
    options: ScoringOptions = field(default_factory=ScoringOptions)
    sheet: str | None = None
    il21_assay: str | None = None
    allow_extra: bool = False
    chunk_rows: int = CHUNK_ROWS
    engine: str = "local"
    spark_master: str = "local[*]"
    model_version: str | None = None

    def __post_init__(self) -> None:
        version_or_alias(self.model_version)
        _check_engine(self.engine)
        object.__setattr__(self, "input", Path(self.input))
        _check_files(self.input, self.outputs)
        if self.chunk_rows < 1:
            raise InputFileError(f"--chunk-rows must be at least 1, got {self.chunk_rows}")
        if not self.input.is_file():
            raise InputFileError(f"{self.input}: no such file")
        if self.sheet is not None and check_input_name(self.input).format != "xlsx":
            raise InputFileError(f"--sheet: {self.input} is not an Excel workbook; --sheet applies to .xlsx files only")
        if self.il21_assay is not None:
            object.__setattr__(self, "il21_assay", check_kit(self.il21_assay))

    @classmethod
    def to(cls, input: Path, out: Path, **settings) -> ScoreJob:
        """The job that scores ``input`` into ``out`` and the files beside it (``rejects=`` to name that one
        elsewhere); ``settings`` are the other attributes."""
        return cls(input=Path(input), outputs=BatchOutputs.beside(out, settings.pop("rejects", None)), **settings)

    @property
    def model(self) -> tuple[str | None, str]:
        """``(version, alias)`` of the registered version to load (:func:`models.registry.version_or_alias`)."""
        return version_or_alias(self.model_version)


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "spark" and importlib.util.find_spec("pyspark") is None:
        raise ValueError("--engine spark needs pyspark: pip install 'autorisk[spark]'")


def _check_files(input: Path, outputs: BatchOutputs) -> None:
    """Names autorisk reads and writes, three different files, and no output that is a folder."""
    check_input_name(input)
    file_format(outputs.scores, "--out")
    file_format(outputs.rejects, "--rejects")
    paths = [input, *outputs.in_order]
    if len({p.resolve() for p in paths}) < len(paths):
        raise InputFileError("the input, --out and --rejects must be three different files "
                             "(and different from the drift report beside --out)")
    for role, path in outputs.by_role().items():
        if path.is_dir():
            raise InputFileError(f"{role} {path} is a folder; name a file")
