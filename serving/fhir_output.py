"""The answer of ``POST /predict`` for one patient, as FHIR R4: a Bundle of RiskAssessments and a Provenance.

Nothing is computed here: every number is copied from the answer of
:func:`serving.service.to_response`, so FHIR says what ``/predict`` says, to the last digit. The
interval's name and method come from the served model's description (``GET /model``), the scale of
the explanations from the answer itself.
"""

from __future__ import annotations

import datetime as dt
import html
import uuid

from features.schema import FEATURES_BY_NAME, TREATMENTS
from serving import fhir_terms as terms
from serving.fhir_input import Inputs, Issue

COMPARATOR = "interferon_beta_1a"  # relativeRisk is against it (one of features.schema.TREATMENTS)
assert COMPARATOR in TREATMENTS
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
TOP_CONTRIBUTIONS = 3


def months(value: int) -> dict:
    return {"value": value, "unit": "months", "system": terms.UCUM, "code": "mo"}


def label(name: str) -> str:
    feature = FEATURES_BY_NAME.get(name)
    return feature.label if feature is not None else name


def _interval_extension(bounds, interval) -> list[dict]:
    if bounds is None or interval is None:
        return []
    return [{"url": terms.INTERVAL_EXTENSION, "extension": [
        {"url": "low", "valueDecimal": bounds[0]}, {"url": "high", "valueDecimal": bounds[1]},
        {"url": "level", "valueDecimal": interval.level}, {"url": "name", "valueString": interval.name},
        {"url": "method", "valueString": interval.method}]}]


def _explanation_extension(at: dict, not_provided: list[str]) -> dict:
    parts = [{"url": "contribution", "extension": [
        {"url": "input", "valueCoding": {"system": terms.PROJECT_SYSTEM, "code": name, "display": label(name)}},
        {"url": "value", "valueDecimal": value},
        {"url": "provided", "valueBoolean": name not in not_provided}]} for name, value in at["shap"].items()]
    return {"url": terms.EXPLANATION_EXTENSION, "extension": [
        {"url": "scale", "valueString": at["scale"]}, {"url": "baseValue", "valueDecimal": at["base_value"]}, *parts]}


def rationale(at: dict, not_provided: list[str]) -> str:
    """The largest exact SHAP values in words, on the answer's own scale."""
    largest = sorted(at["shap"].items(), key=lambda item: -abs(item[1]))[:TOP_CONTRIBUTIONS]
    words = ", ".join(f"{label(n)}{' (not provided)' if n in not_provided else ''} {v:+.3f}" for n, v in largest)
    return (f"Exact SHAP values on the {at['scale']} scale (base value {at['base_value']:.3f}; base plus their sum "
            f"is the patient's value). Largest: {words}." + (" Extrapolated beyond the training data's follow-up "
                                                           "on the treatment." if at["extrapolated"] else ""))


def _prediction(outcome: str, at: dict, contrast: dict | None, treatment: str, not_provided: list[str],
                interval) -> dict:
    comparator = contrast[f"risk_if_{COMPARATOR}"] if contrast else None
    prediction = {
        "extension": [*_interval_extension(at["risk_interval"], interval), _explanation_extension(at, not_provided),
                      {"url": terms.EXTRAPOLATED_EXTENSION, "valueBoolean": at["extrapolated"]}],
        "outcome": {"coding": [terms.OUTCOME_CODES[outcome].coding()] if outcome in terms.OUTCOME_CODES else [],
                    "text": terms.outcome_name(outcome)},
        "probabilityDecimal": at["risk"],
        "whenRange": {"low": months(0), "high": months(at["horizon_months"])},
        "rationale": rationale(at, not_provided),
    }
    if comparator:
        prediction["relativeRisk"] = at["risk"] / comparator
    if not prediction["outcome"]["coding"]:
        del prediction["outcome"]["coding"]
    return prediction


