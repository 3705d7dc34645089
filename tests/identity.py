"""The explanation identity of an answer, whatever the model's family: the value ``base + sum(shap)`` must equal."""

from __future__ import annotations

import numpy as np

LOG_CUMULATIVE_HAZARD = "log cumulative hazard"


def explained_value(risk, scale: str, timing_share=None):
    """What ``base_value + sum(shap)`` is for a risk on ``scale``: ``log(-log(1 - risk))`` for the
    proportional-hazards families; the log-odds of the ever-risk for the mixture-cure family, whose risk is the
    ever-risk times the timing share within the window and ``1 - (1 - ever)^share`` beyond it."""
    risk = np.asarray(risk, dtype=float)
    if scale == LOG_CUMULATIVE_HAZARD:
        return np.log(-np.log1p(-risk))
    share = np.asarray(timing_share, dtype=float)
    ever = np.where(share <= 1.0, risk / np.maximum(share, 1e-300), -np.expm1(np.log1p(-risk) / share))
    return np.log(ever / (1 - ever))


def batch_identity(scores, outcome: str, horizon: int, scale: str):
    """``(base + sum of the SHAP columns, what it must equal)`` for one outcome and horizon of a scores frame."""
    name = f"{outcome}_{horizon}m"
    free = scores.filter(regex=f"^shap_{outcome}__").sum(axis=1).to_numpy()
    total = scores[f"base_{name}"].to_numpy() + free + scores[f"shap_{name}__treatment"].to_numpy()
    timing = scores[f"timing_{name}"].to_numpy() if f"timing_{name}" in scores else None
    return total, explained_value(scores[f"risk_{name}"].to_numpy(), scale, timing)
