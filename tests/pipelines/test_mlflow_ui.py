"""The MLflow UI as a researcher meets it: descriptions, the headline table, and the run page in a real browser."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from models.headline import HEADLINE_ARTIFACT, HEADLINE_TABLE, headline_frame, headline_markdown
from models.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING, NOTE_TAG
from tools.mlflow_ui import chromium_path, loopback_page, mlflow_ui, show

METRICS = {
    "thyroid_24m_auroc": 0.7412, "thyroid_24m_auroc_lo": 0.7301, "thyroid_24m_auroc_hi": 0.7523,
    "thyroid_24m_auroc_over_oracle": 0.9871, "thyroid_24m_calibration_slope": 0.912,
    "thyroid_24m_oracle_calibration_slope": 0.959, "thyroid_24m_events": 1234.0,
    "added_il21_pg_ml_thyroid_24m_delta_auroc": 0.0612, "added_il21_pg_ml_thyroid_24m_delta_auroc_lo": 0.0501,
    "added_il21_pg_ml_thyroid_24m_delta_auroc_hi": 0.0723,
    # no held-out AUROC at 36 months: the endpoint is left out
    "thyroid_36m_calibration_slope": 1.0,
}


def test_headline_table_by_hand():
    frame = headline_frame(METRICS, ["thyroid_24m", "thyroid_36m"], ["il21_pg_ml"])
    assert list(frame["endpoint"]) == ["thyroid_24m"]
    assert frame.loc[0, "delta_auroc_il21_pg_ml_lo"] == 0.0501
    text = headline_markdown(frame, ["il21_pg_ml"])
    assert text.splitlines()[2] == ("| thyroid_24m | 1234 | 0.741 (0.730–0.752) | 0.987 | 0.91 (0.96) | "
                                    "+0.0612 (+0.0501 to +0.0723) |")
    without = headline_markdown(headline_frame({k: v for k, v in METRICS.items() if "added" not in k},
                                               ["thyroid_24m"], ["il21_pg_ml"]), ["il21_pg_ml"])
    assert without.splitlines()[2].endswith("| — |")
    coverage = headline_frame(METRICS, ["thyroid_24m"], coverage_metric=lambda e: f"cover_{e}")
    assert np.isnan(coverage.loc[0, "interval_coverage"])
    assert headline_markdown(coverage).splitlines()[2].endswith("| — |")



@pytest.mark.integration
def test_experiments_and_runs_describe_themselves(mlflow_store, tiny_experiment):
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tiny_experiment.name)
    assert experiment.tags[NOTE_TAG] == tiny_experiment.description
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags["autorisk.role"] == "parent")
    note = parent.data.tags[NOTE_TAG]
    assert note.startswith(tiny_experiment.description.strip())
    for result in mlflow_store["results"]:
        assert f"| {result.family} | {result.model_version} |" in note
        run = client.get_run(result.run_id)
        description = run.data.tags[NOTE_TAG]
        auroc = result.metrics["thyroid_24m_auroc"]
        assert f"registered as version {result.model_version}" in description
        assert f"| thyroid_24m | {result.metrics['thyroid_24m_events']:.0f} | {auroc:.3f} (" in description
        assert "ΔAUROC il21_pg_ml (95% CI)" in description
        logged = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/{HEADLINE_TABLE}")
        table = pd.DataFrame(logged["data"], columns=logged["columns"])
        assert table.loc[table.endpoint == "thyroid_24m", "auroc"].iloc[0] == pytest.approx(auroc)
        assert mlflow.artifacts.load_text(f"runs:/{result.run_id}/{HEADLINE_ARTIFACT}").count("| thyroid_") == 4
        card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.md")
        assert "## Headline (held-out split)" in card
    trials = [r for r in runs if r.data.tags["autorisk.role"] == "tuning-trial"]
    assert trials and all("Optuna trial" in t.data.tags[NOTE_TAG] for t in trials)


@pytest.mark.integration
def test_the_run_page_shows_the_headline_in_a_real_browser(mlflow_store, tiny_experiment, tmp_path):
    pytest.importorskip("playwright")
    if chromium_path() is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tiny_experiment.name)
    result = next(r for r in mlflow_store["results"] if r.family == "cox-xgboost")
    with mlflow_ui(mlflow_store["uri"], tmp_path / "ui.log") as url, loopback_page() as (page, blocked):
        show(page, f"{url}/#/experiments/{experiment.experiment_id}/runs/{result.run_id}", "ΔAUROC il21_pg_ml",
             timeout_s=180)
        text = page.inner_text("body")
        page.screenshot(path=tmp_path / "run.png")
    assert f"{tiny_experiment.name}/cox-xgboost" in text
    assert f"{result.metrics['thyroid_24m_auroc']:.3f} (" in text  # the table is rendered, not its Markdown
    assert "| thyroid_24m |" not in text
    assert Path(tmp_path / "run.png").stat().st_size > 50_000
    assert all("127.0.0.1" not in u for u in blocked)
