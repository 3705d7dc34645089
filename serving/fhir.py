"""FHIR R4 at ``/fhir``: ``POST /fhir/RiskAssessment/$assess`` and the conformance resources that describe it.

A request (a Bundle or Parameters of a Patient, Observations, a Condition and a MedicationRequest) is
read into the patient record of ``POST /predict`` (:mod:`serving.fhir_input`), checked by the same
request model and rules as ``/predict`` and scored by the same function
(:func:`serving.service.to_response`, handed in as :attr:`Answering.respond`), then written as a Bundle
of RiskAssessments (:mod:`serving.fhir_output`). A request that cannot be assessed gets a 4xx with
an OperationOutcome naming each element; so do the service's own refusals (token, size, JSON) on
``/fhir`` paths (:class:`FhirErrors`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.responses import Response

from features.schema import DEFAULT_HORIZONS_MONTHS, FEATURES_BY_NAME
from features.validation import validate_records
from models.scoring import ScoringOptions
from serving import fhir_terms as terms
from serving.fhir_input import FhirInputError, Inputs, Issue, read_request, rejected
from serving.fhir_output import assessment_bundle, operation_outcome
from serving.schemas import Patient

FHIR_PREFIX = "/fhir/"
MEDIA_TYPE = f"{terms.FHIR_MEDIA_TYPE}; fhirVersion=4.0"


@dataclass(frozen=True)
class Answering:
    """What FHIR and CDS Hooks answer with: the served model, its description and ``/predict``'s answer function.

    Attributes
    ----------
    identity : serving.schemas.ModelIdentity
    model : models.scoring.RiskModel
    info : serving.model_info.ModelInfo
    respond : callable
        :func:`serving.service.to_response`: ``(identity, batch, model, options) -> dict``.
    """

    identity: object
    model: object
    info: object
    respond: Callable

    def answer(self, inputs: Inputs, horizons=DEFAULT_HORIZONS_MONTHS) -> dict:
        """``/predict``'s answer for the patient of ``inputs``, with the contrast; or :class:`FhirInputError`.

        The record passes the REST request model first, as a ``/predict`` body does, then the shared rules.
        """
        try:
            options = ScoringOptions(horizons=tuple(horizons), contrast=True)
        except ValueError as error:
            raise FhirInputError([Issue("Parameters.parameter", str(error), "value")]) from None
        try:
            record = Patient.model_validate(inputs.record).model_dump()
        except ValidationError as error:
            reasons = []
            for e in error.errors(include_url=False, include_input=False):
                message = e["msg"].removeprefix("Value error, ")
                field = e["loc"][0] if e["loc"] else message.partition(":")[0]
                reasons.append(f"{field}: {message.removeprefix(f'{field}: ')}")
            raise rejected(reasons, inputs) from None
        batch = validate_records([record])
        if len(batch.rejects):
            raise rejected(list(batch.rejects["reason"]), inputs)
        return self.respond(self.identity, batch, self.model, options)


def fhir_response(resource: dict, status: int = 200) -> Response:
    import pydantic_core

    return Response(pydantic_core.to_json(resource), status_code=status, media_type=MEDIA_TYPE)


def assess(body: bytes, answering: Answering, today: dt.date | None = None) -> Response:
    """``POST /fhir/RiskAssessment/$assess``: the Bundle of RiskAssessments, or an OperationOutcome."""
    try:
        try:
            document = json.loads(body)
        except ValueError as error:
            raise FhirInputError([Issue("body", f"not JSON: {error}", "structure")]) from None
        inputs = read_request(document, today)
        answer = answering.answer(inputs, inputs.horizons or DEFAULT_HORIZONS_MONTHS)
    except FhirInputError as error:
        return fhir_response(operation_outcome(error.issues), error.status)
    return fhir_response(assessment_bundle(answer, inputs, answering.info))


def metadata(version: str) -> Response:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        software = installed("autorisk")
    except PackageNotFoundError:  # a Bento runs the code without installing the package
        software = "unknown"
    statement = terms.capability_statement(f"{software} (model version {version})",
                                           dt.datetime.now(dt.timezone.utc).date().isoformat())
    return fhir_response(statement)


def read(kind: str, ident: str) -> Response:
    """``GET /fhir/<kind>/<id>`` for the conformance resources this server defines."""
    resources = {("CodeSystem", terms.CODE_SYSTEM_ID): terms.code_system,
                 ("OperationDefinition", "RiskAssessment-assess"): terms.operation_definition}
    build = resources.get((kind, ident))
    if build is None:
        issue = Issue(f"{kind}/{ident}", f"no {kind} {ident!r} on this server; it defines "
                      + ", ".join(f"{k}/{i}" for k, i in resources), "not-found")
        return fhir_response(operation_outcome([issue]), 404)
    return fhir_response(build())


class FhirErrors:
    """ASGI middleware: on ``/fhir`` paths, the service's own error answers (``{"error": ...}``) as OperationOutcomes.

    The token check, the body limit and the JSON checks answer before any FHIR code runs; a FHIR
    client expects an OperationOutcome whatever refused it. Other paths pass untouched.
    """

    CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 413: "too-costly",
             415: "not-supported", 422: "processing"}

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(FHIR_PREFIX):
            await self.app(scope, receive, send)
            return
        held: dict = {}

        async def rewrite(message) -> None:
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] >= 400 and content_type.startswith(b"application/json"):
                    held["start"], held["body"] = message, b""
                    return
            elif "start" in held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                await self._send_outcome(held["start"], held["body"], send)
                return
            await send(message)

        await self.app(scope, receive, rewrite)

    async def _send_outcome(self, start: dict, body: bytes, send) -> None:
        try:
            answer = json.loads(body)
            message = answer.get("error") or json.dumps(answer)
        except (ValueError, AttributeError):
            message = body.decode(errors="replace")
        path = message.partition(": ")[0] if ": " in message and " " not in message.partition(": ")[0] else "body"
        outcome = operation_outcome([Issue(path, message, self.CODES.get(start["status"], "invalid"))])
        payload = json.dumps(outcome).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(payload)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def input_codes_table() -> str:
    """Markdown: where each input is read from, with its codes (the table of ``docs/fhir.md``)."""
    short = {terms.LOINC: "LOINC", terms.SNOMED: "SNOMED CT", terms.PROJECT_SYSTEM: "autorisk"}
    codes: dict[str, list[str]] = {}
    for (system, code), (name, _) in terms.feature_codes().items():
        codes.setdefault(name, []).append(f"{short[system]} `{code}`")
    ms = "; ".join(f"{short[c.system]} `{c.code}`" for c in terms.MULTIPLE_SCLEROSIS)
    also = {
        "age_years": "or `Patient.birthDate` and the course date",
        "disease_duration_years": f"or a Condition of multiple sclerosis ({ms}; ICD-10 "
                                  f"`{terms.MULTIPLE_SCLEROSIS_ICD10}`) with its `onset[x]`",
        "il21_pg_ml": "the kit by the code, or by `Observation.method` (autorisk: the kit's code)",
    }
    rows = ["| input | read from | codes (system: code) |", "|---|---|---|",
            "| `sex` (Sex) | `Patient.gender` (female, male) | |"]
    for name, found in codes.items():
        place = "Observation" + (f", {also[name]}" if name in also else "")
        rows.append(f"| `{name}` ({FEATURES_BY_NAME[name].label}) | {place} | {'; '.join(found)} |")
    names = " or ".join(f"{t}: {', '.join(n)}" for t, n in terms.TREATMENT_NAMES.items())
    rows.append(f"| `treatment` | the `treatment` parameter (autorisk code), or a MedicationRequest's medication by "
                f"name ({names}) | autorisk `alemtuzumab`, `interferon_beta_1a` |")
    return "\n".join(rows)
