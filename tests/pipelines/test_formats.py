"""Cohort files as clinics export them: separators, compression, workbooks, header case, the file's IL-21
kit, and a clear message for every format autorisk does not read. Real files, a real MLflow store."""

from __future__ import annotations

import bz2
import gzip
import zipfile

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.schema import ID_COLUMN, INPUT_NAMES
from pipelines.batch_job import ScoreJob
from pipelines.cli import app
from pipelines.score import ChunkScorer, score_batch

pytestmark = pytest.mark.integration
runner = CliRunner()


def run_score(*args):
    return runner.invoke(app, ["score", *map(str, args)])


@pytest.fixture(scope="module")
def clinic(make_cohort):
    """A clinic cohort with IL-21 on both kits, text ids and every input column."""
    frame = make_cohort("clinic", 400, 77)[[ID_COLUMN, *INPUT_NAMES]].copy()
    frame.loc[frame.index[::3], "il21_pg_ml"] = 40.5
    frame.loc[frame.index[::3], "il21_assay"] = "current_elisa"
    return frame


def risk_columns(champion) -> list[str]:
    columns = ChunkScorer(champion.risk_model, champion.version).columns()
    return [c for c in columns if c not in ("line", ID_COLUMN, "warnings", "model_version")]


WRITERS = {
    "comma.csv": lambda f, p: f.to_csv(p, index=False),
    "semicolon-decimal-comma.csv": lambda f, p: f.to_csv(p, index=False, sep=";", decimal=","),
    "tab.csv": lambda f, p: f.to_csv(p, index=False, sep="\t"),
    "cohort.tsv": lambda f, p: f.to_csv(p, index=False, sep="\t"),
    "cohort.csv.gz": lambda f, p: f.to_csv(p, index=False, compression="gzip"),
    "cohort.tsv.gz": lambda f, p: f.to_csv(p, index=False, sep="\t", compression="gzip"),
    "cohort.xlsx": lambda f, p: f.to_excel(p, index=False, sheet_name="Patients"),
    "cohort.parquet": lambda f, p: f.to_parquet(p, index=False),
}
DESCRIPTIONS = {
    "comma.csv": "CSV, separator comma",
    "semicolon-decimal-comma.csv": "CSV, separator semicolon (decimal commas accepted)",
    "tab.csv": "CSV, separator tab",
    "cohort.tsv": "TSV, separator tab",
    "cohort.csv.gz": "gzip-compressed CSV, separator comma",
    "cohort.tsv.gz": "gzip-compressed TSV, separator tab",
    "cohort.xlsx": "Excel workbook, sheet 'Patients', header on row 1",
    "cohort.parquet": "Parquet",
}


def test_the_same_patients_get_the_same_risks_in_every_format(mlflow_store, champion, clinic, tmp_path):
    results = {}
    for name, write in WRITERS.items():
        source = tmp_path / name
        write(clinic, source)
        out = tmp_path / f"scores-{name.replace('.', '-')}.parquet"
        summary = score_batch(ScoreJob.to(source, out, chunk_rows=150), champion)
        assert summary.source == DESCRIPTIONS[name]
        assert (summary.read, summary.scored) == (len(clinic), len(clinic)), name
        results[name] = pd.read_parquet(out)
    reference = results["comma.csv"]
    assert reference["patient_id"].tolist() == clinic[ID_COLUMN].tolist()
    for name, scores in results.items():
        pd.testing.assert_frame_equal(scores[risk_columns(champion)], reference[risk_columns(champion)],
                                      rtol=0, atol=0, obj=name)
        assert scores["patient_id"].tolist() == reference["patient_id"].tolist(), name
        # physical lines for text (header = line 1), Excel's row numbers, Parquet's rows from 1
        first = 1 if name.endswith(".parquet") else 2
        assert scores["line"].tolist() == list(range(first, first + len(clinic))), name


def test_the_summary_names_the_format_and_separator(mlflow_store, clinic, tmp_path):
    source = tmp_path / "export.csv"
    clinic.to_csv(source, index=False, sep=";", decimal=",")
    result = run_score(source, "--out", tmp_path / "scores.csv")
    assert result.exit_code == 0, result.output
    assert f"read {source} as CSV, separator semicolon (decimal commas accepted)" in result.output


def test_decimal_commas_only_in_semicolon_files_and_never_with_thousands(mlflow_store, tmp_path):
    source = tmp_path / "eu.csv"
    source.write_text("patient_id;age_years;sex;disease_duration_years;edss\n"
                      "p1;34,5;F;2,25;1,5\n"
                      "p2;1.234,5;F;2;1\n")  # a thousands separator is not a decimal comma
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    rejects = pd.read_csv(tmp_path / "scores.rejects.csv")
    assert pd.read_csv(out)["patient_id"].tolist() == ["p1"]
    assert rejects["line"].tolist() == [3] and "age_years: '1.234,5' is not a number" in rejects["reason"][0]


