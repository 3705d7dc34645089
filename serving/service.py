"""The REST endpoint: a thin BentoML service around the champion model.

The champion is resolved once, at start-up, from the ``@champion`` alias to a
fixed registered version; every response names that version. Requests are
validated by the pydantic model derived from :mod:`features.schema`, then by the
rules every front door shares (:func:`features.validation.validate_records`), and
scored by the same model call as batch files (:meth:`models.scoring.RiskModel.explain`).
"""

from __future__ import annotations

import logging
import time

import bentoml
import numpy as np
import pydantic_core
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from features.schema import DEFAULT_HORIZONS_MONTHS, FEATURE_NAMES, MONITORING_YEARS, RESEARCH_NOTICE
from features.validation import ValidatedBatch, validate_records
from models.registry import load_model
from models.scoring import RiskModel, ScoringOptions, not_provided
from models.survival import TREATMENT_BY_CODE, treatment_index
from models.settings import TRAFFIC_TIMEOUT_S, SettingsError, load_settings
from models.tracking import configure_tracking
from serving import cds_hooks, fhir
from serving.bento import pin_model_from_bento_args
from serving.log_safety import WithholdInputValues, escape_server_logs
from serving.middleware import PARSED_BODY, LimitBodySize, ModelVersionHeader, RequireToken, StrictJson
from serving.model_info import MODEL_INFO_APP, ModelInfo, describe_model
from serving.schemas import MAX_PATIENTS, ModelIdentity, Patient, PredictRequest, PredictResponse
from serving.startup import load_or_stop, stop_on_bad_settings
from serving.webpage import PAGE_APP, is_public

logger = logging.getLogger("autorisk.serving")
# BentoML logs the traceback of a rejected request, and pydantic's message quotes the input values.
BENTOML_REQUEST_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.serve")
# Only these names are logged as the keys of a rejected request.
SCHEMA_NAMES = (*PredictRequest.model_fields, *Patient.model_fields)


def to_response(identity: ModelIdentity, batch: ValidatedBatch, model: RiskModel, options: ScoringOptions) -> dict:
    """Score a validated batch and nest the answers as the REST response (:class:`PredictResponse`'s shape).

    Plain dicts and lists, serialised once by :func:`json_response`: the values were checked
    where they were computed (risks in [0, 1], finite log values), and building a pydantic
    object per horizon and year of every patient cost more than the model itself.
    """
    horizons = options.horizons
    matrix = batch.matrix
    explained = model.explain(matrix, horizons)
    per_outcome = _outcome_columns(model, matrix, explained, options)
    notes = model.extrapolation_notes(matrix, horizons, options.contrast)
    said = model.input_warnings(matrix)
    treatments = np.array(TREATMENT_BY_CODE, dtype=object)[treatment_index(matrix)].tolist() if len(matrix) else []
    follow_up = model.follow_up_months()
    beyond = [any(h > months for months in follow_up.values()) for h in horizons]
    unknown = not_provided(matrix)
    feature_names = np.array(FEATURE_NAMES, dtype=object)
    peak_of = "patient" if model.timing_varies_by_patient else "treatment"
    predictions = []
    for i, patient_id in enumerate(batch.patient_ids.tolist()):
        outcomes = {outcome: _outcome_answer(columns, i, horizons, beyond, peak_of)
                    for outcome, columns in per_outcome.items()}
        warnings = "; ".join(w for w in (batch.warnings[i], said[i], notes[i]) if w)
        predictions.append({"patient_id": patient_id, "treatment": treatments[i], "outcomes": outcomes,
                            "warnings": warnings.split("; ") if warnings else [],
                            "not_provided": feature_names[unknown[i]].tolist()})
    return {"model": identity.model_dump(), "notice": RESEARCH_NOTICE, "horizons_months": list(horizons),
            "predictions": predictions}


def _outcome_columns(model: RiskModel, matrix: np.ndarray, explained: dict, options: ScoringOptions) -> dict:
    """Per outcome, every figure of the answer as Python lists (one conversion per array, not per value)."""
    horizons = options.horizons
    monitoring = model.monitoring(matrix, explained)
    contrasts = model.contrast(matrix, horizons, explained) if options.contrast else {}
    intervals = model.intervals(matrix, horizons, explained)
    per_outcome = {}
    for outcome, scores in explained.items():
        shap = [[dict(zip(FEATURE_NAMES, row)) for row in scores.shap_at(k).tolist()] for k in range(len(horizons))]
        view = monitoring[outcome]
        contrast = ({t: r.tolist() for t, r in contrasts[outcome].items()} if options.contrast else None)
        lower, upper = intervals[outcome]
        # [lower, upper] per patient and horizon; null for a model without refits (NaN is not JSON).
        bounds = np.stack([lower, upper], axis=-1).tolist() if outcome in model.spreads else None
        timing = scores.timing.tolist() if scores.timing is not None else None
        per_outcome[outcome] = (scores.risk.tolist(), scores.base.tolist(), shap, scores.extrapolated.tolist(),
                                view.risk.tolist(), view.onset_in_year.tolist(), view.extrapolated.tolist(),
                                view.peak_year.tolist(), contrast, bounds, scores.reference_risk().tolist(), timing,
                                scores.scale)
    return per_outcome


