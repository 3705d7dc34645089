"""A fitted model written as plain files and read back gives the very same answers."""

import numpy as np
import pandas as pd
import pytest

from features.validation import encode
from models.persistence import FORMAT, MANIFEST, load_risk_model, save_risk_model
from pipelines.config import FamilySpec
from pipelines.steps import fit_family

FAMILIES = {
    "cox-linear": FamilySpec(estimator="cox-linear", params={"alpha": 1.0}),
    "cox-xgboost": FamilySpec(estimator="cox-xgboost", params={"n_estimators": 30, "max_depth": 2, "n_jobs": 1}),
}


@pytest.fixture(scope="module")
def cohort(make_cohort):
    return pd.concat([make_cohort("care-ms1", 3000, 51).assign(profile="care-ms1"),
                      make_cohort("extension", 1500, 52).assign(profile="extension")], ignore_index=True)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_model_read_back_answers_exactly_as_written(family, cohort, tmp_path):
    spec = FAMILIES[family]
    model = fit_family(family, spec, cohort, {"thyroid": spec.params, "itp": spec.params})
    folder = save_risk_model(model, tmp_path / "model")
    assert not list(folder.glob("*.pkl")) and (folder / MANIFEST).is_file()
    loaded = load_risk_model(folder)
    assert loaded.family == family and loaded.outcome_names == model.outcome_names
    assert loaded.follow_up_months() == model.follow_up_months()
    matrix = encode(cohort.head(400))
    horizons = (1, 24, 48, 72)
    for outcome, written in model.explain(matrix, horizons).items():
        read = loaded.explain(matrix, horizons)[outcome]
        np.testing.assert_array_equal(read.risk, written.risk)
        np.testing.assert_array_equal(read.shap, written.shap)
        np.testing.assert_array_equal(read.base, written.base)
    for outcome, by_treatment in model.contrast(matrix, horizons).items():
        for treatment, risk in by_treatment.items():
            np.testing.assert_array_equal(loaded.contrast(matrix, horizons)[outcome][treatment], risk)


def test_another_format_is_refused_naming_it(cohort, tmp_path):
    spec = FAMILIES["cox-linear"]
    folder = save_risk_model(fit_family("cox-linear", spec, cohort, {"thyroid": spec.params}), tmp_path / "m")
    manifest = folder / MANIFEST
    manifest.write_text(manifest.read_text().replace(FORMAT, "autorisk.risk-model/0"))
    with pytest.raises(ValueError, match="format 'autorisk.risk-model/0'"):
        load_risk_model(folder)
