"""Training logs the intervals' coverage of the true risk, the instability plots and the card's section;
every front door serves the interval."""

import math

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.schema import ID_COLUMN, INPUT_NAMES
from models.names import INTERVAL_METRICS, interval_metric
from models.registry import MODEL_NAME

pytestmark = pytest.mark.integration


def test_each_family_logs_coverage_per_outcome_horizon_and_arm(mlflow_store, tiny_experiment):
    client = MlflowClient()
    for result in mlflow_store["results"]:
        metrics = result.metrics
        assert metrics["interval_refits"] == tiny_experiment.interval_refits
        for outcome in tiny_experiment.outcomes:
            for h in tiny_experiment.evaluation_horizons_months:
                e = f"{outcome}_{h}m"
                for metric in INTERVAL_METRICS:
                    assert math.isfinite(metrics[interval_metric("bench", "all", e, metric)]), (e, metric)
                for arm in ("alemtuzumab", "interferon_beta_1a"):
                    assert 0 <= metrics[interval_metric("bench", arm, e, "coverage")] <= 1
                inside = metrics[interval_metric("bench", "all", e, "coverage")]
                above = metrics[interval_metric("bench", "all", e, "miss_above")]
                below = metrics[interval_metric("bench", "all", e, "miss_below")]
                assert inside + above + below == pytest.approx(1.0)
        # The simulator gives no ITP on interferon, and the trials show none: the interval is [0, the rule of
        # three's bound], which holds the true 0 for every patient.
        assert metrics[interval_metric("bench", "interferon_beta_1a", "itp_24m", "coverage")] == 1.0
        assert interval_metric("bench", "interferon_beta_1a", "itp_24m", "error_over_spread") not in metrics
        table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/intervals/coverage.csv"))
        row = table[(table.arm == "all") & (table.endpoint == "thyroid_24m")].iloc[0]
        assert row["coverage"] == pytest.approx(metrics[interval_metric("bench", "all", "thyroid_24m", "coverage")])
        plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
        assert {"plots/instability_thyroid.png", "plots/instability_itp.png"} <= plots
        card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card/model_card.md")
        assert "## Uncertainty: a 95% interval on every risk" in card and "../plots/instability_thyroid.png" in card
        description = client.get_run(result.run_id).data.tags["mlflow.note.content"]
        assert "true risk inside the 95% risk interval" in description


def test_the_registered_version_serves_intervals_from_plain_files(mlflow_store, make_cohort):
    cohort = make_cohort("care-ms1", 200, 71)[[ID_COLUMN, *INPUT_NAMES]]
    for result in mlflow_store["results"]:
        scores = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{result.model_version}").predict(cohort)
        for e in ("thyroid_24m", "itp_48m"):
            assert (scores[f"risk_lo_{e}"] < scores[f"risk_{e}"]).all()
            assert (scores[f"risk_{e}"] < scores[f"risk_hi_{e}"]).all()
