"""Model cards (Markdown and HTML) for registered versions, following TRIPOD+AI where it applies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import EXPLANATION_SCALE, FEATURE_NAMES, endpoint
from models.cure import EXPLANATION_SCALE as CURE_SCALE
from models.cure import EXTRAPOLATION_RULE as CURE_EXTRAPOLATION_RULE
from models.families import CURE_ESTIMATORS, FAMILIES
from models.names import (
    BENCHMARK_COHORT,
    CARD_METRICS,
    SUBGROUP_METRICS,
    cohort_prefix,
    endpoint_metric,
    external_cohort,
)
from models.survival import BASELINE_FLOOR_PER_MONTH, EXTRAPOLATION_RULE

# Shown with their 95% bootstrap intervals in the performance tables.
WITH_INTERVALS = ("auroc", "auprc")


def html_page(markdown_text: str, title: str, *, width_em: int = 80) -> str:
    """``markdown_text`` as a standalone HTML page (its tables rendered), ``width_em`` wide at most."""
    import markdown

    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + title + "</title><style>"
            f"body{{font-family:sans-serif;max-width:{width_em}em;margin:2em auto}}table{{border-collapse:collapse;"
            "font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>"
            + markdown.markdown(markdown_text, extensions=["tables"]) + "</body></html>")


@dataclass(frozen=True)
class ModelCard:
    markdown: str
    html: str


def _value(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.0f}" if key.endswith("events") else f"{value:.3f}"


def _with_interval(metrics: dict, key: str) -> str:
    text = _value(metrics, key)
    if f"{key}_lo" in metrics:
        text += f" ({metrics[f'{key}_lo']:.3f}–{metrics[f'{key}_hi']:.3f})"
    return text


def performance_table(metrics: dict, endpoints, prefix: str = "") -> str:
    """Markdown table of the metrics against observed outcomes per endpoint (95% bootstrap intervals where computed)."""
    header = ("| endpoint | AUROC (95% CI) | oracle AUROC | AUROC / oracle | AUPRC (95% CI) | Brier (IPCW) | "
              "calibration slope | oracle's slope | calibration intercept | O/E | ICI | "
              "mean abs. error vs true risk | events |")
    rows = [header, "|" + "---|" * 13]
    for e in endpoints:
        if not np.isfinite(metrics.get(endpoint_metric(e, "auroc", prefix), np.nan)):
            continue  # no patient of this cohort was followed to the horizon
        rows.append("| " + " | ".join([e, *((_with_interval if m in WITH_INTERVALS else _value)(
            metrics, endpoint_metric(e, m, prefix)) for m in CARD_METRICS)]) + " |")
    return "\n".join(rows)


def _number(value, digits: int = 3) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def truth_table(rows: pd.DataFrame) -> str:
    """Markdown: per cohort, arm and endpoint, mean predicted against mean true risk, and discrimination."""
    if rows.empty:
        return "—"
    lines = ["| cohort | treatment | endpoint | n | mean risk | mean true risk | ratio | mean abs. error | "
             "AUROC / oracle's | calibration slope |", "|" + "---|" * 10]
    for r in rows.itertuples():
        get = lambda m: getattr(r, m, np.nan)  # noqa: E731
        lines.append(f"| {r.cohort} | {r.treatment} | {r.endpoint} | {r.n} | {100 * get('mean_risk'):.2f}% | "
                     f"{100 * get('mean_true_risk'):.2f}% | {_number(get('mean_risk_over_true'))} | "
                     f"{100 * get('mean_abs_risk_error'):.2f} pts | {_number(get('auroc_over_oracle'))} | "
                     f"{_number(get('calibration_slope'))} |")
    return "\n".join(lines)


def contrast_table(rows: pd.DataFrame) -> str:
    """Markdown: per cohort and endpoint, the alemtuzumab-minus-interferon contrast against the truth."""
    if rows.empty:
        return "—"
    lines = ["| cohort | endpoint | predicted difference between arms | true difference | ratio | "
             "per patient: correlation with the true excess | mean abs. error |", "|" + "---|" * 7]
    for r in rows.itertuples():
        get = lambda m: getattr(r, m, np.nan)  # noqa: E731
        lines.append(f"| {r.cohort} | {r.endpoint} | {100 * get('predicted_between_arms'):.2f} pts | "
                     f"{100 * get('true_between_arms'):.2f} pts | {_number(get('between_arms_over_true'))} | "
                     f"{_number(get('excess_correlation'))} | {100 * get('excess_mean_abs_error'):.2f} pts |")
    return "\n".join(lines)


def form_section(family: str, estimator: str, supported: str) -> str:
    """The card's bullets on the family's form, its extrapolation and its explanation's scale."""
    if issubclass(FAMILIES[estimator], CURE_ESTIMATORS):
        return f"""- Family `{family}`: estimator `{estimator}`, one mixture-cure model per outcome: the ever-risk `p(x)`
  (an onset within the treatment's timing window) from gradient-boosted trees of its log-odds, fitted to the
  mixture's likelihood of the censored data, and a timing share `G_s(t)` per treatment (nonparametric); the
  risk by month `t` is `p(x) G_s(t)`, so no risk falls over time, and the hazards are not proportional.
- Follow-up in training: {supported}. Beyond it a risk is extrapolated ({CURE_EXTRAPOLATION_RULE}) and
  flagged. A treatment without onsets in training is held at {BASELINE_FLOOR_PER_MONTH:g} per month.
- Explanations: SHAP values on the {CURE_SCALE} scale, `base_value + sum(shap) = logit p(x)`, exact and the
  same at every horizon; every patient on a treatment shares its timing share, given beside each risk."""
    return f"""- Family `{family}`: estimator `{estimator}`, one survival model per outcome: the log relative
  hazard `f(x)` fitted on every training cohort's whole follow-up, both arms; the risk by month `t`
  is `1 - exp(-H0_s(t) exp(f(x)))` with `H0_s` the Breslow baseline cumulative hazard of the
  patient's treatment `s`, so no risk falls over time.
- Follow-up in training: {supported}. Beyond it a risk is extrapolated ({EXTRAPOLATION_RULE}) and
  flagged. Every baseline carries a floor of {BASELINE_FLOOR_PER_MONTH:g} per month, so that no
  risk is exactly 0 (a treatment without any onset in training, such as ITP on interferon in
  CARE-MS, gets the floor).
- Explanations: SHAP values on the {EXPLANATION_SCALE} scale, `base_value(t) + sum(shap) =
  log(-log(1 - risk(t)))`, exact; each feature's contribution is the same at every horizon except
  the treatment's, which also carries the difference between the treatments' baseline hazards."""


