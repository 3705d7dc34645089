"""Records that cannot be trusted as they stand are rejected alone, with their line and a reason; lines
that hold nothing are skipped and counted. Real files in every format autorisk reads.

- a NUL or another control character in a record (CSV on both reading paths, Parquet, a workbook);
- lines of spaces and tabs only, skipped like empty lines, a million of them at once;
- workbook cells whose value a reader cannot see: a formula without a saved value, an error value
  (``#DIV/0!``), a cell of a merged range other than its first.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.batch_job import ScoreJob
from pipelines.excel_cells import NO_SAVED_VALUE
from pipelines.score import score_batch

pytestmark = pytest.mark.integration
HEADER = "patient_id,age_years,sex,disease_duration_years\n"
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control(name: str, code: int) -> str:
    return f"{name}: holds the control character U+{code:04X}; a value must be plain text"


def outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = pd.read_csv(out, keep_default_na=False)
    rejects = pd.read_csv(out.with_name(out.stem + ".rejects.csv"), keep_default_na=False)
    return scores, rejects


def test_a_control_character_in_a_csv_record_rejects_that_record_alone(champion, tmp_path):
    good = "".join(f"p{i},34,F,2\n" for i in range(300))  # the first 4 KiB: the file is text, not binary
    source = tmp_path / "clinic.csv"
    source.write_bytes((HEADER + "p\x00early,35,F,1\n" + good
                        + "p\x01soh,35,F,1\n"                    # line 303, the fast path's block
                        + '"p\x1b[31mred",36,F,1\n'              # line 304, quoted: the csv module's path
                        + "p-del\x7f,36,F,1\n"
                        + "p-c1\u0085,36,F,1\n"                  # a C1 control, valid UTF-8
                        + "p-ok,3\x0b6,F,1\n"                    # a vertical tab in a number
                        + "p-tab\tok,36,F,1\n").encode("utf-8"))  # a tab is whitespace, not a control
    out = tmp_path / "scores.csv"
    summary = score_batch(ScoreJob.to(source, out, chunk_rows=100), champion)
    scores, rejects = outputs(out)
    assert (summary.read, summary.scored, summary.rejected) == (307, 301, 6)
    assert rejects["line"].tolist() == [2, 303, 304, 305, 306, 307]
    assert rejects["reason"].tolist() == [control("patient_id", 0), control("patient_id", 1), control("patient_id", 0x1B),
                                          control("patient_id", 0x7F), control("patient_id", 0x85),
                                          control("age_years", 0x0B)]
    assert not any(CONTROL.search(text) for text in (out.read_text(), rejects.to_csv()))
    assert scores["patient_id"].iloc[-1] == "p-tab\tok"


def test_a_control_character_in_a_parquet_or_workbook_value_rejects_its_row(champion, tmp_path):
    frame = pd.DataFrame({"patient_id": ["p1", "p\x002", "p3"], "age_years": [34.0, 35.0, 36.0],
                          "sex": ["F", "F\x1b", "M"], "disease_duration_years": [2.0, 1.0, 1.0]})
    parquet = tmp_path / "cohort.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)
    score_batch(ScoreJob.to(parquet, tmp_path / "from-parquet.csv"), champion)
    _, rejects = outputs(tmp_path / "from-parquet.csv")
    assert rejects[["line", "reason"]].values.tolist() == [[2, control("patient_id", 0)]]

    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["patient_id", "age_years", "sex", "disease_duration_years"])
    # XML cannot hold a control character: Excel writes it as the escape _x0001_, read back as U+0001.
    for row in (["p1", 34, "F", 2], ["p2", 35, "F_x0001_", 1], ["p3", 36, "M", 1]):
        sheet.append(row)
    workbook.save(tmp_path / "cohort.xlsx")
    score_batch(ScoreJob.to(tmp_path / "cohort.xlsx", tmp_path / "from-xlsx.csv"), champion)
    scores, rejects = outputs(tmp_path / "from-xlsx.csv")
    assert scores["line"].tolist() == [2, 4]
    assert rejects[["line", "reason"]].values.tolist() == [[3, control("sex", 1)]]


@pytest.mark.parametrize("lines", [1_000_000, 3])
def test_lines_of_spaces_and_tabs_only_are_skipped_and_counted_like_empty_lines(champion, tmp_path, lines):
    blank = "".join([" \n", "\t\n", "   \t \r\n", "\n"] * (lines // 4) + [" \n"] * (lines % 4))
    source = tmp_path / "clinic.csv"
    source.write_text(HEADER + "p1,34,F,2\n" + blank + '"p2",35,F,1\n' + blank + "p3,36,M,1\n")
    out = tmp_path / "scores.csv"
    summary = score_batch(ScoreJob.to(source, out), champion)
    scores, rejects = outputs(out)
    assert (summary.read, summary.scored, summary.rejected, summary.blank_lines) == (3, 3, 0, 2 * lines)
    assert scores["line"].tolist() == [2, 3 + lines, 4 + 2 * lines]
    assert out.with_name("scores.rejects.csv").stat().st_size < 100  # it was 50 bytes per line, each rejected


def _with_saved_values(path: Path, values: dict[str, str]) -> None:
    """Store ``values`` as the saved results of those cells' formulas, as Excel does when it saves."""
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    for cell, value in values.items():
        sheet, count = re.subn(rf'(<c r="{cell}"[^>]*>\s*<f>[^<]*</f>)\s*<v\s*/>', rf"\1<v>{value}</v>", sheet)
        assert count == 1, cell
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def test_workbook_cells_without_a_readable_value_reject_their_row_naming_the_cell(champion, tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Patients"
    sheet.append(["patient_id", "age_years", "sex", "disease_duration_years", "thyroid_antibodies"])
    sheet.append(["p1", 34, "F", 2, True])
    sheet.append(["p2", "=B2+1", "F", 1, None])          # row 3: a formula Excel saved (35), below
    sheet.append(["p3", "=B2+2", "F", 1, None])          # row 4: a formula never calculated
    sheet.append(['=CONCAT("p", 4)', 37, "F", 1, None])  # row 5: the id a formula without a value
    sheet.append(["p5", 38, "F", 1, None])
    sheet["E6"].value, sheet["E6"].data_type = "#DIV/0!", "e"  # row 6: an error value
    sheet.append(["p6", 39, "M", 1, None])               # row 7: the first cell of a merged range
    sheet.append([None, 40, "M", 1, None])               # row 8: read blank under the merged range
    sheet.merge_cells("A7:A8")
    sheet.append(["=A1", None, None, None, None])        # row 9: only a formula without a value, below the last
    path = tmp_path / "cohort.xlsx"
    workbook.save(path)
    _with_saved_values(path, {"B3": "35"})
    out = tmp_path / "scores.csv"
    summary = score_batch(ScoreJob.to(path, out), champion)
    scores, rejects = outputs(out)
    assert scores["line"].tolist() == [2, 3, 7]
    assert scores["patient_id"].tolist() == ["p1", "p2", "p6"]
    assert rejects[["line", "reason"]].values.tolist() == [
        [4, f"age_years (cell B4): {NO_SAVED_VALUE}"],
        [5, f"patient_id (cell A5): {NO_SAVED_VALUE}"],
        [6, "thyroid_antibodies (cell E6): the error #DIV/0! instead of a value"],
        [8, "patient_id (cell A8): part of the merged range A7:A8, whose value only A7 holds: unmerge it and "
            "fill in each cell"],
        [9, f"patient_id (cell A9): {NO_SAVED_VALUE}"],
    ]
    assert (summary.read, summary.blank_lines) == (8, 0)
    # The saved value is the one read: p2 scores as a patient of 35 does.
    typed = tmp_path / "typed.csv"
    typed.write_text("patient_id,age_years,sex,disease_duration_years\np2,35,F,1\n")
    score_batch(ScoreJob.to(typed, tmp_path / "typed-scores.csv"), champion)
    expected = pd.read_csv(tmp_path / "typed-scores.csv").filter(like="risk_").iloc[0]
    pd.testing.assert_series_equal(scores.filter(like="risk_").iloc[1], expected, check_names=False)
