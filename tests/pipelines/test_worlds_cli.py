"""``autorisk worlds``: the experiment trained in each world, the champions judged against each world's truth."""

import math

import mlflow
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import DEFAULT_EXPERIMENT, EXPERIMENTS_DIR, load_experiment, world_names
from pipelines.worlds import EXPERIMENT, champion_metrics, latest_sweep, world_experiment, world_rows
from tools.worlds_doc import replace_block, world_list
from tools.worlds_doc import sweep as sweep_markdown

runner = CliRunner()

# The default experiment, shrunk to train in seconds per world: thyroid only, the linear family.
TINY = f"""extends: {EXPERIMENTS_DIR / 'baseline-comparison.yaml'}
name: tiny-worlds
outcomes: [thyroid]
train_cohorts:
  - {{profile: care-ms1, n: 4000, seed: 1}}
  - {{profile: extension, n: 2000, seed: 2}}
  - {{profile: extension, n: 1000, seed: 3, il21_assay: current_elisa}}
external_cohorts:
  - {{name: registry, profile: registry, n: 2000, seed: 5}}
benchmark_cohort: {{profile: care-ms1, n: 3000, seed: 4}}
bootstrap: 10
interval_refits: 2
families: {{cox-xgboost: null}}
"""


def test_each_world_gets_its_own_experiment_and_model_and_quick_is_small():
    config = load_experiment(DEFAULT_EXPERIMENT)
    world = world_experiment(config, "early-onset")
    assert (world.world, world.name, world.registered_model_name) == (
        "early-onset", "baseline-comparison-early-onset", "autoimmunity-risk-early-onset")
    assert world.train_cohorts == config.train_cohorts
    quick = world_experiment(config, "early-onset", quick=True)
    assert quick.name.endswith("-quick") and [c.n for c in quick.train_cohorts] == [6000, 2500, 2000]
    assert quick.benchmark_cohort.n == 2000 and quick.interval_refits == 5
    assert quick.families["cox-xgboost"].tuning.n_trials == 4
    with pytest.raises(ValueError, match="world: unknown 'flat'"):
        world_experiment(config, "flat")
    kept = champion_metrics({"truth_bench_alemtuzumab_thyroid_24m_mean_risk": 0.2, "bench_thyroid_24m_auroc": 0.7,
                             "interval_bench_all_itp_12m_coverage": 0.5, "contrast_bench_itp_48m_true_between_arms": 0.01,
                             "truth_bench_all_itp_48m_auroc": math.nan})
    assert kept == {"truth_bench_alemtuzumab_thyroid_24m_mean_risk": 0.2, "contrast_bench_itp_48m_true_between_arms": 0.01}


@pytest.mark.integration
def test_worlds_trains_in_each_world_and_logs_a_parent_with_one_child_per_world(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY, encoding="utf-8")
    out = tmp_path / "worlds.md"
    result = runner.invoke(app, ["worlds", "--config", str(config), "--world", "default",
                                 "--world", "proportional-hazards", "--out", str(out)])
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient()
    parent = latest_sweep(client)
    rows = world_rows(client, parent)
    assert list(rows["world"].unique()) == ["default", "proportional-hazards"]
    assert len(rows) == 2 * 2 * 2 * 2  # worlds, arms, outcomes, horizons
    assert rows[rows.endpoint.str.startswith("itp")]["mean_risk"].isna().all()  # thyroid alone was trained
    for world in ("default", "proportional-hazards"):
        # The child's figures are the promoted champion's own, read from its run.
        name = f"autoimmunity-risk-{world}"
        champion = client.get_model_version_by_alias(name, "champion")
        logged = client.get_run(champion.run_id).data.metrics
        row = rows[(rows.world == world) & (rows.arm == "alemtuzumab") & (rows.endpoint == "thyroid_48m")].iloc[0]
        assert row.mean_risk == logged["truth_bench_alemtuzumab_thyroid_48m_mean_risk"]
        assert row.calibration_slope == logged["truth_bench_alemtuzumab_thyroid_48m_calibration_slope"]
        assert row.coverage == logged["interval_bench_alemtuzumab_thyroid_48m_coverage"]
        assert client.get_run(champion.run_id).data.params["world"] == world
    # Every world matches the published incidences, so the true means differ between worlds only where
    # the forms differ: interferon beyond the 24 months of CARE-MS I.
    interferon = rows[(rows.arm == "interferon_beta_1a") & (rows.endpoint == "thyroid_48m")].set_index("world")
    assert interferon.loc["proportional-hazards", "mean_true_risk"] < interferon.loc["default", "mean_true_risk"]
    table = out.read_text()
    assert table.count("| proportional-hazards | alemtuzumab |") == 4 and "autoimmunity-risk-default v" in table
    sweep = client.get_run(parent)
    assert sweep.data.tags["mlflow.note.content"] == table
    assert mlflow.get_experiment_by_name(EXPERIMENT) is not None
    # docs/worlds.md's table is this one, read back from the store, between its markers.
    doc = "intro\n<!-- worlds-table:start (regenerate) -->\nSTALE TABLE\n<!-- worlds-table:end -->\nafter\n"
    filled = replace_block(doc, "worlds-table", sweep_markdown(client, parent))
    assert table in filled and "STALE" not in filled and filled.endswith("<!-- worlds-table:end -->\nafter\n")


def test_the_world_list_comes_from_the_world_files():
    listed = world_list()
    for name in world_names():
        assert f"| `{name}` |" in listed
    assert "| `proportional-hazards` | proportional-hazards | declining (0.5× after month 24) |" in listed
    assert "| `early-onset` | ever-risk | rising (2× after month 24) | earlier with thyroid antibodies and IL-21" in listed


def test_worlds_refuses_an_unknown_world(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = runner.invoke(app, ["worlds", "--world", "flat"])
    assert result.exit_code == 2 and "world: unknown 'flat'; choose from default" in result.output
