"""FHIR resources in, one patient record of ``POST /predict`` out, or the elements that were wrong.

The resources are first read by ``fhir.resources`` (its R4B models): a structural mistake anywhere
(an unknown element, a decimal that is text) is refused with the element's path. Then the inputs are
read from the codes of :mod:`serving.fhir_terms`: the Patient's gender and birth date, one
Observation per input (the latest where several are given), the onset of multiple sclerosis for
the disease duration, and the treatment from a MedicationRequest or a ``treatment`` parameter.
Inputs without a resource are "not provided", as in REST.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pydantic import ValidationError

from features.schema import FEATURES_BY_NAME, ID_COLUMN, TREATMENT_FEATURE
from serving import fhir_terms as terms

READERS = ("Bundle", "Parameters")
# Statuses of a resource that withdraw it: it is skipped, as if it had not been sent.
WITHDRAWN = frozenset({"entered-in-error", "cancelled", "revoked", "stopped"})
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Issue:
    """One problem of a request: the element (a FHIRPath expression), what is wrong, the OperationOutcome code."""

    expression: str
    message: str
    code: str = "invalid"


class FhirInputError(ValueError):
    """The request cannot be assessed; ``issues`` name each element and its problem."""

    def __init__(self, issues: list[Issue], status: int = 400) -> None:
        super().__init__("; ".join(f"{i.expression}: {i.message}" for i in issues))
        self.issues = issues
        self.status = status


@dataclass
class Found:
    """A resource of the request: its JSON, where it is (FHIRPath) and how to refer to it."""

    resource: dict
    where: str
    full_url: str | None = None

    def reference(self, display: str) -> dict:
        kind, ident = self.resource["resourceType"], self.resource.get("id")
        if self.full_url:
            return {"reference": self.full_url, "display": display}
        if ident:
            return {"reference": f"{kind}/{ident}", "display": display}
        identifiers = self.resource.get("identifier") or []
        if identifiers:
            return {"identifier": {k: identifiers[0][k] for k in ("system", "value") if k in identifiers[0]},
                    "display": display}
        return {"display": display}


@dataclass
class Inputs:
    """What a request gives: the patient record, the elements each value came from, the horizons asked for."""

    record: dict
    subject: dict
    sources: dict[str, Found] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    horizons: tuple[int, ...] | None = None

    def basis(self) -> list[dict]:
        """References to the resources used (each once), labelled with the inputs they gave."""
        used: dict[int, tuple[Found, list[str]]] = {}
        for name in self.record:
            found = self.sources.get(name)
            if found is None or "resourceType" not in found.resource:  # an id, or a parameter
                continue
            used.setdefault(id(found), (found, []))[1].append(FEATURES_BY_NAME[name].label)
        return [found.reference(f"{found.resource['resourceType']}: {', '.join(labels)}")
                for found, labels in used.values()]


def fhir_path(location: tuple, root: str) -> str:
    """``("entry", 0, "resource", "valueQuantity")`` -> ``Bundle.entry[0].resource.valueQuantity``."""
    text = root
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def check_structure(document: object) -> str:
    """The resource type of a Bundle or Parameters that ``fhir.resources`` accepts; else :class:`FhirInputError`."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.parameters import Parameters

    kind = document.get("resourceType") if isinstance(document, dict) else None
    if kind not in READERS:
        raise FhirInputError([Issue("resourceType", f"expected a Bundle or Parameters resource, got {kind!r}",
                                    "structure")])
    model = Bundle if kind == "Bundle" else Parameters
    try:
        model.model_validate(document)
    except ValidationError as error:
        raise FhirInputError([Issue(fhir_path(e["loc"], kind), e["msg"].removeprefix("Value error, "), "structure")
                              for e in error.errors(include_url=False)[:10]]) from None
    return kind


