"""``autorisk explain``: one patient's risk explained input by input, as a SHAP waterfall picture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import pandas as pd

from features.schema import (
    CATEGORY_CODES,
    CATEGORY_LABELS,
    FEATURE_NAMES,
    FEATURES,
    FEATURES_BY_NAME,
    ID_COLUMN,
    INPUT_NAMES,
    OUTCOME_DESCRIPTIONS,
    RESEARCH_NOTICE,
)
from features.validation import InputSchemaError, ValidatedBatch, input_values, validate_frame
from models.explanation_figures import waterfall_figure
from models.registry import LoadedModel, version_or_alias
from models.scoring import ScoringOptions
from pipelines.cli.common import console, fail, load_registered
from pipelines.cli.options import ExplainOptions


def flag_values(args: list[str]) -> tuple[Path | None, dict[str, str]]:
    """``["p.json", "--age-years", "34", "--sex=female"]`` -> ``(Path("p.json"), {"age_years": "34", "sex": "female"})``.

    Raises
    ------
    ValueError
        Naming an unknown flag, a flag without a value, or a second file.
    """
    known = {name.replace("_", "-"): name for name in (ID_COLUMN, *INPUT_NAMES)}
    path, values, tokens = None, {}, list(args)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--"):
            if path is not None:
                raise ValueError(f"unexpected argument {token!r} after the patient file {path}; give the patient's "
                                 "values as flags, e.g. --age-years 34")
            path = Path(token)
            continue
        flag, has_value, value = token[2:].partition("=")
        if flag not in known:
            raise ValueError(f"unknown option --{flag}; the patient's values are {', '.join('--' + k for k in known)}")
        if not has_value:
            if not tokens or tokens[0].startswith("--"):
                raise ValueError(f"--{flag} needs a value")
            value = tokens.pop(0)
        values[known[flag]] = value
    return path, values


def patient_file(path: Path) -> dict:
    """One patient from a JSON file: an object, a list of one, or a request body with one patient."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read ({error})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    if isinstance(document, dict) and "patients" in document:
        document = document["patients"]
    if isinstance(document, list):
        if len(document) != 1:
            raise ValueError(f"{path}: holds {len(document)} patients; explain takes one")
        document = document[0]
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object with the patient's values")
    return document


def shown_values(record: dict, matrix_row) -> dict[str, str | None]:
    """Each model input as the picture shows it: value and unit, or None where not provided."""
    shown = {}
    for name, value in zip(FEATURE_NAMES, matrix_row):
        feature = FEATURES_BY_NAME[name]
        if math.isnan(value):
            shown[name] = None
        elif feature.kind == "boolean":
            shown[name] = "yes" if value else "no"
        elif feature.kind == "category":
            category = next(k for k, code in CATEGORY_CODES[name].items() if code == value)
            shown[name] = CATEGORY_LABELS.get(category, category)
        else:  # the value as given: the matrix holds IL-21 as ln pg/mL
            shown[name] = f"{float(record[name]):g} {feature.unit}".strip()
            if name == "il21_pg_ml":
                assay = str(record["il21_assay"]).strip().lower()
                shown[name] += f", {CATEGORY_LABELS.get(assay, assay)}"
    return shown


def _patient(args: list[str], month: int) -> tuple[dict, ValidatedBatch, ScoringOptions]:
    """The patient of the file and flags, validated, and the options for ``month``; exit 2 naming the problem."""
    try:
        patient, flags = flag_values(args)
        record = (patient_file(patient) if patient is not None else {}) | flags
        options = ScoringOptions(horizons=(month,))
    except ValueError as error:
        raise fail(str(error).replace("horizons:", "--month:"), 2) from error
    unknown = sorted(set(record) - {ID_COLUMN, *INPUT_NAMES})
    if unknown:
        raise fail(f"unknown field {', '.join(unknown)}; the patient's values are {', '.join(INPUT_NAMES)}", 2)
    missing = [f.name for f in FEATURES if f.required and record.get(f.name) in (None, "")]
    if missing:
        raise fail(", ".join(f"{name}: required (in the file or as --{name.replace('_', '-')})" for name in missing), 2)
    try:
        batch = validate_frame(pd.DataFrame([{k: v for k, v in record.items() if k != ID_COLUMN}], dtype=object))
    except InputSchemaError as error:
        raise fail(str(error), 2) from error
    if len(batch.rejects):
        raise fail(f"patient: {batch.rejects['reason'].iloc[0]}", 2)
    return record, batch, options


def _panels(model: LoadedModel, batch: ValidatedBatch, record: dict, outcomes: list[str], month: int) -> list[dict]:
    """One waterfall panel per outcome; each outcome's risk printed as it is drawn."""
    explained = model.risk_model.explain(batch.matrix, (month,))
    values = shown_values(record, input_values(batch.matrix)[0])
    treatment = values["treatment"]
    panels = []
    for name in outcomes:
        scores = explained[name]
        panels.append({"title": f"{OUTCOME_DESCRIPTIONS.get(name, name)}: risk by month {month} on {treatment}",
                       "base_value": float(scores.base[0]), "shap": dict(zip(FEATURE_NAMES, scores.shap_at(0)[0].tolist())),
                       "risk": float(scores.risk[0, 0]), "values": values,
                       "reference_risk": float(scores.reference_risk()[0, 0]), "scale": scores.scale,
                       "extrapolated": bool(scores.extrapolated[0, 0])})
        console.print(f"{name}: {100 * scores.risk[0, 0]:.2g}% by month {month} on {treatment} "
                      f"(reference patient {100 * scores.reference_risk()[0, 0]:.2g}%)"
                      + (" — extrapolated" if scores.extrapolated[0, 0] else ""), highlight=False)
    return panels


def _save(figure, out: Path, kind: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # SVG text stays text, to be edited in a paper; no creation date, so the same patient and model
    # give the same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "autorisk"}):
        figure.savefig(out, format=kind, dpi=200, metadata={"Date": None} if kind == "svg" else {"Software": None})


def explain(given: ExplainOptions, args: list[str]) -> None:
    """The patient of ``args`` (a JSON file, flags, or both) explained; the picture written to ``--out``."""
    kind = given.out.suffix.lower().lstrip(".")
    if kind not in ("svg", "png"):
        raise fail(f"--out {given.out}: unsupported extension {given.out.suffix!r}; use .svg or .png", 2)
    record, batch, options = _patient(args, given.month)
    try:
        version, alias = version_or_alias(given.model_version)
    except ValueError as error:
        raise fail(str(error), 2) from error
    model = load_registered(version, alias)
    outcomes = model.risk_model.outcome_names
    if given.outcome is not None and given.outcome not in outcomes:
        raise fail(f"--outcome must be one of {', '.join(outcomes)}, got {given.outcome!r}", 2)
    notes = "; ".join(n for n in (batch.warnings[0], model.risk_model.input_warnings(batch.matrix)[0],
                                  model.risk_model.extrapolation_notes(batch.matrix, options.horizons)[0]) if n)
    chosen = [given.outcome] if given.outcome else outcomes
    _save(waterfall_figure(_panels(model, batch, record, chosen, given.month)), given.out, kind)
    if notes:
        console.print(f"[yellow]warnings: {notes}[/]", highlight=False, soft_wrap=True)
    console.print(f"model {model.name} v{model.version}; wrote {given.out}")
    console.print(RESEARCH_NOTICE)
