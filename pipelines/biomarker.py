"""Added value of a predictor: a family refitted without it on the same split, compared with itself.

For each predictor an experiment names (``added_value: [il21_pg_ml, thyroid_antibodies]``), each
family is fitted again on the same training split with that predictor unknown for every patient,
with the hyperparameters the full model was given (no new tuning), and both models are compared
per outcome and horizon (:func:`models.incremental_value.added_value`): the difference in
time-dependent AUROC, the continuous NRI and the IDI for events and non-events, and the
difference in net benefit over 5–30%, all under censoring (IPCW) and on the same paired
bootstrap resamples.

"Unknown for every patient" is how the predictor is dropped: both families already read an
unknown value (the linear family imputes it and adds a missing indicator, the trees send it
down each split's default side), and a column unknown throughout training is one neither can
use, so the reduced model never depends on it (its SHAP value is 0 for every patient) while
keeping the model matrix, its SHAP values and the scoring contract of every other model.

Each family is measured, not only the one promotion will choose: the champion is chosen after
training (``autorisk promote``) and may change, and the compare view lines families up by
metric name. The comparison is made on the held-out split and the benchmark cohort (the
training cohorts' IL-21 kit) and on every external cohort simulated on a named kit
(``current-assay``: CARE-MS I measured with the current kit), so that IL-21's value is given
per kit (:func:`evaluation_sets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import FEATURES_BY_NAME, endpoint
from features.validation import encode
from models.incremental_value import DEFAULT_THRESHOLDS, AddedValue, added_value
from models.model_card import html_page
from models.names import (
    ADDED_VALUE_METRICS,
    ADDED_VALUE_MIN_EVENTS,
    BENCHMARK_COHORT,
    added_value_metric,
    cohort_prefix,
    external_cohort,
)
from models.scoring import RiskModel
from pipelines.config import ExperimentConfig, FamilySpec
from pipelines.steps import Cohorts, fit_family, status_at

# Unknown together with the predictor: the kit only says on which scale IL-21 was read.
COMPANIONS: dict[str, tuple[str, ...]] = {"il21_pg_ml": ("il21_assay",)}
HELD_OUT = "held-out"
BENCHMARK = "benchmark"


@dataclass(frozen=True)
class EvaluationSet:
    """Patients the two models are compared on.

    Attributes
    ----------
    name : str
        ``held-out`` or the external cohort's name.
    prefix : str
        Metric prefix, as for every other metric of that cohort (``""``, ``ext_<name>_``).
    kit : str
        The IL-21 kit the cohort was measured with (``legacy_elisa``, ``current_elisa``).
    frame : DataFrame
    """

    name: str
    prefix: str
    kit: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class Comparison:
    """One predictor's added value at one endpoint of one evaluation set."""

    predictor: str
    cohort: str
    prefix: str
    kit: str
    endpoint: str
    known: int
    events: int
    value: AddedValue


