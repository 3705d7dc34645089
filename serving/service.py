"""The REST endpoint: a thin BentoML service around the champion model.

The champion is resolved once, at start-up, from the ``@champion`` alias to a
fixed registered version; every response names that version. Requests are
validated by the pydantic model derived from :mod:`features.schema` and then
scored by the same function as batch files (:func:`models.scoring.score_batch`).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Literal

import bentoml
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.schema import FEATURE_NAMES, ID_COLUMN, INPUT_NAMES, endpoint_parts, patient_model
from features.validation import validate_frame
from models.registry import CHAMPION, MODEL_NAME, load_model
from models.scoring import score_batch

Patient = patient_model()
MAX_PATIENTS = 1000
logger = logging.getLogger("autorisk.serving")
# BentoML logs the traceback of a rejected request, and pydantic's message quotes the input values.
BENTOML_REQUEST_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")


class WithholdInputValues(logging.Filter):
    """Replace tracebacks of rejected requests with the error locations and types, never the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            where = ", ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['type']}"
                              for e in error.errors(include_input=False, include_url=False))
            record.msg = f"{record.getMessage()}: rejected input ({where}); values withheld"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class PredictRequest(BaseModel):
    """Body of ``POST /predict``; unknown top-level fields are rejected too."""

    model_config = ConfigDict(extra="forbid")
    patients: Annotated[list[Patient], Field(min_length=1, max_length=MAX_PATIENTS)]  # type: ignore[valid-type]


class OutcomeRisk(BaseModel):
    risk: float = Field(description="Probability of onset by horizon_months after the first course.", ge=0, le=1)
    horizon_months: int = Field(description="Months after the first course the risk is for.")
    scale: Literal["log-odds"] = Field(description="Scale of base_value and shap: base_value + sum(shap) = logit(risk).")
    base_value: float = Field(description="SHAP base value, log-odds.")
    shap: dict[str, float] = Field(description="SHAP value per feature, log-odds.")


class Prediction(BaseModel):
    patient_id: str | None
    outcomes: dict[str, OutcomeRisk] = Field(description="Keyed by outcome and horizon: thyroid_24m, thyroid_48m, itp_24m, itp_48m.")
    warnings: list[str] = Field(description="Values outside the training range (scored, but less reliable).")


class ModelIdentity(BaseModel):
    name: str
    version: str
    run_id: str


class PredictResponse(BaseModel):
    model: ModelIdentity
    predictions: list[Prediction]


def to_response(identity: ModelIdentity, scores: pd.DataFrame, endpoints: tuple[str, ...]) -> PredictResponse:
    """Nest the batch-format score columns into the REST response."""
    predictions = []
    for row in scores.to_dict(orient="records"):
        predictions.append(Prediction(
            patient_id=row[ID_COLUMN],
            outcomes={
                endpoint: OutcomeRisk(
                    risk=row[f"risk_{endpoint}"],
                    horizon_months=endpoint_parts(endpoint)[1],
                    scale="log-odds",
                    base_value=row[f"base_{endpoint}"],
                    shap={f: row[f"shap_{endpoint}__{f}"] for f in FEATURE_NAMES},
                )
                for endpoint in endpoints
            },
            warnings=row["warnings"].split("; ") if row["warnings"] else [],
        ))
    return PredictResponse(model=identity, predictions=predictions)


class JsonBodiesOnly:
    """ASGI middleware: a POST whose body is not JSON gets a 415 here, before BentoML parses it.

    BentoML would try multipart and form parsers on other content types and answer a
    malformed one with a 500; a client's mistake must get a 4xx.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            content_type = dict(scope["headers"]).get(b"content-type", b"")
            if content_type.split(b";")[0].strip().lower() != b"application/json":
                from starlette.responses import JSONResponse

                response = JSONResponse(
                    {"error": "send the request body as JSON, with content-type: application/json"},
                    status_code=415,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@bentoml.service(traffic={"timeout": 30})
class RiskService:
    """Risk of each autoimmune outcome after alemtuzumab, with SHAP. Research use on synthetic data only."""

    def __init__(self) -> None:
        import mlflow

        from pipelines.tracking import configure_tracking

        for name in BENTOML_REQUEST_LOGGERS:
            logging.getLogger(name).addFilter(WithholdInputValues())
        configure_tracking()
        self.model = load_model(
            os.environ.get("AUTORISK_MODEL_NAME", MODEL_NAME),
            alias=os.environ.get("AUTORISK_MODEL_ALIAS", CHAMPION),
            version=os.environ.get("AUTORISK_MODEL_VERSION") or None,
        )
        self.identity = ModelIdentity(name=self.model.name, version=self.model.version,
                                      run_id=self.model.run_id)
        logger.info("loaded %s version %s from %s", self.model.name, self.model.version,
                    mlflow.get_tracking_uri())

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    def predict(self, patients: list[Patient]) -> PredictResponse:  # type: ignore[valid-type]
        """Risk and SHAP values per patient and outcome."""
        frame = pd.DataFrame([p.model_dump() for p in patients], columns=[ID_COLUMN, *INPUT_NAMES])
        batch = validate_frame(frame)
        if len(batch.rejects):
            reasons = "; ".join(f"patients[{r.row}]: {r.reason}" for r in batch.rejects.itertuples())
            raise bentoml.exceptions.InvalidArgument(reasons)
        scores = score_batch(self.model.risk_model, batch)
        logger.info("scored %d patients with version %s", len(scores), self.model.version)
        return to_response(self.identity, scores, self.model.risk_model.outcomes)


RiskService.add_asgi_middleware(JsonBodiesOnly)
