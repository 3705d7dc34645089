import pandas as pd
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def test_simulate_writes_the_same_file_for_the_same_seed(tmp_path):
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in paths:
        result = runner.invoke(app, ["simulate", "--profile", "camms223", "--n", "300", "--seed", "5", "--out", str(path)])
        assert result.exit_code == 0, result.output
    assert paths[0].read_bytes() == paths[1].read_bytes()
    frame = pd.read_csv(paths[0])
    assert {"thyroid_event", "itp_event", "true_risk_thyroid", "true_risk_itp"} <= set(frame.columns)


def test_simulate_rejects_unknown_profile(tmp_path):
    result = runner.invoke(app, ["simulate", "--profile", "care-ms9", "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "care-ms9" in result.output


def test_serve_without_a_champion_fails_clearly(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # a real store, with nothing registered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = runner.invoke(app, ["serve", "--port", "3999"])
    assert result.exit_code == 1
    assert "run `autorisk train` and `autorisk promote` first" in result.output
