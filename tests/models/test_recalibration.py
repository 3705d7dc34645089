"""Recalibration: the baseline re-estimated with the patient effects fixed; the slope; one-arm files; storage."""

import numpy as np
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from features.validation import encode
from models.persistence import load_risk_model, save_risk_model
from models.recalibration import RecalibratedSpread, ScaledRelativeHazard, recalibrated_model, stratified_slope
from models.survival import TREATMENT_BY_CODE
from models.validation import observed_risk


@pytest.fixture(scope="module")
def model(mlflow_store):
    """The test store's cox-xgboost version (a proportional-hazards model; the mixture-cure family's
    recalibration is tested in test_cure.py): trained on CARE-MS I and the extension, with its intervals."""
    from models.registry import load_model

    version = next(r.model_version for r in mlflow_store["results"] if r.family == "cox-xgboost")
    risk_model = load_model(version=version).risk_model
    assert risk_model.spreads
    return risk_model


@pytest.fixture(scope="module")
def local(make_cohort):
    return make_cohort("registry", 4000, 73)


def outcomes(frame):
    return {o: (frame[f"{o}_event"].to_numpy(), frame[f"{o}_time_months"].to_numpy()) for o in ("thyroid", "itp")}


def test_the_slope_is_the_partial_likelihoods_on_one_stratum_and_shared_by_strata(local):
    rng = np.random.default_rng(0)
    f = rng.normal(size=len(local))
    event, time = local["thyroid_event"].to_numpy(), local["thyroid_time_months"].to_numpy()
    expected = CoxPHSurvivalAnalysis(alpha=0, ties="breslow").fit(f[:, None], Surv.from_arrays(event == 1, time)).coef_
    assert stratified_slope(f, event, time, np.zeros(len(f), dtype=int)) == pytest.approx(expected[0], abs=1e-6)
    # the same patients twice, in two strata: the same likelihood, twice over, and the same slope
    doubled = stratified_slope(np.r_[f, f], np.r_[event, event], np.r_[time, time], np.r_[np.zeros(len(f)),
                                                                                         np.ones(len(f))].astype(int))
    assert doubled == pytest.approx(expected[0], abs=1e-6)


def test_the_baseline_alone_moves_the_base_value_not_the_contributions(model, local):
    updated, done = recalibrated_model(model, encode(local), outcomes(local), "baseline")
    assert all(d.slope == 1.0 for d in done.values())
    matrix = encode(local.head(300))
    before, after = model.explain(matrix, (12, 36, 60)), updated.explain(matrix, (12, 36, 60))
    for outcome in ("thyroid", "itp"):
        np.testing.assert_array_equal(before[outcome].shap, after[outcome].shap)
        assert not np.allclose(before[outcome].base, after[outcome].base)
        for k in range(3):
            total = after[outcome].base[k] + after[outcome].shap_at(k).sum(axis=1)
            np.testing.assert_allclose(total, np.log(-np.log1p(-after[outcome].risk[:, k])), atol=1e-9)


def test_the_recalibrated_mean_risk_is_the_local_kaplan_meier_risk_per_arm(model, local):
    updated, _ = recalibrated_model(model, encode(local), outcomes(local), "baseline")
    risks = updated.risks(encode(local), (24, 48))
    for outcome in ("thyroid", "itp"):
        for arm in TREATMENT_BY_CODE:
            members = (local["treatment"] == arm).to_numpy()
            time, event = local[f"{outcome}_time_months"].to_numpy(), local[f"{outcome}_event"].to_numpy()
            for k, h in enumerate((24, 48)):
                km = observed_risk(time[members], event[members], h).risk
                # Breslow's baseline matches the arm's observed risk in the large (to within a few percent of it)
                assert risks[outcome][members, k].mean() == pytest.approx(km, rel=0.08, abs=2e-4)
    # the local follow-up (96 months on both arms) now covers every horizon: nothing is extrapolated
    assert updated.follow_up_months() == {"interferon_beta_1a": pytest.approx(96.0), "alemtuzumab": pytest.approx(96.0)}


def test_a_known_slope_is_recovered(model, local):
    """Simulate local onsets from the model's own hazard with its log relative hazard doubled: slope ~2."""
    rng = np.random.default_rng(5)
    prepared = model.prepare(encode(local))
    survival = model.outcomes["thyroid"]
    f = survival.log_relative_hazard(prepared)
    strata = prepared[:, -1].astype(int)
    hazard = np.diff(survival.baseline_.cumulative[:, :73], axis=1)[strata] * np.exp(2 * f)[:, None]
    onsets = rng.random((len(f), 72)) < -np.expm1(-hazard)  # an onset in month m, given none before
    event = onsets.any(axis=1).astype(int)
    time = np.where(event == 1, np.argmax(onsets, axis=1) + 1.0, 72.0)
    frame = {"thyroid": (event, time), "itp": outcomes(local)["itp"]}
    _, done = recalibrated_model(model, encode(local), frame, "baseline+slope")
    assert done["thyroid"].slope == pytest.approx(2.0, rel=0.15)


def test_a_file_of_one_arm_keeps_the_models_baseline_for_the_other(model, local):
    alemtuzumab = local[local["treatment"] == "alemtuzumab"].reset_index(drop=True)
    updated, done = recalibrated_model(model, encode(alemtuzumab), outcomes(alemtuzumab), "baseline")
    interferon = TREATMENT_BY_CODE.index("interferon_beta_1a")
    for outcome in ("thyroid", "itp"):
        np.testing.assert_array_equal(updated.outcomes[outcome].baseline_.cumulative[interferon],
                                      model.outcomes[outcome].baseline_.cumulative[interferon])
    assert done["thyroid"].follow_up_months[interferon] == 0.0


def test_a_recalibrated_model_is_stored_and_read_back_exactly(model, local, tmp_path):
    updated, _ = recalibrated_model(model, encode(local), outcomes(local), "baseline+slope")
    assert isinstance(updated.outcomes["thyroid"].estimator_, ScaledRelativeHazard)
    assert isinstance(updated.spreads["thyroid"], RecalibratedSpread)
    again = load_risk_model(save_risk_model(updated, tmp_path / "model"))
    matrix = encode(local.head(200))
    for outcome in ("thyroid", "itp"):
        np.testing.assert_array_equal(again.risks(matrix, (24, 48))[outcome], updated.risks(matrix, (24, 48))[outcome])
        np.testing.assert_array_equal(again.intervals(matrix, (24, 48))[outcome][0],
                                      updated.intervals(matrix, (24, 48))[outcome][0])
    # the local baseline's spread adds to the model's own (scaled by the slope)
    prepared = model.prepare(matrix)
    spread = updated.spreads["thyroid"]
    added = spread.log_sd(prepared, (24,)) ** 2 - (spread.slope * model.spreads["thyroid"].log_sd(prepared, (24,))) ** 2
    assert (added > 0).all()
    lo, hi = updated.intervals(matrix, (24,))["thyroid"]
    risk = updated.risks(matrix, (24,))["thyroid"]
    assert ((lo <= risk) & (risk <= hi)).all()
