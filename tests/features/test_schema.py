from pathlib import Path

import pytest
from pydantic import ValidationError

from features.schema import FEATURE_NAMES, FEATURES, ID_COLUMN, INPUT_NAMES, markdown_table, mlflow_input_schema
from features.validation import patient_model

README = Path(__file__).resolve().parents[2] / "README.md"


def test_feature_names_are_the_published_ones():
    assert FEATURE_NAMES == (
        "age_years", "sex", "disease_duration_years", "edss", "relapses_prior_2y", "prior_dmt",
        "il21_pg_ml", "smoker", "family_history_autoimmunity", "thyroid_antibodies", "treatment",
    )
    # il21_assay sets the scale IL-21 is read on; it is an input but not a model column
    assert (*FEATURE_NAMES[:7], "il21_assay", *FEATURE_NAMES[7:]) == INPUT_NAMES
    assert [f.name for f in FEATURES if f.required] == ["age_years", "sex", "disease_duration_years"]


def test_rest_model_derives_from_schema():
    model = patient_model()
    assert set(model.model_fields) == {ID_COLUMN, *INPUT_NAMES}
    schema = model.model_json_schema()
    assert schema["properties"]["il21_pg_ml"]["unit"] == "pg/mL"
    assert schema["properties"]["il21_pg_ml"]["examples"] == [310.0]


@pytest.mark.parametrize("patient, field", [
    ({"age_years": 30, "sex": "female", "disease_duration_years": 2, "il_21": 5}, "il_21"),
    ({"age_years": 30, "sex": "other", "disease_duration_years": 2}, "sex"),
    ({"age_years": 30, "sex": "male", "disease_duration_years": 2, "edss": 11}, "edss"),
    ({"age_years": 30, "sex": "male", "disease_duration_years": 2, "il21_pg_ml": 0,
      "il21_assay": "legacy_elisa"}, "il21_pg_ml"),
    ({"age_years": 30, "sex": "male", "disease_duration_years": 2, "il21_pg_ml": 300}, "il21_assay"),
    ({"age_years": 30, "sex": "male"}, "disease_duration_years"),
    ({"age_years": 30, "sex": "male", "disease_duration_years": 31}, "disease_duration_years"),
])
def test_rest_model_rejects_bad_patients_naming_the_field(patient, field):
    with pytest.raises(ValidationError) as raised:
        patient_model().model_validate(patient)
    errors = raised.value.errors(include_input=False)
    assert any(field in e["loc"] or e["msg"].startswith(f"Value error, {field}:") for e in errors), errors


def test_mlflow_signature_derives_from_schema():
    schema = mlflow_input_schema()
    assert schema.input_names() == [ID_COLUMN, *INPUT_NAMES]
    required = {spec.name for spec in schema.inputs if spec.required}
    assert required == {"age_years", "sex", "disease_duration_years"}


def test_readme_feature_table_is_generated_from_schema():
    assert markdown_table() in README.read_text(encoding="utf-8")
