"""Training and scoring on every simulated profile, and transport across IL-21 assays."""

import numpy as np
import pytest

from features.simulator import simulate_cohort
from features.validation import encode, validate_frame
from models.evaluation import evaluate
from models.scoring import score_batch
from pipelines.config import FamilySpec
from pipelines.train import fit_family

FAMILIES = {
    "logistic": FamilySpec(estimator="logistic", censoring="ipcw", calibration="platt", params={"C": 1.0}),
    "xgboost": FamilySpec(estimator="xgboost", censoring="ipcw", calibration="platt",
                          params={"n_estimators": 60, "max_depth": 3, "n_jobs": 2}),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("profile", ["camms223", "care-ms1", "care-ms2", "extension", "clinic"])
def test_training_and_scoring_work_on_every_profile(simulator, family, profile):
    cohort = simulate_cohort(simulator, profile, 6000, 21).assign(profile=profile)
    spec = FAMILIES[family]
    model = fit_family(spec, spec.params, cohort, ("thyroid_24m", "itp_24m"), 0.2, 0)
    scored = score_batch(model, validate_frame(cohort, allow_extra=True))
    assert len(scored) == len(cohort)
    for endpoint in ("thyroid_24m", "itp_24m"):
        risk = scored[f"risk_{endpoint}"].to_numpy()
        assert ((risk > 0) & (risk < 1)).all()
        shap = scored.filter(like=f"shap_{endpoint}__").sum(axis=1).to_numpy()
        np.testing.assert_allclose(scored[f"base_{endpoint}"] + shap, np.log(risk / (1 - risk)), atol=1e-4)


@pytest.fixture(scope="module")
def legacy_model(simulator):
    train = simulate_cohort(simulator, "care-ms1", 40_000, 31).assign(profile="care-ms1")
    spec = FamilySpec(estimator="xgboost", censoring="ipcw", calibration="none",
                      params={"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05,
                              "min_child_weight": 5.0, "n_jobs": 2})
    return fit_family(spec, spec.params, train, ("thyroid_24m",), 0.2, 0)


def thyroid_metrics(model, cohort):
    risk = model.explain(encode(cohort))["thyroid_24m"].risk
    return evaluate(cohort["thyroid_event"].to_numpy(), risk, cohort["true_risk_thyroid_24m"].to_numpy())


def test_a_model_trained_on_one_assay_stays_calibrated_on_the_other(simulator, legacy_model):
    legacy = thyroid_metrics(legacy_model, simulate_cohort(simulator, "care-ms1", 40_000, 32))
    current = thyroid_metrics(legacy_model, simulate_cohort(simulator, "care-ms1", 40_000, 32,
                                                            il21_assay="current_elisa"))
    assert 0.9 <= current["calibration_slope"] <= 1.1
    assert abs(current["calibration_intercept"]) < 0.1
    assert current["auroc"] == pytest.approx(legacy["auroc"], abs=0.005)


def test_reading_the_current_kit_as_legacy_would_break_calibration(simulator, legacy_model):
    """The check above can fail: without per-assay normalisation, the ten-fold shift hides IL-21 risk."""
    cohort = simulate_cohort(simulator, "care-ms1", 40_000, 32, il21_assay="current_elisa")
    mislabelled = cohort.assign(il21_assay=cohort["il21_assay"].where(cohort["il21_assay"].isna(), "legacy_elisa"))
    wrong = thyroid_metrics(legacy_model, mislabelled)
    assert wrong["calibration_intercept"] > 0.2 or wrong["calibration_slope"] > 1.2
