"""CDS Hooks 2.0: ``GET /cds-services`` and a service for ``order-select`` and for ``patient-view``.

An EHR calls ``order-select`` as a clinician selects an order: when a selected MedicationRequest is
for a treatment the model knows (alemtuzumab, or interferon beta-1a), the service answers one card
per outcome with that patient's risks under both treatments. ``patient-view`` answers the same
cards for the treatment the schema defaults to when a chart is opened. The inputs come from the
prefetch (the templates of :func:`discovery`), read like a ``$assess`` request
(:mod:`serving.fhir_input`) and scored by ``/predict``'s function (:class:`serving.fhir.Answering`).

Prefetch the client did not send is read from its ``fhirServer`` with the ``fhirAuthorization``
token, from the FHIR servers named in ``AUTORISK_FHIR_SERVERS`` only: a request must not make
this service call an address of the requester's choosing. Without the Patient, the answer is a 412
with an OperationOutcome, as the specification requires; with the Patient but without a required
input, a card says what is missing and where it is read from.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import httpx
from pydantic import ValidationError

from features.schema import CATEGORY_LABELS, FEATURES, FEATURES_BY_NAME, RESEARCH_NOTICE, TREATMENT_FEATURE
from models.explanation_figures import risk_shares
from models.settings import FHIR_SERVERS_ENV
from serving import fhir_terms as terms
from serving.fhir_input import FhirInputError, Found, Issue, fhir_path, read_resources, treatment_of
from serving.fhir_output import operation_outcome

FETCH_TIMEOUT_S = 5.0
PATIENT_TOKEN = "{{context.patientId}}"
# The indicator of a card, from the risk by the card's horizon on the treatment under consideration:
# "warning" from the first figure, "critical" from the second. The project's stated choice for a
# research tool (docs/fhir.md), not clinical guidance; an outcome not listed uses DEFAULT_THRESHOLDS.
THRESHOLDS: dict[str, tuple[float, float]] = {"thyroid": (0.20, 0.50), "itp": (0.01, 0.05)}
DEFAULT_THRESHOLDS = (0.05, 0.20)
TOP_CONTRIBUTIONS = 3
EXTENSION = "autorisk.risks"  # a card's exact numbers, in its extension member


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str


SERVICES = {s.id: s for s in (
    Service("autorisk-order-select", "order-select", "Autoimmunity risk when alemtuzumab is ordered",
            "When alemtuzumab (or interferon beta-1a) is selected: the risk of a thyroid disorder and of ITP by "
            "month under both treatments, how sure the model is and why. Research tool on synthetic data; not for "
            "clinical decisions."),
    Service("autorisk-patient-view", "patient-view", "Autoimmunity risk after alemtuzumab",
            "When a chart is opened: the same risks, for counselling before treatment. Research tool on synthetic "
            "data; not for clinical decisions."),
)}


def prefetch_templates() -> dict[str, str]:
    """The Patient, the Observations of every input's codes and the conditions of multiple sclerosis."""
    observations = ",".join(f"{system}|{code}" for system, code in terms.feature_codes())
    conditions = ",".join(f"{c.system}|{c.code}" for c in terms.MULTIPLE_SCLEROSIS)
    return {"patient": f"Patient/{PATIENT_TOKEN}",
            "observations": f"Observation?patient={PATIENT_TOKEN}&code={observations}",
            "conditions": f"Condition?patient={PATIENT_TOKEN}&code={conditions}"}


def discovery() -> dict:
    """The discovery document of ``GET /cds-services``."""
    templates = prefetch_templates()
    return {"services": [{"hook": s.hook, "id": s.id, "title": s.title, "description": s.description,
                          "prefetch": templates,
                          "usageRequirements": "Prefetch, or fhirServer with fhirAuthorization from a FHIR server "
                                               f"named in {FHIR_SERVERS_ENV}."} for s in SERVICES.values()]}


class HookError(Exception):
    """A request the service cannot answer: an HTTP status and an OperationOutcome."""

    def __init__(self, status: int, issues: list[Issue]) -> None:
        super().__init__("; ".join(i.message for i in issues))
        self.status, self.issues = status, issues

    def outcome(self) -> dict:
        return operation_outcome(self.issues)


