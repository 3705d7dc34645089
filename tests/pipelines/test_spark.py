"""``--engine spark`` on a real local[2] Spark: the local engine's files, to 1e-9, rejects included."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.schema import ID_COLUMN, INPUT_NAMES
from pipelines.batch_job import ScoreJob
from pipelines.score import ScoringOptions, score_batch

pytest.importorskip("pyspark")

# PySpark 4 warns that it does not fully support pandas 3; the engine hands Spark Arrow
# batches (mapInArrow) and does its own pandas conversion, the same as the local engine.
pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the in-process tests (score_batch leaves a session passed in running)."""
    from pipelines.spark_engine import build_session

    session = build_session("local[2]", {"spark.ui.enabled": "false"})
    yield session
    session.stop()


def read_outputs(out):
    rejects = out.with_name(f"{out.stem}.rejects{out.suffix}")
    read = pd.read_parquet if out.suffix == ".parquet" else pd.read_csv
    drift = json.loads(out.with_name(f"{out.stem}.drift.json").read_text())
    return read(out), read(rejects), drift


def assert_same_outputs(local, spark):
    (scores_l, rejects_l, drift_l), (scores_s, rejects_s, drift_s) = local, spark
    assert list(scores_s.columns) == list(scores_l.columns)
    pd.testing.assert_frame_equal(scores_s, scores_l, rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(rejects_s, rejects_l)
    assert drift_s == drift_l


@pytest.fixture(scope="module")
def messy_csv(make_cohort, tmp_path_factory):
    """A simulated cohort with the odd records of real files appended."""
    path = tmp_path_factory.mktemp("spark-input") / "cohort.csv"
    make_cohort("clinic", 1200, 31)[[ID_COLUMN, *INPUT_NAMES]].to_csv(path, index=False)
    width = 1 + len(INPUT_NAMES)
    odd = [
        b"short,34,F",                                            # wrong number of fields
        b"",                                                      # blank line
        b'"quoted\nline break",34,F,2' + b"," * (width - 4),     # record over two lines
        b"p-bad-bytes,3\xe94,F,2" + b"," * (width - 4),          # not UTF-8
        b"p-old,130,F,2" + b"," * (width - 4),                    # impossible age
        b"p-late,60,male,12" + b"," * (width - 4),                # outside the training range: a warning
    ]
    with open(path, "ab") as handle:
        handle.write(b"\n".join(odd) + b"\n")
    return path


def test_spark_gives_the_local_files_to_1e9(mlflow_store, champion, spark, messy_csv, tmp_path):
    outputs = {}
    for engine in ("local", "spark"):
        out = tmp_path / engine / "scores.csv"
        summary = score_batch(ScoreJob.to(messy_csv, out, chunk_rows=300, engine=engine), champion, spark=spark)
        assert (summary.read, summary.scored, summary.rejected, summary.blank_lines) == (1205, 1202, 3, 1)
        outputs[engine] = read_outputs(out)
    assert_same_outputs(outputs["local"], outputs["spark"])
    scores, rejects, drift = outputs["spark"]
    assert rejects["line"].tolist() == [1202, 1206, 1207] and scores["line"].is_monotonic_increasing
    assert drift["status"] == "compared" and drift["n"] == 1202
    assert spark.sparkContext._jsc is not None  # a session passed in is left running


def test_the_spark_cli_in_its_own_process_is_quiet_and_gives_the_same_files(mlflow_store, champion, messy_csv,
                                                                            tmp_path):
    local = tmp_path / "local" / "scores.csv"
    score_batch(ScoreJob.to(messy_csv, local, chunk_rows=300), champion)
    out = tmp_path / "spark" / "scores.csv"
    command = [str(Path(sys.executable).with_name("autorisk")), "score", str(messy_csv), "--out", str(out),
               "--engine", "spark", "--spark-master", "local[2]", "--chunk-rows", "1000"]  # other chunks
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "read 1,205 records, scored 1,202, rejected 3" in result.stdout
    assert_same_outputs(read_outputs(local), read_outputs(out))
    # Spark's own output (JVM and Python workers): no log lines, no patient values
    logged = result.stdout + result.stderr
    assert not re.search(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN|ERROR)", logged, re.MULTILINE), logged
    patient_ids = pd.read_csv(out)[ID_COLUMN].head(50).tolist()
    assert not any(value in logged for value in ("p-old", "p-late", "quoted", *patient_ids))


def test_spark_gives_the_local_files_for_typed_parquet_with_horizons_and_contrast(mlflow_store, champion, spark,
                                                                                  make_cohort, tmp_path):
    source = tmp_path / "cohort.parquet"
    cohort = make_cohort("care-ms1", 900, 32)
    cohort.loc[cohort.index[::97], "age_years"] = 150.0  # impossible: rejected with its row number
    cohort["relapses_prior_2y"] = cohort["relapses_prior_2y"].round().astype("Int64")  # int64 with nulls
    cohort["sex"] = cohort["sex"].astype("category")  # dictionary-encoded strings
    cohort.to_parquet(source, index=False)
    outputs = {}
    for engine in ("local", "spark"):
        out = tmp_path / engine / "scores.parquet"
        job = ScoreJob.to(source, out, allow_extra=True, chunk_rows=250, engine=engine,
                          options=ScoringOptions(horizons=(6, 30, 66), contrast=True))
        summary = score_batch(job, champion, spark=spark)
        assert (summary.read, summary.scored + summary.rejected) == (900, 900)
        outputs[engine] = read_outputs(out)
    assert_same_outputs(outputs["local"], outputs["spark"])
    assert outputs["spark"][1]["line"].tolist() == [i + 1 for i in range(0, 900, 97)]
    assert "excess_itp_66m" in outputs["spark"][0].columns


def test_spark_scores_a_recalibrated_version_as_the_local_engine_does(champion, spark, make_cohort, tmp_path):
    """A recalibrated version (a slope and local baselines on the champion's patient effects) travels to the
    Spark tasks whole: the same files as the local engine."""
    from dataclasses import replace

    from features.validation import encode
    from models.recalibration import recalibrated_model

    local_patients = make_cohort("registry", 2000, 33)
    outcomes = {o: (local_patients[f"{o}_event"].to_numpy(), local_patients[f"{o}_time_months"].to_numpy())
                for o in ("thyroid", "itp")}
    updated, _ = recalibrated_model(champion.risk_model, encode(local_patients), outcomes, "baseline+slope")
    recalibrated = replace(champion, version="recalibrated", risk_model=updated)
    source = tmp_path / "cohort.csv"
    make_cohort("registry", 700, 34)[[ID_COLUMN, *INPUT_NAMES]].to_csv(source, index=False)
    outputs = {}
    for engine in ("local", "spark"):
        out = tmp_path / engine / "scores.csv"
        score_batch(ScoreJob.to(source, out, chunk_rows=300, engine=engine), recalibrated, spark=spark, reference=None)
        outputs[engine] = read_outputs(out)
    assert_same_outputs(outputs["local"], outputs["spark"])
    assert set(outputs["spark"][0]["model_version"]) == {"recalibrated"}
