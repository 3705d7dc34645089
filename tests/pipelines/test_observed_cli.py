"""The observed-cohort loop on real files, a real MLflow store and the real CLI: validate a registered version on a
registry's own outcomes, recalibrate it to that population, train and promote from files alone.

The registry files are simulated (so that the truth is known to the test) and written with the truth columns
dropped, as a registry would export them.
"""

import json
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sksurv.nonparametric import kaplan_meier_estimator
from typer.testing import CliRunner

from features.schema import ID_COLUMN, INPUT_NAMES
from features.simulator import simulate_cohort
from models.names import VERSION_ORIGIN_TAG, VERSION_SOURCE_TAG, VERSION_VALIDATIONS_TAG
from models.registry import MODEL_NAME
from models.validation import observed_risk
from pipelines.cli import app
from pipelines.validate import METRIC_KEYS
from tests.identity import batch_identity

pytestmark = pytest.mark.integration
runner = CliRunner()


def observed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame.columns if not c.startswith("true_")]]


@pytest.fixture(scope="module")
def registry(simulator, tmp_path_factory):
    """A development file (3,000 patients) and a test file (6,000) of a registry whose incidences differ from the
    trials' (fewer thyroid disorders, more ITP), 2:1 alemtuzumab, with their truth kept aside."""
    folder = tmp_path_factory.mktemp("registry")
    frames = {"dev": simulate_cohort(simulator, "registry", 3000, 501),
              "test": simulate_cohort(simulator, "registry", 6000, 502)}
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"registry-{name}.csv"
        observed(frame).to_csv(paths[name], index=False)
    return {"folder": folder, "paths": paths, "truth": frames}