async def fetch(request: dict, relative: str, allowed: tuple[str, ...]) -> tuple[object | None, str | None]:
    """One prefetch template, read from the request's ``fhirServer``: ``(resource, None)`` or ``(None, why not)``."""
    server = str(request.get("fhirServer") or "").rstrip("/")
    if not server:
        return None, "no fhirServer in the request"
    if server not in allowed:
        return None, f"the fhirServer {server} is not among the FHIR servers this service reads ({FHIR_SERVERS_ENV})"
    headers = {"Accept": terms.FHIR_MEDIA_TYPE}
    token = (request.get("fhirAuthorization") or {}).get("access_token")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client:
            response = await client.get(f"{server}/{relative}", headers=headers)
    except httpx.HTTPError as error:
        return None, f"the FHIR server could not be read ({type(error).__name__})"
    if response.status_code != 200:
        return None, f"the FHIR server answered {response.status_code}"
    try:
        return response.json(), None
    except ValueError:
        return None, "the FHIR server's answer is not JSON"


def _check(resource: object, where: str) -> None:
    """Refuse a resource that ``fhir.resources`` (R4B) does not accept, naming its elements."""
    from fhir.resources.R4B import get_fhir_model_class

    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    try:
        model = get_fhir_model_class(str(kind))
    except ValueError:
        raise HookError(400, [Issue(where, f"expected a FHIR resource, got resourceType {kind!r}", "structure")]) from None
    try:
        model.model_validate(resource)
    except ValidationError as error:
        raise HookError(400, [Issue(fhir_path(e["loc"], where), e["msg"].removeprefix("Value error, "), "structure")
                              for e in error.errors(include_url=False)[:10]]) from None


def _resources(value: object, where: str) -> list[Found]:
    """A prefetched resource, or the entries of a searchset Bundle, each checked by ``fhir.resources``."""
    if value is None:
        return []
    _check(value, where)
    if value.get("resourceType") != "Bundle":
        return [Found(value, where)]
    return [Found(e["resource"], f"{where}.entry[{i}].resource", e.get("fullUrl"))
            for i, e in enumerate(value.get("entry") or [])
            if "resource" in e and (e.get("search") or {}).get("mode") != "outcome"]


async def gather(request: dict, patient_id: str, allowed: tuple[str, ...]) -> tuple[list[Found], dict[str, str]]:
    """Every prefetched (or fetched) resource, and for each template that could not be had, why not."""
    prefetch = request.get("prefetch") or {}
    found, missing = [], {}
    for key, template in prefetch_templates().items():
        value = prefetch.get(key)
        if value is None:
            value, why = await fetch(request, template.replace(PATIENT_TOKEN, quote(patient_id, safe="")), allowed)
            if why:
                missing[key] = why
                continue
        found += _resources(value, f"prefetch.{key}")
    if not any(f.resource.get("resourceType") == "Patient" for f in found):
        # A client that sent the Patient under a key of its own (as the specification's examples do).
        for key, value in prefetch.items():
            if isinstance(value, dict) and value.get("resourceType") == "Patient" and value.get("id") == patient_id:
                found += _resources(value, f"prefetch.{key}")
    return found, missing


def selected_treatment(context: dict) -> tuple[str | None, Found | None]:
    """The first selected draft MedicationRequest for a treatment the model knows, and its resource."""
    selections = context.get("selections") or []
    entries = (context.get("draftOrders") or {}).get("entry") or []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "MedicationRequest":
            continue
        if f"MedicationRequest/{resource.get('id')}" not in selections:
            continue
        concept = resource.get("medicationCodeableConcept") or {
            "text": (resource.get("medicationReference") or {}).get("display")}
        treatment = treatment_of(concept)
        if treatment is not None:
            return treatment, Found(resource, f"context.draftOrders.entry[{i}].resource")
    return None, None


# ---------------------------------------------------------------------------------------------- cards


def percent(risk: float) -> str:
    """As the page shows a risk: one decimal from 1%, two below, "<0.1%" below that."""
    p = 100 * risk
    return f"{p:.1f}%" if p >= 1 else f"{p:.2f}%" if p >= 0.1 else "<0.1%"


def in_words(text: str) -> str:
    """A warning with the inputs' labels and the treatments' names in place of their codes."""
    name, _, rest = text.partition(": ")
    if name in FEATURES_BY_NAME and rest:
        text = f"{FEATURES_BY_NAME[name].label}: {rest}"
    for code, words in CATEGORY_LABELS.items():
        text = text.replace(code, words)
    return text


