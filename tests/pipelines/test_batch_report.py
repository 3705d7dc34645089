"""The HTML report beside every scored file: self-contained, aggregates only, numbers from the files."""

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.schema import ID_COLUMN, INPUT_NAMES, RESEARCH_NOTICE
from pipelines.batch_job import BatchOutputs, ScoreJob
from pipelines.batch_report import RISK_BINS, reason_kind
from pipelines.cli import app
from pipelines.score import score_batch

runner = CliRunner()


class Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources, self.links, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "src" in attrs:
            self.sources.append(attrs["src"])
        if "href" in attrs:
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs)


@pytest.mark.parametrize("reason, kind", [
    ("age_years: 400 is outside the possible range (>= 0 and <= 120)",
     "age_years: … is outside the possible range (>= 0 and <= 120)"),
    ("il21_pg_ml: 'abc' is not a number", "il21_pg_ml: … is not a number"),
    ("disease_duration_years: 40 exceeds age_years 34", "disease_duration_years: … exceeds age_years …"),
    ("relapses_prior_2y: '2.5' is not a whole number", "relapses_prior_2y: … is not a whole number"),
    ("sex: required but missing", "sex: required but missing"),
])
def test_reasons_are_grouped_without_their_values(reason, kind):
    assert reason_kind(reason) == kind


@pytest.fixture(scope="module")
def scored(mlflow_store, make_cohort, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    cohort = make_cohort("clinic", 2500, 31)[[ID_COLUMN, *INPUT_NAMES]].astype(object)
    cohort.loc[3, ["patient_id", "age_years"]] = ["SENTINEL-7731", 400]
    cohort.loc[8, "il21_pg_ml"] = -98765.4321
    cohort.loc[9, "sex"] = "woman"
    source, out = folder / "clinic.csv", folder / "scores.csv"
    cohort.to_csv(source, index=False)
    result = runner.invoke(app, ["score", str(source), "--out", str(out), "--horizons", "12,48", "--contrast",
                                 "--chunk-rows", "700"])
    assert result.exit_code == 0, result.output
    assert f"report: {BatchOutputs.beside(out).report}" in result.output
    return {"out": out, "html": BatchOutputs.beside(out).report.read_text(encoding="utf-8"), "scores": pd.read_csv(out)}


@pytest.mark.integration
def test_the_report_is_self_contained_and_loads_nothing(scored):
    parser = Sources()
    parser.feed(scored["html"])
    assert len(parser.images) == 2 * 3  # per outcome: risks, beeswarm, mean |SHAP|
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parser.links == []
    assert all(image.get("alt") for image in parser.images)
    assert not re.search(r"https?://", scored["html"])
    assert RESEARCH_NOTICE in scored["html"]


@pytest.mark.integration
def test_the_report_counts_and_groups_rejects_without_patient_values(scored):
    html = scored["html"]
    assert "<th scope='row'>records read</th><td class='n'>2,500</td>" in html
    assert "<th scope='row'>scored</th><td class='n'>2,497</td>" in html
    assert "age_years: … is outside the possible range (&gt;= 0 and &lt;= 120)" in html
    assert "sex: … is not one of female, male" in html
    for secret in ("SENTINEL-7731", "98765", "woman"):
        assert secret not in html


@pytest.mark.integration
def test_the_risk_tables_agree_with_the_scores_file(scored):
    scores, html = scored["scores"], scored["html"]
    for outcome in ("thyroid", "itp"):
        for month in (12, 48):
            risk = scores[f"risk_{outcome}_{month}m"]
            row = re.search(rf"<th scope='row'>{outcome} by month {month}</th>((?:<td class='n'>[^<]*</td>)+)", html)
            mean, p10, median, p90, highest = (float(v.rstrip("%")) for v in re.findall(r">([^<]*)<", row.group(1))
                                               if v)
            assert mean == pytest.approx(100 * risk.mean(), abs=0.005)
            assert highest == pytest.approx(100 * risk.max(), abs=0.005)
            width = 100 / RISK_BINS
            for shown, q in ((p10, 0.1), (median, 0.5), (p90, 0.9)):
                # The smallest risk with at least that share of patients at or below it, to within a bin.
                assert abs(shown - 100 * np.quantile(risk, q, method="inverted_cdf")) <= width + 0.005


@pytest.mark.integration
def test_the_report_shows_the_drift_table_and_the_shap_horizon(scored):
    html = scored["html"]
    assert "Drift: scored cohort vs the training data" in html and "<table>" in html
    assert "at month 48" in html and "2,000 patients drawn at random from the 2,497 scored" in html


@pytest.mark.integration
def test_a_run_that_scores_nobody_still_gets_a_report(mlflow_store, champion, tmp_path):
    source = tmp_path / "bad.csv"
    source.write_text("age_years,sex,disease_duration_years\n400,F,2\n34,X,2\n")
    summary = score_batch(ScoreJob.to(source, tmp_path / "s.parquet"), champion)
    html = summary.report_path.read_text()
    assert summary.report_path == tmp_path / "s.report.html"
    assert "No record was scored." in html and "<img" not in html


@pytest.mark.integration
def test_the_report_reads_the_input_as_the_run_did(mlflow_store, make_cohort, tmp_path):
    """A gzipped TSV whose IL-21 kit is given on the command line: the beeswarm gets every sampled patient."""
    cohort = make_cohort("care-ms1", 300, 32)
    columns = [ID_COLUMN, *(name for name in INPUT_NAMES if name != "il21_assay")]
    source, out = tmp_path / "clinic.tsv.gz", tmp_path / "scores.csv"
    cohort[cohort["il21_assay"] == "legacy_elisa"][columns].to_csv(source, sep="\t", index=False,
                                                                   compression="gzip")
    result = runner.invoke(app, ["score", str(source), "--out", str(out), "--il21-assay", "legacy_elisa"])
    assert result.exit_code == 0, result.output
    scored = len(pd.read_csv(out))
    html = BatchOutputs.beside(out).report.read_text(encoding="utf-8")
    assert f"shows {scored:,} patients drawn at random from the {scored:,} scored" in html
