"""Risk over time: Breslow baselines per treatment by hand, extrapolation, the floor, exact SHAP,
risks that never fall, bounded inputs, counterfactual treatments and the monitoring view."""

import numpy as np
import pytest

from features.outcomes import kaplan_meier_survival
from features.schema import CATEGORY_CODES, FEATURE_NAMES, MAX_HORIZON_MONTHS
from features.validation import COLUMN_INDEX, encode
from models.domain import InputDomain
from models.estimators import LinearCoxRegression, XGBoostCoxRegression
from models.scoring import RiskModel
from models.survival import (
    BASELINE_FLOOR_PER_MONTH,
    MONTHS,
    StratifiedCox,
    breslow_baselines,
    horizon_labels,
    survival_target,
)

ALEMTUZUMAB = int(CATEGORY_CODES["treatment"]["alemtuzumab"])
INTERFERON = int(CATEGORY_CODES["treatment"]["interferon_beta_1a"])
EVERY_MONTH = tuple(range(1, MAX_HORIZON_MONTHS + 1))


def test_breslow_baseline_by_hand():
    """Alemtuzumab: onsets at 2.5 and 14 months among three patients with f = 0, log 2, 0;
    interferon: one onset at 6 months among two patients with f = 0. Breslow: each onset adds
    1 / (sum of exp(f) of those still at risk)."""
    f = np.array([0.0, np.log(2.0), 0.0, 0.0, 0.0])
    time = np.array([2.5, 14.0, 20.0, 6.0, 30.0])
    event = np.array([True, True, False, True, False])
    treatment = np.array([ALEMTUZUMAB] * 3 + [INTERFERON] * 2)
    baselines = breslow_baselines(f, event, time, treatment)
    alemtuzumab = np.zeros(len(MONTHS))
    alemtuzumab[MONTHS >= 2.5] += 1 / (1 + 2 + 1)
    alemtuzumab[MONTHS >= 14] += 1 / (2 + 1)
    # Beyond the last follow-up (20 months) the last 12 months' average hazard goes on.
    slope = (alemtuzumab[20] - alemtuzumab[8]) / 12
    alemtuzumab[21:] = alemtuzumab[20] + slope * (MONTHS[21:] - 20)
    interferon = np.where(MONTHS >= 6, 1 / 2, 0.0)
    # Beyond its 30 months: no onset in months 18-30, so a flat line.
    floor = BASELINE_FLOOR_PER_MONTH * MONTHS
    np.testing.assert_allclose(baselines.cumulative[ALEMTUZUMAB], alemtuzumab + floor, atol=1e-12)
    np.testing.assert_allclose(baselines.cumulative[INTERFERON], interferon + floor, atol=1e-12)
    assert baselines.follow_up_months[ALEMTUZUMAB] == 20 and baselines.follow_up_months[INTERFERON] == 30
    extrapolated = baselines.extrapolated([20, 21, 30, 31])
    np.testing.assert_array_equal(extrapolated[ALEMTUZUMAB], [False, True, True, True])
    np.testing.assert_array_equal(extrapolated[INTERFERON], [False, False, False, True])
    assert baselines.share[ALEMTUZUMAB] == pytest.approx(0.6)


def test_a_treatment_without_onsets_gets_the_floor_not_zero():
    f = np.zeros(4)
    baselines = breslow_baselines(f, np.array([True, False, False, False]), np.array([3.0, 24.0, 24.0, 24.0]),
                                  np.array([ALEMTUZUMAB, ALEMTUZUMAB, INTERFERON, INTERFERON]))
    np.testing.assert_allclose(baselines.cumulative[INTERFERON], BASELINE_FLOOR_PER_MONTH * MONTHS)
    assert np.isfinite(baselines.log_at([1, 48])).all()


@pytest.fixture(scope="module")
def cohort(make_cohort):
    import pandas as pd

    return pd.concat([make_cohort("care-ms1", 6000, 41).assign(profile="care-ms1"),
                      make_cohort("extension", 3000, 42).assign(profile="extension")], ignore_index=True)