@dataclass(frozen=True)
class BiomarkerValue:
    """Every comparison of one family, in a fixed order (predictor, cohort, outcome, horizon)."""

    family: str
    comparisons: list[Comparison]
    bootstrap: int

    def metrics(self) -> dict[str, float]:
        """``added_<predictor>_<prefix><endpoint>_<metric>`` for :data:`models.names.ADDED_VALUE_METRICS`."""
        values: dict[str, float] = {}
        for c in self.comparisons:
            every = comparison_values(c)
            values |= {added_value_metric(c.predictor, c.endpoint, m, c.prefix): every[m] for m in ADDED_VALUE_METRICS}
        return values

    def table(self) -> pd.DataFrame:
        """One row per comparison: the figures of :func:`comparison_values` with its labels."""
        return pd.DataFrame([{"predictor": c.predictor, "cohort": c.cohort, "kit": c.kit, "endpoint": c.endpoint}
                             | comparison_values(c) for c in self.comparisons])

    def net_benefit_curves(self) -> pd.DataFrame:
        """Per comparison and threshold: net benefit with and without the predictor, the difference and its interval."""
        frames = []
        for c in self.comparisons:
            nb = c.value.net_benefit
            frames.append(pd.DataFrame({"predictor": c.predictor, "cohort": c.cohort, "kit": c.kit,
                                        "endpoint": c.endpoint, "threshold": nb.threshold, "with": nb.new,
                                        "without": nb.old, "difference": nb.difference, "lo": nb.lo, "hi": nb.hi}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def find(self, predictor: str, endpoint_name: str, cohort: str = HELD_OUT) -> Comparison | None:
        return next((c for c in self.comparisons
                     if (c.predictor, c.endpoint, c.cohort) == (predictor, endpoint_name, cohort)), None)


def comparison_values(c: Comparison) -> dict[str, float]:
    """Every figure of one comparison, by name (a superset of :data:`models.names.ADDED_VALUE_METRICS`)."""
    v = c.value
    values = {"auroc_with": v.auroc.new, "auroc_without": v.auroc.old}
    for name, estimate in {"delta_auroc": v.auroc.difference,
                           "nri": v.nri.total, "nri_events": v.nri.events, "nri_nonevents": v.nri.nonevents,
                           "idi": v.idi.total, "idi_events": v.idi.events, "idi_nonevents": v.idi.nonevents}.items():
        values |= {name: estimate.value, f"{name}_lo": estimate.lo, f"{name}_hi": estimate.hi}
    values["delta_net_benefit_mean"] = float(np.mean(v.net_benefit.difference))
    values |= {"known": float(c.known), "events": float(c.events)}
    return values


def without(frame: pd.DataFrame, predictor: str) -> pd.DataFrame:
    """``frame`` with ``predictor`` (and, for IL-21, its kit) unknown for every patient."""
    columns = {}
    for name in (predictor, *COMPANIONS.get(predictor, ())):
        if name in frame:
            columns[name] = np.nan if FEATURES_BY_NAME[name].kind in ("number", "integer") else None
    return frame.assign(**columns)


def evaluation_sets(config: ExperimentConfig, cohorts: Cohorts) -> list[EvaluationSet]:
    """The held-out split, the benchmark cohort, and every external cohort the config measures with a
    named IL-21 kit.

    The benchmark cohort (CARE-MS I on the original kit in the shipped experiments) and
    ``current-assay`` (CARE-MS I on the current kit) differ in the kit alone, so the two compare
    the kits on one population; the held-out split mixes CARE-MS I with the extension's
    alemtuzumab patients.
    """
    def kit(frame: pd.DataFrame) -> str:
        kits = sorted(frame["il21_assay"].dropna().unique())
        return "+".join(kits) if kits else "none"

    sets = [EvaluationSet(HELD_OUT, "", kit(cohorts.test), cohorts.test),
            EvaluationSet(BENCHMARK, cohort_prefix(BENCHMARK_COHORT), kit(cohorts.benchmark), cohorts.benchmark)]
    for spec in config.external_cohorts:
        if spec.il21_assay is not None:
            frame = cohorts.external[spec.name]
            sets.append(EvaluationSet(spec.name, cohort_prefix(external_cohort(spec.name)), kit(frame), frame))
    return sets


def compare(full: RiskModel, reduced: RiskModel, predictor: str, target: EvaluationSet, horizons: tuple[int, ...],
            *, bootstrap: int, seed: int) -> list[Comparison]:
    """Per outcome and horizon with enough events, the full model against the one fitted without ``predictor``.

    The reduced model sees the predictor unknown, as it was in its training; the status at each
    horizon and its censoring weights are the same for both.
    """
    frame = target.frame
    risks_with = full.risks(encode(frame), horizons)
    risks_without = reduced.risks(encode(without(frame, predictor)), horizons)
    comparisons = []
    for outcome in full.outcome_names:
        for k, h in enumerate(horizons):
            labels = status_at(frame, outcome, h)
            known = labels.known
            events = int(labels.y[known].sum())
            if events < ADDED_VALUE_MIN_EVENTS or events == known.sum():
                continue  # nobody followed to the horizon, or too few onsets to compare on
            value = added_value(labels.y, risks_with[outcome][:, k], risks_without[outcome][:, k], labels.weight,
                                DEFAULT_THRESHOLDS, bootstrap=bootstrap, seed=seed)
            comparisons.append(Comparison(predictor, target.name, target.prefix, target.kit, endpoint(outcome, h),
                                          int(known.sum()), events, value))
    return comparisons


def measure_added_value(name: str, spec: FamilySpec, model: RiskModel, outcome_params: dict[str, dict],
                        cohorts: Cohorts, config: ExperimentConfig, log=print) -> BiomarkerValue:
    """Training step: each predictor of ``config.added_value`` dropped in turn, the family refitted and compared.

    Parameters
    ----------
    name, spec : str, FamilySpec
        The family, as fitted by :func:`pipelines.steps.fit_family`.
    model : RiskModel
        The family fitted with every predictor.
    outcome_params : dict of str to dict
        The estimator parameters it was fitted with; the reduced models get the same.
    cohorts : Cohorts
        The experiment's data: the reduced model is fitted on ``cohorts.train``.
    config : ExperimentConfig
        ``added_value``, ``evaluation_horizons_months``, ``bootstrap`` and ``split_seed``.

    Returns
    -------
    BiomarkerValue
    """
    targets = evaluation_sets(config, cohorts)
    comparisons: list[Comparison] = []
    for predictor in config.added_value:
        reduced = fit_family(name, spec, without(cohorts.train, predictor), outcome_params)
        for target in targets:
            comparisons += compare(model, reduced, predictor, target, config.evaluation_horizons_months,
                                   bootstrap=config.bootstrap, seed=config.split_seed)
        shown = [c for c in comparisons if c.predictor == predictor and c.cohort == HELD_OUT]
        log(f"  without {predictor}: " + "; ".join(
            f"{c.endpoint} ΔAUROC {c.value.auroc.difference.value:+.4f} "
            f"[{c.value.auroc.difference.lo:+.4f}, {c.value.auroc.difference.hi:+.4f}]" for c in shown))
    return BiomarkerValue(family=name, comparisons=comparisons, bootstrap=config.bootstrap)


# --------------------------------------------------------------------------- the report (pure: text and figures)


def _interval(value: float, lo: float, hi: float, digits: int) -> str:
    if not np.isfinite(value):
        return "—"
    text = f"{value:+.{digits}f}"
    return text + (f" ({lo:+.{digits}f} to {hi:+.{digits}f})" if np.isfinite(lo) else "")


def added_value_table(value: BiomarkerValue, predictor: str) -> str:
    """Markdown: one row per cohort and endpoint for ``predictor``."""
    rows = [c for c in value.comparisons if c.predictor == predictor]
    if not rows:
        return "No endpoint had enough onsets to compare on."
    lines = ["| cohort (IL-21 kit) | endpoint | onsets / known | AUROC with / without | ΔAUROC (95% CI) | "
             "NRI events | NRI non-events | NRI | IDI events | IDI non-events | IDI | "
             "Δ net benefit, mean over 5–30% |", "|" + "---|" * 12]
    for c in rows:
        v = comparison_values(c)
        cell = lambda m, d: _interval(v[m], v[f"{m}_lo"], v[f"{m}_hi"], d)  # noqa: E731
        lines.append(f"| {c.cohort} ({c.kit}) | {c.endpoint} | {c.events:,} / {c.known:,} | "
                     f"{v['auroc_with']:.3f} / {v['auroc_without']:.3f} | {cell('delta_auroc', 4)} | "
                     f"{cell('nri_events', 3)} | {cell('nri_nonevents', 3)} | {cell('nri', 3)} | "
                     f"{cell('idi_events', 4)} | {cell('idi_nonevents', 4)} | {cell('idi', 4)} | "
                     f"{1000 * v['delta_net_benefit_mean']:+.2f} per 1,000 |")
    return "\n".join(lines)


def report_markdown(value: BiomarkerValue, *, experiment: str, image_folder: str = "plots") -> str:
    """The added-value report of one family (``biomarker-value.md``), its figures under ``image_folder``."""
    sections = []
    predictors = list(dict.fromkeys(c.predictor for c in value.comparisons))
    for predictor in predictors:
        sections.append(f"## {predictor}\n\n{added_value_table(value, predictor)}\n\n"
                        f"![net benefit with minus without {predictor}]"
                        f"({image_folder}/net_benefit_difference_{predictor}.png)\n")
    intervals = (f"95% intervals: {value.bootstrap} paired bootstrap resamples of the patients whose status is "
                 "known (both models on each resample)" if value.bootstrap else "no intervals (bootstrap: 0)")
    return f"""# Added value of predictors: {experiment} / {value.family}

What each predictor adds to the `{value.family}` model: the family fitted again on the same training
split with the predictor unknown for every patient (IL-21 together with its kit), with the
hyperparameters of the full model, and both models compared on the same patients at each outcome
and horizon. Statuses at the horizon carry inverse-probability-of-censoring weights. {intervals}.

- **ΔAUROC**: time-dependent AUROC with the predictor minus without it.
- **NRI** (continuous): among onsets, the share whose risk rose minus the share whose risk fell
  (NRI events); among the others, the share whose risk fell minus the share whose risk rose
  (NRI non-events); NRI is their sum (up to 2).
- **IDI**: the mean rise in risk among onsets (IDI events) and the mean fall among the others (IDI
  non-events); IDI is their sum, the change in discrimination slope.
- **Net benefit** (decision curve) with minus without the predictor, over threshold risks 5–30%:
  true positives gained per patient, less false positives weighted by the threshold's odds.

Cohorts: the held-out split of the training cohorts, the benchmark cohort, and every external
cohort measured with a named IL-21 kit (the kit is in brackets); the benchmark cohort and
`current-assay` are the same population (CARE-MS I) measured with the original and the current kit. An endpoint with fewer than {ADDED_VALUE_MIN_EVENTS} onsets of
known status is left out.

![ΔAUROC per predictor, cohort and endpoint]({image_folder}/delta_auroc.png)

{chr(10).join(sections)}
Research tool on synthetic data; not for clinical decisions.
"""


def forest_figure(value: BiomarkerValue):
    """ΔAUROC with its 95% interval, one row per predictor, cohort and endpoint."""
    from matplotlib.figure import Figure

    rows = value.comparisons
    figure = Figure(figsize=(7, 1.2 + 0.28 * max(len(rows), 1)))
    axes = figure.subplots()
    colours = {}
    palette = ("#b2182b", "#2166ac", "#1b7837", "#762a83")
    for i, c in enumerate(rows):
        d = c.value.auroc.difference
        colour = colours.setdefault(c.predictor, palette[len(colours) % len(palette)])
        y = len(rows) - 1 - i
        if np.isfinite(d.lo):
            axes.plot([d.lo, d.hi], [y, y], color=colour, linewidth=1.5)
        axes.plot([d.value], [y], marker="o", color=colour, linestyle="none")
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(rows)), [f"{c.predictor} · {c.cohort} ({c.kit}) · {c.endpoint}"
                                      for c in reversed(rows)], fontsize=7)
    axes.set(xlabel="ΔAUROC with minus without (95% interval)",
             title=f"{value.family}: added value in discrimination")
    figure.tight_layout()
    return figure


