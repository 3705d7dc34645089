"""Frame validation: raw patient records in, model matrix and per-record reasons out.

One set of rules (:func:`_check`) serves every front door, so that the same record is
accepted, warned about or rejected in the same way everywhere: :func:`validate_frame`
for frames (batch files, the MLflow pyfunc, Spark) and :func:`validate_records` for
parsed JSON (REST), which differ only in how they read values. Values may arrive as
text (CSV) or typed (Parquet, JSON); unambiguous codings are accepted:

- missing ("unknown"): blank, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``;
- booleans: ``true``/``false``, ``yes``/``no``, ``y``/``n``, ``t``/``f``, ``1``/``0``;
- sex: ``female``/``male``, ``F``/``M``;
- case and surrounding spaces are ignored.

Anything else (for example ``1,5`` with a decimal comma, or ``2.5`` relapses) is
rejected with a reason rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.schema import (
    CATEGORY_CODES,
    COLUMN_FEATURE,
    FEATURE_NAMES,
    FEATURES,
    FEATURES_BY_NAME,
    ID_COLUMN,
    IL21_FEATURE,
    IL21_KIT_FEATURE,
    MODEL_COLUMNS,
    Feature,
    kit_column,
)

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
BOOLEAN_CODES = {
    "true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "y": 1.0, "n": 0.0,
    "t": 1.0, "f": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0,
}
CATEGORY_ALIASES = {
    "sex": {"female": "female", "f": "female", "male": "male", "m": "male"},
    "treatment": {"alemtuzumab": "alemtuzumab", "interferon_beta_1a": "interferon_beta_1a"},
    "il21_assay": {"legacy_elisa": "legacy_elisa", "current_elisa": "current_elisa"},
}
KNOWN_COLUMNS = frozenset((ID_COLUMN, *FEATURES_BY_NAME))


class InputSchemaError(ValueError):
    """The input as a whole cannot be scored (a required column is missing, an unknown column)."""


@dataclass(frozen=True)
class ValidatedBatch:
    """Result of :func:`validate_frame`.

    Attributes
    ----------
    matrix : ndarray of shape (n_accepted, n_columns)
        Model matrix of the accepted records, float64, NaN where unknown; columns in
        :data:`features.schema.MODEL_COLUMNS` order: each input as encoded, and IL-21 as ln pg/mL in
        the column of the kit it was measured with. What a model makes of the values (the range its
        training data covered, each kit's standardisation) is the model's (:mod:`models.domain`).
    rows : ndarray of shape (n_accepted,)
        Position in the input of each accepted record.
    patient_ids : ndarray of shape (n_accepted,)
        ``patient_id`` of each accepted record (object, None when absent).
    warnings : ndarray of shape (n_accepted,)
        "; "-joined warnings of each accepted record ("" when none); a model adds its own when it scores
        them (values outside its training range, a kit it never saw).
    rejects : DataFrame
        One row per rejected record: ``row`` (position in the input), ``patient_id``, ``reason``.
    """

    matrix: np.ndarray
    rows: np.ndarray
    patient_ids: np.ndarray
    warnings: np.ndarray
    rejects: pd.DataFrame


def check_columns(columns: Iterable[str], *, allow_extra: bool = False) -> list[str]:
    """Check the column names of an input.

    Returns the extra columns (ignored) when ``allow_extra``; raises
    :class:`InputSchemaError` naming the problem otherwise.
    """
    columns = list(columns)
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise InputSchemaError(f"duplicated columns: {', '.join(duplicated)}")
    missing = [f.name for f in FEATURES if f.required and f.name not in columns]
    if missing:
        raise InputSchemaError(f"required columns missing: {', '.join(missing)}")
    extra = [c for c in columns if c not in KNOWN_COLUMNS]
    if extra and not allow_extra:
        raise InputSchemaError(
            f"unknown columns: {', '.join(extra)} (known: {', '.join(sorted(KNOWN_COLUMNS))}); "
            "pass --ignore-extra-columns to score anyway"
        )
    return extra


class _Reasons:
    """Per-record messages, accumulated column by column."""

    def __init__(self, n: int) -> None:
        self.messages = np.full(n, "", dtype=object)

    def add(self, mask: np.ndarray, make_message) -> None:
        for i in np.flatnonzero(mask):
            message = make_message(i)
            self.messages[i] = f"{self.messages[i]}; {message}" if self.messages[i] else message

    def any(self) -> np.ndarray:
        return self.messages != ""


def _text(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    text = values.astype("string").str.strip()
    lower = text.str.lower()
    missing = (text.isna() | lower.isin(MISSING_TOKENS)).to_numpy(dtype=bool)
    return lower, missing


def _coerce(feature: Feature, values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (encoded float64 values, missing mask, unparseable mask)."""
    if feature.kind in ("number", "integer") and pd.api.types.is_numeric_dtype(values) \
            and not pd.api.types.is_bool_dtype(values):
        encoded = values.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(encoded)
        bad = np.zeros(len(values), dtype=bool)
    else:
        lower, missing = _text(values)
        if feature.kind in ("number", "integer"):
            parsed = pd.to_numeric(lower.where(~missing), errors="coerce")
            encoded = parsed.to_numpy(dtype=float, na_value=np.nan)
        elif feature.kind == "boolean":
            encoded = lower.map(BOOLEAN_CODES).to_numpy(dtype=float, na_value=np.nan)
        else:
            labels = lower.map(CATEGORY_ALIASES[feature.name])
            encoded = labels.map(CATEGORY_CODES[feature.name]).to_numpy(dtype=float, na_value=np.nan)
        bad = ~missing & np.isnan(encoded)
    if feature.kind == "integer":
        with np.errstate(invalid="ignore"):
            bad |= ~missing & ~bad & (encoded != np.floor(encoded))
    encoded = np.where(missing | bad, np.nan, encoded)
    return encoded, missing, bad


_KIND_NOUN = {
    "number": "a number",
    "integer": "a whole number",
    "boolean": "a boolean (true/false, yes/no, 1/0)",
}


def _unparseable_message(feature: Feature) -> str:
    if feature.kind == "category":
        return f"is not one of {', '.join(feature.categories)}"
    return f"is not {_KIND_NOUN[feature.kind]}"


def _shown_text(column: pd.Series):
    """How a rejected value is quoted in its reason: as the text that came in.

    Converted one value at a time, when a reason needs it: turning the whole column into text
    cost more than validating it, and most records are not rejected.
    """
    def shown(i: int) -> str | None:
        return column.iloc[i:i + 1].astype("string").to_numpy(dtype=object, na_value=None)[0]

    return shown


def validate_frame(raw: pd.DataFrame, *, allow_extra: bool = False) -> ValidatedBatch:
    """Validate and encode patient records.

    Parameters
    ----------
    raw : DataFrame of shape (n_records, n_columns)
        One record per row, columns named as in :mod:`features.schema`; text or typed values.
        Not modified.
    allow_extra : bool
        Ignore columns that are not features instead of raising.

    Returns
    -------
    ValidatedBatch
        Accepted records as a model matrix, and rejected records with their reasons.

    Raises
    ------
    InputSchemaError
        When a required column is missing, or an unknown column is present and not allowed.
    """
    check_columns(raw.columns, allow_extra=allow_extra)
    n = len(raw)

    def encoded_columns():
        for feature in FEATURES:
            if feature.name not in raw.columns:
                column = pd.Series([None] * n, index=raw.index, dtype=object)
            else:
                column = raw[feature.name]
            yield (*_coerce(feature, column), _shown_text(column))

    if ID_COLUMN in raw.columns:
        ids = raw[ID_COLUMN].astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    else:
        ids = np.full(n, None, dtype=object)
    return _check(n, encoded_columns(), ids)


_NUMBER_TYPES = (int, float)


def _encode_typed(feature: Feature, values: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    """Encode one feature of already-typed records; anything unusual takes the frame path.

    Typed means what parsed JSON holds: numbers, ``True``/``False``, the canonical labels
    of :mod:`features.schema`, ``None`` for unknown. Other values (text numbers, ``"yes"``)
    are coerced by :func:`_coerce`, so both front doors accept and reject the same values.
    """
    if feature.kind in ("number", "integer"):
        typed = all(v is None or (isinstance(v, _NUMBER_TYPES) and not isinstance(v, bool)) for v in values)
        encode = (lambda v: np.nan if v is None else float(v))
    elif feature.kind == "boolean":
        typed = all(v is None or isinstance(v, bool) for v in values)
        encode = (lambda v: np.nan if v is None else float(v))
    else:
        codes = CATEGORY_CODES[feature.name]
        typed = all(v is None or (isinstance(v, str) and v in codes) for v in values)
        encode = (lambda v: np.nan if v is None else float(codes[v]))
    if not typed:
        column = pd.Series(values, dtype=object)
        return (*_coerce(feature, column), _shown_text(column))
    encoded = np.fromiter((encode(v) for v in values), dtype=float, count=len(values))
    missing = np.isnan(encoded)
    bad = np.zeros(len(values), dtype=bool)
    if feature.kind == "integer":
        with np.errstate(invalid="ignore"):
            bad = ~missing & (encoded != np.floor(encoded))
        encoded = np.where(bad, np.nan, encoded)
    return encoded, missing, bad, (lambda i: None if values[i] is None else str(values[i]))  # as text, like a frame


def validate_records(records: list[dict]) -> ValidatedBatch:
    """Validate and encode patient records that arrive as parsed JSON objects (REST).

    The same rules as :func:`validate_frame`, without building a DataFrame: a request of
    one patient costs microseconds, not milliseconds.

    Parameters
    ----------
    records : list of dict, length n_records
        One dict per patient with the keys of :mod:`features.schema` (absent keys are unknown).
        Unknown keys must have been refused by the caller (the REST model forbids them).

    Returns
    -------
    ValidatedBatch
        As :func:`validate_frame`; ``rows`` are positions in ``records``.
    """
    n = len(records)
    encoded_columns = (_encode_typed(f, [r.get(f.name) for r in records]) for f in FEATURES)
    ids = np.array([None if r.get(ID_COLUMN) is None else str(r[ID_COLUMN]).strip() for r in records], dtype=object)
    return _check(n, encoded_columns, ids)


def _check(n: int, encoded_columns, ids: np.ndarray) -> ValidatedBatch:
    """The rules every front door shares, on encoded values.

    ``encoded_columns`` yields, per feature in :data:`FEATURES` order, ``(encoded, missing,
    bad, shown)``: float64 values (NaN where unknown or unparseable), the unknown and
    unparseable masks, and a function giving the value as it came in (for reasons).
    """
    errors = _Reasons(n)
    warnings = _Reasons(n)
    values = np.empty((n, len(FEATURES)), dtype=float)  # every input, encoded

    for j, (feature, (encoded, missing, bad, shown)) in enumerate(zip(FEATURES, encoded_columns, strict=True)):
        if bad.any():
            errors.add(bad, lambda i, f=feature: f"{f.name}: {shown(i)!r} {_unparseable_message(f)}")
        if feature.required:
            errors.add(missing, lambda i, f=feature: f"{f.name}: required but missing")
        if feature.default is not None:
            encoded = np.where(missing, CATEGORY_CODES[feature.name][feature.default], encoded)
        if feature.possible is not None:
            low, high = feature.possible
            with np.errstate(invalid="ignore"):
                too_low = encoded <= low if feature.low_exclusive else encoded < low
                impossible = too_low | (encoded > high)
            errors.add(impossible, lambda i, f=feature, v=encoded:
                       f"{f.name}: {v[i]:g} is outside the possible range ({f.possible_text()})")
        values[:, j] = encoded

    for rule in CROSS_FIELD_RULES:
        with np.errstate(invalid="ignore"):
            broken = rule.broken(values)
        errors.add(broken, lambda i, r=rule: r.reason(values[i]))
    matrix = model_matrix(values)

    rejected = errors.any()
    accepted = ~rejected
    # Building even an empty frame costs more than validating one patient: most batches reject none.
    rejects = pd.DataFrame({
        "row": np.flatnonzero(rejected),
        ID_COLUMN: ids[rejected],
        "reason": errors.messages[rejected],
    }) if rejected.any() else NO_REJECTS
    return ValidatedBatch(
        matrix=matrix[accepted],
        rows=np.flatnonzero(accepted),
        patient_ids=ids[accepted],
        warnings=warnings.messages[accepted],
        rejects=rejects,
    )


INPUT_INDEX: dict[str, int] = {f.name: j for j, f in enumerate(FEATURES)}


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule between inputs, on the encoded values of every input (:data:`FEATURES` order, NaN where unknown).

    Attributes
    ----------
    fields : tuple of str
        The inputs it relates; the reason names the first.
    broken : callable
        ``values (n, k) -> bool (n,)``: the records that break it.
    reason : callable
        ``one record's values (k,) -> str``: ``<field>: <problem>``, the same at every front door.
    """

    fields: tuple[str, ...]
    broken: Callable[[np.ndarray], np.ndarray]
    reason: Callable[[np.ndarray], str]


def _value(values: np.ndarray, name: str) -> np.ndarray:
    return values[..., INPUT_INDEX[name]]


# The rules between inputs that every front door (files, REST, FHIR, CDS Hooks, the pyfunc) applies after
# each value's own type and range, with these reasons.
CROSS_FIELD_RULES = (
    CrossFieldRule(
        ("disease_duration_years", "age_years"),
        lambda v: _value(v, "disease_duration_years") > _value(v, "age_years"),
        lambda v: f"disease_duration_years: {_value(v, 'disease_duration_years'):g} exceeds age_years "
                  f"{_value(v, 'age_years'):g}"),
    CrossFieldRule(
        (IL21_KIT_FEATURE, IL21_FEATURE),
        lambda v: ~np.isnan(_value(v, IL21_FEATURE)) & np.isnan(_value(v, IL21_KIT_FEATURE)),
        lambda v: f"{IL21_KIT_FEATURE}: required when {IL21_FEATURE} is given (legacy_elisa or current_elisa)"),
)


def cross_field_reasons(record: dict) -> list[str]:
    """The reasons of every rule of :data:`CROSS_FIELD_RULES` that one record of typed values breaks, in order."""
    values = np.array([[_encode_typed(f, [record.get(f.name)])[0][0] for f in FEATURES]])
    with np.errstate(invalid="ignore"):
        return [rule.reason(values[0]) for rule in CROSS_FIELD_RULES if rule.broken(values)[0]]


def _python_type(feature: Feature) -> Any:
    if feature.kind == "category":
        return Literal[feature.categories]  # type: ignore[valid-type]
    return {"number": float, "integer": int, "boolean": bool}[feature.kind]


@cache
def patient_model() -> type:
    """The pydantic model of one patient in a REST request.

    Unknown fields are rejected, so that a typo cannot silently turn a feature
    into "unknown". Each value's type and range are the schema's; the rules between inputs
    are :data:`CROSS_FIELD_RULES`, checked after them with the reasons a file's record gets
    (every rule a patient breaks, joined by ``; ``).
    """
    from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

    class _PatientBase(BaseModel):
        model_config = ConfigDict(extra="forbid")

        @model_validator(mode="after")
        def _rules_between_inputs(self):  # noqa: ANN202 - pydantic hook
            reasons = cross_field_reasons({f.name: getattr(self, f.name) for f in FEATURES})
            if reasons:
                raise ValueError("; ".join(reasons))
            return self

    fields: dict[str, Any] = {
        ID_COLUMN: (
            str | None,
            Field(default=None, max_length=128, description="Echoed back; never a model input."),
        )
    }
    for feature in FEATURES:  # every input, il21_assay included
        constraints: dict[str, Any] = {}
        if feature.possible is not None:
            low, high = feature.possible
            constraints["gt" if feature.low_exclusive else "ge"] = low
            constraints["le"] = high
        extra = {"unit": feature.unit} if feature.unit else None
        annotation = _python_type(feature)
        description = feature.description + (f" Unit: {feature.unit}." if feature.unit else "")
        if feature.required:
            default: Any = ...
        else:
            annotation = annotation | None
            default = None
        fields[feature.name] = (
            annotation,
            Field(
                default=default,
                description=description,
                examples=[feature.example],
                json_schema_extra=extra,
                **constraints,
            ),
        )
    return create_model("Patient", __base__=_PatientBase, **fields)


# The rejects of a batch without any: shared, so read it, never change it.
NO_REJECTS = pd.DataFrame({"row": np.empty(0, dtype=np.int64), ID_COLUMN: np.empty(0, dtype=object),
                           "reason": np.empty(0, dtype=object)})
COLUMN_INDEX: dict[str, int] = {name: j for j, name in enumerate(MODEL_COLUMNS)}
_KIT_COLUMNS = tuple((code, COLUMN_INDEX[kit_column(kit)]) for kit, code in CATEGORY_CODES[IL21_KIT_FEATURE].items())
_PLAIN_COLUMNS = tuple((COLUMN_INDEX[f.name], INPUT_INDEX[f.name]) for f in FEATURES
                       if f.model_input and f.name != IL21_FEATURE)


def model_matrix(values: np.ndarray) -> np.ndarray:
    """Encoded inputs of shape (n, n_inputs), in :data:`FEATURES` order, as the model matrix (n, n_columns).

    IL-21 goes, as ln pg/mL, into the column of the kit it was measured with: the kits read the same
    patient about ten-fold apart (docs/clinical-evidence.md §3) and need not be worth the same.
    """
    matrix = np.full((len(values), len(MODEL_COLUMNS)), np.nan)
    for column, source in _PLAIN_COLUMNS:
        matrix[:, column] = values[:, source]
    il21, kit = values[:, INPUT_INDEX[IL21_FEATURE]], values[:, INPUT_INDEX[IL21_KIT_FEATURE]]
    with np.errstate(invalid="ignore", divide="ignore"):  # impossible values are rejected elsewhere
        logged = np.log(il21)
    for code, column in _KIT_COLUMNS:
        measured = kit == code
        matrix[measured, column] = logged[measured]
    return matrix


_INPUT_STARTS = np.flatnonzero(np.diff(np.concatenate([[-1], COLUMN_FEATURE])) != 0)


def input_values(matrix: np.ndarray) -> np.ndarray:
    """A model matrix (n, n_columns) as one value per explained input (n, n_inputs), NaN where not provided:
    for pictures coloured by each input's value. IL-21 is ln pg/mL on the scale of the kit it was measured with."""
    if not len(matrix):
        return np.empty((0, len(FEATURE_NAMES)))
    with np.errstate(invalid="ignore"):
        return np.fmax.reduceat(matrix, _INPUT_STARTS, axis=1)


def encode(frame: pd.DataFrame) -> np.ndarray:
    """Model matrix of records that must all be valid (training data, examples).

    Raises
    ------
    ValueError
        Naming the first rejected record and its reason.
    """
    batch = validate_frame(frame, allow_extra=True)
    if len(batch.rejects):
        first = batch.rejects.iloc[0]
        raise ValueError(
            f"{len(batch.rejects)} invalid records, first at row {first['row']}: {first['reason']}"
        )
    return batch.matrix