def value_in_words(name: str, record: dict) -> str:
    feature, value = FEATURES_BY_NAME[name], record.get(name)
    if value is None:
        return "not provided"
    if feature.kind == "boolean":
        return "yes" if value else "no"
    if feature.kind == "category":
        return CATEGORY_LABELS.get(value, value)
    shown = f"{value:g} {feature.unit}".strip()
    return f"{shown}, {CATEGORY_LABELS.get(record['il21_assay'], record['il21_assay'])}" if (
        name == "il21_pg_ml" and record.get("il21_assay")) else shown


def indicator(outcome: str, risk: float) -> str:
    warning, critical = THRESHOLDS.get(outcome, DEFAULT_THRESHOLDS)
    return "critical" if risk >= critical else "warning" if risk >= warning else "info"


def page_link(base_url: str, record: dict, month: int) -> str:
    """The page with the patient's values in the fragment: filled in by the browser, never sent to a server."""
    values = {f.name: (str(record[f.name]).lower() if isinstance(record[f.name], bool) else record[f.name])
              for f in FEATURES if record.get(f.name) is not None}
    return f"{base_url.rstrip('/')}/#{urlencode({**values, 'month': month})}"


def _detail(outcome: str, scores: dict, k: int, prediction: dict, record: dict, info) -> str:
    at, contrast, treatment = scores["risks"][k], scores["contrast"][k], prediction["treatment"]
    horizon = at["horizon_months"]
    lines = []
    if at["risk_interval"] is not None and info.interval is not None:
        low, high = at["risk_interval"]
        lines.append(f"On {terms.treatment_name(treatment)}: {percent(at['risk'])} by month {horizon}, "
                     f"{info.interval.name} {percent(low)}–{percent(high)} ({info.interval.method}).")
    shares = risk_shares(at["base_value"], at["shap"], at["risk"])[:TOP_CONTRIBUTIONS]
    lines.append("Largest parts, in percentage points of the change from the reference patient's risk: " + "; ".join(
        f"{FEATURES_BY_NAME[s.name].label} {value_in_words(s.name, record)}: {100 * s.share:+.1f}" for s in shares)
        + ".")
    beyond = [t for t in terms.TREATMENT_NAMES if contrast["extrapolated"] and horizon > info.follow_up_months[t]]
    lines.append("Extrapolated: " + "; ".join(
        f"on {terms.treatment_name(t)} beyond the {info.follow_up_months[t]:g} months of follow-up in the training "
        "data" for t in beyond) + "." if beyond else "Not extrapolated: within the training data's follow-up.")
    others = [in_words(w) for w in prediction["warnings"] if not w.startswith("extrapolated:")]
    if others:
        lines.append("Warnings: " + "; ".join(others) + ".")
    if prediction["not_provided"]:
        lines.append("Not provided (scored as unknown): "
                     + ", ".join(FEATURES_BY_NAME[n].label for n in prediction["not_provided"]) + ".")
    warning, critical = THRESHOLDS.get(outcome, DEFAULT_THRESHOLDS)
    lines.append(f"Indicator: warning from {percent(warning)}, critical from {percent(critical)} by month {horizon} "
                 "on the treatment under consideration (this service's stated thresholds, not clinical guidance).")
    return "\n\n".join(lines)


def risk_cards(answer: dict, record: dict, info, base_url: str, notes: list[str]) -> list[dict]:
    """One card per outcome at the last default horizon: both treatments' risks, the indicator, the detail."""
    prediction = answer["predictions"][0]
    k = len(answer["horizons_months"]) - 1
    horizon = answer["horizons_months"][k]
    model = answer["model"]
    cards = []
    for outcome, scores in prediction["outcomes"].items():
        contrast = scores["contrast"][k]
        summary = f"{terms.outcome_name(outcome)} by {horizon} months: " + " vs ".join(
            f"{percent(contrast[f'risk_if_{t}'])} on {terms.treatment_name(t)}" for t in terms.TREATMENT_NAMES)
        detail = _detail(outcome, scores, k, prediction, record, info)
        cards.append({
            "uuid": str(uuid.uuid4()), "summary": summary[:140],
            "indicator": indicator(outcome, scores["risks"][k]["risk"]),
            "detail": "\n\n".join([detail, *notes]),
            "source": {"label": f"autorisk {model['name']} version {model['version']}: {answer['notice']}",
                       "url": f"{base_url.rstrip('/')}/",
                       "topic": {"system": terms.PROJECT_SYSTEM, "code": f"risk-{outcome}",
                                 "display": f"Risk of {terms.outcome_name(outcome).lower()}"}},
            "links": [{"label": "Open in autorisk with this patient's values", "type": "absolute",
                       "url": page_link(base_url, record, horizon)}],
            # The exact numbers behind the card, as /predict answers them (CDS Hooks' reserved extension member).
            "extension": {EXTENSION: {"horizon_months": horizon, "treatment": prediction["treatment"],
                                      "risk": scores["risks"][k]["risk"],
                                      "risk_interval": scores["risks"][k]["risk_interval"],
                                      **{key: value for key, value in contrast.items() if key.startswith("risk_if_")}}},
        })
    return cards