def net_benefit_figure(value: BiomarkerValue, predictor: str):
    """Net benefit with minus without ``predictor`` against the threshold risk: a panel per outcome
    and cohort, a line per horizon with its pointwise 95% interval."""
    from matplotlib.figure import Figure

    rows = [c for c in value.comparisons if c.predictor == predictor]
    outcomes = list(dict.fromkeys(c.endpoint.rsplit("_", 1)[0] for c in rows)) or ["—"]
    cohorts = list(dict.fromkeys(c.cohort for c in rows)) or ["—"]
    figure = Figure(figsize=(4.2 * len(cohorts), 3.2 * len(outcomes)))
    panels = np.atleast_2d(figure.subplots(len(outcomes), len(cohorts), squeeze=False))
    for i, outcome in enumerate(outcomes):
        for j, cohort in enumerate(cohorts):
            axes = panels[i, j]
            for c in rows:
                if c.cohort != cohort or not c.endpoint.startswith(f"{outcome}_"):
                    continue
                nb = c.value.net_benefit
                line, = axes.plot(100 * nb.threshold, 1000 * nb.difference, label=c.endpoint.rsplit("_", 1)[1])
                if np.isfinite(nb.lo).all():
                    axes.fill_between(100 * nb.threshold, 1000 * nb.lo, 1000 * nb.hi, color=line.get_color(),
                                      alpha=0.15, linewidth=0)
            axes.axhline(0, color="black", linewidth=0.8)
            kit = next((c.kit for c in rows if c.cohort == cohort), "")
            axes.set(title=f"{outcome}, {cohort} ({kit})", xlabel="threshold risk (%)",
                     ylabel="Δ net benefit per 1,000")
            if axes.get_legend_handles_labels()[0]:
                axes.legend(fontsize=7, title="horizon", title_fontsize=7)
    figure.suptitle(f"{value.family}: net benefit with minus without {predictor}")
    figure.tight_layout()
    return figure