@pytest.fixture(scope="module", params=["cox-linear", "cox-xgboost"])
def model(request, cohort):
    estimator = LinearCoxRegression() if request.param == "cox-linear" else \
        XGBoostCoxRegression(n_estimators=60, learning_rate=0.2, n_jobs=2)
    domain = InputDomain.fit(encode(cohort))
    matrix = domain.prepare(encode(cohort))
    outcomes = {o: StratifiedCox(estimator=estimator).fit(
        matrix, survival_target(cohort[f"{o}_event"] == 1, cohort[f"{o}_time_months"])) for o in ("thyroid", "itp")}
    return RiskModel(family=request.param, outcomes=outcomes, domain=domain)


def test_shap_identity_is_exact_at_every_horizon(model, cohort):
    matrix = encode(cohort.head(500))
    for explained in model.explain(matrix, EVERY_MONTH).values():
        for k in range(len(EVERY_MONTH)):
            total = explained.base[k] + explained.shap_at(k).sum(axis=1)
            np.testing.assert_allclose(total, np.log(-np.log1p(-explained.risk[:, k])), rtol=0, atol=1e-9)


def test_only_the_treatment_contribution_changes_with_the_horizon(model, cohort):
    explained = model.explain(encode(cohort.head(200)), (12, 48))["thyroid"]
    early, late = explained.shap_at(0), explained.shap_at(1)
    others = [j for j in range(early.shape[1]) if j != FEATURE_NAMES.index("treatment")]
    np.testing.assert_array_equal(early[:, others], late[:, others])


def test_explained_risks_are_the_models_risks(model, cohort):
    matrix = encode(cohort.head(500))
    explained, direct = model.explain(matrix, (6, 24, 60)), model.risks(matrix, (6, 24, 60))
    for outcome, scores in explained.items():
        np.testing.assert_allclose(scores.risk, direct[outcome], rtol=1e-5, atol=1e-9)


def test_no_risk_falls_over_time(model, cohort):
    matrix = encode(cohort)
    for risk in model.risks(matrix, EVERY_MONTH).values():
        assert (np.diff(risk, axis=1) >= 0).all()
        assert ((risk > 0) & (risk < 1)).all()


def test_extreme_but_possible_inputs_are_scored_as_the_nearest_training_value(model, cohort):
    """EDSS 9.5, 40 relapses and IL-21 of 900,000 pg/mL give the same risks as the training range's ends."""
    import pandas as pd

    from features.validation import validate_frame

    extreme = pd.DataFrame([{"age_years": 80, "sex": "female", "disease_duration_years": 40, "edss": 9.5,
                             "relapses_prior_2y": 40, "il21_pg_ml": 900_000, "il21_assay": "legacy_elisa",
                             "smoker": "yes", "family_history_autoimmunity": "yes", "thyroid_antibodies": "yes"}])
    batch = validate_frame(extreme)
    measured = [COLUMN_INDEX[n] for n in ("age_years", "disease_duration_years", "edss", "relapses_prior_2y",
                                          "il21_pg_ml@legacy_elisa")]
    training = encode(cohort)[:, measured]
    low, high = np.full(len(COLUMN_INDEX), -np.inf), np.full(len(COLUMN_INDEX), np.inf)
    low[measured], high[measured] = np.nanmin(training, axis=0), np.nanmax(training, axis=0)
    warning = model.input_warnings(batch.matrix)[0]
    edss = COLUMN_INDEX["edss"]
    assert f"edss: 9.5 is outside the training range 0–{high[edss]:g} and is scored as {high[edss]:g}" \
        in warning
    assert "il21_pg_ml: 9e+05 is outside the training range" in warning
    bounded = batch.matrix.copy()
    bounded[:, measured] = np.clip(bounded[:, measured], low[measured], high[measured])
    for outcome, risk in model.risks(batch.matrix, (24, 48, 72)).items():
        assert ((risk > 0) & (risk < 1)).all()
        np.testing.assert_array_equal(risk, model.risks(bounded, (24, 48, 72))[outcome])


