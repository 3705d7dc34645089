"""CPU per request of the clinical front doors against /predict's, in process, one patient: bytes in, bytes out.

Run by ``make bench-serve`` (``benchmarks/serve.py``) in a fresh process on the champion of the store at
``MLFLOW_TRACKING_URI``: ``python benchmarks/clinical_handlers.py PATIENTS.parquet SECONDS``. Prints one JSON
line: the median CPU milliseconds of

- ``predict``: the body of ``POST /predict`` parsed by its request model, validated, scored
  (:func:`serving.service.to_response`) and encoded, as the service does;
- ``predict_contrast``: the same with ``"contrast": true``, which CDS Hooks' cards always need;
- ``cds_hooks``: an ``order-select`` call with the patient's Patient, Observations and Condition prefetched
  (:func:`serving.cds_hooks.call`): checked by ``fhir.resources``, read, scored by the same function, cards;
- ``fhir_assess``: ``POST /fhir/RiskAssessment/$assess`` with the same resources as a Bundle.

Each patient of the file is used in turn, so that no answer is a repeat of the last.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROJECT = "https://autorisk.invalid/fhir/CodeSystem/autorisk"


def resources(patient: dict, today: dt.date) -> list[dict]:
    """One patient of a cohort as an EHR would hold her: the Patient, an MS Condition with its onset, Observations."""
    born = today - dt.timedelta(days=round(patient["age_years"] * 365.25))
    onset = today - dt.timedelta(days=round(patient["disease_duration_years"] * 365.25))
    held = [{"resourceType": "Patient", "id": "p", "gender": patient["sex"], "birthDate": born.isoformat()},
            {"resourceType": "Condition", "id": "ms", "subject": {"reference": "Patient/p"},
             "code": {"coding": [{"system": "http://snomed.info/sct", "code": "24700007"}]},
             "onsetDateTime": onset.isoformat()}]
    for name, value in patient.items():
        if value is None or name in ("patient_id", "age_years", "sex", "disease_duration_years", "il21_assay",
                                     "treatment"):
            continue
        code = f"il21_pg_ml.{patient['il21_assay']}" if name == "il21_pg_ml" else name
        observation = {"resourceType": "Observation", "id": name.replace("_", "-"), "status": "final",
                       "code": {"coding": [{"system": PROJECT, "code": code}]}, "subject": {"reference": "Patient/p"}}
        if isinstance(value, bool):
            observation["valueBoolean"] = value
        else:
            observation["valueQuantity"] = {"value": value, "unit": "pg/mL"} if name == "il21_pg_ml" else {"value": value}
        held.append(observation)
    return held


def cds_body(held: list[dict]) -> bytes:
    order = {"resourceType": "MedicationRequest", "id": "o", "status": "draft", "intent": "order",
             "medicationCodeableConcept": {"text": "alemtuzumab 12 mg"}, "subject": {"reference": "Patient/p"}}
    searchset = lambda rs: {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]}  # noqa: E731
    return json.dumps({"hook": "order-select", "hookInstance": "b", "context": {
        "userId": "Practitioner/1", "patientId": "p", "selections": ["MedicationRequest/o"],
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}},
        "prefetch": {"patient": held[0], "conditions": searchset([held[1]]), "observations": searchset(held[2:])}}
    ).encode()


def per_call(calls, seconds: float) -> float:
    """Median CPU milliseconds of the calls, taken in turn, for ``seconds`` after a warm-up."""
    for call in calls[:20]:
        call()
    cpu, started, k = [], time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        before = time.process_time()
        calls[k % len(calls)]()
        cpu.append(time.process_time() - before)
        k += 1
    return 1000 * statistics.median(cpu)


def main(parquet: str, seconds: float) -> None:
    import pandas as pd
    import pydantic_core

    from features.validation import validate_records
    from models.registry import load_model
    from models.scoring import ScoringOptions
    from serving import cds_hooks, fhir
    from serving.model_info import describe_model
    from serving.schemas import ModelIdentity, PredictRequest
    from serving.service import to_response

    model = load_model()
    model.risk_model.use_threads(1)  # as in a server worker
    identity = ModelIdentity(name=model.name, version=model.version, run_id=model.run_id)
    answering = fhir.Answering(identity, model.risk_model, describe_model(model.name, model.version, model.run_id,
                                                                          model.risk_model), to_response)
    frame = pd.read_parquet(parquet).head(50)
    patients = [{k: v for k, v in p.items() if v is not None} for p in json.loads(frame.to_json(orient="records"))]
    today = dt.date.today()
    loop = asyncio.new_event_loop()

    def predict(patient, contrast):
        body = json.dumps({"patients": [patient], "contrast": contrast}).encode()

        def call():
            request = PredictRequest.model_validate_json(body)
            batch = validate_records([p.model_dump() for p in request.patients])
            options = ScoringOptions(horizons=tuple(request.horizons_months), contrast=request.contrast)
            return pydantic_core.to_json(to_response(identity, batch, model.risk_model, options))
        return call

    def cds(patient):
        body = cds_body(resources(patient, today))
        return lambda: pydantic_core.to_json(loop.run_until_complete(
            cds_hooks.call("autorisk-order-select", body, answering, "http://127.0.0.1/", ()))[1])

    def assess(patient):
        held = resources(patient, today)
        body = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in held]})
        return lambda: fhir.assess(body.encode(), answering).body

    status, answer = loop.run_until_complete(cds_hooks.call("autorisk-order-select", cds_body(resources(
        patients[0], today)), answering, "http://127.0.0.1/", ()))
    assert status == 200 and len(answer["cards"]) == len(model.risk_model.outcome_names), answer
    print(json.dumps({"predict": per_call([predict(p, False) for p in patients], seconds),
                      "predict_contrast": per_call([predict(p, True) for p in patients], seconds),
                      "cds_hooks": per_call([cds(p) for p in patients], seconds),
                      "fhir_assess": per_call([assess(p) for p in patients], seconds)}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