def gather(document: dict, kind: str) -> tuple[list[Found], dict]:
    """The resources of a request and its other parameters, by name."""
    found, parameters = [], {}
    if kind == "Bundle":
        for i, entry in enumerate(document.get("entry") or []):
            if "resource" in entry:
                found.append(Found(entry["resource"], f"Bundle.entry[{i}].resource", entry.get("fullUrl")))
        return found, parameters
    for i, parameter in enumerate(document.get("parameter") or []):
        if "resource" in parameter:
            resource = parameter["resource"]
            if resource.get("resourceType") == "Bundle":
                inner, _ = gather(resource, "Bundle")
                found += [Found(f.resource, f"Parameters.parameter[{i}].resource.{f.where[7:]}", f.full_url)
                          for f in inner]
            else:
                found.append(Found(resource, f"Parameters.parameter[{i}].resource"))
        else:
            parameters.setdefault(parameter["name"], []).append((i, parameter))
    return found, parameters


def _codings(concept: dict | None) -> list[dict]:
    return list((concept or {}).get("coding") or [])


def _texts(concept: dict | None) -> list[str]:
    concept = concept or {}
    return [t.lower() for t in [concept.get("text"), *(c.get("display") for c in _codings(concept))] if t]


def treatment_of(concept: dict | None) -> str | None:
    """The treatment a medication's code names (by its project code or by name in its text), or None."""
    for coding in _codings(concept):
        if coding.get("system") == terms.PROJECT_SYSTEM and coding.get("code") in terms.TREATMENT_NAMES:
            return coding["code"]
    for text in _texts(concept):
        for treatment, names in terms.TREATMENT_NAMES.items():
            if any(name in text for name in names) and "peginterferon" not in text:
                return treatment
    return None


def is_multiple_sclerosis(concept: dict | None) -> bool:
    for coding in _codings(concept):
        if (coding.get("system"), coding.get("code")) in {(c.system, c.code) for c in terms.MULTIPLE_SCLEROSIS}:
            return True
        if coding.get("system") in terms.ICD10 and str(coding.get("code", "")).upper().startswith(
                terms.MULTIPLE_SCLEROSIS_ICD10):
            return True
    return any("multiple sclerosis" in text for text in _texts(concept))


def parse_date(text: str) -> dt.date:
    """A FHIR date or dateTime as a date; a partial date (``1990``, ``1990-05``) at the middle of its period."""
    if len(text) == 4:
        return dt.date(int(text), 7, 2)
    if len(text) == 7:
        return dt.date(int(text[:4]), int(text[5:7]), 15)
    return dt.date.fromisoformat(text[:10])


def years_between(start: dt.date, end: dt.date) -> float:
    return (end - start).days / DAYS_PER_YEAR


def _when(resource: dict) -> str:
    return str(resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("end")
               or resource.get("issued") or "")


