"""JSON bodies that mean one thing, in the types the request model's schema states.

One strict parse of the body (the standard library's, with hooks) refuses what JSON parsers
disagree on or the schema does not allow, before BentoML parses it:

- a key repeated in one object (most parsers keep the last value silently, so a second
  ``"patients"`` list would replace the first);
- ``NaN``, ``Infinity`` and numbers that overflow a double (``1e400``, a 310-digit integer), which
  are not JSON numbers, though Python's and pydantic's parsers accept them;
- a value of the wrong JSON type for the schema (:class:`SchemaTypes`): pydantic's lax mode turns
  ``"34"`` into 34, ``"yes"`` and ``1`` into true, ``true`` into the month 1, and ``"nan"`` into a
  NaN that then fails a range check; here booleans are only ``true``/``false``, numbers only JSON
  numbers and months only whole numbers, and an unknown key is refused wherever the schema
  closes an object. The values themselves (ranges, categories) stay the request model's to judge.

Each problem is one message naming the place and the problem: ``patients.0.age_years: the key
'age_years' appears more than once in one object``, ``patients.0.il21_pg_ml: NaN is not a finite
number``, ``horizons_months.0: expected an integer, got true``.
"""

from __future__ import annotations

import json

class _Ambiguous(ValueError):
    """A repeated key or a number that is not finite (raised while parsing, to stop early)."""


class _Object(dict):
    """A parsed JSON object that remembers the keys it saw more than once."""

    repeated: list[str]


class _NotFinite:
    """A number that is not finite, as written in the body."""

    def __init__(self, text: str) -> None:
        self.text = text


_MAX_FINITE_DIGITS = 309  # the largest double has 309 digits: more is never finite, 309 may be


def _finite_int(text: str) -> bool:
    """Whether an integer as written fits a double (1e308 written out does; 2e308 and longer do not)."""
    digits = len(text.lstrip("-"))
    if digits != _MAX_FINITE_DIGITS:
        return digits < _MAX_FINITE_DIGITS  # and int() never meets Python's limit of 4,300 digits
    try:
        float(int(text))
    except OverflowError:
        return False
    return True


def _strict_object(pairs: list) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Ambiguous
    return found


def _strict_float(text: str) -> float:
    value = float(text)
    if value - value != 0:  # inf - inf and nan - nan are nan
        raise _Ambiguous
    return value


def _strict_int(text: str) -> int:
    if not _finite_int(text):
        raise _Ambiguous
    return int(text)


def _refuse_constant(text: str):
    raise _Ambiguous


def _recording_object(pairs: list) -> _Object:
    found = _Object()
    found.repeated = []
    for key, value in pairs:
        if key in found and key not in found.repeated:
            found.repeated.append(key)
        found.setdefault(key, value)
    return found


def _recording_float(text: str):
    value = float(text)
    return value if value - value == 0 else _NotFinite(text)


def _recording_int(text: str):
    return int(text) if _finite_int(text) else _NotFinite(text)