def data_section(config, simulator) -> str:
    """The card's data section: the simulator's cohorts and their sources, the files of observed outcomes."""
    files = [c for c in [*config.train_cohorts, *config.external_cohorts] if not hasattr(c, "seed")]
    parts = ["## Data (TRIPOD+AI 6, 7, 8)", ""]
    if simulator is not None:
        il21 = simulator.risk["thyroid"].il21
        parts.append(f"""Synthetic cohorts from the project's simulator (`experiments/cohorts.yaml`), whose every assumption
cites its source, a section of `docs/clinical-evidence.md` (the published figures, their sources and
our confidence in each), and is logged with the training run. Arms, baseline distributions, follow-up,
drop-out and the incidence of each outcome per arm match the published trials (CAMMS223, CARE-MS I and
II, the 72-month extension) within stated tolerances (`autorisk cohort-report`). IL-21 effect: up to an
odds ratio of {il21.max_odds_ratio:g} above a threshold of {il21.threshold_pg_ml:g} pg/mL (legacy kit),
after alemtuzumab only. Simulator overrides in this experiment: {config.simulator_overrides or "none"}.""")
    if files:
        parts.append("Cohorts of patients from files, with their observed, censored outcomes (no true risk is known "
                     "for them): " + ", ".join(f"`{c.label()}`" for c in files) + ". Records that could not be "
                     "used were rejected, with their reasons, beside the run (never in MLflow).")
    return "\n\n".join(parts) + "\n"


def truth_section(evaluation, curves: str) -> str:
    """The card's figures against the simulator's truth; empty where no cohort carries it."""
    if not len(evaluation.truth):
        return ("## Risk over time against the simulator's truth\n\nNot measured: no cohort of this experiment "
                "carries the simulator's true risks. Every figure below is against observed outcomes.\n")
    return f"""## Risk over time against the simulator's truth
Per arm and horizon, on cohorts no model saw: mean predicted risk against the mean of the
simulator's exact risks of the same patients, and the expected time-dependent AUROC (against the
outcomes the simulator could draw, without censoring) over the true risk's own.

{truth_table(evaluation.truth)}

### Alemtuzumab minus interferon beta-1a
The difference between randomised arms, and per patient against the simulator's counterfactual
risks under either treatment.

{contrast_table(evaluation.contrast)}

{curves}
"""


def benchmark_section(config, metrics: dict, endpoints: list[str]) -> str:
    """The card's benchmark cohort's figures; empty for an experiment without one."""
    if config.benchmark_cohort is None:
        return ""
    return (f"## Benchmark cohort: {config.benchmark_cohort.label()}, never used in training\n\n"
            f"{performance_table(metrics, endpoints, cohort_prefix(BENCHMARK_COHORT))}\n")


@dataclass(frozen=True)
class CardSubject:
    """The registered version a card is about.

    Attributes
    ----------
    name, version : str
        The registered model and version.
    family, estimator : str
        The family's name in the experiment and its estimator (:data:`models.families.FAMILIES`).
    follow_up : dict of str to float
        Per treatment, the longest follow-up in training, in months.
    """

    name: str
    version: str
    family: str
    estimator: str
    follow_up: dict[str, float]


@dataclass(frozen=True)
class CardSections:
    """Sections other steps write, each None where the run has none.

    ``headline``: the run's headline table (:mod:`models.headline`). ``added_value``: what named predictors
    add (:mod:`pipelines.biomarker`). ``intervals``: the risks' 95% intervals (:mod:`pipelines.intervals`).
    ``domain``: what the training data covered (:func:`models.domain.domain_section`).
    """

    headline: str | None = None
    added_value: str | None = None
    intervals: str | None = None
    domain: str | None = None