_YEARS = range(1, MONITORING_YEARS + 1)


def _outcome_answer(columns: tuple, i: int, horizons: tuple[int, ...], beyond: list[bool], peak_of: str) -> dict:
    """Patient ``i``'s answer for one outcome, from that outcome's :func:`_outcome_columns`."""
    (risk, base, shap, extrapolated, by_year, onset, year_beyond, peak, contrast, bounds, reference, timing,
     scale) = columns
    answer = {
        "risks": [{"horizon_months": h, "risk": risk[i][k],
                   "risk_interval": bounds[i][k] if bounds is not None else None,
                   "extrapolated": extrapolated[i][k],
                   "scale": scale, "base_value": base[k], "reference_risk": reference[i][k],
                   **({"timing_share": timing[i][k]} if timing is not None else {}),
                   "shap": shap[k][i]}
                  for k, h in enumerate(horizons)],
        "by_year": [{"year": y, "risk": r, "onset_in_year": o, "extrapolated": e}
                    for y, r, o, e in zip(_YEARS, by_year[i], onset[i], year_beyond[i])],
        "peak_hazard_year": peak[i],
        "peak_hazard_year_of": peak_of,
        "contrast": None,
    }
    if contrast is not None:
        alemtuzumab, interferon = contrast["alemtuzumab"][i], contrast["interferon_beta_1a"][i]
        answer["contrast"] = [{"horizon_months": h, "risk_if_alemtuzumab": alemtuzumab[k],
                               "risk_if_interferon_beta_1a": interferon[k],
                               "excess": alemtuzumab[k] - interferon[k], "extrapolated": beyond[k]}
                              for k, h in enumerate(horizons)]
    return answer


def json_response(payload: dict) -> Response:
    """``payload`` as a JSON response, serialised by pydantic's Rust encoder."""
    return Response(pydantic_core.to_json(payload), media_type="application/json")


class PredictRequestIODescriptor(PredictRequest, bentoml.IODescriptor):
    """The body of ``POST /predict`` as BentoML's descriptor of :class:`PredictRequest` (under the name
    BentoML gives it, so the OpenAPI document and the error answers read the same), validated from the
    document :class:`serving.middleware.StrictJson` parsed: each body is parsed once, not once there and
    again here. A body the middleware did not parse (not a JSON object) is parsed here, for its error."""

    @classmethod
    async def from_http_request(cls, request: Request, serde) -> PredictRequestIODescriptor:
        document = request.scope.get(PARSED_BODY)
        if document is None:
            return await super().from_http_request(request, serde)
        return cls.model_validate(document)