def test_counterfactual_treatment_and_contrast(model, cohort):
    matrix = encode(cohort.head(300))
    contrast = model.contrast(matrix, (24, 48))
    own = model.risks(matrix, (24, 48))
    on_alemtuzumab = matrix[:, COLUMN_INDEX["treatment"]] == ALEMTUZUMAB
    for outcome in ("thyroid", "itp"):
        np.testing.assert_allclose(contrast[outcome]["alemtuzumab"][on_alemtuzumab], own[outcome][on_alemtuzumab])
        np.testing.assert_allclose(contrast[outcome]["interferon_beta_1a"][~on_alemtuzumab],
                                   own[outcome][~on_alemtuzumab])
    # Alemtuzumab's excess thyroid risk is large in every trial; ITP on interferon is all but nil.
    assert (contrast["thyroid"]["alemtuzumab"] - contrast["thyroid"]["interferon_beta_1a"]).mean() > 0.05
    # No ITP onset on interferon in training: its baseline is the floor alone, so each patient's cumulative
    # hazard is the floor times the relative hazard, in proportion to time, and the risks under 0.01%
    # by 48 months (docs/models.md) for the average patient.
    interferon = -np.log1p(-contrast["itp"]["interferon_beta_1a"])
    np.testing.assert_allclose(interferon[:, 1] / interferon[:, 0], 48 / 24, rtol=1e-9)
    assert np.median(contrast["itp"]["interferon_beta_1a"][:, 1]) < 1e-4


def test_extrapolated_horizons_are_named(model, cohort):
    follow_up = model.follow_up_months()
    assert follow_up == {"interferon_beta_1a": pytest.approx(24.0), "alemtuzumab": pytest.approx(72.0)}
    matrix = encode(cohort.head(400))
    notes = model.extrapolation_notes(matrix, (24, 36, 48))
    on_interferon = matrix[:, COLUMN_INDEX["treatment"]] == INTERFERON
    assert all("extrapolated: risks at 36, 48 months on interferon_beta_1a" in n for n in notes[on_interferon])
    assert all(n == "" for n in notes[~on_interferon])
    # With the contrast, everyone's answer includes an interferon risk at 48 months.
    assert all("48 months on interferon_beta_1a" in n for n in model.extrapolation_notes(matrix, (48,), contrast=True))
    assert (model.extrapolation_notes(matrix, (12, 24), contrast=True) == "").all()


def test_monitoring_view_peaks_in_year_three_after_alemtuzumab(model, cohort):
    matrix = encode(cohort.head(400))
    view = model.monitoring(matrix)["thyroid"]
    on_alemtuzumab = matrix[:, COLUMN_INDEX["treatment"]] == ALEMTUZUMAB
    np.testing.assert_allclose(view.risk, model.risks(matrix, (12, 24, 36, 48, 60))["thyroid"])
    # The simulator's onsets on alemtuzumab peak in year 3 (40% of them).
    assert (view.peak_year[on_alemtuzumab] == 3).all()
    survival = 1 - view.risk
    np.testing.assert_allclose(1 - survival[:, 2] / survival[:, 1], view.onset_in_year[:, 2])
    assert view.extrapolated[~on_alemtuzumab, 2:].all() and not view.extrapolated[on_alemtuzumab].any()


def test_kaplan_meier_and_ipcw_weights_by_hand():
    """Observed times 2 and 4 among patients followed for 1, 2, 3 and 4 months: at 2, one of the
    three still followed (S = 2/3); at 4, the last one (S = 0)."""
    survival = kaplan_meier_survival(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(survival([0.5, 2.0, 3.9, 4.0]), [1.0, 2 / 3, 2 / 3, 0.0])
    labels = horizon_labels(np.array([1.0, 2.0, 3.0, 5.0]), np.array([1, 0, 1, 0]), horizon=4.0)
    np.testing.assert_array_equal(labels.y, [1, 0, 1, 0])
    # Censoring at 2 among the three still followed: G = 2/3 from then on. Onsets at 1 and 3 weigh
    # 1 / G(t-): 1 and 3/2; censored at 2: unknown; followed past 4: 1 / G(4-) = 3/2.
    np.testing.assert_allclose(labels.weight, [1.0, 0.0, 1.5, 1.5])
