"""Reading FHIR resources into a patient record, without a server: codes, units, answers, dates, the docs' table."""

import datetime as dt
from pathlib import Path

import pytest

from serving.fhir import input_codes_table
from serving.fhir_input import FhirInputError, Found, parse_date, read_resources
from tests.fhir_checks import LOINC, PROJECT, SNOMED, observation, patient_resources

DOCS = Path(__file__).resolve().parents[2] / "docs" / "fhir.md"


def read(*extra, today=dt.date(2024, 3, 15)):
    found = [Found(r, f"Bundle.entry[{i}].resource") for i, r in enumerate([*patient_resources(), *extra])]
    return read_resources(found, today=today)


def test_the_docs_table_is_the_codes_the_reader_accepts():
    text = DOCS.read_text()
    assert input_codes_table() in text


def test_the_patient_of_the_tests_is_read_as_rest_would_get_her():
    record = read().record
    assert record == {"sex": "female", "age_years": 34.0, "disease_duration_years": 2.5, "il21_pg_ml": 620.0,
                      "il21_assay": "legacy_elisa", "thyroid_antibodies": True, "patient_id": "alemtuzumab-candidate-1"}


@pytest.mark.parametrize("extra, name, value", [
    (observation("a", {"system": LOINC, "code": "30525-0"}, valueQuantity={"value": 408, "code": "mo"}), "age_years",
     34.0),
    (observation("e", {"system": SNOMED, "code": "273554001"}, valueQuantity={"value": 2.5}), "edss", 2.5),
    (observation("r", {"system": PROJECT, "code": "relapses_prior_2y"}, valueInteger=2), "relapses_prior_2y", 2),
    (observation("s", {"system": LOINC, "code": "72166-2"}, valueCodeableConcept={"coding": [
        {"system": SNOMED, "code": "449868002"}]}), "smoker", True),
    (observation("s", {"system": LOINC, "code": "72166-2"}, valueCodeableConcept={"coding": [
        {"system": SNOMED, "code": "8517006"}]}), "smoker", False),
    (observation("f", {"system": PROJECT, "code": "family_history_autoimmunity"}, interpretation=[{"coding": [
        {"code": "NEG"}]}]), "family_history_autoimmunity", False),
    (observation("i", {"system": PROJECT, "code": "il21_pg_ml.current_elisa"}, valueQuantity={"value": 0.05, "code": "ng/mL"},
                 effectiveDateTime="2024-03-10"), "il21_pg_ml", 50.0),
])
def test_codes_units_and_answers(extra, name, value):
    assert read(extra).record[name] == pytest.approx(value)


def test_the_latest_observation_counts_and_withdrawn_ones_do_not():
    older = observation("i0", {"system": PROJECT, "code": "il21_pg_ml.legacy_elisa"},
                        valueQuantity={"value": 100, "code": "pg/mL"}, effectiveDateTime="2023-01-01")
    wrong = observation("i1", {"system": PROJECT, "code": "il21_pg_ml.legacy_elisa"},
                        valueQuantity={"value": 9000, "code": "pg/mL"}, effectiveDateTime="2024-03-14",
                        status="entered-in-error")
    assert read(older, wrong).record["il21_pg_ml"] == 620.0


def test_an_answer_that_is_neither_yes_nor_no_is_named():
    unclear = observation("t", {"system": PROJECT, "code": "prior_dmt"}, valueString="maybe")
    with pytest.raises(FhirInputError) as refused:
        read(unclear)
    assert refused.value.issues[0].expression == "Bundle.entry[4].resource"
    assert "cannot tell yes from no" in refused.value.issues[0].message


def test_partial_dates_count_from_the_middle_of_their_period():
    assert parse_date("1990") == dt.date(1990, 7, 2)
    assert parse_date("1990-05") == dt.date(1990, 5, 15)
    assert parse_date("1990-05-03T10:00:00Z") == dt.date(1990, 5, 3)