def _first_problem(document) -> str | None:
    """Location and problem of the first repeated key or non-finite number (an object's own keys before its contents)."""
    stack = [(document, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _NotFinite):
            shown = node.text if len(node.text) <= 24 else f"{node.text[:12]}... ({len(node.text)} characters)"
            return f"{path or 'body'}: {shown} is not a finite number"
        if isinstance(node, dict):
            if getattr(node, "repeated", None):
                key = node.repeated[0]
                where = f"{path}.{key}" if path else key
                return f"{where}: the key {key!r} appears more than once in one object; send each key once"
            stack.extend((value, f"{path}.{key}" if path else str(key)) for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((value, f"{path}.{i}" if path else str(i)) for i, value in reversed(list(enumerate(node))))
    return None


_NOUNS = {"integer": "an integer", "number": "a number", "boolean": "true/false", "string": "a string",
          "array": "a list", "object": "an object", "null": "null"}


def json_type(value) -> str:
    """The JSON type of a parsed value, as :data:`_NOUNS` names them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"  # JSON Schema: 24.0 is an integer
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _got(value) -> str:
    kind = json_type(value)
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "string":
        typed = value.strip().lower() in _LOOK_TYPED or _is_number_text(value)
        return "a string (write numbers and true/false without quotes)" if typed else "a string"
    return "a number with a fraction" if kind == "number" else _NOUNS[kind]


_LOOK_TYPED = {"true", "false", "yes", "no", "nan", "inf", "-inf", "infinity", "-infinity", "null"}


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class SchemaTypes:
    """Checks the JSON types of a parsed document against a JSON Schema (pydantic's ``model_json_schema``).

    Only types and keys: ``type`` (``integer`` admits numbers with a zero fraction, as JSON
    Schema does), ``anyOf``, ``$ref`` into ``$defs``, ``properties`` with
    ``additionalProperties: false``, and ``items``. Anything else (ranges, enums, required keys)
    is left to the model the schema came from.

    Parameters
    ----------
    schema : dict
        A JSON Schema with its ``$defs``.
    """

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.definitions = schema.get("$defs", {})
        self._nodes: dict[int, _Node] = {}

    def _resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def _types(self, schema: dict) -> set[str]:
        """The JSON types ``schema`` admits; empty when it says nothing about types."""
        schema = self._resolve(schema)
        if "anyOf" in schema:
            found = [self._types(option) for option in schema["anyOf"]]
            return set().union(*found) if all(found) else set()
        kind = schema.get("type")
        if isinstance(kind, list):
            return set(kind)
        return {kind} if kind else set()

    def _option_for(self, schema: dict, kind: str) -> dict:
        schema = self._resolve(schema)
        for option in schema.get("anyOf", ()):
            if kind in self._types(option) or (kind == "integer" and "number" in self._types(option)):
                return self._resolve(option)
        return schema

    def problem(self, document, schema: dict | None = None, path: str = "") -> str | None:
        """``<location>: <problem>`` for the first value of the wrong type or unknown key, or None."""
        return self._node(self.schema if schema is None else schema).problem(document, path)

    def _node(self, schema: dict) -> _Node:
        """``schema`` read once into what checking a value against it needs (every body reuses it)."""
        node = self._nodes.get(id(schema))
        if node is None:
            node = self._nodes[id(schema)] = _Node(self, schema)
        return node


class _Node:
    """One schema of a :class:`SchemaTypes`, ready to check values: the types it admits, and per JSON type
    of a value the properties, closedness and items of the option that type selects."""

    def __init__(self, types: SchemaTypes, schema: dict) -> None:
        self.types, self.schema = types, schema
        self.allowed = frozenset(types._types(schema))
        self.expected = " or ".join(_NOUNS.get(k, k) for k in sorted(self.allowed, key=list(_NOUNS).index))
        self.shapes: dict[str, tuple] = {}

    def _shape(self, kind: str) -> tuple:
        """``(properties, closed, names, items)`` of the option a value of JSON type ``kind`` is checked against."""
        shape = self.shapes.get(kind)
        if shape is None:
            option = self.types._option_for(self.schema, kind)
            properties = option.get("properties", {})
            items = option.get("items")
            shape = self.shapes[kind] = (
                {key: self.types._node(value) for key, value in properties.items()},
                option.get("additionalProperties") is False, ", ".join(properties),
                self.types._node(items) if items is not None else None)
        return shape

    def problem(self, document, path: str) -> str | None:  # noqa: C901 - one branch per JSON Schema keyword checked
        kind = json_type(document)
        if self.allowed and kind not in self.allowed and not (kind == "integer" and "number" in self.allowed):
            return f"{path or 'body'}: expected {self.expected}, got {_got(document)}"
        if kind == "object":
            properties, closed, names, _ = self._shape(kind)
            for key, value in document.items():
                child = properties.get(key)
                if child is not None:
                    found = child.problem(value, f"{path}.{key}" if path else key)
                elif closed:
                    found = f"{path or 'body'}: unknown field {json.dumps(key)[:60]}; the fields are {names}"
                else:
                    found = None
                if found:
                    return found
        elif kind == "array":
            items = self._shape(kind)[3]
            if items is not None:
                for i, value in enumerate(document):
                    if found := items.problem(value, f"{path}.{i}" if path else str(i)):
                        return found
        return None


NOT_JSON = object()  # what strict_parse gives for a body that is not JSON (or nested too deep to parse)


def strict_parse(body: bytes, types: SchemaTypes | None = None) -> tuple[object, str | None]:
    """The body's document, parsed once, and why it is ambiguous or of the wrong types.

    Parameters
    ----------
    body : bytes
        The request body.
    types : SchemaTypes, optional
        The schema the body's types must follow.

    Returns
    -------
    document : object
        The parsed JSON; :data:`NOT_JSON` for a body that is not JSON at all (the request model says
        what is wrong with it), and for one that is refused.
    problem : str or None
        ``<location>: <problem>`` (a repeated key, a number that is not finite, a value of the wrong
        type); None for a body without these problems, and for one that is not JSON.
    """
    try:
        # One strict parse that stops at the first problem: the common case costs about as
        # much as a plain parse (0.3 ms for 100 patients).
        document = json.loads(body, object_pairs_hook=_strict_object, parse_float=_strict_float,
                              parse_int=_strict_int, parse_constant=_refuse_constant)
        problem = types.problem(document) if types is not None else None
    except _Ambiguous:
        return NOT_JSON, _where_ambiguous(body)
    except (ValueError, RecursionError):  # not JSON, or nested too deep: for the request model to answer
        return NOT_JSON, None
    return (NOT_JSON if problem else document), problem


def json_problem(body: bytes, types: SchemaTypes | None = None) -> str | None:
    """Why a JSON body is ambiguous or of the wrong types (:func:`strict_parse`), or None."""
    return strict_parse(body, types)[1]


def _where_ambiguous(body: bytes) -> str:
    # Parsed again, recording instead of stopping, to say where: only for bodies being refused.
    try:
        document = json.loads(body, object_pairs_hook=_recording_object, parse_float=_recording_float,
                              parse_int=_recording_int, parse_constant=_NotFinite)
    except (ValueError, RecursionError):  # broken further on: what was found first still stands
        return "body: a key appears more than once in one object, or a number is not finite"
    return _first_problem(document)