def test_header_names_match_ignoring_case_and_surrounding_spaces(mlflow_store, tmp_path):
    source = tmp_path / "export.csv"
    source.write_text(" Patient_ID ,Age_Years,SEX, Disease_Duration_Years \np1,34,F,2\n")
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["patient_id"].tolist() == ["p1"]


def test_two_headers_naming_one_feature_fail_clearly(mlflow_store, tmp_path):
    source = tmp_path / "export.csv"
    source.write_text("age_years,Age_Years,sex,disease_duration_years\n34,34,F,2\n")
    result = run_score(source, "--out", tmp_path / "scores.csv")
    assert result.exit_code == 2
    assert "columns 'age_years' and 'Age_Years' both name age_years" in result.output


# --- Excel -------------------------------------------------------------------------------------

def test_a_workbook_sheet_keeps_its_excel_row_numbers(mlflow_store, tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.title = "Notes"
    workbook.active["A1"] = "exported from the clinic's system"
    sheet = workbook.create_sheet("Cohort")
    sheet["B3"], sheet["C3"], sheet["D3"], sheet["E3"] = "Patient_ID", "age_years", "sex", "disease_duration_years"
    sheet.append([])  # row 4 stays empty
    for row, values in {5: [1001, 34, "F", 2.5], 6: ["p2", 40, "male", True], 7: ["p3", 50, "M", 3],
                        8: ["p4", 30, "F", 1]}.items():
        for column, value in zip("BCDE", values, strict=True):
            sheet[f"{column}{row}"] = value
    sheet["G7"] = "stray note"  # a value in a column without a header
    source = tmp_path / "cohort.xlsx"
    workbook.save(source)
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out, "--sheet", "Cohort")
    assert result.exit_code == 0, result.output
    assert "as Excel workbook, sheet 'Cohort', header on row 3" in result.output
    scores, rejects = pd.read_csv(out, dtype={"patient_id": str}), pd.read_csv(tmp_path / "scores.rejects.csv")
    assert scores["line"].tolist() == [5, 8] and scores["patient_id"].tolist() == ["1001", "p4"]
    assert rejects["line"].tolist() == [6, 7]
    assert "disease_duration_years: 'true' is not a number" in rejects["reason"][0]
    assert "a value in column G, which has no header" in rejects["reason"][1]
    assert "skipped 1 blank lines" in result.output


def test_a_sheet_that_does_not_exist_is_named_with_the_ones_that_do(mlflow_store, clinic, tmp_path):
    source = tmp_path / "cohort.xlsx"
    clinic.to_excel(source, index=False, sheet_name="Patients")
    result = run_score(source, "--out", tmp_path / "scores.csv", "--sheet", "patients 2024")
    assert result.exit_code == 2
    assert "has no sheet 'patients 2024'; its sheets: 'Patients'" in result.output
    assert not (tmp_path / "scores.csv").exists()


def test_sheet_applies_to_workbooks_only(mlflow_store, tmp_path):
    source = tmp_path / "cohort.csv"
    source.write_text("age_years,sex,disease_duration_years\n34,F,2\n")
    result = run_score(source, "--out", tmp_path / "scores.csv", "--sheet", "Patients")
    assert result.exit_code == 2 and "--sheet applies to .xlsx files only" in result.output


# --- formats autorisk does not read --------------------------------------------------------------

TEXT = b"age_years,sex,disease_duration_years\n34,F,2\n"


def _xlsx_bytes(tmp_path) -> bytes:
    from openpyxl import Workbook

    path = tmp_path / "book.xlsx"
    Workbook().save(path)
    return path.read_bytes()


def _ods_bytes(tmp_path) -> bytes:
    path = tmp_path / "book.ods"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    return path.read_bytes()


def _zip_bytes(tmp_path) -> bytes:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cohort.csv", TEXT)
    return path.read_bytes()


def _parquet_bytes(tmp_path) -> bytes:
    path = tmp_path / "cohort.parquet"
    pd.DataFrame({"age_years": [34]}).to_parquet(path)
    return path.read_bytes()


