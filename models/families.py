"""The model families an experiment can name, and how each outcome's model is built from its estimator.

- ``cox-linear`` and ``cox-xgboost``: one log relative hazard (linear, or boosted trees) with a Breslow
  baseline per treatment (:class:`models.survival.StratifiedCox`): proportional hazards.
- ``cure-xgboost``: a boosted ever-risk with a timing share per treatment (:class:`models.cure.MixtureCure`):
  a mixture-cure model, whose hazards are not proportional.
"""

from __future__ import annotations

from models.cure import CureXGBoost, MixtureCure
from models.estimators import LinearCoxRegression, XGBoostCoxRegression
from models.survival import StratifiedCox

FAMILIES: dict[str, type] = {
    "cox-linear": LinearCoxRegression,
    "cox-xgboost": XGBoostCoxRegression,
    "cure-xgboost": CureXGBoost,
}
# The estimators whose models are mixture-cure models rather than proportional-hazards ones.
CURE_ESTIMATORS = (CureXGBoost,)


def outcome_model(estimator: str, params: dict) -> StratifiedCox | MixtureCure:
    """An unfitted outcome model of the family ``estimator`` with the estimator's ``params``."""
    inner = FAMILIES[estimator](**params)
    return MixtureCure(estimator=inner) if isinstance(inner, CURE_ESTIMATORS) else StratifiedCox(estimator=inner)
