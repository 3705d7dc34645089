"""The single definition of autorisk's input features.

Everything that needs to know what a patient record looks like derives from
:data:`FEATURES`: the cohort simulator (column names),
frame validation (:mod:`features.validation`), the REST request model
(:func:`features.validation.patient_model`), the MLflow model signature (:func:`mlflow_input_schema`)
and the README's feature table (:func:`markdown_table`). What the model learned of its
inputs (the range its training data covered, each IL-21 kit's standardisation) is not
here: it belongs to each model version (:mod:`models.domain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ID_COLUMN = "patient_id"

Kind = Literal["number", "integer", "boolean", "category"]


@dataclass(frozen=True)
class Feature:
    """One model input.

    Attributes
    ----------
    name : str
        Column / JSON field name; carries its unit where it has one.
    kind : {"number", "integer", "boolean", "category"}
        Value type.
    unit : str
        Unit of measurement ("" for booleans and categories).
    description : str
        What the value means, for the API docs and the README.
    required : bool
        Whether the value must be present. A missing optional value means "unknown".
    possible : tuple of float, optional
        Physically possible ``(low, high)``; values outside are rejected.
    low_exclusive : bool
        Whether ``possible[0]`` itself is impossible (``il21_pg_ml > 0``).
    categories : tuple of str
        Allowed values of a category.
    default : str, optional
        Value used when a category is missing.
    example : object
        Example value for the API docs.
    model_input : bool
        Whether the value is a column of the model matrix (and so has a SHAP value);
        ``il21_assay`` only sets the scale on which ``il21_pg_ml`` is read.
    label : str
        Short name for people: form labels, explanation pictures.
    """

    name: str
    kind: Kind
    unit: str
    description: str
    required: bool
    example: Any
    possible: tuple[float, float] | None = None
    low_exclusive: bool = False
    categories: tuple[str, ...] = ()
    default: str | None = None
    model_input: bool = True
    label: str = ""

    def possible_text(self) -> str:
        """Human-readable possible range or category list."""
        if self.kind == "category":
            return " / ".join(self.categories)
        if self.kind == "boolean":
            return "true / false"
        low, high = self.possible
        left = f"> {low:g}" if self.low_exclusive else f">= {low:g}"
        return f"{left} and <= {high:g}"


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="age_years",
        label="Age at first course",
        kind="number",
        unit="years",
        description="Age at the first alemtuzumab (or comparator) course.",
        required=True,
        example=34.0,
        possible=(0.0, 120.0),
    ),
    Feature(
        name="sex",
        label="Sex",
        kind="category",
        unit="",
        description="Sex.",
        required=True,
        example="female",
        categories=("female", "male"),
    ),
    Feature(
        name="disease_duration_years",
        label="Disease duration",
        kind="number",
        unit="years",
        description="Years since the first MS symptoms; cannot exceed age_years.",
        required=True,
        example=2.5,
        possible=(0.0, 120.0),
    ),
    Feature(
        name="edss",
        label="EDSS at baseline",
        kind="number",
        unit="EDSS points",
        description="Expanded Disability Status Scale score at baseline.",
        required=False,
        example=2.0,
        possible=(0.0, 10.0),
    ),
    Feature(
        name="relapses_prior_2y",
        label="Relapses in the prior 2 years",
        kind="integer",
        unit="relapses",
        description="Number of clinical relapses in the two years before treatment.",
        required=False,
        example=2,
        possible=(0.0, 100.0),
    ),
    Feature(
        name="prior_dmt",
        label="Prior disease-modifying therapy",
        kind="boolean",
        unit="",
        description="Previously treated with a disease-modifying therapy.",
        required=False,
        example=False,
    ),
    Feature(
        name="il21_pg_ml",
        label="Serum IL-21 before treatment",
        kind="number",
        unit="pg/mL",
        description="Pre-treatment serum IL-21, on the scale of the kit named in il21_assay; "
        "the model reads each kit's values on their own, standardised as that kit read its training patients.",
        required=False,
        example=310.0,
        possible=(0.0, 1.0e6),
        low_exclusive=True,
    ),
    Feature(
        name="il21_assay",
        label="IL-21 kit",
        kind="category",
        unit="",
        description="IL-21 kit: legacy_elisa (the original, withdrawn kit) or current_elisa "
        "(a current commercial kit, reading about ten times lower, found to have no predictive value); "
        "required when il21_pg_ml is given.",
        required=False,
        example="legacy_elisa",
        categories=("legacy_elisa", "current_elisa"),
        model_input=False,
    ),
    Feature(
        name="smoker",
        label="Current smoker",
        kind="boolean",
        unit="",
        description="Current smoker.",
        required=False,
        example=False,
    ),
    Feature(
        name="family_history_autoimmunity",
        label="Autoimmune disease in a first-degree relative",
        kind="boolean",
        unit="",
        description="Autoimmune disease in a first-degree relative.",
        required=False,
        example=False,
    ),
    Feature(
        name="thyroid_antibodies",
        label="Thyroid antibodies (anti-TPO or anti-Tg)",
        kind="boolean",
        unit="",
        description="Baseline anti-TPO or anti-thyroglobulin antibodies positive.",
        required=False,
        example=False,
    ),
    Feature(
        name="treatment",
        label="Treatment under consideration",
        kind="category",
        unit="",
        description="The course the risk is for; alemtuzumab when missing.",
        required=False,
        example="alemtuzumab",
        categories=("alemtuzumab", "interferon_beta_1a"),
        default="alemtuzumab",
    ),
)

# Category values as people read them (forms, pictures); a value not listed reads as itself.
CATEGORY_LABELS: dict[str, str] = {
    "interferon_beta_1a": "interferon beta-1a",
    "legacy_elisa": "legacy ELISA (withdrawn kit)",
    "current_elisa": "current ELISA",
}

# The kits differ about ten-fold in absolute level, so each has its own model column and its own
# standardisation, learned from the training patients measured with it (models.domain); what is published of
# each, as a laboratory report names it, is features.il21_kits.KIT_DETAILS.
IL21_FEATURE = "il21_pg_ml"
IL21_KIT_FEATURE = "il21_assay"
IL21_KITS: tuple[str, ...] = next(f.categories for f in FEATURES if f.name == IL21_KIT_FEATURE)

INPUT_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
# The inputs the model explains, in order; each has a SHAP value.
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.model_input)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}


def kit_column(kit: str) -> str:
    """``"legacy_elisa"`` -> ``"il21_pg_ml@legacy_elisa"``: the model column of IL-21 measured with a kit."""
    return f"{IL21_FEATURE}@{kit}"


# Columns of the model matrix, in order: one per explained input, but IL-21, which has one per kit (ln pg/mL
# on that kit's scale; NaN unless measured with it). A feature's SHAP value is the sum over its columns.
MODEL_COLUMNS: tuple[str, ...] = tuple(
    column for name in FEATURE_NAMES for column in ((kit_column(k) for k in IL21_KITS) if name == IL21_FEATURE
                                                    else (name,)))
# The explained input of each model column, as an index into FEATURE_NAMES.
COLUMN_FEATURE: tuple[int, ...] = tuple(FEATURE_NAMES.index(c.split("@")[0]) for c in MODEL_COLUMNS)

# Numeric code of each category (model matrix and validation).
CATEGORY_CODES: dict[str, dict[str, float]] = {
    "sex": {"male": 0.0, "female": 1.0},
    "treatment": {"interferon_beta_1a": 0.0, "alemtuzumab": 1.0},
    "il21_assay": {"legacy_elisa": 0.0, "current_elisa": 1.0},
}


# Said wherever a risk is shown.
RESEARCH_NOTICE = "Research tool on synthetic data; not for clinical decisions."

OUTCOMES: tuple[str, ...] = ("thyroid", "itp")
OUTCOME_DESCRIPTIONS: dict[str, str] = {
    "thyroid": "thyroid disorder (Graves' disease, hypo- or hyperthyroidism, thyroiditis)",
    "itp": "immune thrombocytopenic purpura",
}
TREATMENTS: tuple[str, ...] = ("alemtuzumab", "interferon_beta_1a")
TREATMENT_FEATURE = "treatment"

# Risks are answered for any whole month after the first course up to MAX_HORIZON_MONTHS: the
# longest follow-up of any training cohort (the 72-month extension).
MIN_HORIZON_MONTHS = 1
MAX_HORIZON_MONTHS = 72
# What every front door answers unless asked otherwise: 48 is the label's monitoring window
# after the last course.
DEFAULT_HORIZONS_MONTHS: tuple[int, ...] = (24, 48)
# The horizons every model is evaluated at against the simulator's truth.
EVALUATION_HORIZONS_MONTHS: tuple[int, ...] = (12, 24, 36, 48)
# Monitoring view: risk by the end of each year after the first course (the review proposes five years).
MONITORING_YEARS = 5
# The scale of every SHAP value: with a proportional-hazards model the contributions of the
# features are the same at every horizon, and base_value(t) + sum(shap) = log(-log(1 - risk(t))).
EXPLANATION_SCALE = "log cumulative hazard"


def endpoint(outcome: str, horizon_months: int) -> str:
    """``("thyroid", 24)`` -> ``"thyroid_24m"``: an outcome at a horizon, as named everywhere."""
    return f"{outcome}_{horizon_months}m"


def check_horizons(horizons) -> tuple[int, ...]:
    """Whole months within the served range, sorted and unique.

    Raises
    ------
    ValueError
        Naming the range, for a month outside it or a value that is not a whole number.
    """
    checked = []
    for value in horizons:
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"horizons: {value!r} is not a whole number of months")
        month = int(value)
        if not MIN_HORIZON_MONTHS <= month <= MAX_HORIZON_MONTHS:
            raise ValueError(f"horizons: {month} months is outside the range {MIN_HORIZON_MONTHS}–"
                             f"{MAX_HORIZON_MONTHS} months after the first course")
        checked.append(month)
    if not checked:
        raise ValueError(f"horizons: give at least one month ({MIN_HORIZON_MONTHS}–{MAX_HORIZON_MONTHS})")
    return tuple(sorted(set(checked)))


# Model-matrix columns whose SHAP value is the same at every horizon; the treatment's also
# carries the difference between the treatments' baseline hazards, which changes with time.
HORIZON_FREE_FEATURES: tuple[str, ...] = tuple(n for n in (f.name for f in FEATURES if f.model_input)
                                               if n != TREATMENT_FEATURE)


def shap_column(outcome: str, feature: str, horizon_months: int | None = None) -> str:
    """Batch-output column of a SHAP value: ``shap_<outcome>__<feature>`` (every horizon) or,
    for the treatment, ``shap_<outcome>_<h>m__treatment`` (one horizon)."""
    if feature == TREATMENT_FEATURE:
        return f"shap_{endpoint(outcome, horizon_months)}__{feature}"
    return f"shap_{outcome}__{feature}"


def contrast_columns(outcome: str, horizon_months: int) -> list[str]:
    """``risk_<outcome>_<h>m_if_<treatment>`` per treatment, then ``excess_<outcome>_<h>m``."""
    name = endpoint(outcome, horizon_months)
    return [f"risk_{name}_if_{t}" for t in TREATMENTS] + [f"excess_{name}"]


def output_columns(outcomes: tuple[str, ...] = OUTCOMES,
                   horizons: tuple[int, ...] = DEFAULT_HORIZONS_MONTHS, contrast: bool = False,
                   timing: bool = False) -> list[str]:
    """Score columns per patient, in output order (without ids, warnings and model version).

    Per outcome: ``risk_<o>_<h>m``, ``base_<o>_<h>m`` (with ``timing``, the mixture-cure family's
    ``timing_<o>_<h>m``, the treatment's timing share) and the risk's 95% interval (``risk_lo_<o>_<h>m``,
    ``risk_hi_<o>_<h>m``) per horizon, the SHAP value of each feature that is the same at every horizon
    (``shap_<o>__<feature>``), the treatment's per horizon (``shap_<o>_<h>m__treatment``), and with
    ``contrast`` the risks under each treatment and their difference per horizon.
    """
    columns: list[str] = []
    for outcome in outcomes:
        for h in horizons:
            name = endpoint(outcome, h)
            columns += [f"risk_{name}", f"base_{name}", *([f"timing_{name}"] if timing else []),
                        f"risk_lo_{name}", f"risk_hi_{name}"]
        columns += [shap_column(outcome, name) for name in HORIZON_FREE_FEATURES]
        columns += [shap_column(outcome, TREATMENT_FEATURE, h) for h in horizons]
        if contrast:
            for h in horizons:
                columns += contrast_columns(outcome, h)
    return columns


def mlflow_input_schema():
    """MLflow signature input schema of the pyfunc model: every input by name, required or not.

    Values are typed ``Any`` on purpose: MLflow enforces the signature *before* the model
    sees the frame, and its strict types would refuse what the other front doors accept
    (an integer age, ``"yes"`` for a boolean). :func:`features.validation.validate_frame`
    checks types and ranges instead, the same way for every front door.
    """
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    specs = [ColSpec(AnyType(), ID_COLUMN, required=False)]
    specs += [ColSpec(AnyType(), f.name, required=f.required) for f in FEATURES]
    return Schema(specs)


def mlflow_output_schema():
    """MLflow signature output schema of the pyfunc model, at the default horizons without contrast."""
    from mlflow.types import ColSpec, Schema

    specs = [ColSpec("string", ID_COLUMN, required=False), ColSpec("string", TREATMENT_FEATURE)]
    specs += [ColSpec("double", name) for name in output_columns()]
    return Schema([*specs, ColSpec("string", "warnings")])


def mlflow_params_schema():
    """MLflow signature params of the pyfunc model: the horizons and whether to add the contrast."""
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ParamSchema([
        ParamSpec("horizons_months", "long", list(DEFAULT_HORIZONS_MONTHS), shape=(-1,)),
        ParamSpec("contrast", "boolean", False),
    ])


def markdown_table() -> str:
    """The README's feature table."""
    rows = [
        "| name | type | unit | required | possible (else rejected) | description |",
        "|---|---|---|---|---|---|",
        f"| `{ID_COLUMN}` | string | | no | | Echoed back; never a model input. |",
    ]
    for f in FEATURES:
        required = "yes" if f.required else (f"no (default `{f.default}`)" if f.default else "no")
        rows.append(
            f"| `{f.name}` | {f.kind} | {f.unit} | {required} | {f.possible_text()} | {f.description} |"
        )
    return "\n".join(rows)
