"""``autorisk score`` end to end on real files, against a real MLflow store."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.schema import FEATURE_NAMES, ID_COLUMN, output_columns
from pipelines.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()

HEADER = "patient_id,age_years,sex,disease_duration_years,il21_pg_ml,il21_assay,smoker\n"


def run_score(*args):
    return runner.invoke(app, ["score", *map(str, args)])


def test_scores_every_record_or_rejects_it_with_line_and_reason(mlflow_store, tmp_path):
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
    assert scores["line"].tolist() == [2, 7]
    assert rejects["line"].tolist() == [3, 4, 6]
    assert "wrong number of fields" in rejects["reason"][0]
    assert rejects["reason"][1].startswith("il21_pg_ml: 'abc' is not a number")
    assert rejects["reason"][2].startswith("disease_duration_years")
    assert "age_years: 70 is outside the training range" in scores["warnings"][1]
    assert list(scores.columns) == ["line", ID_COLUMN, *output_columns(), "warnings", "model_version"]
    assert (scores["model_version"].astype(str) == mlflow_store["promotion"].chosen.version).all()


def test_scores_simulated_parquet_with_shap_identity(mlflow_store, make_cohort, tmp_path):
    cohort = make_cohort("care-ms1", 3000, 21)
    source, out = tmp_path / "cohort.parquet", tmp_path / "scores.parquet"
    cohort.to_parquet(source, index=False)
    result = run_score(source, "--out", out, "--ignore-extra-columns", "--chunk-rows", 700)
    assert result.exit_code == 0, result.output
    assert "ignored columns: thyroid_event" in result.output
    scores = pd.read_parquet(out)
    assert len(scores) == len(cohort) and scores["line"].tolist() == list(range(1, 3001))
    for outcome in ("thyroid", "itp"):
        risk = scores[f"risk_{outcome}"].to_numpy()
        assert ((risk >= 0) & (risk <= 1)).all()
        total = scores[f"base_{outcome}"] + scores[[f"shap_{outcome}__{f}" for f in FEATURE_NAMES]].sum(axis=1)
        np.testing.assert_allclose(total, np.log(risk / (1 - risk)), atol=1e-4)


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
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    source = tmp_path / "c.csv"
    source.write_text(HEADER + "p1,34,F,2,300,legacy_elisa,no\n")
    result = run_score(source, "--out", tmp_path / "s.csv")
    assert result.exit_code == 1
    assert "run `autorisk train`" in result.output


def test_unreadable_file_fails_clearly(mlflow_store, tmp_path):
    result = run_score(tmp_path / "absent.csv", "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "no such file" in result.output
