"""``autorisk score`` end to end on real files, against a real MLflow store."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.schema import ID_COLUMN, MODEL_COLUMNS, output_columns
from pipelines.batch_job import ScoreJob
from pipelines.cli import app
from pipelines.score import score_batch
from tests.identity import batch_identity

pytestmark = pytest.mark.integration
runner = CliRunner()

HEADER = "patient_id,age_years,sex,disease_duration_years,il21_pg_ml,il21_assay,smoker\n"


def run_score(*args):
    return runner.invoke(app, ["score", *map(str, args)])


def test_scores_every_record_or_rejects_it_with_line_and_reason(mlflow_store, champion, tmp_path):
    source = tmp_path / "clinic.csv"
    source.write_text(
        HEADER
        + "p1,34,F,2,300,legacy_elisa,no\n"        # line 2: fine
        + "p2,40,M\n"                              # line 3: wrong field count
        + "p3,35,female,1,abc,legacy_elisa,yes\n"  # line 4: unparseable IL-21
        + "\n"                                     # line 5: blank, skipped
        + "p4,30,male,45,100,legacy_elisa,NA\n"    # line 6: duration exceeds age
        + "p5,70,m,3,,,1\n"                        # line 7: outside training range: scored with a warning
    )
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    assert "read 5 records, scored 2, rejected 3" in result.output
    scores = pd.read_csv(out)
    rejects = pd.read_csv(tmp_path / "scores.rejects.csv")
    assert scores["patient_id"].tolist() == ["p1", "p5"]
    assert scores["treatment"].tolist() == ["alemtuzumab", "alemtuzumab"]  # no treatment column: the default, named
    assert scores["line"].tolist() == [2, 7]
    assert rejects["line"].tolist() == [3, 4, 6]
    assert "wrong number of fields" in rejects["reason"][0]
    assert rejects["reason"][1].startswith("il21_pg_ml: 'abc' is not a number")
    assert rejects["reason"][2].startswith("disease_duration_years")
    assert "age_years: 70 is outside the training range" in scores["warnings"][1]
    timing = champion.risk_model.gives_timing_share
    assert list(scores.columns) == ["line", ID_COLUMN, "treatment", *output_columns(timing=timing), "warnings",
                                    "model_version"]
    assert (scores["model_version"].astype(str) == mlflow_store["promotion"].chosen.version).all()


def test_scores_simulated_parquet_with_shap_identity(mlflow_store, champion, make_cohort, tmp_path):
    cohort = make_cohort("care-ms1", 3000, 21)
    source, out = tmp_path / "cohort.parquet", tmp_path / "scores.parquet"
    cohort.to_parquet(source, index=False)
    result = run_score(source, "--out", out, "--ignore-extra-columns", "--chunk-rows", 700)
    assert result.exit_code == 0, result.output
    assert "ignored columns: thyroid_event" in result.output
    scores = pd.read_parquet(out)
    assert len(scores) == len(cohort) and scores["line"].tolist() == list(range(1, 3001))
    for outcome in ("thyroid", "itp"):
        for h in (24, 48):
            risk = scores[f"risk_{outcome}_{h}m"].to_numpy()
            assert ((risk > 0) & (risk < 1)).all()
            total, expected = batch_identity(scores, outcome, h, champion.risk_model.explanation_scale)
            np.testing.assert_allclose(total, expected, rtol=0, atol=1e-9)
    # Interferon at 48 months lies beyond its 24 months of follow-up: flagged, naming the horizon.
    interferon = (cohort["treatment"] == "interferon_beta_1a").to_numpy()
    # Each row names the treatment its risks are for.
    assert scores["treatment"].tolist() == cohort["treatment"].tolist() and interferon.any() and not interferon.all()
    assert scores["warnings"][interferon].str.contains("extrapolated: risks at 48 months on interferon").all()
    assert "risks at 48 months on interferon_beta_1a are extrapolated" in result.output


def test_horizons_and_contrast_on_request(mlflow_store, champion, make_cohort, tmp_path):
    cohort = make_cohort("care-ms2", 400, 23)
    source, out = tmp_path / "cohort.csv", tmp_path / "scores.csv"
    cohort.to_csv(source, index=False)
    result = run_score(source, "--out", out, "--ignore-extra-columns", "--horizons", "60, 12,36", "--contrast")
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, keep_default_na=False)
    outcomes = champion.risk_model.outcome_names
    assert list(scores.columns) == ["line", ID_COLUMN, "treatment", *output_columns(outcomes, (12, 36, 60), True,
                                                                                       champion.risk_model.gives_timing_share),
                                    "warnings", "model_version"]
    for outcome in outcomes:
        assert (scores[f"risk_{outcome}_12m"] <= scores[f"risk_{outcome}_36m"]).all()
        assert (scores[f"risk_{outcome}_36m"] <= scores[f"risk_{outcome}_60m"]).all()
        np.testing.assert_allclose(scores[f"excess_{outcome}_60m"], scores[f"risk_{outcome}_60m_if_alemtuzumab"]
                                   - scores[f"risk_{outcome}_60m_if_interferon_beta_1a"], atol=1e-12)
    # Every contrast holds an interferon risk at 36 and 60 months: extrapolated for everyone.
    assert scores["warnings"].str.contains("extrapolated: risks at 36, 60 months on interferon_beta_1a").all()


@pytest.mark.parametrize("horizons, message", [
    ("24,96", "96 months is outside the range 1–72 months"),
    ("0", "0 months is outside the range 1–72 months"),
    ("24.5", "24.5 is not a whole number of months"),
    ("two", "'two' is not a number of months"),
])
def test_a_horizon_outside_the_range_is_refused_naming_it(mlflow_store, tmp_path, horizons, message):
    source = tmp_path / "c.csv"
    source.write_text(HEADER + "p1,34,F,2,300,legacy_elisa,no\n")
    result = run_score(source, "--out", tmp_path / "s.csv", "--horizons", horizons)
    assert result.exit_code == 2
    assert message in result.output and "--horizons" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_unknown_column_fails_clearly_and_writes_nothing(mlflow_store, tmp_path):
    source = tmp_path / "typo.csv"
    source.write_text("age_years,sex,disease_duration_years,il_21\n34,F,2,300\n")
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 2
    assert "unknown columns: il_21" in result.output
    assert not out.exists() and not list(tmp_path.glob(".scores*"))


def test_missing_required_column_fails_clearly(mlflow_store, tmp_path):
    source = tmp_path / "short.csv"
    source.write_text("age_years,sex\n34,F\n")
    result = run_score(source, "--out", tmp_path / "s.csv")
    assert result.exit_code == 2
    assert "required columns missing: disease_duration_years" in result.output


def test_no_champion_fails_clearly(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # a real store, with nothing registered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    source = tmp_path / "c.csv"
    source.write_text(HEADER + "p1,34,F,2,300,legacy_elisa,no\n")
    result = run_score(source, "--out", tmp_path / "s.csv")
    assert result.exit_code == 1
    assert "run `autorisk train`" in result.output


def test_unreadable_file_fails_clearly(mlflow_store, tmp_path):
    result = run_score(tmp_path / "absent.csv", "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "no such file" in result.output


def score_csv_bytes(tmp_path, content: bytes, *args):
    source = tmp_path / "in.csv"
    source.write_bytes(content)
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out, *args)
    scores = pd.read_csv(out) if out.exists() else None
    rejects = pd.read_csv(tmp_path / "scores.rejects.csv") if (tmp_path / "scores.rejects.csv").exists() else None
    return result, scores, rejects


GOOD = b"34,F,2"


@pytest.mark.parametrize("content, scored_lines, rejected_lines", [
    # a quoted line break makes record 3 span lines 3-4: later line numbers stay physical
    (b"age_years,sex,disease_duration_years\n" + GOOD + b'\n"35",F,"1\n"\n40,M\n' + GOOD + b"\n", [2, 3, 6], [5]),
    # byte-order mark and CRLF line endings
    (b"\xef\xbb\xbfage_years,sex,disease_duration_years\r\n" + GOOD + b"\r\n" + GOOD + b"\r\n", [2, 3], []),
    # a field that is not UTF-8 costs its record only
    (b"age_years,sex,disease_duration_years\n" + GOOD + b"\n34,\xe9,2\n" + GOOD + b"\n", [2, 4], [3]),
    # all fields empty is a record (rejected: required values missing); an empty line is not
    (b"age_years,sex,disease_duration_years\n,,\n\n" + GOOD + b"\n", [4], [2]),
    # an unterminated quote swallows the rest of the file into one reject that says so
    (b"age_years,sex,disease_duration_years\n" + GOOD + b'\n"34,F,2\n34,F,2\n', [2], [3]),
    # header only, without a final newline: nothing to score, empty outputs
    (b"age_years,sex,disease_duration_years", [], []),
])
def test_csv_edge_cases_keep_every_record_and_its_line(mlflow_store, tmp_path, content, scored_lines, rejected_lines):
    result, scores, rejects = score_csv_bytes(tmp_path, content)
    assert result.exit_code == 0, result.output
    assert scores["line"].tolist() == scored_lines
    assert rejects["line"].tolist() == rejected_lines
    assert f"read {len(scored_lines) + len(rejected_lines)} records" in result.output


def test_multi_line_rejects_say_which_lines(mlflow_store, tmp_path):
    content = b"age_years,sex,disease_duration_years\n" + GOOD + b'\n"34,F,2\n34,F,2\n'
    _, _, rejects = score_csv_bytes(tmp_path, content)
    assert "record spans lines 3–4" in rejects["reason"][0]


def test_non_utf8_header_fails_clearly(mlflow_store, tmp_path):
    result, scores, _ = score_csv_bytes(tmp_path, b"age_years,s\xe9x,disease_duration_years\n" + GOOD + b"\n")
    assert result.exit_code == 2 and "not valid UTF-8" in result.output
    assert scores is None


def test_typed_parquet_columns(mlflow_store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "age_years": pa.array([34, 50, None], pa.int64()),
        "sex": ["female", "male", None],
        "disease_duration_years": pa.array([2, 3, None], pa.int32()),
        "smoker": pa.array([True, None, False], pa.bool_()),
        "relapses_prior_2y": pa.array([1, None, 2], pa.int64()),
        "edss": pa.array([None, None, None], pa.float64()),
    })
    source, out = tmp_path / "typed.parquet", tmp_path / "scores.parquet"
    pq.write_table(table, source)
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["line"].tolist() == [1, 2]
    rejects = pd.read_parquet(tmp_path / "scores.rejects.parquet")
    assert rejects["line"].tolist() == [3] and "required but missing" in rejects["reason"][0]


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/x.xlsx"], "unsupported extension '.xlsx'"),
    (["--out", "{tmp}/same.csv", "--rejects", "{tmp}/same.csv"], "three different files"),
    (["--out", "{tmp}/in.csv"], "three different files"),
    (["--out", "{tmp}/s.csv", "--chunk-rows", "0"], "--chunk-rows must be at least 1"),
])
def test_output_paths_are_checked_before_anything_is_written(mlflow_store, tmp_path, args, message):
    source = tmp_path / "in.csv"
    source.write_text("age_years,sex,disease_duration_years\n34,F,2\n")
    result = run_score(source, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert source.read_text() == "age_years,sex,disease_duration_years\n34,F,2\n"


def test_upper_case_extensions_are_understood(mlflow_store, tmp_path):
    source, out = tmp_path / "IN.CSV", tmp_path / "OUT.PARQUET"
    source.write_text("age_years,sex,disease_duration_years\n34,F,2\n")
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 1


# --- drift, atomic outputs, clear failures -----------------------------------------------------

def test_drift_report_beside_the_output_warns_about_a_clinic_cohort(mlflow_store, make_cohort, tmp_path):
    cohort = make_cohort("clinic", 1500, 41)
    source, out = tmp_path / "clinic.csv", tmp_path / "scores.csv"
    cohort.to_csv(source, index=False)
    result = run_score(source, "--out", out, "--ignore-extra-columns")
    assert result.exit_code == 0, result.output
    assert "WARNING: this cohort differs from the model's training data in" in result.output
    assert "the risks may then be off" in result.output
    report = (tmp_path / "scores.drift.md").read_text()
    data = json.loads((tmp_path / "scores.drift.json").read_text())
    assert data["status"] == "compared" and data["differs"] and data["n"] == 1500
    assert {f["name"] for f in data["features"]} == set(MODEL_COLUMNS)
    assert "| `il21_pg_ml@current_elisa` |" in report
    # aggregates only: no patient's identifier or row appears in the report or the console output
    for text in (report, json.dumps(data), result.output):
        assert not any(pid in text for pid in cohort[ID_COLUMN].head(50))


def test_a_cohort_like_the_training_data_gets_no_warning(mlflow_store, make_cohort, tiny_experiment, tmp_path):
    pooled = pd.concat([make_cohort(c.profile, c.n, c.seed + 1000) for c in tiny_experiment.train_cohorts])
    source, out = tmp_path / "like.parquet", tmp_path / "scores.parquet"
    pooled.to_parquet(source, index=False)
    result = run_score(source, "--out", out, "--ignore-extra-columns")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "scores.drift.json").read_text())
    assert not data["differs"], data["details"]
    assert "resembles the model's training data" in result.output


def test_a_model_without_a_training_reference_is_reported_not_failed(mlflow_store, champion, tmp_path):
    import mlflow

    from models.registry import LoadedModel
    from pipelines.score import load_reference

    with mlflow.start_run() as run:  # a run that logged no reference
        pass
    old = LoadedModel(name=champion.name, version=champion.version, run_id=run.info.run_id,
                      risk_model=champion.risk_model)
    reference, why = load_reference(old)
    assert reference is None and "has no training reference" in why
    source = tmp_path / "c.csv"
    source.write_text(HEADER + "p1,34,F,2,300,legacy_elisa,no\n")
    summary = score_batch(ScoreJob.to(source, tmp_path / "s.csv"), old)
    assert summary.scored == 1 and summary.drift.status == "no-reference"
    assert "has no training reference" in (tmp_path / "s.drift.md").read_text()


def test_an_interrupted_run_leaves_no_output_that_looks_complete(mlflow_store, champion, make_cohort, tmp_path):
    source, out = tmp_path / "cohort.csv", tmp_path / "scores.csv"
    make_cohort("care-ms1", 600, 42).to_csv(source, index=False)
    out.write_text("previous scores\n")

    def stop_after_first_chunk(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_batch(ScoreJob.to(source, out, allow_extra=True, chunk_rows=200), champion,
                    on_progress=stop_after_first_chunk)
    assert out.read_text() == "previous scores\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv", "scores.csv"]


@pytest.mark.parametrize("args, message", [
    (["--engine", "dask"], "--engine must be one of local, spark"),
    (["--out", "{tmp}/in.csv/s.csv"], "{tmp}/in.csv"),
])
def test_unusable_options_fail_clearly(mlflow_store, tmp_path, args, message):
    source = tmp_path / "in.csv"
    source.write_text("age_years,sex,disease_duration_years\n34,F,2\n")
    args = [a.format(tmp=tmp_path) for a in args]
    result = run_score(source, *(args if "--out" in args else ["--out", tmp_path / "s.csv", *args]))
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in result.output


def test_an_unnamed_column_is_named_in_the_error(mlflow_store, tmp_path):
    source = tmp_path / "indexed.csv"
    source.write_text(",age_years,sex,disease_duration_years\n0,34,F,2\n")
    result = run_score(source, "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "column 1 of the header has no name" in result.output
    result = run_score(source, "--out", tmp_path / "s.csv", "--ignore-extra-columns")
    assert result.exit_code == 0, result.output


def test_a_run_stopped_with_sigterm_removes_its_temporary_files(mlflow_store, make_cohort, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    source, out = tmp_path / "cohort.csv", tmp_path / "out" / "scores.csv"
    make_cohort("care-ms1", 40_000, 43).to_csv(source, index=False)
    command = [str(Path(sys.executable).with_name("autorisk")), "score", str(source), "--out", str(out),
               "--ignore-extra-columns", "--chunk-rows", "100"]
    log = tmp_path / "score.log"
    with open(log, "w") as output, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT) as process:
        deadline = time.monotonic() + 120
        while not (out.parent.is_dir() and any(out.parent.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the temporary outputs exist
        assert process.poll() is None, log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()
    assert list(out.parent.iterdir()) == []
