"""The codes of autorisk's FHIR interface: LOINC and SNOMED CT where a code exists, the project's own elsewhere.

Every input of :mod:`features.schema` has a code of the project's CodeSystem (:data:`PROJECT_SYSTEM`):
its name (``edss``, ``il21_pg_ml``), and for IL-21 one code per kit (``il21_pg_ml.legacy_elisa``),
since a value means nothing without its kit. Where a standard code exists it is accepted too
(:data:`STANDARD_CODES`; the table in ``docs/fhir.md`` is built from it). The canonical URLs name the
project and resolve nowhere else: every autorisk server answers the CodeSystem itself at
``GET /fhir/CodeSystem/autorisk``.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.il21_kits import KIT_DETAILS
from features.schema import (
    CATEGORY_LABELS,
    FEATURES,
    FEATURES_BY_NAME,
    OUTCOME_DESCRIPTIONS,
    TREATMENT_FEATURE,
)

# ".invalid" is reserved (RFC 2606): the name can never point at somebody else's server.
CANONICAL_BASE = "https://autorisk.invalid/fhir"
PROJECT_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/autorisk"
CODE_SYSTEM_ID = "autorisk"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ICD10 = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")
FHIR_VERSION = "4.0.1"
FHIR_MEDIA_TYPE = "application/fhir+json"

# Extensions of the RiskAssessment's predictions (their definitions are in docs/fhir.md).
INTERVAL_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/risk-interval"
EXPLANATION_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/risk-explanation"
EXTRAPOLATED_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/risk-extrapolated"


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict:
        return {"system": self.system, "code": self.code, "display": self.display}


# Standard codes of an input's Observation, where one exists (the project's own code is always accepted too).
STANDARD_CODES: dict[str, tuple[Code, ...]] = {
    "age_years": (Code(LOINC, "30525-0", "Age"),),
    "edss": (Code(SNOMED, "273554001", "Kurtzke multiple sclerosis rating scale"),),
    "smoker": (Code(LOINC, "72166-2", "Tobacco smoking status"),),
    "thyroid_antibodies": (Code(LOINC, "8099-4", "Thyroperoxidase Ab [Units/volume] in Serum or Plasma"),
                           Code(LOINC, "8098-6", "Thyroglobulin Ab [Units/volume] in Serum or Plasma")),
}
# The diagnosis whose onset gives disease_duration_years when no Observation of it is given.
MULTIPLE_SCLEROSIS = (Code(SNOMED, "24700007", "Multiple sclerosis"),)
MULTIPLE_SCLEROSIS_ICD10 = "G35"
# The outcomes of the RiskAssessments.
OUTCOME_CODES: dict[str, Code] = {
    "thyroid": Code(SNOMED, "14304000", "Disorder of thyroid gland"),
    "itp": Code(SNOMED, "32273002", "Idiopathic thrombocytopenic purpura"),
}
# Smoking status answers (LOINC 72166-2) that mean a current smoker, and those that mean not.
CURRENT_SMOKER = frozenset({"449868002", "428041000124106", "77176002", "428071000124103", "428061000124105"})
NOT_SMOKING = frozenset({"8517006", "266919005"})
# Yes/no and positive/negative answers (SNOMED CT qualifier values; v2-0136 and the v3 interpretations).
YES = frozenset({"373066001", "10828004", "Y", "POS", "H", "HH", "A", "AA", "HU", "DET"})
NO = frozenset({"373067005", "260385009", "N", "NEG", "L", "LL", "ND"})
# Medications recognised by name in a code's text or display, wherever they are coded (RxNorm, SNOMED CT, ATC,
# a local list): the international nonproprietary name and the brands.
TREATMENT_NAMES: dict[str, tuple[str, ...]] = {
    "alemtuzumab": ("alemtuzumab", "lemtrada", "campath"),
    "interferon_beta_1a": ("interferon beta-1a", "interferon beta 1a", "interferon beta1a", "rebif", "avonex"),
}
# Units (UCUM codes) an input's value may come in, with the factor to the schema's unit.
UNITS: dict[str, dict[str, float]] = {
    "years": {"a": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25},
    "pg/mL": {"pg/mL": 1.0, "ng/L": 1.0, "ng/mL": 1000.0},
}
UNIT_CODES = {"years": "a", "pg/mL": "pg/mL", "EDSS points": "{score}", "relapses": "{relapses}"}


def kit_code(kit: str) -> str:
    """The project's code of IL-21 measured with ``kit``: ``il21_pg_ml.legacy_elisa``."""
    return f"il21_pg_ml.{kit}"


def outcome_name(outcome: str) -> str:
    """``thyroid`` -> ``Thyroid disorder``: the outcome's description without its parenthesis, capitalised."""
    text = OUTCOME_DESCRIPTIONS.get(outcome, outcome).split(" (")[0]
    return text[:1].upper() + text[1:]


def treatment_name(treatment: str) -> str:
    return CATEGORY_LABELS.get(treatment, treatment)