def card_section(value: BiomarkerValue, folder: str = "biomarker") -> str:
    """The model card's section on added value: the tables, the figures (from the card's folder)
    and where the full report is."""
    tables = "\n\n".join(f"### {predictor}\n\n{added_value_table(value, predictor)}\n\n"
                         f"![net benefit with minus without {predictor}](../{folder}/plots/"
                         f"net_benefit_difference_{predictor}.png)"
                         for predictor in dict.fromkeys(c.predictor for c in value.comparisons))
    return (f"The family refitted without each predictor (unknown for every patient) on the same split, "
            f"with the same hyperparameters; paired bootstrap 95% intervals ({value.bootstrap} resamples), "
            f"IPCW. Definitions and the full report: `{folder}/biomarker-value.md`.\n\n"
            f"![ΔAUROC per predictor, cohort and endpoint](../{folder}/plots/delta_auroc.png)\n\n{tables}")


def log_added_value(value: BiomarkerValue, experiment: str, folder: str = "biomarker") -> str:
    """Log the report (Markdown, HTML), its figures, the table and the net-benefit curves to the
    active MLflow run; returns the model card's section (:func:`card_section`)."""
    import mlflow

    text = report_markdown(value, experiment=experiment)
    mlflow.log_text(text, f"{folder}/biomarker-value.md")
    mlflow.log_text(html_page(text, f"{experiment} / {value.family}: added value"), f"{folder}/biomarker-value.html")
    mlflow.log_figure(forest_figure(value), f"{folder}/plots/delta_auroc.png")
    for predictor in dict.fromkeys(c.predictor for c in value.comparisons):
        mlflow.log_figure(net_benefit_figure(value, predictor), f"{folder}/plots/net_benefit_difference_{predictor}.png")
    mlflow.log_text(value.table().to_csv(index=False), f"{folder}/added_value.csv")
    mlflow.log_text(value.net_benefit_curves().to_csv(index=False), f"{folder}/net_benefit_difference.csv")
    return card_section(value, folder)