class _Reader:
    """Reads one request's resources into a patient record, collecting every problem before refusing it."""

    def __init__(self, found: list[Found], parameters: dict, today: dt.date) -> None:
        self.found, self.parameters, self.today = found, parameters, today
        self.issues: list[Issue] = []
        self.record: dict = {}
        self.sources: dict[str, Found] = {}  # the resource each input came from (or should have)
        self.paths: dict[str, str] = {}  # and its element

    def of_type(self, kind: str) -> list[Found]:
        return [f for f in self.found if f.resource.get("resourceType") == kind
                and f.resource.get("status") not in WITHDRAWN]

    def give(self, name: str, value, found: Found, path: str) -> None:
        self.record[name] = value
        self.sources[name] = found
        self.paths[name] = path

    def fail(self, where: str, message: str, code: str = "invalid") -> None:
        self.issues.append(Issue(where, message, code))

    # ------------------------------------------------------------------ values

    def number(self, found: Found, name: str) -> float | None:
        resource, unit = found.resource, FEATURES_BY_NAME[name].unit
        if "valueInteger" in resource:
            return float(resource["valueInteger"])
        quantity = resource.get("valueQuantity")
        if quantity is None or quantity.get("value") is None:
            self.fail(found.where, f"{FEATURES_BY_NAME[name].label}: expected valueQuantity with a value", "required")
            return None
        factors = terms.UNITS.get(unit)
        given = quantity.get("code") or quantity.get("unit")
        if factors is None:
            return float(quantity["value"])
        if given not in factors and given != unit:
            self.fail(f"{found.where}.valueQuantity.code", f"unit {given!r} for {FEATURES_BY_NAME[name].label}: "
                      f"expected one of {', '.join(factors)} (UCUM)", "value")
            return None
        return float(quantity["value"]) * factors.get(given, 1.0)

    def boolean(self, found: Found, name: str) -> bool | None:
        resource = found.resource
        if "valueBoolean" in resource:
            return bool(resource["valueBoolean"])
        concepts = [resource.get("valueCodeableConcept")] + list(resource.get("interpretation") or [])
        codes = {c.get("code") for concept in concepts for c in _codings(concept)}
        if name == "smoker" and codes & (terms.CURRENT_SMOKER | terms.NOT_SMOKING):
            return bool(codes & terms.CURRENT_SMOKER)
        if codes & terms.YES:
            return True
        if codes & terms.NO:
            return False
        quantity, ranges = resource.get("valueQuantity") or {}, resource.get("referenceRange") or []
        high = next((r["high"]["value"] for r in ranges if (r.get("high") or {}).get("value") is not None), None)
        if quantity.get("value") is not None and high is not None:
            return float(quantity["value"]) > float(high)
        if codes & {"266927001", "UNK", "ASKU"}:
            return None  # recorded as unknown
        self.fail(found.where, f"{FEATURES_BY_NAME[name].label}: cannot tell yes from no; give valueBoolean, a "
                  "yes/no or positive/negative code, an interpretation, or a value with its reference range", "value")
        return None

    # ------------------------------------------------------------------ resources

    def observations(self) -> None:
        codes = terms.feature_codes()
        by_feature: dict[str, list[tuple[Found, str | None]]] = {}
        for found in self.of_type("Observation"):
            for coding in _codings(found.resource.get("code")):
                match = codes.get((coding.get("system"), coding.get("code")))
                if match:
                    by_feature.setdefault(match[0], []).append((found, match[1]))
                    break
        for name, matches in by_feature.items():
            matches.sort(key=lambda m: _when(m[0].resource))
            if name == "thyroid_antibodies":  # anti-TPO or anti-Tg: positive when either is
                answers = [(self.boolean(f, name), f) for f, _ in matches]
                known = [(a, f) for a, f in answers if a is not None]
                if known:
                    answer, found = max(known, key=lambda item: item[0])
                    self.give(name, answer, found, found.where)
                continue
            found, kit = matches[-1]  # the latest
            feature = FEATURES_BY_NAME[name]
            value = self.boolean(found, name) if feature.kind == "boolean" else self.number(found, name)
            if value is None:
                continue
            self.give(name, int(value) if feature.kind == "integer" and float(value).is_integer() else value,
                      found, f"{found.where}.value")
            if name == "il21_pg_ml":
                kit = kit or next((c["code"] for c in _codings(found.resource.get("method"))
                                   if c.get("system") == terms.PROJECT_SYSTEM), None)
                if kit is not None:
                    self.give("il21_assay", kit, found, f"{found.where}.method")
                else:
                    self.sources["il21_assay"], self.paths["il21_assay"] = found, f"{found.where}.method"

    def course_date(self) -> dt.date:
        for i, parameter in self.parameters.get("courseDate", []):
            return parse_date(parameter.get("valueDate") or parameter.get("valueDateTime") or "")
        for found in self.of_type("MedicationRequest"):
            if found.resource.get("authoredOn"):
                return parse_date(found.resource["authoredOn"])
        return self.today

    def patient(self) -> Found | None:
        patients = self.of_type("Patient")
        if len(patients) != 1:
            self.fail("Bundle.entry" if not self.parameters else "Parameters.parameter",
                      f"exactly one Patient is needed, found {len(patients)}", "required")
            return None
        patient = patients[0]
        gender = patient.resource.get("gender")
        if gender in FEATURES_BY_NAME["sex"].categories:
            self.give("sex", gender, patient, f"{patient.where}.gender")
        else:
            self.sources["sex"], self.paths["sex"] = patient, f"{patient.where}.gender"
        if "age_years" not in self.record and patient.resource.get("birthDate"):
            born = parse_date(patient.resource["birthDate"])
            self.give("age_years", round(years_between(born, self.course_date()), 2), patient,
                      f"{patient.where}.birthDate")
        self.sources.setdefault("age_years", patient)
        self.paths.setdefault("age_years", f"{patient.where}.birthDate")
        return patient

    def disease_duration(self) -> None:
        if "disease_duration_years" in self.record:
            return
        for found in self.of_type("Condition"):
            if not is_multiple_sclerosis(found.resource.get("code")):
                continue
            resource, course = found.resource, self.course_date()
            onset = resource.get("onsetDateTime") or (resource.get("onsetPeriod") or {}).get("start")
            if onset:
                self.give("disease_duration_years", round(max(years_between(parse_date(onset), course), 0.0), 2),
                          found, f"{found.where}.onsetDateTime")
                return
            age = (resource.get("onsetAge") or {}).get("value")
            if age is not None and "age_years" in self.record:
                self.give("disease_duration_years", round(max(self.record["age_years"] - float(age), 0.0), 2),
                          found, f"{found.where}.onsetAge")
                return
        self.paths.setdefault("disease_duration_years", "Observation")

    def treatment(self) -> None:
        for i, parameter in self.parameters.get("treatment", []):
            code = parameter.get("valueCode") or (parameter.get("valueCoding") or {}).get("code")
            where = f"Parameters.parameter[{i}]"
            if code not in FEATURES_BY_NAME[TREATMENT_FEATURE].categories:
                self.fail(where, f"treatment {code!r}: expected one of "
                          f"{', '.join(FEATURES_BY_NAME[TREATMENT_FEATURE].categories)}", "code-invalid")
            else:
                self.give(TREATMENT_FEATURE, code, Found(parameter, where), where)
            return
        for found in self.of_type("MedicationRequest"):
            concept = found.resource.get("medicationCodeableConcept") or {
                "text": (found.resource.get("medicationReference") or {}).get("display")}
            treatment = treatment_of(concept)
            if treatment is None:
                self.fail(f"{found.where}.medication", "not a treatment this model knows: "
                          + " or ".join(terms.treatment_name(t) for t in terms.TREATMENT_NAMES), "not-supported")
            else:
                self.give(TREATMENT_FEATURE, treatment, found, f"{found.where}.medication")
            return

    def horizons(self) -> tuple[int, ...] | None:
        months = [(i, p.get("valueInteger")) for i, p in self.parameters.get("horizon", [])]
        for i, month in months:
            if month is None:
                self.fail(f"Parameters.parameter[{i}]", "horizon: expected valueInteger (months)", "value")
        return tuple(m for _, m in months if m is not None) or None


