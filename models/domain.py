"""What a model learned of its inputs: the range its training data covered, and each IL-21 kit's scale.

Learned from the training model matrix when the model is fitted and stored with the version, so that
a model trained on a registry's own patients knows that registry's ranges and kits, and nothing in
:mod:`features` needs to know what any training data looked like:

- **Training range.** Per model column, the lowest and highest value a training patient had. A value
  outside it is scored as the nearest end, with a warning naming the value used: a linear model would
  otherwise turn EDSS 9.5 or 40 relapses into a risk of 1 (trees are unchanged by it, their splits all
  lie within the training data).
- **IL-21 kits.** Each kit has its own column (:data:`features.schema.MODEL_COLUMNS`): the same patient
  reads about ten-fold apart on two kits, and the kits need not be worth the same. A kit's values are
  standardised by the median and the standard deviation of ln IL-21 among the training patients
  measured with it. A kit with fewer than :data:`MIN_KIT_PATIENTS` such patients has no standardisation:
  its values are scored as not provided, with a warning naming the kit. Every value measured with the
  current kit carries the one line of evidence about it (:data:`features.il21_kits.KIT_DETAILS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.il21_kits import KIT_DETAILS
from features.schema import (
    FEATURES_BY_NAME,
    IL21_FEATURE,
    IL21_KITS,
    MODEL_COLUMNS,
    TREATMENT_FEATURE,
    kit_column,
)

# Fewest training patients measured with a kit for the model to read the kit's values at all.
MIN_KIT_PATIENTS = 20
_KIT_COLUMN = {kit: MODEL_COLUMNS.index(kit_column(kit)) for kit in IL21_KITS}
_MEASURED = np.array([name.startswith(f"{IL21_FEATURE}@") or FEATURES_BY_NAME[name].kind in ("number", "integer")
                      for name in MODEL_COLUMNS])
# Kits whose every value is said to carry what the evidence says of them: the current kit, the one a
# laboratory uses today, found to have no predictive value. The legacy kit's contested effect is what the
# model's IL-21 part is about, stated in the model card.
NOTED_KITS = ("current_elisa",)


@dataclass(frozen=True)
class KitScale:
    """How a model reads IL-21 measured with one kit.

    Attributes
    ----------
    patients : int
        Training patients measured with the kit.
    median_pg_ml : float
        Their median IL-21, pg/mL (NaN below :data:`MIN_KIT_PATIENTS`).
    log_sd : float
        The standard deviation of their ln IL-21 (NaN below :data:`MIN_KIT_PATIENTS`).
    """

    patients: int
    median_pg_ml: float
    log_sd: float

    @property
    def usable(self) -> bool:
        return self.patients >= MIN_KIT_PATIENTS and np.isfinite(self.log_sd) and self.log_sd > 0


@dataclass(frozen=True)
class InputDomain:
    """The inputs as a model's training data had them.

    Attributes
    ----------
    low, high : ndarray of shape (n_columns,)
        Per model column, the lowest and highest training value on the column's own scale (IL-21: ln pg/mL
        on the kit's scale); NaN for a column no training patient had a value in.
    kits : dict of str to KitScale
        Per IL-21 kit.
    imputation : dict of str to (values, weights)
        Per model column an input may be missing in, what its training patients had: five quantiles (10th to
        90th) of a measurement, each with weight 0.2, or each value of a yes/no input with its share. For
        IL-21, the values of the kit most training patients were measured with, which stand for a patient's
        unknown IL-21 (the reading of another kit included). What a risk may be when an input is not provided
        (:meth:`models.scoring.RiskModel.intervals`).
    """

    low: np.ndarray
    high: np.ndarray
    kits: dict[str, KitScale]
    imputation: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)

    @classmethod
    def fit(cls, matrix: np.ndarray) -> InputDomain:
        """Learn the domain of a training model matrix of shape (n, n_columns) (:func:`features.validation.encode`)."""
        matrix = np.asarray(matrix, dtype=float)
        known = ~np.isnan(matrix)
        # Ranges of measurements only: a boolean or a category has no "nearest training value", and a
        # treatment no training patient had must fail where the model is fitted, not be scored as another.
        seen = known.any(axis=0) & _MEASURED
        low = np.where(seen, np.nanmin(np.where(known, matrix, np.inf), axis=0), np.nan)
        high = np.where(seen, np.nanmax(np.where(known, matrix, -np.inf), axis=0), np.nan)
        kits = {}
        for kit, column in _KIT_COLUMN.items():
            values = matrix[known[:, column], column]
            usable = len(values) >= MIN_KIT_PATIENTS
            kits[kit] = KitScale(patients=len(values),
                                 median_pg_ml=float(np.exp(np.median(values))) if usable else float("nan"),
                                 log_sd=float(np.std(values, ddof=1)) if usable else float("nan"))
        return cls(low=low, high=high, kits=kits, imputation=_imputation_values(matrix, kits))

    def prepare(self, matrix: np.ndarray) -> np.ndarray:
        """What the estimators see: values bounded to the training range, each kit's IL-21 standardised
        (NaN for a kit the model cannot read), shape (n, n_columns); a new array."""
        prepared = np.clip(matrix, np.where(np.isnan(self.low), -np.inf, self.low),
                           np.where(np.isnan(self.high), np.inf, self.high))
        for kit, column in _KIT_COLUMN.items():
            scale = self.kits[kit]
            if scale.usable:
                prepared[:, column] = (prepared[:, column] - np.log(scale.median_pg_ml)) / scale.log_sd
            else:
                prepared[:, column] = np.nan
        return prepared

    def outside(self, matrix: np.ndarray) -> np.ndarray:
        """Whether each row of a model matrix has a value outside the training range, shape (n,)."""
        with np.errstate(invalid="ignore"):
            return ((matrix < self.low) | (matrix > self.high)).any(axis=1)

    def warnings(self, matrix: np.ndarray) -> np.ndarray:
        """Per row of a model matrix, "; "-joined warnings ("" where none), shape (n,): each value outside the
        training range with the value it is scored as, and each IL-21 value with what is known of its kit."""
        notes = np.full(len(matrix), "", dtype=object)
        if not len(matrix):
            return notes
        with np.errstate(invalid="ignore"):
            outside = (matrix < self.low) | (matrix > self.high)
        rows, columns = np.nonzero(outside)
        for i, j in zip(rows.tolist(), columns.tolist()):
            _append(notes, i, self._range_warning(j, matrix[i, j]))
        for kit, column in _KIT_COLUMN.items():
            measured = ~np.isnan(matrix[:, column])
            if measured.any() and (kit in NOTED_KITS or not self.kits[kit].usable):
                note = self._kit_note(kit)
                notes[measured] = np.where(notes[measured] == "", note, notes[measured] + "; " + note)
        return notes

    def _range_warning(self, column: int, value: float) -> str:
        name = MODEL_COLUMNS[column]
        low, high = self.low[column], self.high[column]
        used = min(max(value, low), high)
        if name.startswith(f"{IL21_FEATURE}@"):
            kit = name.split("@", 1)[1]
            return (f"{IL21_FEATURE}: {np.exp(value):.4g} is outside the training range {np.exp(low):.4g}–"
                    f"{np.exp(high):.4g} pg/mL of {kit} and is scored as {np.exp(used):.4g}: the risk may be unreliable")
        return (f"{name}: {value:g} is outside the training range {low:g}–{high:g} and is scored as {used:g}: "
                "the risk may be unreliable")

    def _kit_note(self, kit: str) -> str:
        scale, detail = self.kits[kit], KIT_DETAILS[kit]
        evidence = f"{detail.printed_name} ({kit}): {detail.evidence}"
        if not scale.usable:
            return (f"{IL21_FEATURE}: scored as not provided: {scale.patients} training patients were measured "
                    f"with {kit}, too few (under {MIN_KIT_PATIENTS}) to read its values; {evidence}")
        return f"{IL21_FEATURE}: measured with the {evidence}"

    def input_ranges(self) -> dict[str, tuple[float, float]]:
        """The training range of each input in its own unit (IL-21 per kit as ``il21_pg_ml@<kit>``, pg/mL);
        inputs without a range (booleans, categories) or without any training value are left out."""
        ranges = {}
        for column, name in enumerate(MODEL_COLUMNS):
            low, high = self.low[column], self.high[column]
            if np.isnan(low):
                continue
            if name.startswith(f"{IL21_FEATURE}@"):
                ranges[name] = (float(np.exp(low)), float(np.exp(high)))
            else:
                ranges[name] = (float(low), float(high))
        return ranges

    def state(self) -> dict:
        """As JSON (every float64 exact; NaN as null)."""
        return {"low": [None if np.isnan(v) else float(v) for v in self.low],
                "high": [None if np.isnan(v) else float(v) for v in self.high],
                "columns": list(MODEL_COLUMNS),
                "kits": {kit: {"patients": s.patients,
                               "median_pg_ml": None if np.isnan(s.median_pg_ml) else s.median_pg_ml,
                               "log_sd": None if np.isnan(s.log_sd) else s.log_sd} for kit, s in self.kits.items()},
                "imputation": {name: [list(values), list(weights)] for name, (values, weights) in self.imputation.items()}}

    @classmethod
    def from_state(cls, state: dict) -> InputDomain:
        """Read what :meth:`state` wrote.

        Raises
        ------
        ValueError
            When the stored columns are not this version's model columns.
        """
        if list(state["columns"]) != list(MODEL_COLUMNS):
            raise ValueError(f"input domain: stored columns {state['columns']} are not {list(MODEL_COLUMNS)}")

        def floats(values) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=float)

        kits = {kit: KitScale(patients=int(s["patients"]),
                              median_pg_ml=float("nan") if s["median_pg_ml"] is None else float(s["median_pg_ml"]),
                              log_sd=float("nan") if s["log_sd"] is None else float(s["log_sd"]))
                for kit, s in state["kits"].items()}
        imputation = {name: (tuple(map(float, values)), tuple(map(float, weights)))
                      for name, (values, weights) in state.get("imputation", {}).items()}
        return cls(low=floats(state["low"]), high=floats(state["high"]), kits=kits, imputation=imputation)

    @property
    def imputed_kit(self) -> str | None:
        """The IL-21 kit whose column stands for an unknown IL-21 (the one most training patients had)."""
        return next((name.split("@", 1)[1] for name in self.imputation if name.startswith(f"{IL21_FEATURE}@")), None)


IMPUTATION_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


def _imputation_values(matrix: np.ndarray, kits: dict[str, KitScale]) -> dict[str, tuple[tuple[float, ...], ...]]:
    """Per column an input may be missing in, the training values that stand for it (see :class:`InputDomain`)."""
    reference_kit = max(kits, key=lambda k: kits[k].patients)
    values = {}
    for column, name in enumerate(MODEL_COLUMNS):
        feature = name.split("@", 1)[0]
        if feature == TREATMENT_FEATURE or FEATURES_BY_NAME[feature].required:
            continue  # never missing: the treatment has a default, a required input is refused
        if feature == IL21_FEATURE and (name != kit_column(reference_kit) or not kits[reference_kit].usable):
            continue
        known = matrix[~np.isnan(matrix[:, column]), column]
        if not len(known):
            continue
        if _MEASURED[column] and len(np.unique(known)) > len(IMPUTATION_QUANTILES):
            grid = np.quantile(known, IMPUTATION_QUANTILES)
            values[name] = (tuple(float(v) for v in grid), tuple([1.0 / len(grid)] * len(grid)))
        else:
            levels, counts = np.unique(known, return_counts=True)
            values[name] = (tuple(float(v) for v in levels), tuple(float(c) for c in counts / counts.sum()))
    return values


def _append(notes: np.ndarray, i: int, note: str) -> None:
    notes[i] = f"{notes[i]}; {note}" if notes[i] else note


def domain_section(domain: InputDomain) -> str:
    """Markdown for the model card: the training range of each input and how each IL-21 kit is read."""
    lines = ["| input | training range (values outside are scored as the nearest end, with a warning) |", "|---|---|"]
    for name, (low, high) in domain.input_ranges().items():
        if name.startswith(f"{IL21_FEATURE}@"):
            lines.append(f"| `{IL21_FEATURE}`, {name.split('@', 1)[1]} | {low:.4g}–{high:.4g} pg/mL |")
        else:
            unit = FEATURES_BY_NAME[name].unit
            lines.append(f"| `{name}` | {low:g}–{high:g}{' ' + unit if unit else ''} |")
    kits = ["| IL-21 kit | training patients measured with it | median | SD of ln IL-21 | read as | evidence |",
            "|---|---|---|---|---|---|"]
    for kit, scale in domain.kits.items():
        read = ("z-score on this kit's own scale" if scale.usable
                else f"not provided (fewer than {MIN_KIT_PATIENTS} training patients)")
        median = f"{scale.median_pg_ml:.4g} pg/mL" if scale.usable else "—"
        sd = f"{scale.log_sd:.3f}" if scale.usable else "—"
        kits.append(f"| {kit} | {scale.patients:,} | {median} | {sd} | {read} | {KIT_DETAILS[kit].evidence} |")
    return "\n".join(lines) + "\n\n" + "\n".join(kits)

