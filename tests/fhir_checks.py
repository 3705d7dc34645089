"""FHIR for the tests: two validators no one here wrote, a FHIR server standing in for an EHR's, and requests.

- ``fhir.resources`` (Python, its R4B models): types, cardinality and the elements each resource has.
- FHIR.js (npm ``fhir``, ``tools/fhir-validator``, installed by ``make fhir-validator``): R4's structure
  definitions with their required value sets, which ``fhir.resources`` does not check.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FHIR_JS = ROOT / "tools" / "fhir-validator"


def fhir_resources_errors(resource: dict) -> list[str]:
    """What ``fhir.resources`` (R4B) refuses in ``resource``; empty when it accepts it."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError as error:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_url=False)]
    return []


def fhir_js_verdicts(resources: list[dict]) -> list[dict]:
    """FHIR.js's verdict on each resource: ``{"valid": bool, "messages": [...]}``."""
    if not (FHIR_JS / "node_modules" / "fhir").is_dir():
        pytest.fail("FHIR.js is not installed: run `make fhir-validator` (make test does)")
    done = subprocess.run(["node", str(FHIR_JS / "validate.js")], input=json.dumps(resources), capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def assert_valid_fhir(*resources: dict) -> None:
    """Both validators accept every resource (a Bundle's entries included); the failures are listed otherwise."""
    failures = []
    for resource, verdict in zip(resources, fhir_js_verdicts(list(resources)), strict=True):
        kind = resource.get("resourceType")
        failures += [f"fhir.resources, {kind}: {e}" for e in fhir_resources_errors(resource)]
        if not verdict["valid"]:
            failures += [f"FHIR.js, {kind}: {m['location']}: {m['message']}" for m in verdict["messages"]
                         if m["severity"] == "error"]
    assert failures == [], "\n".join(failures)


# ------------------------------------------------------------------------------------------- requests

PATIENT_ID = "alemtuzumab-candidate-1"
LOINC, SNOMED, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"
PROJECT = "https://autorisk.invalid/fhir/CodeSystem/autorisk"


def observation(ident: str, coding: dict, **value) -> dict:
    return {"resourceType": "Observation", "id": ident, "status": "final", "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{PATIENT_ID}"}, "effectiveDateTime": "2024-03-01", **value}


def patient_resources() -> list[dict]:
    """The page tests' patient as an EHR holds her: 34 at the course, MS since 2.5 years, IL-21 620 pg/mL on the
    original kit, thyroid peroxidase antibodies above their reference range; the other inputs unknown."""
    return [
        {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1990-03-15"},
        {"resourceType": "Condition", "id": "ms", "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
         "code": {"coding": [{"system": SNOMED, "code": "24700007", "display": "Multiple sclerosis"}]},
         "subject": {"reference": f"Patient/{PATIENT_ID}"}, "onsetDateTime": "2021-09-15"},
        observation("il21", {"system": PROJECT, "code": "il21_pg_ml.legacy_elisa"},
                    valueQuantity={"value": 620, "unit": "pg/mL", "system": UCUM, "code": "pg/mL"}),
        observation("tpo", {"system": LOINC, "code": "8099-4"},
                    valueQuantity={"value": 120, "unit": "[IU]/mL", "system": UCUM, "code": "[IU]/mL"},
                    referenceRange=[{"high": {"value": 35, "unit": "[IU]/mL", "system": UCUM, "code": "[IU]/mL"}}]),
    ]


# The date of the first course (the MedicationRequest's authoredOn): age 34.0 and disease duration 2.5 years.
COURSE_DATE = "2024-03-15"
# The same patient as a POST /predict body gives her.
REST_PATIENT = {"patient_id": PATIENT_ID, "age_years": 34.0, "sex": "female", "disease_duration_years": 2.5,
                "il21_pg_ml": 620.0, "il21_assay": "legacy_elisa", "thyroid_antibodies": True,
                "treatment": "alemtuzumab"}


def medication_request(name: str = "alemtuzumab", status: str = "draft", ident: str = "order-1") -> dict:
    return {"resourceType": "MedicationRequest", "id": ident, "status": status, "intent": "order",
            "medicationCodeableConcept": {"text": f"{name} 12 mg/day intravenous infusion"},
            "subject": {"reference": f"Patient/{PATIENT_ID}"}, "authoredOn": COURSE_DATE}


def assess_bundle(*extra: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}", "resource": r}
                      for i, r in enumerate([*patient_resources(), medication_request(), *extra])]}


# ------------------------------------------------------------------------------------- an EHR's FHIR server


@contextmanager
def ehr_fhir_server(token: str, port: int) -> Iterator[dict]:
    """A FHIR server on 127.0.0.1 holding :func:`patient_resources` behind a bearer token, over real HTTP.

    It stands in for the EHR's server that a CDS Hooks request names; it answers reads and searches by
    patient and records each request's path and Authorization header.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[tuple[str, str | None]] = []
    held = {r["resourceType"]: [] for r in patient_resources()}
    for resource in patient_resources():
        held[resource["resourceType"]].append(resource)

    async def answer(request):
        seen.append((request.url.path + ("?" + request.url.query if request.url.query else ""),
                     request.headers.get("authorization")))
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "login"}]}, status_code=401)
        kind, ident = request.path_params["kind"], request.path_params.get("ident")
        if ident is not None:
            found = [r for r in held.get(kind, []) if r["id"] == ident]
            return JSONResponse(found[0]) if found else JSONResponse({}, status_code=404)
        entries = [{"fullUrl": f"http://127.0.0.1:{port}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                   for r in held.get(kind, [])]
        return JSONResponse({"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})

    app = Starlette(routes=[Route("/{kind}", answer), Route("/{kind}/{ident}", answer)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the stand-in FHIR server did not start")
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "seen": seen}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
