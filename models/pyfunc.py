"""The MLflow pyfunc model: validation, risks and SHAP travel together."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from features.schema import output_columns
from features.validation import validate_frame
from models.scoring import RiskModel, score_batch


class AutoimmunityRiskModel(mlflow.pyfunc.PythonModel):
    """Risk of each autoimmune outcome with SHAP values, for a frame of patients.

    ``predict`` validates the input exactly as the batch and REST front doors do,
    and raises ``ValueError`` naming every rejected row and its reason.
    """

    def __init__(self, risk_model: RiskModel) -> None:
        self.risk_model = risk_model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002
        batch = validate_frame(model_input)
        if len(batch.rejects):
            reasons = "; ".join(f"row {r.row}: {r.reason}" for r in batch.rejects.itertuples())
            raise ValueError(f"{len(batch.rejects)} invalid patients: {reasons}")
        scores = score_batch(self.risk_model, batch)
        return scores[output_columns(self.risk_model.outcomes)]
