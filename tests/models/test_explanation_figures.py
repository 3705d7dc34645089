"""The explanation pictures and the arithmetic that puts SHAP values in percentage points."""

import io
import math

import numpy as np
import pytest

from features.schema import FEATURE_NAMES, RESEARCH_NOTICE
from models.explanation_figures import (
    NOT_PROVIDED,
    beeswarm_figure,
    importance_figure,
    risk_of,
    risk_shares,
    waterfall_figure,
)

SHAP = {"age_years": -0.2, "il21_pg_ml": 0.9, "thyroid_antibodies": 1.1, "edss": 0.15, "sex": 0.0}


@pytest.mark.parametrize("base", [-6.0, -3.5, -0.5, 0.8])
def test_the_shares_add_up_to_the_change_in_risk_and_keep_the_signs(base):
    risk = float(risk_of(base + sum(SHAP.values())))
    shares = risk_shares(base, SHAP, risk)
    assert sum(s.share for s in shares) == pytest.approx(risk - risk_of(base), abs=1e-15)
    assert [s.name for s in shares] == ["thyroid_antibodies", "il21_pg_ml", "age_years", "edss", "sex"]
    for share in shares:
        assert math.copysign(1, share.share) == math.copysign(1, share.value) or share.value == 0
    assert abs(shares[0].share) >= abs(shares[1].share) >= abs(shares[2].share)  # the same order on both scales


def test_with_no_change_the_shares_follow_the_slope_at_the_reference():
    shap = {"age_years": 0.1, "sex": -0.1}
    shares = risk_shares(-2.0, shap, float(risk_of(-2.0)))
    slope = math.exp(-2.0) * math.exp(-math.exp(-2.0))
    assert [s.share for s in shares] == pytest.approx([0.1 * slope, -0.1 * slope])


def test_the_risk_scale_has_no_cancellation_for_small_risks():
    assert risk_of(-30.0) == pytest.approx(math.exp(-30.0), rel=1e-12)
    assert 0 < risk_of(-40.0) < 1e-17


def svg_text(figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg")
    return buffer.getvalue()


def test_the_waterfall_names_each_input_its_value_and_its_part():
    base = -3.0
    risk = float(risk_of(base + sum(SHAP.values())))
    figure = waterfall_figure([{"title": "thyroid by month 48", "base_value": base, "shap": SHAP, "risk": risk,
                                "values": {"age_years": "34 years", "il21_pg_ml": None}, "extrapolated": True}])
    text = svg_text(figure)
    assert "Age at first course: 34 years" in text
    assert f"Serum IL-21 before treatment: {NOT_PROVIDED}" in text
    assert f"{100 * risk:.1f}%" in text and "(extrapolated)" in text
    assert RESEARCH_NOTICE in text
    bars = [p for p in figure.axes[0].patches]
    assert len(bars) == len(SHAP) + 2


def test_the_beeswarm_draws_every_patient_and_greys_the_unknown():
    rng = np.random.default_rng(0)
    shap = rng.normal(size=(300, len(FEATURE_NAMES)))
    values = rng.normal(size=(300, len(FEATURE_NAMES)))
    values[:40, FEATURE_NAMES.index("edss")] = np.nan
    figure = beeswarm_figure(shap, values, list(FEATURE_NAMES), "thyroid")
    collections = figure.axes[0].collections
    assert sum(len(c.get_offsets()) for c in collections) == shap.size
    grey = [c for c in collections if len(c.get_offsets()) == 40]
    assert grey and np.allclose(grey[0].get_facecolor()[0][:3], (0x9a / 255,) * 3)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert len(labels) == len(FEATURE_NAMES) and "EDSS at baseline" in labels


def test_the_bars_are_ordered_by_size():
    figure = importance_figure({"age_years": 0.1, "edss": 0.3, "sex": 0.02}, "thyroid")
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == ["Sex", "Age at first course", "EDSS at baseline"]  # largest on top
