"""The MLflow pyfunc model: validation, risks and SHAP travel together.

Logged as a model from code (``models/mlflow_model.py``) with the fitted model as plain files
(:mod:`models.persistence`), not as a pickled object: a registered version loads wherever
autorisk is installed.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from features.schema import DEFAULT_HORIZONS_MONTHS
from features.validation import validate_frame
from models.persistence import load_risk_model
from models.scoring import RiskModel, ScoringOptions, score_batch

# The file MLflow runs to build the model when a version loads, and the artifact with its files.
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
RISK_MODEL_ARTIFACT = "risk_model"


def options_from_params(params: dict | None) -> ScoringOptions:
    """:class:`ScoringOptions` from the pyfunc's ``params`` (``horizons_months``, ``contrast``)."""
    params = params or {}
    horizons = params.get("horizons_months")
    return ScoringOptions(horizons=tuple(DEFAULT_HORIZONS_MONTHS if horizons is None else horizons),
                          contrast=bool(params.get("contrast", False)))


class AutoimmunityRiskModel(mlflow.pyfunc.PythonModel):
    """Risk of each autoimmune outcome at the requested horizons, with SHAP values, for a frame of patients.

    ``predict`` validates the input exactly as the batch and REST front doors do, and raises
    ``ValueError`` naming every rejected row and its reason. ``params``: ``horizons_months``
    (whole months 1–72, default 24 and 48) and ``contrast`` (risks under both treatments).
    """

    def __init__(self, risk_model: RiskModel | None = None) -> None:
        self.risk_model = risk_model

    def load_context(self, context) -> None:
        """Read the fitted model from the version's artifact (:func:`models.persistence.load_risk_model`)."""
        self.risk_model = load_risk_model(Path(context.artifacts[RISK_MODEL_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002
        options = options_from_params(params)
        batch = validate_frame(model_input)
        if len(batch.rejects):
            reasons = "; ".join(f"row {r.row}: {r.reason}" for r in batch.rejects.itertuples())
            raise ValueError(f"{len(batch.rejects)} invalid patients: {reasons}")
        return score_batch(self.risk_model, batch, options)
