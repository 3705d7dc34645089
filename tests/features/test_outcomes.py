"""Observed outcomes in files: every unusable row rejected alone, naming the column and the problem."""

import numpy as np
import pandas as pd
import pytest

from features.outcomes import MAX_FOLLOW_UP_MONTHS, check_outcome_columns, read_outcome, read_outcomes
from features.validation import InputSchemaError


def outcomes(*rows):
    return pd.DataFrame(rows, columns=["thyroid_event", "thyroid_time_months"], dtype=object)


@pytest.mark.parametrize("event, time, problem", [
    ("", "12", "thyroid_event: missing"),
    ("2", "12", "thyroid_event: '2' is not 0 or 1"),
    ("yes", "12", "thyroid_event: 'yes' is not 0 or 1"),
    ("0", "", "thyroid_time_months: missing"),
    ("1", "NA", "thyroid_time_months: missing for an observed onset (thyroid_event 1): an event without a time"),
    ("0", "-1", "thyroid_time_months: -1 is negative"),
    ("1", "121", f"thyroid_time_months: 121 is over {MAX_FOLLOW_UP_MONTHS:g} months"),
    ("0", "twelve", "thyroid_time_months: 'twelve' is not a number of months"),
])
def test_an_unusable_row_is_rejected_alone_with_its_reason(event, time, problem):
    event_, time_, reason = read_outcome(outcomes(("1", "14.5"), (event, time), ("0", "60")), "thyroid")
    assert reason.tolist()[0] == "" and reason.tolist()[2] == ""
    assert problem in reason[1]
    assert event_.tolist() == [1, 0, 0] and time_[0] == 14.5 and time_[2] == 60.0 and np.isnan(time_[1])


def test_usable_values_in_every_coding_a_file_has():
    frame = pd.DataFrame({"thyroid_event": [1, 0, "1.0", " 0 "], "thyroid_time_months": [3, 24.0, "7.25", "0"]})
    event, time, reason = read_outcome(frame, "thyroid")
    assert (reason == "").all()
    assert event.tolist() == [1, 0, 1, 0]
    assert time.tolist() == [3.0, 24.0, 7.25, 0.0]


def test_a_file_without_an_outcomes_columns_names_them():
    frame = pd.DataFrame({"thyroid_event": [1], "thyroid_time_months": [3], "itp_event": [0]})
    with pytest.raises(InputSchemaError, match="outcome columns missing: itp_time_months"):
        check_outcome_columns(list(frame.columns), ("thyroid", "itp"))
    with pytest.raises(InputSchemaError, match="itp_time_months"):
        read_outcomes(frame, ("thyroid", "itp"))


def test_reasons_of_several_outcomes_are_joined():
    frame = pd.DataFrame({"thyroid_event": ["1", "x"], "thyroid_time_months": ["5", "5"],
                          "itp_event": ["0", "0"], "itp_time_months": ["-2", "5"]})
    values, reasons = read_outcomes(frame, ("thyroid", "itp"))
    assert reasons[0] == "itp_time_months: -2 is negative"
    assert reasons[1] == "thyroid_event: 'x' is not 0 or 1"
    assert list(values.columns) == ["thyroid_event", "thyroid_time_months", "itp_event", "itp_time_months"]
