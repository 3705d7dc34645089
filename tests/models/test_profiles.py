"""Training and scoring on every simulated profile, and transport across IL-21 assays."""

import numpy as np
import pandas as pd
import pytest

from features.simulator import simulate_cohort
from features.validation import encode, validate_frame
from models.evaluation import evaluate
from models.scoring import ScoringOptions, score_batch
from pipelines.config import FamilySpec
from pipelines.steps import fit_family

FAMILIES = {
    "cox-linear": FamilySpec(estimator="cox-linear", params={"alpha": 1.0}),
    "cox-xgboost": FamilySpec(estimator="cox-xgboost", params={"n_estimators": 60, "max_depth": 3, "n_jobs": 2}),
}
OUTCOME_PARAMS = {name: {"thyroid": spec.params, "itp": spec.params} for name, spec in FAMILIES.items()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("profile", ["camms223", "care-ms1", "care-ms2", "extension", "clinic"])
def test_training_and_scoring_work_on_every_profile(simulator, family, profile):
    cohort = simulate_cohort(simulator, profile, 6000, 21).assign(profile=profile)
    if cohort["treatment"].nunique() < 2:  # a one-arm profile: the other arm comes from CARE-MS I
        cohort = pd.concat([cohort, simulate_cohort(simulator, "care-ms1", 3000, 22).assign(profile="care-ms1")],
                           ignore_index=True)
    model = fit_family(family, FAMILIES[family], cohort, OUTCOME_PARAMS[family])
    options = ScoringOptions(horizons=(12, 24, 48))
    scored = score_batch(model, validate_frame(cohort, allow_extra=True), options)
    assert len(scored) == len(cohort)
    for outcome in ("thyroid", "itp"):
        free = scored.filter(regex=f"^shap_{outcome}__").sum(axis=1).to_numpy()
        for h in options.horizons:
            risk = scored[f"risk_{outcome}_{h}m"].to_numpy()
            assert ((risk > 0) & (risk < 1)).all()
            total = scored[f"base_{outcome}_{h}m"] + free + scored[f"shap_{outcome}_{h}m__treatment"]
            np.testing.assert_allclose(total, np.log(-np.log1p(-risk)), atol=1e-9)


def test_training_without_one_of_the_arms_fails_naming_it(simulator):
    cohort = simulate_cohort(simulator, "extension", 3000, 23).assign(profile="extension")
    with pytest.raises(ValueError, match="no patient on interferon_beta_1a"):
        fit_family("cox-linear", FAMILIES["cox-linear"], cohort, OUTCOME_PARAMS["cox-linear"])


@pytest.fixture(scope="module")
def legacy_model(simulator):
    train = simulate_cohort(simulator, "care-ms1", 40_000, 31).assign(profile="care-ms1")
    spec = FamilySpec(estimator="cox-xgboost", params={"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05,
                                                       "min_child_weight": 5.0, "n_jobs": 2})
    return fit_family("cox-xgboost", spec, train, {"thyroid": spec.params})


def thyroid_metrics(model, cohort):
    risk = model.risks(encode(cohort), (24,))["thyroid"][:, 0]
    return evaluate(cohort["thyroid_event"].to_numpy(), risk, cohort["true_risk_thyroid_24m"].to_numpy())


def test_a_kit_no_training_patient_was_measured_with_is_scored_as_not_provided(simulator, legacy_model):
    """Trained on the legacy kit only, the model cannot read the current kit: such values are scored as not
    provided, say so naming the kit, and the risks stay calibrated (the model's way with unknown IL-21)."""
    cohort = simulate_cohort(simulator, "care-ms1", 40_000, 32, il21_assay="current_elisa")
    unknown = cohort.assign(il21_pg_ml=None, il21_assay=None)
    np.testing.assert_array_equal(legacy_model.risks(encode(cohort), (24, 48))["thyroid"],
                                  legacy_model.risks(encode(unknown), (24, 48))["thyroid"])
    warnings = legacy_model.input_warnings(encode(cohort))
    measured = cohort["il21_pg_ml"].notna().to_numpy()
    assert measured.sum() > 30_000
    assert all("scored as not provided" in w and "current_elisa" in w for w in warnings[measured])
    assert (warnings[~measured] == "").all()
    current = thyroid_metrics(legacy_model, cohort)
    assert 0.85 <= current["calibration_slope"] <= 1.15
    assert abs(current["calibration_intercept"]) < 0.1


def test_reading_the_current_kit_as_legacy_would_break_calibration(simulator, legacy_model):
    """The check above can fail: without per-assay normalisation, the ten-fold shift hides IL-21 risk."""
    cohort = simulate_cohort(simulator, "care-ms1", 40_000, 32, il21_assay="current_elisa")
    mislabelled = cohort.assign(il21_assay=cohort["il21_assay"].where(cohort["il21_assay"].isna(), "legacy_elisa"))
    wrong = thyroid_metrics(legacy_model, mislabelled)
    assert wrong["calibration_intercept"] > 0.2 or wrong["calibration_slope"] > 1.2