@pytest.fixture(scope="module")
def validated(mlflow_store, registry):
    out = registry["folder"] / "validation"
    result = runner.invoke(app, ["validate", str(registry["paths"]["test"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return {"out": out, "output": result.output, "report": json.loads((out / "validation.json").read_text())}


def entry(report, outcome, treatment, horizon):
    return next(m for m in report["metrics"] if (m["outcome"], m["treatment"], m["horizon_months"])
                == (outcome, treatment, horizon))


def test_validate_writes_the_documented_report(validated):
    out, report = validated["out"], validated["report"]
    assert {"model", "cohort", "warnings", "metrics"} <= set(report)
    assert {(m["outcome"], m["treatment"]) for m in report["metrics"]} == {
        (o, t) for o in ("thyroid", "itp") for t in ("alemtuzumab", "interferon_beta_1a", "all")}
    assert {m["horizon_months"] for m in report["metrics"]} == {12, 24, 36, 48}
    for m in report["metrics"]:
        assert set(METRIC_KEYS) <= set(m)
    html = (out / "validation.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    assert "| alemtuzumab | 24 |" in (out / "validation.md").read_text()
    assert report["cohort"]["sha256"] and report["cohort"]["used"] == 6000


def test_observed_risks_are_kaplan_meiers_and_o_e_agrees_with_the_truth(validated, registry, champion):
    truth = registry["truth"]["test"]
    for outcome in ("thyroid", "itp"):
        for arm in ("alemtuzumab", "interferon_beta_1a"):
            members = truth["treatment"] == arm
            times, survival = kaplan_meier_estimator(truth.loc[members, f"{outcome}_event"] == 1,
                                                     truth.loc[members, f"{outcome}_time_months"])
            for horizon in (24, 48):
                m = entry(validated["report"], outcome, arm, horizon)
                km = 1 - survival[np.searchsorted(times, horizon, side="right") - 1]
                assert m["observed_risk"] == pytest.approx(km, abs=1e-12)
                # O/E within three of its standard errors of the ratio the true risks give
                true_ratio = truth.loc[members, f"true_risk_{outcome}_{horizon}m"].mean() / m["mean_predicted"]
                if m["o_e_se"] is not None:
                    assert abs(m["o_e"] - true_ratio) < 3 * m["o_e_se"], (outcome, arm, horizon)
    # The champion learned the trials' thyroid incidence: the registry's is lower, and the report shows it.
    for horizon in (24, 48):
        assert entry(validated["report"], "thyroid", "alemtuzumab", horizon)["o_e_hi"] < 0.9


def test_validation_is_logged_and_linked_both_ways(validated, champion):
    runs = mlflow.search_runs(experiment_names=["validations"], output_format="list")
    version = MlflowClient().get_model_version(MODEL_NAME, champion.version)
    ours = [r for r in runs if r.data.tags.get("autorisk.model_version") == champion.version]
    assert ours and ours[-1].info.run_id in version.tags[VERSION_VALIDATIONS_TAG].split(",")
    metrics = ours[-1].data.metrics
    assert "thyroid_alemtuzumab_24m_o_e" in metrics and "itp_all_48m_auroc" in metrics
    artifacts = {a.path for a in MlflowClient().list_artifacts(ours[-1].info.run_id, "validation")}
    assert artifacts == {"validation/validation.json", "validation/validation.md", "validation/validation.html"}


def test_a_small_cohort_is_validated_with_a_warning_on_few_onsets(mlflow_store, registry, tmp_path):
    """141 patients (the largest published IL-21 study), followed for at most 40 months."""
    small = observed(registry["truth"]["test"]).sample(141, random_state=3)
    for outcome in ("thyroid", "itp"):
        late = small[f"{outcome}_time_months"] > 40
        small.loc[late, f"{outcome}_event"] = 0
        small.loc[late, f"{outcome}_time_months"] = 40.0
    path = tmp_path / "141.csv"
    small.to_csv(path, index=False)
    result = runner.invoke(app, ["validate", str(path), "--out", str(tmp_path / "out"), "--horizons", "24,36,48"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert any(w.startswith("itp: ") and "fewer than the 100 usually needed" in w for w in report["warnings"])
    assert any(w.startswith("thyroid, all: no figure at 48 months") for w in report["warnings"])
    assert any("extrapolates its risks at 36, 48 months on interferon_beta_1a" in w for w in report["warnings"])
    assert entry(report, "thyroid", "all", 48)["observed_risk"] is None
    assert entry(report, "thyroid", "all", 24)["observed_risk"] is not None


def test_unusable_rows_are_rejected_alone_and_missing_columns_stop_the_run(mlflow_store, registry, tmp_path):
    frame = observed(registry["truth"]["dev"]).head(400).astype(object)
    frame.loc[5, "thyroid_time_months"] = -3
    frame.loc[9, "itp_event"] = "2"
    frame.loc[11, "thyroid_time_months"] = None
    frame.loc[14, "age_years"] = 300
    path = tmp_path / "messy.csv"
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["validate", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert rejects["line"].tolist() == [7, 11, 13, 16]  # the header is line 1
    assert "thyroid_time_months: -3 is negative" in rejects["reason"].iloc[0]
    assert "itp_event: '2' is not 0 or 1" in rejects["reason"].iloc[1]
    assert "age_years" in rejects["reason"].iloc[3]
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert report["cohort"]["used"] == 396 and report["cohort"]["rejected"] == 4

    frame.drop(columns=["itp_event", "itp_time_months"]).to_csv(path, index=False)
    missing = runner.invoke(app, ["validate", str(path), "--out", str(tmp_path / "again")])
    assert missing.exit_code == 2 and "outcome columns missing: itp_event, itp_time_months" in missing.output


def test_recalibrate_registers_an_aliased_version_that_fits_the_registry(mlflow_store, registry, champion, validated,
                                                                        tmp_path):
    client = MlflowClient()
    result = runner.invoke(app, ["recalibrate", str(registry["paths"]["dev"]), "--alias", "registry-test",
                                 "--holdout-fraction", "0", "--out", str(tmp_path / "recalibration")])
    assert result.exit_code == 0, result.output
    new = client.get_model_version_by_alias(MODEL_NAME, "registry-test")
    assert new.tags[VERSION_ORIGIN_TAG] == "recalibration" and new.tags[VERSION_SOURCE_TAG] == champion.version
    assert new.tags["recalibration_method"] == "baseline" and len(new.tags["recalibration_file_sha256"]) == 64
    assert new.tags["patients"] == "3000"
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == champion.version

    out = tmp_path / "after"
    checked = runner.invoke(app, ["validate", str(registry["paths"]["test"]), "--out", str(out),
                                  "--model-version", "@registry-test"])
    assert checked.exit_code == 0, checked.output
    after = json.loads((out / "validation.json").read_text())
    truth, dev = registry["truth"]["test"], registry["truth"]["dev"]
    for outcome, arm, relative, points in (("thyroid", "alemtuzumab", 0.10, 0.0), ("thyroid", "interferon_beta_1a",
                                           0.30, 0.015), ("itp", "alemtuzumab", 0.30, 0.008)):
        members, fitted_on = truth["treatment"] == arm, dev["treatment"] == arm
        for horizon in (24, 48):
            true = truth.loc[members, f"true_risk_{outcome}_{horizon}m"].mean()
            predicted = entry(after, outcome, arm, horizon)["mean_predicted"]
            # A recalibration can only be as good as the local file's own estimate: the targets, or that file's own
            # error (its Kaplan-Meier risk against its patients' true risk) where sampling made it larger
            km = observed_risk(dev.loc[fitted_on, f"{outcome}_time_months"].to_numpy(),
                               dev.loc[fitted_on, f"{outcome}_event"].to_numpy(), horizon).risk
            own_error = abs(km - dev.loc[fitted_on, f"true_risk_{outcome}_{horizon}m"].mean())
            tolerance = max(relative * true, points, own_error + 0.005)
            assert abs(predicted - true) <= tolerance, (outcome, arm, horizon, predicted, true, tolerance)
            # and it reproduces the file's observed risk in the large
            assert abs(predicted - km) <= max(0.1 * km, 0.005), (outcome, arm, horizon, predicted, km)
            unrecalibrated = entry(validated["report"], outcome, arm, horizon)["mean_predicted"]
            if outcome == "thyroid":  # the champion's thyroid risks were far off; the check can fail
                assert abs(unrecalibrated - true) > tolerance
            before = entry(validated["report"], outcome, arm, horizon)
            # The patient effects are the champion's: within an arm, the ranking and so the AUROC are unchanged.
            if before["auroc"] is not None:
                assert entry(after, outcome, arm, horizon)["auroc"] == pytest.approx(before["auroc"], abs=1e-12)

    scored = runner.invoke(app, ["score", str(registry["paths"]["test"]), "--out", str(tmp_path / "s.csv"),
                                 "--ignore-extra-columns", "--model-version", "@registry-test"])
    assert scored.exit_code == 0, scored.output
    scores = pd.read_csv(tmp_path / "s.csv")
    assert set(scores["model_version"].astype(str)) == {str(new.version)}
    # the MLflow pyfunc of the alias gives the same risks, with every patient's explanation exact
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@registry-test")
    from_pyfunc = pyfunc.predict(truth.head(200)[[ID_COLUMN, *INPUT_NAMES]])
    np.testing.assert_allclose(from_pyfunc["risk_thyroid_48m"], scores["risk_thyroid_48m"].head(200), rtol=0,
                               atol=1e-12)
    total, expected = batch_identity(from_pyfunc, "thyroid", 48, champion.risk_model.explanation_scale)
    np.testing.assert_allclose(total, expected, atol=1e-9)


def test_recalibrate_validates_before_and_after_on_a_held_out_part(mlflow_store, registry, tmp_path):
    result = runner.invoke(app, ["recalibrate", str(registry["paths"]["dev"]), "--alias", "registry-split",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "recalibration.json").read_text())
    assert summary["held_out"] == 750 and summary["recalibrated_on"] == 2250
    for name in ("holdout-before", "holdout-after"):
        assert (tmp_path / name / "validation.json").is_file()
    row = next(r for r in summary["comparison"] if (r["outcome"], r["treatment"], r["horizon_months"])
               == ("thyroid", "alemtuzumab", 48))
    assert abs(row["after_o_e"] - 1) < abs(row["before_o_e"] - 1)


@pytest.mark.parametrize("kind", ["semicolon", "xlsx"])
def test_validate_reads_what_score_reads(mlflow_store, registry, tmp_path, kind):
    """A European Excel's semicolon CSV with decimal commas and upper-case headers, and a workbook's named sheet."""
    frame = observed(registry["truth"]["test"]).head(800)
    if kind == "semicolon":
        path = tmp_path / "export.csv"
        frame.rename(columns=str.upper).to_csv(path, sep=";", decimal=",", index=False)
        args = []
    else:
        path = tmp_path / "export.xlsx"
        with pd.ExcelWriter(path) as writer:
            frame.head(5).to_excel(writer, sheet_name="notes", index=False)
            frame.to_excel(writer, sheet_name="patients", index=False)
        args = ["--sheet", "patients"]
    result = runner.invoke(app, ["validate", str(path), "--out", str(tmp_path / "out"), "--horizons", "24", *args])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert report["cohort"]["used"] == 800 and report["cohort"]["rejected"] == 0
    times, survival = kaplan_meier_estimator(frame["thyroid_event"] == 1, frame["thyroid_time_months"])
    km = 1 - survival[np.searchsorted(times, 24, side="right") - 1]
    assert entry(report, "thyroid", "all", 24)["observed_risk"] == pytest.approx(km, abs=1e-12)


@pytest.mark.parametrize("args, message", [
    (["--alias", "champion"], "@champion is set by `autorisk promote` only"),
    (["--alias", "x", "--method", "slope"], "--method: 'slope' is not one of baseline, baseline+slope"),
    (["--alias", "x", "--holdout-fraction", "1.5"], "--holdout-fraction: 1.5 is not in [0, 1)"),
    (["--alias", "x", "--model-version", "abc"], "--model-version: 'abc' is not a registered version"),
])
def test_recalibrate_refuses_what_it_must_not_do(mlflow_store, registry, tmp_path, args, message):
    result = runner.invoke(app, ["recalibrate", str(registry["paths"]["dev"]), "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_an_experiment_trained_on_a_file_alone_trains_registers_and_promotes(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'files.db'}")
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "from-files.yaml"
    config.write_text(textwrap.dedent(f"""\
        name: from-files
        description: The registry's own patients, nothing simulated.
        registered_model_name: {MODEL_NAME}
        simulator_config: {registry["folder"] / "unused.yaml"}
        train_cohorts:
          - {{file: {registry["paths"]["dev"]}, il21_assay: current_elisa}}
        test_fraction: 0.3
        validation_fraction: 0.2
        split_seed: 1
        bootstrap: 30
        interval_refits: 2
        families:
          cox-linear: {{estimator: cox-linear, params: {{alpha: 1.0}}}}
        """))
    trained = runner.invoke(app, ["train", "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    assert "no cohort of the experiment carries the simulator's true risks" in trained.output
    promoted = runner.invoke(app, ["promote", "--experiment", "from-files"])
    assert promoted.exit_code == 0, promoted.output
    client = MlflowClient()
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    run = client.get_run(champion.run_id)
    assert run.data.params["benchmark_cohort"] == "none"
    assert not any(k.startswith(("truth_", "interval_", "contrast_")) for k in run.data.metrics)
    assert "thyroid_24m_calibration_slope_lo" in run.data.metrics
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.params["file_sha256.registry-dev.csv"]
    # ITP is rare: 3,000 patients are below Riley's minimum at the registry's incidence, and the run says so
    assert "itp" in parent.data.tags["autorisk.below_minimum_sample_size"]