def missing_card(error: FhirInputError, missing: dict[str, str], base_url: str, notice: str) -> dict:
    """What cannot be assessed and why: the inputs missing, and the prefetch that could not be had."""
    lines = [f"- {issue.message}" for issue in error.issues]
    lines += [f"- prefetch `{key}`: not sent, and {why}" for key, why in missing.items()]
    return {"uuid": str(uuid.uuid4()), "indicator": "info",
            "summary": "Autoimmunity risk after alemtuzumab: cannot be assessed, inputs are missing",
            "detail": "\n".join(["The risk needs:", *lines, "",
                                 "Where each input is read from: the codes in docs/fhir.md (GET /fhir/CodeSystem/autorisk)."]),
            "source": {"label": f"autorisk: {notice}", "url": f"{base_url.rstrip('/')}/"}}


def _check_request(service: Service, request: object) -> tuple[dict, str]:
    if not isinstance(request, dict):
        raise HookError(400, [Issue("body", "expected a JSON object", "structure")])
    if request.get("hook") != service.hook:
        raise HookError(400, [Issue("hook", f"this service answers {service.hook!r}, not {request.get('hook')!r}",
                                    "not-supported")])
    context = request.get("context")
    for name, value, kind in (("hookInstance", request.get("hookInstance"), str), ("context", context, dict)):
        if not isinstance(value, kind):
            raise HookError(400, [Issue(name, f"required ({kind.__name__})", "required")])
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        raise HookError(400, [Issue("context.patientId", "required (string)", "required")])
    return context, patient_id


async def call(service_id: str, body: bytes, answering, base_url: str,
               allowed: tuple[str, ...]) -> tuple[int, dict]:
    """``POST /cds-services/<id>``: ``(status, body)``, cards or an OperationOutcome."""
    service = SERVICES.get(service_id)
    try:
        if service is None:
            raise HookError(404, [Issue("id", f"no CDS service {service_id!r}; see GET /cds-services", "not-found")])
        try:
            request = json.loads(body)
        except ValueError as error:
            raise HookError(400, [Issue("body", f"not JSON: {error}", "structure")]) from None
        context, patient_id = _check_request(service, request)
        treatment, order = (selected_treatment(context) if service.hook == "order-select"
                            else (FEATURES_BY_NAME[TREATMENT_FEATURE].default, None))
        if treatment is None:
            return 200, {"cards": []}  # nothing ordered that this model has risks for
        found, missing = await gather(request, patient_id, allowed)
        if not any(f.resource.get("resourceType") == "Patient" for f in found):
            raise HookError(412, [Issue("prefetch.patient", "the Patient was not prefetched and could not be read: "
                                        + missing.get("patient", "not found"), "processing")])
        inputs = read_resources(found + ([order] if order else []))
        inputs.record[TREATMENT_FEATURE] = treatment
        try:
            answer = answering.answer(inputs)
        except FhirInputError as error:
            return 200, {"cards": [missing_card(error, missing, base_url, RESEARCH_NOTICE)]}
    except HookError as error:
        return error.status, error.outcome()
    except FhirInputError as error:
        return error.status, operation_outcome(error.issues)
    notes = [f"Prefetch `{key}` was not sent and {why}: its inputs count as not provided."
             for key, why in missing.items()]
    return 200, {"cards": risk_cards(answer, inputs.record, answering.info, base_url, notes)}
