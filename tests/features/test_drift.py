"""Drift of a cohort against the training reference: counts add up over chunks, verdicts in words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from features.drift import (
    MIN_ROWS,
    DriftCounts,
    bin_counts,
    compare,
    empty_counts,
    histogram,
    population_stability_index,
    reference_profile,
    to_markdown,
)
from features.schema import MODEL_COLUMNS
from features.validation import encode


@pytest.fixture(scope="module")
def training(make_cohort):
    return encode(make_cohort("care-ms1", 20_000, 1))


@pytest.fixture(scope="module")
def reference(training):
    return reference_profile(training)


def test_reference_records_the_training_range(training, reference):
    age = reference["features"]["age_years"]
    column = training[:, MODEL_COLUMNS.index("age_years")]
    assert (age["low"], age["high"]) == tuple(np.quantile(column, [0.001, 0.999]))  # not single patients' values
    il21 = training[:, MODEL_COLUMNS.index("il21_pg_ml@legacy_elisa")]
    spec = reference["features"]["il21_pg_ml@legacy_elisa"]
    assert np.nanmin(il21) < spec["low"] < spec["high"] < np.nanmax(il21)
    assert sum(age["shares"]) == pytest.approx(1.0)
    json.dumps(reference)  # plain JSON, as logged to MLflow


def test_counts_of_chunks_add_up_to_the_counts_of_the_whole(make_cohort, reference):
    cohort = encode(make_cohort("clinic", 5_000, 2))
    whole = bin_counts(cohort, reference)
    parts = [bin_counts(part, reference) for part in np.array_split(cohort, 7)]
    total = sum(parts[1:], parts[0])
    assert total.n == whole.n == len(cohort)
    for name in MODEL_COLUMNS:
        np.testing.assert_array_equal(total.counts[name], whole.counts[name])
        # every record in one bin or unknown; in a column no training patient had a value in, known ones lie above
        counts = total.counts[name]
        assert counts[:-2].sum() + (counts[-1] if not reference["features"][name]["edges"] else 0) == len(cohort)
    assert DriftCounts.from_json(json.loads(json.dumps(whole.to_json()))).counts.keys() == whole.counts.keys()


def test_a_cohort_like_the_training_data_is_called_similar(make_cohort, reference):
    report = compare(reference, bin_counts(encode(make_cohort("care-ms1", 20_000, 99)), reference))
    assert report.status == "compared" and not report.differs
    assert all(f.psi < 0.02 for f in report.features)
    assert "resembles" in report.headline


def test_a_different_cohort_is_flagged_in_plain_words(make_cohort, reference):
    report = compare(reference, bin_counts(encode(make_cohort("clinic", 20_000, 3)), reference))
    assert report.differs
    assert report.headline.startswith("WARNING: this cohort differs from the model's training data in ")
    assert "the risks may then be off" in report.headline
    by_name = {f.name: f for f in report.features}
    # care-ms1 is treatment-naive: a previously treated patient is outside its range (0-0)
    assert by_name["prior_dmt"].outside > 0.5 and "prior_dmt" in report.headline
    # IL-21 is compared kit by kit: the clinic measures it (rarely) with the current kit, the trials with the legacy
    legacy, current = by_name["il21_pg_ml@legacy_elisa"], by_name["il21_pg_ml@current_elisa"]
    assert legacy.unknown_cohort == 1.0 > 0.7 > legacy.unknown_training
    assert current.unknown_cohort < 1.0 and current.outside == 1.0 and current.level == "different"
    assert any(d.startswith("il21_pg_ml@legacy_elisa: ") and "unknown in" in d for d in report.details)
    assert by_name["age_years"].outside > 0.01  # clinic ages 18-65 against trial ages
    markdown = to_markdown(report, model="m v1")
    assert "| `age_years` |" in markdown and "the risks may then be off" in markdown


def test_the_psi_noise_floor_protects_small_cohorts(make_cohort, reference):
    small = bin_counts(encode(make_cohort("care-ms1", 150, 5)), reference)
    report = compare(reference, small)
    assert report.status == "compared"
    assert all(f.level == "similar" for f in report.features), [(f.name, f.psi) for f in report.features]


def test_too_few_records_or_no_reference_are_said_not_guessed(reference):
    few = compare(reference, empty_counts(reference) + DriftCounts(MIN_ROWS - 1, empty_counts(reference).counts))
    assert few.status == "too-few" and not few.differs and "too few" in few.headline
    none = compare(None, None, why_no_reference="model m v1 has no training reference")
    assert none.status == "no-reference" and "model m v1 has no training reference" in none.headline
    assert to_markdown(none, model="m v1").count("\n") < 6


def test_older_references_without_a_range_still_compare(make_cohort, reference):
    old = {"n": reference["n"], "features": {
        name: {k: v for k, v in spec.items() if k not in ("low", "high")} for name, spec in reference["features"].items()}}
    report = compare(old, bin_counts(encode(make_cohort("care-ms1", 2_000, 6)), old))
    assert report.status == "compared" and all(f.outside is None for f in report.features)
    assert "not recorded" in to_markdown(report, model="m v1")


def test_psi_and_histogram_basics():
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert population_stability_index([0.5, 0.5], [0.9, 0.1]) > 0.25
    np.testing.assert_allclose(histogram(np.array([-5.0, 0.5, 1.5, 99.0]), [0.0, 1.0]), [0.5, 0.5])