def feature_codes() -> dict[tuple[str, str], tuple[str, str | None]]:
    """Every accepted Observation code, ``(system, code) -> (feature, kit or None)``."""
    codes: dict[tuple[str, str], tuple[str, str | None]] = {}
    for feature in FEATURES:
        if feature.model_input and feature.kind != "category":  # sex is the Patient's gender
            codes[(PROJECT_SYSTEM, feature.name)] = (feature.name, None)
        for standard in STANDARD_CODES.get(feature.name, ()):
            codes[(standard.system, standard.code)] = (feature.name, None)
    for kit in FEATURES_BY_NAME["il21_assay"].categories:
        codes[(PROJECT_SYSTEM, kit_code(kit))] = ("il21_pg_ml", kit)
    return codes


def _concepts() -> list[dict]:
    concepts = []
    for feature in FEATURES:
        if feature.model_input and feature.kind != "category":
            concepts.append({"code": feature.name, "display": feature.label, "definition": feature.description})
    for kit in FEATURES_BY_NAME["il21_assay"].categories:
        detail = KIT_DETAILS.get(kit)
        name = detail.printed_name if detail else treatment_name(kit)
        concepts.append({"code": kit_code(kit), "display": f"Serum IL-21 by the {name}",
                         "definition": f"Pre-treatment serum IL-21 in pg/mL, measured with the {name}."})
        concepts.append({"code": kit, "display": name,
                         "definition": detail.evidence if detail else f"The IL-21 kit {name}."})
    for treatment in FEATURES_BY_NAME[TREATMENT_FEATURE].categories:
        concepts.append({"code": treatment, "display": treatment_name(treatment),
                         "definition": f"The course a risk is for: {treatment_name(treatment)}."})
    for outcome, description in OUTCOME_DESCRIPTIONS.items():
        concepts.append({"code": f"risk-{outcome}", "display": f"Risk of {outcome_name(outcome).lower()}",
                         "definition": f"The probability of a first {description} within months after the first "
                                       "course of the treatment."})
    return concepts


def code_system() -> dict:
    """The project's CodeSystem resource (R4): every code the interface uses that no standard has."""
    return {
        "resourceType": "CodeSystem", "id": CODE_SYSTEM_ID, "url": PROJECT_SYSTEM, "version": "1",
        "name": "AutoriskCodes", "title": "autorisk: inputs, IL-21 kits, treatments and risks",
        "status": "active", "experimental": True, "publisher": "autorisk",
        "description": "Codes of the autorisk research tool (synthetic data; not for clinical decisions) for what "
                       "LOINC and SNOMED CT have no code for.",
        "caseSensitive": True, "content": "complete", "concept": _concepts(),
    }


def operation_definition() -> dict:
    """The OperationDefinition of ``RiskAssessment/$assess`` (R4)."""
    def parameter(name, use, low, high, kind, text, **extra):
        return {"name": name, "use": use, "min": low, "max": high, "documentation": text, "type": kind, **extra}

    return {
        "resourceType": "OperationDefinition", "id": "RiskAssessment-assess",
        "url": f"{CANONICAL_BASE}/OperationDefinition/RiskAssessment-assess", "name": "Assess",
        "title": "Risk of thyroid disorder and ITP after alemtuzumab", "status": "active", "kind": "operation",
        "experimental": True, "code": "assess", "resource": ["RiskAssessment"], "system": False, "type": True,
        "instance": False, "description": "One patient's risks, as a Bundle of one RiskAssessment per outcome and a "
                                          "Provenance. Research tool on synthetic data; not for clinical decisions.",
        "parameter": [
            parameter("patient", "in", 1, "1", "Patient", "Sex (gender) and birthDate."),
            parameter("observation", "in", 0, "*", "Observation", "The inputs, coded as in docs/fhir.md."),
            parameter("condition", "in", 0, "*", "Condition", "Multiple sclerosis with its onset: the disease "
                                                              "duration when no Observation gives it."),
            parameter("medicationRequest", "in", 0, "1", "MedicationRequest", "The treatment under consideration."),
            parameter("treatment", "in", 0, "1", "code", "The treatment under consideration, as a code of "
                                                         f"{PROJECT_SYSTEM} (default alemtuzumab)."),
            parameter("courseDate", "in", 0, "1", "date", "Date of the first course (default: the "
                                                          "MedicationRequest's authoredOn, else today)."),
            parameter("horizon", "in", 0, "*", "integer", "Months after the first course (default 24 and 48)."),
            parameter("return", "out", 1, "1", "Bundle", "One RiskAssessment per outcome and a Provenance."),
        ],
    }


def capability_statement(software_version: str, date: str) -> dict:
    """What ``GET /fhir/metadata`` answers (R4)."""
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": date, "kind": "instance",
        "experimental": True, "publisher": "autorisk",
        "software": {"name": "autorisk", "version": software_version},
        "implementation": {"description": "autorisk: risk of thyroid disorder and ITP after alemtuzumab. Research "
                                          "tool on synthetic data; not for clinical decisions."},
        "fhirVersion": FHIR_VERSION, "format": ["json"],
        "rest": [{"mode": "server", "resource": [
            {"type": "RiskAssessment", "operation": [
                {"name": "assess", "definition": f"{CANONICAL_BASE}/OperationDefinition/RiskAssessment-assess"}]},
            {"type": "CodeSystem", "interaction": [{"code": "read"}]},
            {"type": "OperationDefinition", "interaction": [{"code": "read"}]},
        ]}],
    }
