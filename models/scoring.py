"""The one scoring function behind every front door (batch files, Spark, REST, the MLflow pyfunc)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import (
    CATEGORY_CODES,
    COLUMN_FEATURE,
    IL21_FEATURE,
    IL21_KITS,
    kit_column,
    DEFAULT_HORIZONS_MONTHS,
    FEATURE_NAMES,
    HORIZON_FREE_FEATURES,
    ID_COLUMN,
    MONITORING_YEARS,
    TREATMENT_FEATURE,
    TREATMENTS,
    check_horizons,
    contrast_columns,
    endpoint,
    shap_column,
)
from features.validation import COLUMN_INDEX, ValidatedBatch
from models.domain import InputDomain
from models.intervals import EXTRAPOLATION_LOG_SD, RULE_OF_THREE, interval, interval_variance, risk_from_log_hazard
from models.survival import (
    EXTRAPOLATION_RULE,
    TREATMENT_BY_CODE,
    TREATMENT_COLUMN,
    TREATMENT_INPUT,
    OutcomeExplanation,
    StratifiedCox,
    treatment_index,
)


@dataclass(frozen=True)
class ScoringOptions:
    """What a caller asks of every patient: the horizons, and whether to add the treatment contrast.

    Attributes
    ----------
    horizons : tuple of int
        Whole months after the first course, 1–72 (checked, sorted and made unique).
    contrast : bool
        Add each patient's risks under both treatments and their difference.
    """

    horizons: tuple[int, ...] = DEFAULT_HORIZONS_MONTHS
    contrast: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "horizons", check_horizons(self.horizons))


@dataclass(frozen=True)
class MonitoringView:
    """Risk by the end of each year after the first course, and the year onsets are likeliest.

    Attributes
    ----------
    risk : ndarray of shape (n, MONITORING_YEARS)
        Probability of onset by the end of years 1, 2, ...
    onset_in_year : ndarray of shape (n, MONITORING_YEARS)
        Probability of onset within each year among patients without onset before it (the year's hazard).
    peak_year : ndarray of int, shape (n,)
        The year (1-based) with the highest hazard; the earliest of years that tie (see :func:`peak_year`).
    extrapolated : ndarray of bool, shape (n, MONITORING_YEARS)
        Years ending beyond the follow-up the training data had on the patient's treatment.
    """

    risk: np.ndarray
    onset_in_year: np.ndarray
    peak_year: np.ndarray
    extrapolated: np.ndarray


class RiskModel:
    """One survival model per outcome, all of the same family: risk at any month 1–72, explained.

    Every call takes a model matrix as :mod:`features.validation` encodes it and first prepares it
    as the model's training data had it (:meth:`models.domain.InputDomain.prepare`): values
    outside the training range moved to its nearest end, so that no input can push a risk to 0 or
    1, and each IL-21 kit read on its own learned scale.

    Parameters
    ----------
    family : str
        Model family name (``cox-linear``, ``cox-xgboost``).
    outcomes : dict of str to StratifiedCox
        Fitted model per outcome (``thyroid``, ``itp``), fitted on prepared matrices.
    domain : InputDomain
        What the training data covered (:mod:`models.domain`).
    spreads : dict, optional
        Per outcome, the bootstrap spread behind each risk's interval (:mod:`models.intervals`).
    """

    def __init__(self, *, family: str, outcomes: dict[str, StratifiedCox], domain: InputDomain,
                 spreads: dict | None = None) -> None:
        self.family = family
        self.outcomes = outcomes
        self.domain = domain
        # Per outcome, the bootstrap spread behind each risk's interval (models.intervals); none: no intervals.
        self.spreads = dict(spreads or {})

    def with_spreads(self, spreads: dict) -> RiskModel:
        """The same model with the bootstrap spreads of :mod:`models.intervals` (per outcome)."""
        return RiskModel(family=self.family, outcomes=self.outcomes, domain=self.domain, spreads=spreads)

    def prepare(self, matrix: np.ndarray) -> np.ndarray:
        """The model matrix as the estimators see it (a new array; see :class:`models.domain.InputDomain`)."""
        return self.domain.prepare(matrix)

    def input_warnings(self, matrix: np.ndarray) -> np.ndarray:
        """Per patient, what the model says of the inputs ("" when nothing), shape (n,): values outside its
        training range and the value each is scored as, an IL-21 kit it cannot read, the evidence on a kit."""
        return self.domain.warnings(matrix)

    @property
    def outcome_names(self) -> tuple[str, ...]:
        return tuple(self.outcomes)

    def use_threads(self, n_threads: int) -> RiskModel:
        """Let each model call use ``n_threads`` CPU threads (default: all cores).

        A server that runs one worker process per core gains nothing from threads inside a
        call and loses much to them: for a request of one patient, starting and joining
        threads costs more than the trees. Returns ``self``.
        """
        for model in self.outcomes.values():
            inner = getattr(model.estimator_, "inner", model.estimator_)  # a recalibrated model's own
            if hasattr(inner, "booster_"):
                inner.n_jobs = n_threads
                inner.booster_.set_param({"nthread": n_threads})
        for spread in self.spreads.values():
            spread = getattr(spread, "inner", spread)
            if hasattr(spread, "n_threads"):
                spread.n_threads = n_threads
                spread.booster.set_param({"nthread": n_threads})  # used where the tables fall back
        return self

    @property
    def extrapolation_rule(self) -> str:
        """How the family goes on beyond a treatment's follow-up, in words."""
        return getattr(next(iter(self.outcomes.values())), "extrapolation_rule", EXTRAPOLATION_RULE)

    @property
    def gives_timing_share(self) -> bool:
        """Whether each risk comes with its treatment's timing share (the mixture-cure family's answers)."""
        return any(getattr(m, "gives_timing_share", False) for m in self.outcomes.values())

    @property
    def timing_varies_by_patient(self) -> bool:
        """Whether the shape of the risk over time is the patient's own (else the treatment's, for everyone on it)."""
        return any(m.timing_varies_by_patient for m in self.outcomes.values())

    @property
    def explanation_scale(self) -> str:
        """What ``base + sum(shap)`` is, in words (the same for every outcome of a family)."""
        return next(iter(self.outcomes.values())).explanation_scale

    def follow_up_months(self) -> dict[str, float]:
        """The longest follow-up the training data had on each treatment (later months are extrapolated)."""
        longest = np.min([m.baseline_.follow_up_months for m in self.outcomes.values()], axis=0)
        return {name: float(longest[s]) for s, name in enumerate(TREATMENT_BY_CODE)}

    def explain(self, matrix: np.ndarray, horizons) -> dict[str, OutcomeExplanation]:
        """Risks at ``horizons`` with their SHAP values, per outcome, for a model matrix of shape (n, n_features)."""
        prepared = self.prepare(matrix)
        return {outcome: model.explain(prepared, horizons) for outcome, model in self.outcomes.items()}

    def risks(self, matrix: np.ndarray, horizons, treatment: str | None = None) -> dict[str, np.ndarray]:
        """Risk per outcome at ``horizons``, shape (n, H) each, without SHAP values.

        With ``treatment``, every patient's risk had they that treatment (the counterfactual).
        """
        prepared = self.prepare(matrix)
        if treatment is not None:
            prepared[:, TREATMENT_COLUMN] = CATEGORY_CODES[TREATMENT_FEATURE][treatment]
        return {outcome: model.risk(prepared, horizons) for outcome, model in self.outcomes.items()}

    def intervals(self, matrix: np.ndarray, horizons, explained: dict[str, OutcomeExplanation] | None = None
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per outcome, the lower and upper ends of each risk's 95% interval, shape (n, H) each.

        On the log cumulative hazard scale (:mod:`models.intervals`): the bootstrap spread of the model's
        refits with Student's t for their number (:func:`models.intervals.interval_variance`), widened where a
        horizon is extrapolated; so the interval always holds the risk itself. For a treatment no training patient had an onset on, from 0 to the
        rule of three over its patients. NaN for an outcome the model has no refits of. With ``explained``
        (:meth:`explain` of the same matrix), the risks are not computed again.
        """
        prepared = self.prepare(matrix)
        strata = treatment_index(prepared)
        unknown = self.missing_input_variance(matrix, horizons) if self.spreads else {}
        answers = {}
        for outcome, model in self.outcomes.items():
            spread = self.spreads.get(outcome)
            if spread is None:
                missing = np.full((len(prepared), len(tuple(horizons))), np.nan)
                answers[outcome] = (missing, missing)
                continue
            f = explained[outcome].log_relative_hazard if explained else model.log_relative_hazard(prepared)
            log_hazard = model.log_cumulative_hazard(f, strata, horizons)
            extra = EXTRAPOLATION_LOG_SD * model.baseline_.extrapolated_share(horizons)[strata]
            log_sd = np.sqrt(interval_variance(spread, prepared, horizons) + extra ** 2 + unknown[outcome])
            lower, upper = interval(log_hazard, log_sd)
            answers[outcome] = monotone_bounds(*self._without_onsets(model, lower, upper, strata, horizons,
                                                                     risk_from_log_hazard(log_hazard)), horizons)
        return answers

    def missing_input_variance(self, matrix: np.ndarray, horizons) -> dict[str, np.ndarray]:
        """Per outcome, how much a patient's log cumulative hazard could differ for the inputs not provided,
        shape (n, H): for each unknown input, the variance of the model's answer over the values training
        patients had (:attr:`models.domain.InputDomain.imputation`), summed over the unknown inputs.

        The model's own risk for an unknown input is its average over such patients; the truth is one of the
        values. A first-order sum: the variances of several unknown inputs add as if they acted apart.
        """
        horizons = tuple(horizons)
        variance = {o: np.zeros((len(matrix), len(horizons))) for o in self.outcomes}
        kit = self.domain.imputed_kit
        for name, (values, weights) in self.domain.imputation.items():
            column = COLUMN_INDEX[name]
            rows = np.flatnonzero(np.isnan(matrix[:, column]))
            if not len(rows):
                continue
            filled = np.repeat(matrix[rows], len(values), axis=0)
            if name.startswith(f"{IL21_FEATURE}@"):  # an unknown IL-21: as if measured with the imputed kit alone
                filled[:, [COLUMN_INDEX[kit_column(k)] for k in IL21_KITS if k != kit]] = np.nan
            filled[:, column] = np.tile(values, len(rows))
            prepared = self.prepare(filled)
            strata, w = treatment_index(prepared), np.asarray(weights)[None, :, None]
            for outcome, model in self.outcomes.items():
                log_hazard = model.log_cumulative_hazard(model.log_relative_hazard(prepared), strata, horizons)
                log_hazard = log_hazard.reshape(len(rows), len(values), len(horizons))
                mean = (w * log_hazard).sum(axis=1, keepdims=True)
                variance[outcome][rows] += (w * (log_hazard - mean) ** 2).sum(axis=1)
        return variance

    @staticmethod
    def _without_onsets(model, lower: np.ndarray, upper: np.ndarray, strata: np.ndarray, horizons, risk: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """The interval of a risk on a treatment without training onsets: [0, the rule of three's bound]."""
        baseline = model.baseline_
        none = baseline.events[strata] == 0
        if not none.any():
            return lower, upper
        months = np.asarray(horizons, dtype=float)[None, :]
        window = baseline.follow_up_months[strata][:, None]
        bound = RULE_OF_THREE / np.maximum(baseline.patients[strata], 1.0)[:, None] * np.maximum(1.0, months / window)
        return np.where(none[:, None], 0.0, lower), np.where(none[:, None], np.maximum(bound, risk), upper)

    def contrast(self, matrix: np.ndarray, horizons,
                 explained: dict[str, OutcomeExplanation] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Per outcome, each patient's risks under every treatment, ``{outcome: {treatment: (n, H)}}``.

        With ``explained`` (:meth:`explain` of the same matrix), each patient's own treatment is
        read off it and only the other is computed: one model call per outcome, not two.
        """
        prepared = self.prepare(matrix)
        own = treatment_index(prepared)
        other = prepared.copy()
        other[:, TREATMENT_COLUMN] = np.array([CATEGORY_CODES[TREATMENT_FEATURE][t] for t in TREATMENT_BY_CODE])[1 - own]
        answers = {}
        for outcome, model in self.outcomes.items():
            f_own = explained[outcome].log_relative_hazard if explained else model.log_relative_hazard(prepared)
            f_other = model.log_relative_hazard(other)
            answers[outcome] = {}
            for s, name in enumerate(TREATMENT_BY_CODE):
                f = np.where(own == s, f_own, f_other)
                answers[outcome][name] = model.risk_from(f, np.full(len(f), s), horizons)
        return answers

    def monitoring(self, matrix: np.ndarray,
                   explained: dict[str, OutcomeExplanation] | None = None) -> dict[str, MonitoringView]:
        """Per outcome, the risk by year 1–5 and the year with the highest hazard (from ``explained``
        when given: no further model call)."""
        months = tuple(12 * year for year in range(1, MONITORING_YEARS + 1))
        prepared = self.prepare(matrix)
        strata = treatment_index(prepared)
        views = {}
        for outcome, model in self.outcomes.items():
            f = explained[outcome].log_relative_hazard if explained else model.log_relative_hazard(prepared)
            risk = model.risk_from(f, strata, months)
            survival = 1.0 - np.column_stack([np.zeros(len(risk)), risk])
            onset_in_year = 1.0 - survival[:, 1:] / survival[:, :-1]
            views[outcome] = MonitoringView(risk=risk, onset_in_year=onset_in_year,
                                            peak_year=peak_year(onset_in_year),
                                            extrapolated=model.baseline_.extrapolated(months)[strata])
        return views

    def extrapolation_notes(self, matrix: np.ndarray, horizons, contrast: bool = False) -> np.ndarray:
        """Per patient, a note naming the horizons whose risk is extrapolated ("" when none), shape (n,).

        A risk is extrapolated where the horizon lies beyond the longest follow-up the training
        data had on the treatment it is for: the patient's own, and with ``contrast`` the other's too.
        """
        follow_up = self.follow_up_months()
        horizons = tuple(horizons)
        rule = self.extrapolation_rule
        notes = {}
        for name in TREATMENT_BY_CODE:
            beyond = [h for h in horizons if h > follow_up[name]]
            notes[name] = (f"extrapolated: risks at {', '.join(map(str, beyond))} months on {name} lie beyond "
                           f"the {follow_up[name]:g} months of follow-up on it in the training data "
                           f"({rule})") if beyond else ""
        own = np.array([notes[name] for name in TREATMENT_BY_CODE], dtype=object)[treatment_index(matrix)]
        if not contrast:
            return own
        every = "; ".join(n for n in notes.values() if n)
        return np.full(len(matrix), every, dtype=object)


def not_provided(matrix: np.ndarray) -> np.ndarray:
    """Per patient and explained input, whether the value was not provided, shape (n, n_inputs): all of the
    input's model columns unknown."""
    unknown = np.isnan(matrix)
    missing = np.ones((len(matrix), len(FEATURE_NAMES)), dtype=bool)
    for column, feature in enumerate(COLUMN_FEATURE):
        missing[:, feature] &= unknown[:, column]
    return missing


PEAK_TIE_TOLERANCE = 1e-6


def peak_year(onset_in_year: np.ndarray) -> np.ndarray:
    """The 1-based year with the highest hazard, per row; shape (n, years) -> (n,).

    Years whose hazard lies within a relative :data:`PEAK_TIE_TOLERANCE` of the highest count as
    tied and the earliest wins: where a hazard is carried forward unchanged (a stratum without
    a reconstitution peak, or beyond the follow-up) rounding alone would otherwise pick the year.
    """
    highest = onset_in_year.max(axis=1, keepdims=True)
    return np.argmax(onset_in_year >= highest * (1.0 - PEAK_TIE_TOLERANCE), axis=1) + 1


def monotone_bounds(lower: np.ndarray, upper: np.ndarray, horizons) -> tuple[np.ndarray, np.ndarray]:
    """Interval ends that never fall from one horizon to the next, shape (n, H) each.

    Each horizon's spread is estimated on its own, so a later horizon's lower end could sit below an
    earlier one's: the lower end is raised to the highest lower end at or before it, the upper end
    lowered to the lowest upper end at or after it (over the horizons of the same answer). Both still
    hold the risk, which never falls.
    """
    order = np.argsort(np.asarray(horizons), kind="stable")
    lower_sorted = np.maximum.accumulate(lower[:, order], axis=1)
    upper_sorted = np.minimum.accumulate(upper[:, order][:, ::-1], axis=1)[:, ::-1]
    lower_out, upper_out = np.empty_like(lower), np.empty_like(upper)
    lower_out[:, order], upper_out[:, order] = lower_sorted, upper_sorted
    return lower_out, upper_out


def _joined(*columns: np.ndarray) -> np.ndarray:
    """Element-wise "; "-join of text columns, skipping empty entries."""
    joined = np.full(len(columns[0]), "", dtype=object)
    for column in columns:
        both = (joined != "") & (column != "")
        joined = np.where(both, joined + "; " + column, np.where(column != "", column, joined))
    return joined


def score_columns(model: RiskModel, batch: ValidatedBatch, options: ScoringOptions = ScoringOptions()
                  ) -> dict[str, np.ndarray]:
    """Score the accepted records of a validated batch.

    Returns
    -------
    dict of str to ndarray of shape (n_accepted,)
        ``patient_id``, ``treatment`` (the one the risks are for), the columns of
        :func:`features.schema.output_columns` for the model's outcomes and ``options``, then ``warnings`` ("; "-joined, "" when none: values
        outside the training range, extrapolated horizons).
    """
    horizons = options.horizons
    # The treatment the risks are for, named in words beside them (alemtuzumab where the file had none).
    columns: dict[str, np.ndarray] = {ID_COLUMN: batch.patient_ids,
                                      TREATMENT_FEATURE: np.array(TREATMENT_BY_CODE, dtype=object)[
                                          treatment_index(batch.matrix)]}
    explained = model.explain(batch.matrix, horizons)
    contrasts = model.contrast(batch.matrix, horizons, explained) if options.contrast else {}
    intervals = model.intervals(batch.matrix, horizons, explained)
    for outcome, scores in explained.items():
        lower, upper = intervals[outcome]
        for k, h in enumerate(horizons):
            columns[f"risk_{endpoint(outcome, h)}"] = scores.risk[:, k]
            columns[f"base_{endpoint(outcome, h)}"] = np.full(len(scores.risk), scores.base[k])
            if scores.timing is not None:
                columns[f"timing_{endpoint(outcome, h)}"] = scores.timing[:, k]
            columns[f"risk_lo_{endpoint(outcome, h)}"], columns[f"risk_hi_{endpoint(outcome, h)}"] = \
                lower[:, k], upper[:, k]
        for name in HORIZON_FREE_FEATURES:
            columns[shap_column(outcome, name)] = scores.shap[:, FEATURE_NAMES.index(name)]
        for k, h in enumerate(horizons):
            columns[shap_column(outcome, TREATMENT_FEATURE, h)] = (scores.shap[:, TREATMENT_INPUT]
                                                                   + scores.treatment_shift[:, k])
        if options.contrast:
            by_treatment = contrasts[outcome]
            for k, h in enumerate(horizons):
                names = contrast_columns(outcome, h)
                for name, treatment in zip(names, TREATMENTS):
                    columns[name] = by_treatment[treatment][:, k]
                columns[names[-1]] = by_treatment["alemtuzumab"][:, k] - by_treatment["interferon_beta_1a"][:, k]
    columns["warnings"] = _joined(np.asarray(batch.warnings, dtype=object), model.input_warnings(batch.matrix),
                                  model.extrapolation_notes(batch.matrix, horizons, options.contrast))
    return columns


def score_batch(model: RiskModel, batch: ValidatedBatch, options: ScoringOptions = ScoringOptions()) -> pd.DataFrame:
    """:func:`score_columns` as a DataFrame of shape (n_accepted, ...)."""
    return pd.DataFrame(score_columns(model, batch, options))
