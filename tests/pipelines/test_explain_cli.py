"""``autorisk explain``: one patient's waterfall as SVG or PNG, against a real MLflow store."""

import json

import pytest
from typer.testing import CliRunner

from features.schema import RESEARCH_NOTICE
from features.validation import validate_records
from pipelines.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()
PATIENT = {"age_years": 34, "sex": "female", "disease_duration_years": 2.5, "il21_pg_ml": 620,
           "il21_assay": "legacy_elisa", "thyroid_antibodies": True}


def explain(*args):
    return runner.invoke(app, ["explain", *map(str, args)])


def test_a_json_patient_becomes_an_svg_waterfall_with_the_models_numbers(mlflow_store, champion, tmp_path):
    source, out = tmp_path / "patient.json", tmp_path / "letter" / "waterfall.svg"
    source.write_text(json.dumps({"patients": [PATIENT]}))
    result = explain(source, "--out", out, "--month", 36)
    assert result.exit_code == 0, result.output
    explained = champion.risk_model.explain(validate_records([PATIENT]).matrix, (36,))
    for outcome, scores in explained.items():
        assert f"{outcome}: {100 * scores.risk[0, 0]:.2g}% by month 36 on alemtuzumab" in result.output
    svg = out.read_text()
    assert svg.startswith("<?xml") and "</svg>" in svg
    assert f"{100 * explained['thyroid'].risk[0, 0]:.1f}%" in svg
    assert "Serum IL-21 before treatment: 620 pg/mL, legacy ELISA" in svg
    assert "EDSS at baseline: not provided" in svg
    assert RESEARCH_NOTICE in svg and RESEARCH_NOTICE in result.output
    again = tmp_path / "again.svg"
    assert explain(source, "--out", again, "--month", 36).exit_code == 0
    assert again.read_text() == svg  # the same patient and model give the same file


def test_flags_give_or_override_the_values_and_png_works(mlflow_store, tmp_path):
    source, out = tmp_path / "patient.json", tmp_path / "w.png"
    source.write_text(json.dumps(PATIENT))
    result = explain(source, "--smoker", "yes", "--treatment=interferon_beta_1a", "--outcome", "thyroid",
                     "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "on interferon beta-1a" in result.output and "itp:" not in result.output
    assert "extrapolated" in result.output  # 48 months on interferon lies beyond its follow-up
    flags_only = explain("--age-years", "41", "--sex", "m", "--disease-duration-years", "6", "--out", tmp_path / "f.svg")
    assert flags_only.exit_code == 0, flags_only.output


@pytest.mark.parametrize("args, message", [
    (["--age-years", "34", "--sex", "x", "--disease-duration-years", "2"], "sex: 'x' is not one of female, male"),
    (["--age-years", "34", "--sex", "f"], "disease_duration_years: required"),
    (["--age-years", "34", "--sex", "f", "--disease-duration-years", "2", "--ege", "3"], "unknown option --ege"),
    (["--age-years", "34", "--sex", "f", "--disease-duration-years", "40"], "disease_duration_years: 40 exceeds"),
    (["--age-years", "34", "--sex", "f", "--disease-duration-years", "2", "--month", "80"], "--month: 80 months"),
    (["--age-years"], "--age-years needs a value"),
    (["missing.json"], "missing.json: cannot be read"),
])
def test_bad_patients_are_named_and_nothing_is_written(mlflow_store, tmp_path, args, message):
    out = tmp_path / "w.svg"
    result = explain(*args, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_an_unsupported_picture_format_is_refused(tmp_path):
    result = explain("--age-years", "34", "--out", tmp_path / "w.pdf")
    assert result.exit_code == 2 and "use .svg or .png" in result.output


def test_a_file_of_several_patients_is_refused(tmp_path):
    source = tmp_path / "two.json"
    source.write_text(json.dumps([PATIENT, PATIENT]))
    result = explain(source, "--out", tmp_path / "w.svg")
    assert result.exit_code == 2 and "holds 2 patients; explain takes one" in result.output