def read_request(document: object, today: dt.date | None = None) -> Inputs:
    """The patient record of a ``$assess`` request (a Bundle or Parameters), or :class:`FhirInputError`."""
    kind = check_structure(document)
    found, parameters = gather(document, kind)
    return read_resources(found, parameters, today)


def read_resources(found: list[Found], parameters: dict | None = None, today: dt.date | None = None) -> Inputs:
    """The patient record of resources already checked (a request's, or a CDS Hooks prefetch)."""
    reader = _Reader(found, parameters or {}, today or dt.datetime.now(dt.timezone.utc).date())
    reader.observations()
    patient = reader.patient()
    reader.disease_duration()
    reader.treatment()
    horizons = reader.horizons()
    if reader.issues:
        raise FhirInputError(reader.issues, 422 if any(i.code == "not-supported" for i in reader.issues) else 400)
    if patient.resource.get("id"):
        reader.record[ID_COLUMN] = str(patient.resource["id"])
    return Inputs(reader.record, patient.reference("Patient"), reader.sources, reader.paths, horizons)


def rejected(reasons: list[str], inputs: Inputs) -> FhirInputError:
    """The shared validation rules' reasons (``<field>: <problem>``) as issues naming the FHIR element."""
    issues = []
    for reason in reasons:
        for part in reason.split("; "):
            name, _, problem = part.partition(": ")
            path = inputs.paths.get(name, "Bundle")
            label = FEATURES_BY_NAME[name].label if name in FEATURES_BY_NAME else name
            issues.append(Issue(path, f"{label} ({name}): {problem}",
                                "required" if "required" in problem else "value"))
    return FhirInputError(issues, 422)
