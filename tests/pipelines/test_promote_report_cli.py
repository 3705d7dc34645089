"""``autorisk promote`` and ``autorisk report`` against the real MLflow store."""

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from models.registry import MODEL_NAME
from pipelines.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_promote_keeps_the_previous_champion_as_challenger(mlflow_store):
    client = MlflowClient()
    best = mlflow_store["promotion"].chosen.version
    other = next(r.model_version for r in mlflow_store["results"] if r.model_version != best)
    client.set_registered_model_alias(MODEL_NAME, "champion", other)

    dry = runner.invoke(app, ["promote", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would set {MODEL_NAME}@champion -> version {best}" in dry.output
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == other  # unchanged

    result = runner.invoke(app, ["promote"])
    assert result.exit_code == 0, result.output
    assert "rule: among the versions trained by one experiment config" in result.output
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == best
    assert str(client.get_model_version_by_alias(MODEL_NAME, "challenger").version) == other


def test_report_writes_the_model_card(mlflow_store, tmp_path):
    result = runner.invoke(app, ["report", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    version = mlflow_store["promotion"].chosen.version
    markdown = (tmp_path / f"model-card-{MODEL_NAME}-v{version}.md").read_text()
    html = (tmp_path / f"model-card-{MODEL_NAME}-v{version}.html").read_text()
    assert f"version {version}" in markdown and "## Limitations" in markdown
    assert "<h2>Limitations" in html


def test_report_of_an_unknown_version_fails_clearly(mlflow_store, tmp_path):
    result = runner.invoke(app, ["report", "999", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "version 999" in result.output
