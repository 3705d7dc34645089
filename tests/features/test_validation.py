import numpy as np
import pandas as pd
import pytest

from features.schema import FEATURE_NAMES, ID_COLUMN, IL21_KITS, INPUT_NAMES, MODEL_COLUMNS, kit_column
from features.validation import COLUMN_INDEX, InputSchemaError, input_values, validate_frame, validate_records


def records(*rows):
    base = {"age_years": "34", "sex": "female", "disease_duration_years": "2"}
    return pd.DataFrame([{**base, **row} for row in rows], dtype=object)


def test_unambiguous_codings_are_accepted():
    frame = records(
        {"sex": "F", "smoker": "yes", "prior_dmt": "1", "il21_pg_ml": "NA", "treatment": ""},
        {"sex": " m ", "smoker": "No", "prior_dmt": "false", "il21_pg_ml": "", "treatment": "Interferon_Beta_1a"},
    )
    batch = validate_frame(frame)
    assert batch.rejects.empty
    m = batch.matrix
    assert m[:, COLUMN_INDEX["sex"]].tolist() == [1.0, 0.0]
    assert m[:, COLUMN_INDEX["smoker"]].tolist() == [1.0, 0.0]
    assert m[:, COLUMN_INDEX["prior_dmt"]].tolist() == [1.0, 0.0]
    assert np.isnan(m[:, COLUMN_INDEX[kit_column("legacy_elisa")]]).all()
    assert m[:, COLUMN_INDEX["treatment"]].tolist() == [1.0, 0.0]  # missing -> alemtuzumab


@pytest.mark.parametrize("row, field, problem", [
    ({"il21_pg_ml": "abc", "il21_assay": "legacy_elisa"}, "il21_pg_ml", "not a number"),
    ({"il21_pg_ml": "1,5", "il21_assay": "legacy_elisa"}, "il21_pg_ml", "not a number"),
    ({"il21_pg_ml": "0", "il21_assay": "legacy_elisa"}, "il21_pg_ml", "possible range"),
    ({"il21_pg_ml": "5", "il21_assay": "elisa"}, "il21_assay", "not one of legacy_elisa, current_elisa"),
    ({"relapses_prior_2y": "2.5"}, "relapses_prior_2y", "whole number"),
    ({"age_years": "150"}, "age_years", "possible range"),
    ({"age_years": ""}, "age_years", "required"),
    ({"sex": "x"}, "sex", "not one of female, male"),
    ({"smoker": "maybe"}, "smoker", "boolean"),
    ({"disease_duration_years": "40"}, "disease_duration_years", "exceeds age_years"),
    ({"edss": "inf"}, "edss", "possible range"),
])
def test_bad_values_are_rejected_with_field_and_reason(row, field, problem):
    batch = validate_frame(records({}, row, {}))
    assert batch.rows.tolist() == [0, 2]
    assert batch.rejects["row"].tolist() == [1]
    reason = batch.rejects["reason"].iloc[0]
    assert reason.startswith(field) and problem in reason


def test_every_record_is_accepted_or_rejected():
    frame = records({}, {"age_years": "x"}, {"sex": "?"}, {}, {"edss": "12"})
    batch = validate_frame(frame)
    assert sorted(batch.rows.tolist() + batch.rejects["row"].tolist()) == list(range(len(frame)))


def test_il21_needs_its_assay_and_goes_into_its_kits_column():
    frame = records({"il21_pg_ml": "300", "il21_assay": "legacy_elisa"},
                    {"il21_pg_ml": "30", "il21_assay": "current_elisa"},
                    {"il21_pg_ml": "300"})
    batch = validate_frame(frame)
    assert batch.rejects["row"].tolist() == [2]
    assert batch.rejects["reason"].iloc[0].startswith("il21_assay: required when il21_pg_ml is given")
    legacy = batch.matrix[:, COLUMN_INDEX[kit_column("legacy_elisa")]]
    current = batch.matrix[:, COLUMN_INDEX[kit_column("current_elisa")]]
    # ln pg/mL in the column of the kit it was measured with, unknown in the other's: the kits read
    # the same patient about ten-fold apart and the model reads each on its own
    assert legacy[0] == pytest.approx(np.log(300), abs=1e-12) and np.isnan(current[0])
    assert current[1] == pytest.approx(np.log(30), abs=1e-12) and np.isnan(legacy[1])
    # one value per explained input for pictures: IL-21 is the one kit's value
    values = input_values(batch.matrix)
    assert values.shape == (2, len(FEATURE_NAMES))
    assert values[:, FEATURE_NAMES.index("il21_pg_ml")] == pytest.approx(np.log([300, 30]))


