"""``autorisk cohort-report``: files, the MLflow run, and the exit status."""

from pathlib import Path

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from features.simulator import DEFAULT_CONFIG_PATH
from pipelines.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_writes_the_report_and_logs_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = runner.invoke(app, ["cohort-report", "--profile", "extension", "--n", "100000", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "extension.md").read_text()
    assert "all targets within tolerance" in report and "| §2 timing |" in report
    assert (tmp_path / "extension_incidence.png").stat().st_size > 10_000
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cohorts"], output_format="list")
    assert len(runs) == 1
    assert runs[0].data.metrics["checks_failed"] == 0
    assert runs[0].data.params["profile"] == "extension"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "report")}
    assert "report/extension.md" in artifacts


def test_exits_non_zero_when_a_target_is_out_of_reach(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = yaml.safe_load(Path(DEFAULT_CONFIG_PATH).read_text())
    # a mean age of 60 cannot come out of ages truncated to the trials' 18–55
    config["profiles"]["care-ms1"]["arms"]["alemtuzumab"]["baseline"]["age_years"]["mean"] = 60.0
    path = tmp_path / "cohorts.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["cohort-report", "--profile", "care-ms1", "--n", "20000",
                                 "--out", str(tmp_path), "--config", str(path)])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "age, mean" in result.output