# FHIR clients send their own JSON media type (serving/fhir.py).
JSON_MEDIA_TYPES = (b"application/json", b"application/fhir+json")


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
            if content_type.split(b";")[0].strip().lower() not in JSON_MEDIA_TYPES:
                from starlette.responses import JSONResponse

                response = JSONResponse(
                    {"error": "send the request body as JSON, with content-type: application/json"},
                    status_code=415,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# A built Bento names the model version it serves (see `autorisk build`); from source, nothing changes.
pin_model_from_bento_args()
# Read once, at import, so that a bad value stops the server from starting with one line and exit 2.
try:
    SETTINGS = load_settings()
except SettingsError as error:
    stop_on_bad_settings(error)


# One single-threaded worker process per core by default: requests run in parallel across processes,
# and a one-patient request pays no thread start-up inside the model call (see RiskModel.use_threads).
@bentoml.service(traffic={"timeout": TRAFFIC_TIMEOUT_S}, workers=SETTINGS.workers)
class RiskService:
    """Risk of each autoimmune outcome after alemtuzumab, with SHAP. Research use on synthetic data only."""

    def __init__(self) -> None:
        import mlflow

        for name in BENTOML_REQUEST_LOGGERS:
            logging.getLogger(name).addFilter(WithholdInputValues(SCHEMA_NAMES))
        escape_server_logs()  # the access log's path and every other line: no client text raw
        configure_tracking()
        def load():
            model = load_model(SETTINGS.model_name, alias=SETTINGS.model_alias, version=SETTINGS.model_version)
            # GET /model: read from the version's run once, not per request; a store that fails
            # here stops the server like a model that cannot load.
            return model, describe_model(model.name, model.version, model.run_id, model.risk_model)

        self.model, self.info = load_or_stop(load, mlflow.get_tracking_uri)
        self.model.risk_model.use_threads(1)
        self.identity = ModelIdentity(name=self.model.name, version=self.model.version,
                                      run_id=self.model.run_id)
        self.answering = fhir.Answering(self.identity, self.model.risk_model, self.info, to_response)
        self.fhir_servers = SETTINGS.fhir_servers
        logger.info("loaded %s version %s from %s", self.model.name, self.model.version,
                    mlflow.get_tracking_uri())

    @MODEL_INFO_APP.get("/model", response_model=ModelInfo, tags=["Service APIs"])
    async def describe(self) -> ModelInfo:
        """The served model: version, training data digests, benchmark metrics and the input features."""
        return self.info

    # FHIR R4 and CDS Hooks 2.0: /predict's answer (the same to_response) in the standards clinical systems
    # speak. Computed in the event loop: one single-threaded worker per core gains nothing from a thread hop.
    @MODEL_INFO_APP.post("/fhir/RiskAssessment/$assess", tags=["FHIR"])
    async def fhir_assess(self, request: Request) -> Response:
        """A Bundle or Parameters of one patient's FHIR resources in; a Bundle of RiskAssessments out."""
        return fhir.assess(await request.body(), self.answering)

    @MODEL_INFO_APP.get("/fhir/metadata", tags=["FHIR"])
    async def fhir_metadata(self) -> Response:
        """The CapabilityStatement."""
        return fhir.metadata(self.model.version)

    @MODEL_INFO_APP.get("/fhir/{kind}/{ident}", tags=["FHIR"])
    async def fhir_read(self, kind: str, ident: str) -> Response:
        """The CodeSystem and OperationDefinition this server defines."""
        return fhir.read(kind, ident)

    @MODEL_INFO_APP.get("/cds-services", tags=["CDS Hooks"])
    async def cds_discovery(self) -> dict:
        """The CDS Hooks discovery document."""
        return cds_hooks.discovery()

    @MODEL_INFO_APP.post("/cds-services/{service_id}", tags=["CDS Hooks"])
    async def cds_service(self, service_id: str, request: Request) -> Response:
        """A CDS Hooks call: cards, or an OperationOutcome with a 4xx."""
        status, body = await cds_hooks.call(service_id, await request.body(), self.answering,
                                            str(request.base_url), self.fhir_servers)
        return JSONResponse(body, status_code=status)

    @bentoml.api(route="/predict", input_spec=PredictRequestIODescriptor)
    def predict(self, patients: list[Patient], horizons_months: list[int] = list(DEFAULT_HORIZONS_MONTHS),  # type: ignore[valid-type]  # noqa: B006
                contrast: bool = False) -> PredictResponse:
        """Risks at the requested horizons with SHAP values per patient and outcome, the risk by year,
        and on request the risks under both treatments."""
        started = time.perf_counter()
        options = ScoringOptions(horizons=tuple(horizons_months), contrast=contrast)
        batch = validate_records([p.model_dump() for p in patients])
        if len(batch.rejects):
            reasons = "; ".join(f"patients[{r.row}]: {r.reason}" for r in batch.rejects.itertuples())
            raise bentoml.exceptions.InvalidArgument(reasons)
        response = json_response(to_response(self.identity, batch, self.model.risk_model, options))
        logger.info("scored %d patients with version %s in %.1f ms", len(batch.rows), self.model.version,
                    1000 * (time.perf_counter() - started))
        return response


# Outermost first: the version header on every answer; the token before anything reads the body,
# the size and time before anything parses it.
RiskService.add_asgi_middleware(ModelVersionHeader, version=SETTINGS.model_version)
RiskService.add_asgi_middleware(fhir.FhirErrors)
RiskService.add_asgi_middleware(RequireToken, token=SETTINGS.api_token, public=is_public)
RiskService.add_asgi_middleware(LimitBodySize, max_bytes=SETTINGS.max_body_bytes, timeout_s=SETTINGS.body_timeout_s)
RiskService.add_asgi_middleware(JsonBodiesOnly)
RiskService.add_asgi_middleware(StrictJson, schemas={"/predict": PredictRequest}, max_patients={"/predict": MAX_PATIENTS})
# BentoML APIs answer POST only; GET /model is a FastAPI route (RiskService.describe) mounted at the root.
bentoml.asgi_app(MODEL_INFO_APP, path="/")(RiskService)
# The page at / and the docs at /docs; matched before BentoML's own index page, which loads a tracker.
bentoml.asgi_app(PAGE_APP, path="/")(RiskService)