def subgroup_table(rows: pd.DataFrame) -> str:
    """Markdown: per subgroup and endpoint of the held-out split, its size, onsets and :data:`SUBGROUP_METRICS`."""
    if not len(rows):
        return "—"
    shown = rows.copy()
    for column in SUBGROUP_METRICS:
        shown[column] = shown[column].map(lambda v: "—" if not np.isfinite(v) else f"{v:.3f}")
    return ("| subgroup | endpoint | n | events | AUROC | calibration slope | calibration intercept | O/E |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(
                f"| {r.subgroup} | {r.endpoint} | {r.n} | {r.events:.0f} | {r.auroc} | {r.calibration_slope} | "
                f"{r.calibration_intercept} | {r.observed_over_expected} |" for r in shown.itertuples()))


def limitations_section(follow_up: dict[str, float]) -> str:
    """The card's limitations (TRIPOD+AI 27)."""
    return f"""## Limitations (TRIPOD+AI 27)
- Where the data are synthetic, performance here says how well the model recovers the simulator's
  risk function, not how it would perform in patients; where they come from files, it says how the
  model did on the held-out part of those patients only.
- The predictive value of IL-21 is contested; the simulator encodes one reading
  (`docs/clinical-evidence.md` §3). Compare with the `il21-no-effect` experiment.
- Risks on a treatment beyond its follow-up in training are extrapolated (see above); in these
  cohorts every interferon risk after month {follow_up.get("interferon_beta_1a", 0):g} is.
- Within a treatment, every patient's risk has the same shape over time (the baseline's, or the timing
  share's): the model cannot say that one patient's onsets come earlier than another's.
- Values outside the training ranges are scored as the nearest training value, with a warning.
"""


def _titled(title: str, text: str | None) -> str:
    return f"## {title}\n\n{text}\n" if text else ""


def model_card(subject: CardSubject, *, config, simulator, metrics: dict, evaluation,
               sections: CardSections = CardSections()) -> ModelCard:
    """Build the card of one registered version from its training run's config, metrics and tables
    (:class:`pipelines.evaluation.Evaluation`), with the ``sections`` other steps wrote."""
    endpoints = [endpoint(o, h) for o in config.outcomes for h in config.evaluation_horizons_months]
    external = "\n".join(
        f"### External: {c.name} ({c.label()})\n\n"
        f"{performance_table(metrics, endpoints, cohort_prefix(external_cohort(c.name)))}\n"
        for c in config.external_cohorts)
    supported = ", ".join(f"{t} {m:g} months" for t, m in subject.follow_up.items())
    curves = "\n".join(f"![{o}: mean risk by month per treatment](../plots/population_{o}.png)"
                       for o in evaluation.population)
    text = f"""# Model card: {subject.name} version {subject.version} ({subject.family})

**Research tool on synthetic data. Not for clinical decisions.**

{_titled("Headline (held-out split)", sections.headline)}
## Intended use (TRIPOD+AI 3, 5)
Estimates, before a course of alemtuzumab (or interferon beta-1a) for relapsing–remitting multiple
sclerosis, each patient's risk of a thyroid disorder and of immune thrombocytopenic purpura (ITP) by
any month 1–72 after the first course, under either treatment, with a SHAP explanation of every
risk. Meant for research on risk communication and monitoring.

## Model (TRIPOD+AI 10, 12)
{form_section(subject.family, subject.estimator, supported)}
- Inputs: {", ".join(f"`{f}`" for f in FEATURE_NAMES)}; IL-21 is read on its own for each kit
  (`il21_assay`), standardised as that kit read the training patients measured with it. Missing
  optional inputs are allowed (unknown). Values outside the training range are scored as the
  nearest training value, with a warning.

{sections.domain or ""}
- Experiment `{config.name}`; training cohorts {", ".join(c.label() for c in config.train_cohorts)};
  held-out test share {config.test_fraction:.0%}.

{data_section(config, simulator)}
{truth_section(evaluation, curves)}
{_titled("Uncertainty: a 95% interval on every risk", sections.intervals)}
## Performance against observed outcomes: held-out test split (TRIPOD+AI 23)
95% intervals: {config.bootstrap} bootstrap resamples. Time-dependent AUROC, Brier and calibration
use IPCW weights; where a cohort is simulated, the oracle is the simulator's exact risk on the same
patients (its calibration slope shows what sampling noise alone gives). Horizons nobody in a cohort
was followed to are left out.

{performance_table(metrics, endpoints)}

{benchmark_section(config, metrics, endpoints)}
{external}
{_titled("Added value of predictors", sections.added_value)}
## Subgroups (TRIPOD+AI 23b)

{subgroup_table(evaluation.subgroups)}

{limitations_section(subject.follow_up)}"""
    return ModelCard(markdown=text, html=html_page(text, f"{subject.name} v{subject.version} model card", width_em=70))