def _narrative(outcome: str, scores: dict, treatment: str, notice: str) -> dict:
    rows = "".join(f"<li>by month {at['horizon_months']}: {100 * at['risk']:.1f}%"
                   + (" (extrapolated)" if at["extrapolated"] else "") + "</li>" for at in scores["risks"])
    text = (f"<p><b>{html.escape(terms.outcome_name(outcome))}</b> on {html.escape(terms.treatment_name(treatment))}"
            f"</p><ul>{rows}</ul><p>{html.escape(notice)}</p>")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'}


def risk_assessment(outcome: str, scores: dict, prediction: dict, answer: dict, inputs: Inputs, info,
                    device: dict, now: str) -> dict:
    """One outcome's RiskAssessment: a prediction per horizon, what it rests on and who made it."""
    treatment, not_provided = prediction["treatment"], prediction["not_provided"]
    contrast = scores.get("contrast") or [None] * len(scores["risks"])
    model = answer["model"]
    notes = [answer["notice"], *prediction["warnings"]]
    if not_provided:
        notes.append("Not provided (scored as unknown): " + ", ".join(label(n) for n in not_provided) + ".")
    return {
        "resourceType": "RiskAssessment",
        "text": _narrative(outcome, scores, treatment, answer["notice"]),
        "status": "final",
        "method": {"text": f"{model['name']} version {model['version']}"
                           + (f" ({info.family})" if info.family else "") + f", MLflow run {model['run_id']}"},
        "code": {"coding": [{"system": terms.PROJECT_SYSTEM, "code": f"risk-{outcome}",
                             "display": f"Risk of {terms.outcome_name(outcome).lower()}"}],
                 "text": f"Risk of {terms.outcome_name(outcome).lower()} on {terms.treatment_name(treatment)}"},
        "subject": inputs.subject,
        "occurrenceDateTime": now,
        "performer": device,
        "basis": inputs.basis(),
        "prediction": [_prediction(outcome, at, c, treatment, not_provided, info.interval)
                       for at, c in zip(scores["risks"], contrast)],
        "note": [{"text": text} for text in notes],
    }


def assessment_bundle(answer: dict, inputs: Inputs, info, now: dt.datetime | None = None) -> dict:
    """The ``$assess`` answer: a collection Bundle of one RiskAssessment per outcome, the model as a Device,
    and a Provenance naming the model version and the time."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="milliseconds")
    model, prediction = answer["model"], answer["predictions"][0]
    device_url = f"urn:uuid:{uuid.uuid4()}"
    who = {"reference": device_url, "display": f"{model['name']} version {model['version']}"}
    device = {"resourceType": "Device", "status": "active",
              "identifier": [{"system": f"{terms.CANONICAL_BASE}/mlflow-run", "value": model["run_id"]}],
              "deviceName": [{"name": model["name"], "type": "model-name"}],
              "type": {"text": "prediction model" + (f" ({info.family})" if info.family else "")},
              "version": [{"value": model["version"]}], "note": [{"text": answer["notice"]}]}
    entries = [(f"urn:uuid:{uuid.uuid4()}", risk_assessment(outcome, scores, prediction, answer, inputs, info, who,
                                                            stamp))
               for outcome, scores in prediction["outcomes"].items()]
    provenance = {"resourceType": "Provenance", "target": [{"reference": url} for url, _ in entries],
                  "recorded": stamp, "occurredDateTime": stamp,
                  "activity": {"text": f"risk assessment by {who['display']}"},
                  "agent": [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler",
                                                  "display": "Assembler"}]}, "who": who}],
                  "entity": [{"role": "source", "what": reference} for reference in inputs.basis()]}
    entries += [(device_url, device), (f"urn:uuid:{uuid.uuid4()}", provenance)]
    return {"resourceType": "Bundle", "type": "collection", "timestamp": stamp,
            "entry": [{"fullUrl": url, "resource": resource} for url, resource in entries]}


def operation_outcome(issues: list[Issue], severity: str = "error") -> dict:
    """An OperationOutcome with one issue per problem, each naming its element."""
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": severity, "code": issue.code, "diagnostics": issue.message, "expression": [issue.expression]}
        for issue in issues]}