@pytest.mark.parametrize("name, make, message", [
    ("cohort.csv", lambda tmp: gzip.compress(TEXT), "is gzip-compressed: name it .csv.gz or .tsv.gz"),
    ("cohort.csv", _zip_bytes, "is a zip archive: extract it (unzip)"),
    ("cohort.zip", _zip_bytes, "is a zip archive: extract it (unzip)"),
    ("cohort.csv", _xlsx_bytes, "is an Excel workbook: name it .xlsx"),
    ("cohort.xls", lambda tmp: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
     "is an Excel 97-2003 workbook (.xls), a password-protected workbook or another old Office file, "
     "which autorisk does not read: open it in Excel and save it, without a password, as .xlsx or as 'CSV UTF-8'"),
    ("cohort.xlsx", lambda tmp: b"", "is an empty file: expected a header line with column names"),
    ("cohort.ods", _ods_bytes, "is an OpenDocument spreadsheet, which autorisk does not read"),
    ("cohort.csv", lambda tmp: TEXT.decode().encode("utf-16"), "is UTF-16 text (Excel's 'Unicode Text' export)"),
    ("cohort.txt", lambda tmp: TEXT.decode().encode("utf-16-le"), "is UTF-16 text"),
    ("cohort.csv.bz2", lambda tmp: bz2.compress(TEXT), "is compressed with bzip2, which autorisk does not read"),
    ("cohort.csv.gz", lambda tmp: TEXT, "is not gzip-compressed: name it .csv"),
    ("cohort.csv.gz", lambda tmp: gzip.compress(TEXT.decode().encode("utf-16")), "(once decompressed) is UTF-16 text"),
    ("cohort.xlsx", lambda tmp: TEXT, "is text, not an Excel workbook: name it .csv"),
    ("cohort.csv", _parquet_bytes, "is a Parquet file: name it .parquet"),
    ("cohort.txt", lambda tmp: TEXT, "unsupported extension '.txt'; autorisk reads .csv, .tsv, .csv.gz, .tsv.gz, "
                                     ".xlsx or .parquet"),
])
def test_a_format_autorisk_cannot_read_says_what_it_looks_like_and_what_to_do(
        mlflow_store, tmp_path, name, make, message):
    source = tmp_path / name
    source.write_bytes(make(tmp_path))
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_damaged_gzip_file_fails_clearly_and_writes_nothing(mlflow_store, clinic, tmp_path):
    source = tmp_path / "cohort.csv.gz"
    clinic.to_csv(source, index=False, compression="gzip")
    source.write_bytes(source.read_bytes()[: len(source.read_bytes()) // 2])  # cut short
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 2, result.output
    assert "the compressed data is damaged or cut short" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv.gz"]


# --- one IL-21 kit for the whole file ----------------------------------------------------------

IL21_HEADER = "patient_id,age_years,sex,disease_duration_years,il21_pg_ml\n"


def test_il21_values_without_a_kit_stop_the_file_with_one_message_naming_the_option(mlflow_store, tmp_path):
    source = tmp_path / "clinic.csv"
    source.write_text(IL21_HEADER + "p1,34,F,2,\np2,35,F,1,620\np3,36,M,1,80\n")
    out = tmp_path / "scores.csv"
    result = run_score(source, "--out", out)
    assert result.exit_code == 2, result.output
    assert "il21_pg_ml has values (the first on line 3) but the file has no il21_assay column" in result.output
    assert "--il21-assay legacy_elisa or --il21-assay current_elisa" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinic.csv"]  # not a reject per row: nothing written


def test_the_kit_option_scores_the_file_as_if_each_record_named_it(mlflow_store, champion, tmp_path):
    without = tmp_path / "without.csv"
    without.write_text(IL21_HEADER + "p1,34,F,2,\np2,35,F,1,62\np3,36,M,1,8\n")
    with_column = tmp_path / "with.csv"
    with_column.write_text(IL21_HEADER.replace("\n", ",il21_assay\n")
                           + "p1,34,F,2,,current_elisa\np2,35,F,1,62,current_elisa\np3,36,M,1,8,current_elisa\n")
    out = tmp_path / "scores.csv"
    result = run_score(without, "--out", out, "--il21-assay", "current_elisa")
    assert result.exit_code == 0, result.output
    assert "scored 3, rejected 0" in result.output
    score_batch(ScoreJob.to(with_column, tmp_path / "reference.csv"), champion)
    columns = risk_columns(champion)
    np.testing.assert_array_equal(pd.read_csv(out)[columns].to_numpy(),
                                  pd.read_csv(tmp_path / "reference.csv")[columns].to_numpy())


def test_the_kit_option_fills_only_records_that_name_no_kit(mlflow_store, champion, tmp_path):
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(IL21_HEADER.replace("\n", ",il21_assay\n")
                     + "p1,34,F,2,620,legacy_elisa\np2,35,F,1,62,\np3,36,M,1,62,NA\n")
    explicit = tmp_path / "explicit.csv"
    explicit.write_text(IL21_HEADER.replace("\n", ",il21_assay\n")
                        + "p1,34,F,2,620,legacy_elisa\np2,35,F,1,62,current_elisa\np3,36,M,1,62,current_elisa\n")
    score_batch(ScoreJob.to(mixed, tmp_path / "mixed-scores.csv", il21_assay="current_elisa"), champion)
    score_batch(ScoreJob.to(explicit, tmp_path / "explicit-scores.csv"), champion)
    columns = risk_columns(champion)
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "mixed-scores.csv")[columns].to_numpy(),
                                  pd.read_csv(tmp_path / "explicit-scores.csv")[columns].to_numpy())


def test_an_unknown_kit_is_refused_before_anything_loads(mlflow_store, tmp_path):
    source = tmp_path / "clinic.csv"
    source.write_text(IL21_HEADER + "p1,34,F,2,620\n")
    result = run_score(source, "--out", tmp_path / "scores.csv", "--il21-assay", "elisa")
    assert result.exit_code == 2
    assert "--il21-assay: 'elisa' is not a kit autorisk knows; use one of legacy_elisa, current_elisa" in result.output