def test_validation_knows_nothing_of_any_training_data():
    # values no trial enrolled are accepted without a word: a model says what its own training covered
    batch = validate_frame(records({"age_years": "70", "disease_duration_years": "30"},
                                   {"il21_pg_ml": "3", "il21_assay": "legacy_elisa"}))
    assert batch.rejects.empty
    assert batch.warnings.tolist() == ["", ""]


def test_typed_values_are_accepted():
    frame = pd.DataFrame({"age_years": [34.0], "sex": ["male"], "disease_duration_years": [1.5],
                          "smoker": [True], "relapses_prior_2y": [2]})
    batch = validate_frame(frame)
    assert batch.rejects.empty
    assert batch.matrix[0, COLUMN_INDEX["smoker"]] == 1.0


def test_input_is_not_modified():
    frame = records({"sex": "F", "il21_pg_ml": "abc"})
    before = frame.copy()
    validate_frame(frame)
    pd.testing.assert_frame_equal(frame, before)


def test_unknown_column_is_an_error_naming_it():
    with pytest.raises(InputSchemaError, match="il_21"):
        validate_frame(records({"il_21": "5"}))


def test_missing_required_column_is_an_error_naming_it():
    with pytest.raises(InputSchemaError, match="disease_duration_years"):
        validate_frame(records({}).drop(columns="disease_duration_years"))


def test_matrix_columns_follow_schema_order():
    batch = validate_frame(records({}))
    assert batch.matrix.shape == (1, len(MODEL_COLUMNS))
    # every explained input has its columns, in order, and IL-21 one per kit
    assert [c.split("@")[0] for c in MODEL_COLUMNS] == [n for n in FEATURE_NAMES for _ in
                                                        (IL21_KITS if n == "il21_pg_ml" else (n,))]


def assert_same_batch(left, right):
    np.testing.assert_array_equal(left.matrix, right.matrix)
    assert left.rows.tolist() == right.rows.tolist()
    assert left.patient_ids.tolist() == right.patient_ids.tolist()
    assert left.warnings.tolist() == right.warnings.tolist()
    pd.testing.assert_frame_equal(left.rejects, right.rejects)


def test_parsed_json_records_get_the_frame_rules(make_cohort):
    """REST reads parsed JSON without a DataFrame; the outcome must not differ by one value."""
    frame = make_cohort("clinic", 300, 5)[[ID_COLUMN, *INPUT_NAMES]].astype(object)
    frame = frame.where(frame.notna(), None)
    frame.loc[3, "age_years"] = 150.0  # impossible
    frame.loc[4, "relapses_prior_2y"] = 2.5  # not whole
    frame.loc[5, "disease_duration_years"] = 70.0  # longer than life
    frame.loc[6, ["il21_pg_ml", "il21_assay"]] = [300.0, None]  # IL-21 without its assay
    frame.loc[7, "smoker"] = "yes"  # text codings take the frame's path
    frame.loc[8, "sex"] = "F"
    frame.loc[9, "treatment"] = "placebo"
    frame.loc[10, "edss"] = "2,5"
    frame.loc[11, "age_years"] = None  # required
    records = frame.to_dict(orient="records")
    before = [dict(r) for r in records]
    from_records, from_frame = validate_records(records), validate_frame(frame)
    assert_same_batch(from_records, from_frame)
    assert records == before  # inputs unchanged
    assert {3, 4, 5, 6, 9, 10, 11} <= set(from_records.rejects["row"])
    assert {7, 8} <= set(from_records.rows)


def test_one_typed_record_is_encoded_like_its_frame():
    record = {"patient_id": 7, "age_years": 34, "sex": "male", "disease_duration_years": 2.5, "smoker": True,
              "il21_pg_ml": 620.0, "il21_assay": "legacy_elisa", "relapses_prior_2y": 2}
    assert_same_batch(validate_records([record]), validate_frame(pd.DataFrame([record])))
    assert validate_records([record]).patient_ids.tolist() == ["7"]
