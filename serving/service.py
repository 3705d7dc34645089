"""The REST endpoint: a thin BentoML service around the champion model.

The champion is resolved once, at start-up, from the ``@champion`` alias to a
fixed registered version; every response names that version. Requests are
validated by the pydantic model derived from :mod:`features.schema`, then by the
rules every front door shares (:func:`features.validation.validate_records`), and
scored by the same model call as batch files (:meth:`models.scoring.RiskModel.explain`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Annotated, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.schema import FEATURE_NAMES, endpoint_parts, patient_model
from features.validation import ValidatedBatch, validate_records
from models.registry import CHAMPION, MODEL_NAME, load_model
from models.scoring import OutcomeScores
from serving.bento import pin_model_from_bento_args
from serving.middleware import (
    LimitBodySize,
    LimitPatients,
    ModelVersionHeader,
    RejectAmbiguousJson,
    RequireToken,
    api_token,
    body_limit,
)
from serving.model_info import MODEL_INFO_APP, ModelInfo, describe_model
from serving.startup import load_or_stop

Patient = patient_model()
MAX_PATIENTS = 1000
# Largest request body in bytes (env AUTORISK_MAX_BODY_BYTES overrides): MAX_PATIENTS patients of
# JSON take about a third of it.
MAX_BODY_BYTES = 1 << 20
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


def to_response(identity: ModelIdentity, batch: ValidatedBatch, scores: dict[str, OutcomeScores]) -> PredictResponse:
    """Nest the scores of a validated batch into the REST response.

    The values were checked where they were computed (risks in [0, 1], finite log-odds), so
    the response is assembled without validating it again: per-request cost matters here.
    """
    horizons = {endpoint: endpoint_parts(endpoint)[1] for endpoint in scores}
    columns = {endpoint: (s.risk.tolist(), s.base.tolist(), s.shap.tolist()) for endpoint, s in scores.items()}
    predictions = []
    for i, patient_id in enumerate(batch.patient_ids.tolist()):
        outcomes = {}
        for endpoint, (risk, base, shap) in columns.items():
            outcomes[endpoint] = OutcomeRisk.model_construct(
                risk=risk[i], horizon_months=horizons[endpoint], scale="log-odds",
                base_value=base[i], shap=dict(zip(FEATURE_NAMES, shap[i])))
        warnings = batch.warnings[i]
        predictions.append(Prediction.model_construct(
            patient_id=patient_id, outcomes=outcomes, warnings=warnings.split("; ") if warnings else []))
    return PredictResponse.model_construct(model=identity, predictions=predictions)


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


# One single-threaded worker process per core: requests run in parallel across processes, and a
# one-patient request pays no thread start-up inside the model call (see RiskModel.use_threads).
WORKERS = int(os.environ.get("AUTORISK_WORKERS", "0")) or os.cpu_count() or 1


@bentoml.service(traffic={"timeout": 30}, workers=WORKERS)
class RiskService:
    """Risk of each autoimmune outcome after alemtuzumab, with SHAP. Research use on synthetic data only."""

    def __init__(self) -> None:
        import mlflow

        from pipelines.tracking import configure_tracking

        for name in BENTOML_REQUEST_LOGGERS:
            logging.getLogger(name).addFilter(WithholdInputValues())
        configure_tracking()
        self.model = load_or_stop(lambda: load_model(
            os.environ.get("AUTORISK_MODEL_NAME", MODEL_NAME),
            alias=os.environ.get("AUTORISK_MODEL_ALIAS", CHAMPION),
            version=os.environ.get("AUTORISK_MODEL_VERSION") or None,
        ), mlflow.get_tracking_uri)
        self.model.risk_model.use_threads(1)
        self.identity = ModelIdentity(name=self.model.name, version=self.model.version,
                                      run_id=self.model.run_id)
        logger.info("loaded %s version %s from %s", self.model.name, self.model.version,
                    mlflow.get_tracking_uri())
        # GET /model: read from the version's run once, not per request.
        self.info = describe_model(self.model.name, self.model.version, self.model.run_id,
                                   self.model.risk_model.outcomes)

    @MODEL_INFO_APP.get("/model", response_model=ModelInfo, tags=["Service APIs"])
    async def describe(self) -> ModelInfo:
        """The served model: version, training data digests, benchmark metrics and the input features."""
        return self.info

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    def predict(self, patients: list[Patient]) -> PredictResponse:  # type: ignore[valid-type]
        """Risk and SHAP values per patient and outcome."""
        started = time.perf_counter()
        batch = validate_records([p.model_dump() for p in patients])
        if len(batch.rejects):
            reasons = "; ".join(f"patients[{r.row}]: {r.reason}" for r in batch.rejects.itertuples())
            raise bentoml.exceptions.InvalidArgument(reasons)
        response = to_response(self.identity, batch, self.model.risk_model.explain(batch.matrix))
        logger.info("scored %d patients with version %s in %.1f ms", len(batch.rows), self.model.version,
                    1000 * (time.perf_counter() - started))
        return response


# Outermost first: the version header on every answer; the token before anything reads the body,
# the size before anything parses it.
# Both settings are read here, at import, so that a bad value stops the server from starting.
RiskService.add_asgi_middleware(ModelVersionHeader)
RiskService.add_asgi_middleware(RequireToken, token=api_token())
RiskService.add_asgi_middleware(LimitBodySize, max_bytes=body_limit(MAX_BODY_BYTES))
RiskService.add_asgi_middleware(JsonBodiesOnly)
RiskService.add_asgi_middleware(RejectAmbiguousJson)
RiskService.add_asgi_middleware(LimitPatients, path="/predict", max_patients=MAX_PATIENTS)
# BentoML APIs answer POST only; GET /model is a FastAPI route (RiskService.describe) mounted at the root.
bentoml.asgi_app(MODEL_INFO_APP, path="/")(RiskService)
# A built Bento names the model version it serves (see `autorisk build`); from source, nothing changes.
pin_model_from_bento_args()
