"""How many patients a model of this form needs: learning curves on simulated cohorts, and Riley's criteria.

Two answers to one question, side by side:

- **Learning curves.** Each family of an experiment, with the experiment's parameters (no
  tuning), fitted on training cohorts of 500 to 60,000 patients drawn as the experiment draws
  them (its training profiles in the same proportions), several times per size with fresh
  seeds, and measured against the simulator's true risks on one benchmark cohort, per endpoint,
  on the alemtuzumab arm (the patients an IL-21 study would enrol): the expected time-dependent
  AUROC, its ratio to the true risk's own (the oracle), the calibration slope and the mean
  absolute error to the true risk (:func:`models.evaluation.evaluate_against_truth`: no
  censoring and no sampling noise in the evaluation, so the spread over repeats is the
  training sample's alone).
- **Riley's criteria** (:mod:`models.sample_size`): the minimum number of patients to develop a
  logistic model of the status at 24 months with the published incidence, for anticipated
  C-statistics (0.70, 0.75 and what the simulated world allows), against the 141 patients of the
  largest published IL-21 study.

Every step but :func:`log_sample_size` and :func:`write_report` is a pure function of its inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import FEATURE_NAMES, endpoint
from features.simulator import SimulatorConfig, true_risk_at
from features.validation import encode
from models.evaluation import evaluate_against_truth
from models.model_card import html_page
from models.names import CURVE_METRICS, EXPERIMENT_TAG, FAMILY_TAG, ROLE_MODEL, ROLE_PARENT, ROLE_TAG
from models.sample_size import (
    MODEL_PARAMETERS,
    SampleSize,
    binary_sample_size,
    cox_snell_r2_from_c_statistic,
    expected_shrinkage,
)
from models.tracking import ensure_experiment
from pipelines.config import CohortSpec, ExperimentConfig
from pipelines.steps import fit_family, simulate_cohorts

ARM = "alemtuzumab"
# The largest published study of IL-21 as a predictor (docs/clinical-evidence.md §3, Azzopardi 2014).
PUBLISHED_IL21_PATIENTS = 141
# Candidate parameters of the model form: its inputs (the model matrix's columns) and one more
# for IL-21's threshold-shaped effect (a restricted cubic spline with three knots has two terms).
# Targets a learning curve is read against: within 5% of the oracle's AUROC, and a slope within 0.1 of
# 1 (Riley's first criterion asks for a shrinkage of 0.9 or more; a slope above 1.1 is off too, the
# other way, as a model form the truth does not have can make it).
AUROC_RATIO_TARGET = 0.95
SLOPE_TOLERANCE = 0.1


@dataclass(frozen=True)
class CurveSettings:
    """What :func:`learning_curves` computes.

    Attributes
    ----------
    sizes : tuple of int
        Training patients per fit (all training profiles together).
    repeats : int
        Fits per size, each on a freshly simulated sample.
    families : tuple of str
        The experiment's families to fit (all when empty).
    endpoints : tuple of (str, int)
        ``(outcome, horizon)`` pairs measured.
    benchmark : CohortSpec
        The cohort every fit is measured on (its alemtuzumab arm).
    seed : int
        First seed; each (size, repeat, profile) gets its own from it.
    """

    sizes: tuple[int, ...] = (500, 1000, 2000, 5000, 10000, 20000, 60000)
    repeats: int = 5
    families: tuple[str, ...] = ()
    endpoints: tuple[tuple[str, int], ...] = (("thyroid", 24), ("thyroid", 48), ("itp", 24))
    benchmark: CohortSpec = field(default_factory=lambda: CohortSpec(profile="care-ms1", n=20000, seed=990))
    seed: int = 5000


# Defaults: about three minutes per family on two cores. Quick: seconds, for tests and a first look.
DEFAULT_SETTINGS = CurveSettings()
QUICK_SETTINGS = CurveSettings(sizes=(500, 2000, 6000), repeats=2, endpoints=(("thyroid", 24), ("itp", 24)),
                               benchmark=CohortSpec(profile="care-ms1", n=4000, seed=990))


def training_specs(config: ExperimentConfig, n: int, seed: int) -> list[CohortSpec]:
    """The experiment's training cohorts scaled to ``n`` patients in all, in the same proportions, with new seeds."""
    total = sum(c.n for c in config.train_cohorts)
    counts = [max(1, round(n * c.n / total)) for c in config.train_cohorts]
    counts[0] += n - sum(counts)  # rounding: the first cohort takes the remainder
    return [CohortSpec(profile=c.profile, n=k, seed=seed + i, il21_assay=c.il21_assay)
            for i, (c, k) in enumerate(zip(config.train_cohorts, counts))]


def learning_curves(config: ExperimentConfig, simulator: SimulatorConfig, settings: CurveSettings,
                    log=print) -> pd.DataFrame:
    """Every fit of every family, measured against the truth.

    Returns
    -------
    DataFrame
        One row per family, size, repeat and endpoint: ``family``, ``n``, ``repeat``, ``endpoint``,
        ``events`` (onsets in the training sample), ``fit_seconds`` and :data:`CURVE_METRICS`
        (NaN where the sample had no onset of the outcome to fit on).
    """
    families = settings.families or tuple(config.families)
    unknown = [f for f in families if f not in config.families]
    if unknown:
        raise ValueError(f"families: {unknown} are not in experiment {config.name!r} ({list(config.families)})")
    benchmark = simulate_cohorts(simulator, [settings.benchmark])
    arm = (benchmark["treatment"] == ARM).to_numpy()
    benchmark_matrix = encode(benchmark[arm])
    outcomes = tuple(dict.fromkeys(o for o, _ in settings.endpoints))
    truth = {(o, h): true_risk_at(simulator, benchmark[arm], o, [h])[:, 0] for o, h in settings.endpoints}
    rows = []
    for size_index, n in enumerate(settings.sizes):
        for repeat in range(settings.repeats):
            seed = settings.seed + 100 * (size_index * settings.repeats + repeat)
            train = simulate_cohorts(simulator, training_specs(config, n, seed))
            for name in families:
                spec = config.families[name]
                for outcome in outcomes:
                    events = int(train[f"{outcome}_event"].sum())
                    started = time.perf_counter()
                    risks = None
                    if events:  # a sample without onsets has no hazard to fit
                        model = fit_family(name, spec, train, {outcome: dict(spec.params)})
                        horizons = [h for o, h in settings.endpoints if o == outcome]
                        risks = model.risks(benchmark_matrix, horizons)[outcome]
                    seconds = time.perf_counter() - started
                    for k, h in enumerate(h for o, h in settings.endpoints if o == outcome):
                        values = (evaluate_against_truth(risks[:, k], truth[(outcome, h)])
                                  if risks is not None else {})
                        rows.append({"family": name, "n": n, "repeat": repeat, "endpoint": endpoint(outcome, h),
                                     "events": events, "fit_seconds": seconds}
                                    | {m: values.get(m, np.nan) for m in CURVE_METRICS})
        done = pd.DataFrame(rows)
        latest = done[done["n"] == n]
        log(f"  n = {n:,}: " + "; ".join(
            f"{f} {e} AUROC/oracle {g['auroc_over_oracle'].mean():.3f}, slope {g['calibration_slope'].mean():.2f}"
            for (f, e), g in latest.groupby(["family", "endpoint"], sort=False)))
    return pd.DataFrame(rows)


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count over repeats, per family, size and endpoint.

    Returns
    -------
    DataFrame
        ``family``, ``endpoint``, ``n``, ``fits`` (repeats with a fitted model), ``events`` (mean)
        and ``<metric>_mean`` / ``<metric>_sd`` for each of :data:`CURVE_METRICS`.
    """
    grouped = points.groupby(["family", "endpoint", "n"], sort=False)
    summary = grouped.agg(fits=("auroc", "count"), events=("events", "mean"))
    for metric in CURVE_METRICS:
        summary[f"{metric}_mean"] = grouped[metric].mean()
        summary[f"{metric}_sd"] = grouped[metric].std(ddof=1)
    return summary.reset_index()


def first_size_reaching(summary: pd.DataFrame, family: str, endpoint_name: str) -> dict[str, int | None]:
    """The smallest size whose mean meets each target (and every larger size's too), None when none does:
    an AUROC within 5% of the oracle's, a calibration slope within 0.1 of 1."""
    rows = summary[(summary["family"] == family) & (summary["endpoint"] == endpoint_name)].sort_values("n")

    def first(met: np.ndarray) -> int | None:
        sizes = rows["n"].to_numpy()
        for i in range(len(sizes)):
            if met[i:].all():
                return int(sizes[i])
        return None

    slope = rows["calibration_slope_mean"].to_numpy()
    return {"auroc_over_oracle": first(rows["auroc_over_oracle_mean"].to_numpy() >= AUROC_RATIO_TARGET),
            "calibration_slope": first(np.abs(slope - 1.0) <= SLOPE_TOLERANCE)}


# --------------------------------------------------------------------------- Riley's criteria


@dataclass(frozen=True)
class Scenario:
    """One anticipated performance of a model of the status at a horizon, and the patients it needs."""

    outcome: str
    horizon: int
    incidence: float
    c_statistic: float
    source: str
    size: SampleSize


def riley_scenarios(simulator: SimulatorConfig, c_statistics: dict[str, dict[float, str]], *,
                    parameters: int = MODEL_PARAMETERS, profile: str = "care-ms1") -> list[Scenario]:
    """Riley's minimum sample size for each outcome's status at the profile's follow-up on alemtuzumab.

    Parameters
    ----------
    simulator : SimulatorConfig
        Gives the published incidence (the profile's alemtuzumab target) and its follow-up.
    c_statistics : dict of str to dict of float to str
        Per outcome, each anticipated C-statistic and where it comes from.
    parameters : int
        Candidate predictor parameters.
    """
    spec = simulator.profiles[profile]
    horizon = int(spec.follow_up_months)
    scenarios = []
    for outcome, anticipated in c_statistics.items():
        incidence = float(spec.arms[ARM].targets[outcome])
        for c, source in anticipated.items():
            r2 = cox_snell_r2_from_c_statistic(c, incidence)
            scenarios.append(Scenario(outcome, horizon, incidence, c, source,
                                      binary_sample_size(parameters, incidence, r2)))
    return scenarios


def riley_table(scenarios: list[Scenario], published: int = PUBLISHED_IL21_PATIENTS) -> pd.DataFrame:
    """One row per scenario: each criterion's size, the binding one, events, and what ``published`` patients give."""
    rows = []
    for s in scenarios:
        size = s.size
        rows.append({
            "outcome": s.outcome, "horizon_months": s.horizon, "incidence": s.incidence,
            "c_statistic": s.c_statistic, "c_source": s.source, "cox_snell_r2": size.cox_snell_r2,
            "parameters": size.parameters,
            **{f"n_{c.name}": c.n for c in size.criteria},
            "n": size.n, "binding": size.binding, "events": size.events, "events_per_parameter": size.epp,
            "published_n": published, "published_events": published * s.incidence,
            "published_events_per_parameter": published * s.incidence / size.parameters,
            "published_expected_shrinkage": expected_shrinkage(published, size.parameters, size.cox_snell_r2),
            "published_share_of_needed": published / size.n,
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the report (pure)


def curve_figure(summary: pd.DataFrame, endpoint_name: str):
    """Four panels against training patients (log scale): AUROC with the oracle's, their ratio, the
    calibration slope and the mean absolute error to the true risk; mean ± SD over repeats per family."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7))
    panels = figure.subplots(2, 2).ravel()
    shown = summary[summary["endpoint"] == endpoint_name]
    labels = {"auroc": "expected AUROC", "auroc_over_oracle": "AUROC / oracle's",
              "calibration_slope": "calibration slope", "mean_abs_risk_error": "mean |risk - true risk| (points)"}
    for axes, metric in zip(panels, labels):
        scale = 100.0 if metric == "mean_abs_risk_error" else 1.0
        for family, rows in shown.groupby("family", sort=False):
            axes.errorbar(rows["n"], scale * rows[f"{metric}_mean"], yerr=scale * rows[f"{metric}_sd"].fillna(0),
                          marker="o", capsize=3, label=family)
        if metric == "auroc":
            oracle = shown.groupby("n")["oracle_auroc_mean"].mean()
            axes.plot(oracle.index, oracle.to_numpy(), color="black", linestyle=":", label="oracle (true risk)")
        target = {"auroc_over_oracle": AUROC_RATIO_TARGET, "calibration_slope": 1.0}.get(metric)
        if target is not None:
            axes.axhline(target, color="grey", linestyle="--", linewidth=0.8)
        if metric == "calibration_slope":
            for bound in (1 - SLOPE_TOLERANCE, 1 + SLOPE_TOLERANCE):
                axes.axhline(bound, color="grey", linestyle=":", linewidth=0.8)
        axes.set_xscale("log")
        sizes = sorted(shown["n"].unique())
        axes.set_xticks(sizes, [f"{n / 1000:g}k" if n >= 1000 else str(n) for n in sizes])
        axes.minorticks_off()
        axes.set(xlabel="training patients", ylabel=labels[metric])
        axes.legend(fontsize=7)
    figure.suptitle(f"{endpoint_name}, alemtuzumab arm of the benchmark cohort: mean ± SD over repeats")
    figure.tight_layout()
    return figure


def _size(n: int | None) -> str:
    return f"{n:,}" if n is not None else "not within the sizes tried"


def curve_table(summary: pd.DataFrame) -> str:
    """Markdown: the learning curves, one row per family, endpoint and training size (mean ± SD over repeats)."""
    rows = ["| family | endpoint | training patients | fits | onsets in training (mean) | expected AUROC | "
            "AUROC / oracle's | calibration slope | mean abs. error to the true risk |", "|" + "---|" * 9]
    for r in summary.itertuples():
        cell = lambda m, digits, scale=1.0: _spread(getattr(r, f"{m}_mean"), getattr(r, f"{m}_sd"), digits, scale)  # noqa: E731
        rows.append(
            f"| {r.family} | {r.endpoint} | {r.n:,} | {r.fits} | {r.events:,.0f} | {cell('auroc', 3)} | "
            f"{cell('auroc_over_oracle', 3)} | {cell('calibration_slope', 2)} | "
            f"{cell('mean_abs_risk_error', 2, 100.0)} pts |")
    return "\n".join(rows)


def reached_table(summary: pd.DataFrame) -> str:
    """Markdown: per family and endpoint, the first training size whose AUROC and slope reach their targets."""
    rows = ["| family | endpoint | AUROC within 5% of the oracle's from | calibration slope within 0.9–1.1 from |",
            "|---|---|---|---|"]
    for family in dict.fromkeys(summary["family"]):
        for e in dict.fromkeys(summary["endpoint"]):
            first = first_size_reaching(summary, family, e)
            rows.append(f"| {family} | {e} | {_size(first['auroc_over_oracle'])} | "
                        f"{_size(first['calibration_slope'])} |")
    return "\n".join(rows)


def criteria_table(riley: pd.DataFrame) -> str:
    """Markdown: Riley's criteria per outcome and horizon, and what the largest published study had."""
    rows = ["| outcome by month | incidence | anticipated C (source) | R²_CS | shrinkage | optimism | "
            "overall risk | minimum patients | onsets | onsets per parameter | with 141 patients: onsets, "
            "per parameter, expected shrinkage |", "|" + "---|" * 11]
    for r in riley.itertuples():
        rows.append(
            f"| {r.outcome} by {r.horizon_months} | {100 * r.incidence:.1f}% | {r.c_statistic:.3f} ({r.c_source}) | "
            f"{r.cox_snell_r2:.4f} | {r.n_shrinkage:,} | {r.n_optimism:,} | {r.n_overall_risk:,} | **{r.n:,}** | "
            f"{r.events:,.0f} | {r.events_per_parameter:.1f} | {r.published_events:.0f}, "
            f"{r.published_events_per_parameter:.1f}, {_shrinkage(r.published_expected_shrinkage)} |")
    return "\n".join(rows)


def report_markdown(config: ExperimentConfig, settings: CurveSettings, summary: pd.DataFrame,
                    riley: pd.DataFrame, seconds: float) -> str:
    """The sample-size report (``sample-size.md``)."""
    endpoints = list(dict.fromkeys(summary["endpoint"]))
    thyroid = riley[riley["outcome"] == "thyroid"].sort_values("c_statistic")
    answer = ", ".join(f"{r.n:,} patients ({r.events:,.0f} onsets) at C {r.c_statistic:.2f} ({r.c_source})"
                       for r in thyroid.itertuples())
    images = "\n".join(f"![{e}](plots/learning_curve_{e}.png)" for e in endpoints)
    return f"""# Sample size: learning curves and Riley's criteria ({config.name})

**How many patients would a real IL-21 study need?** To develop a model of this form (the
{MODEL_PARAMETERS} candidate parameters below) for a thyroid disorder by month
{int(thyroid["horizon_months"].iloc[0]) if len(thyroid) else 24} after alemtuzumab, Riley's criteria ask
for {answer or "—"}. The largest published IL-21 study had {PUBLISHED_IL21_PATIENTS} patients: about
{thyroid["published_events"].iloc[0]:.0f} onsets by then at the published incidence, a
{thyroid["published_share_of_needed"].max():.0%} share of the smallest of those sizes.

## Riley's criteria

The minimum number of patients to develop a logistic model of the status at the horizon
(Riley et al., Stat Med 2019; BMJ 2020), the `pmsampsize` approach (`models/sample_size.py`):
expected shrinkage at least 0.9 (criterion 1), optimism in Nagelkerke R² at most 0.05 (2), and the
overall risk within ±0.05 (3). Incidence: the published CARE-MS I alemtuzumab figure. The anticipated
R²_CS follows from an anticipated C-statistic (Riley, Van Calster & Collins 2021); the simulated
world's is the oracle's expected AUROC on the benchmark cohort's alemtuzumab arm (the best any model
could do there) and the best family's at the largest size. Candidate parameters: the model's
{len(FEATURE_NAMES)} inputs and one more for IL-21's threshold-shaped effect ({MODEL_PARAMETERS}).

{criteria_table(riley)}

## Learning curves

Each family of `{config.name}` with the experiment's parameters (no tuning), fitted on
{", ".join(f"{n:,}" for n in settings.sizes)} training patients drawn as the experiment draws them
({" + ".join(f"{c.profile} {c.n / sum(x.n for x in config.train_cohorts):.0%}" for c in config.train_cohorts)}),
{settings.repeats} times per size on fresh samples, and measured against the simulator's true risks on the
alemtuzumab arm of {settings.benchmark.label()}: expected time-dependent AUROC and its ratio to the true
risk's own, calibration slope, mean absolute error (mean ± SD over repeats). A training size counts
every patient of both arms and every profile; Riley's sizes count patients with a known status at the
horizon. A model that is not quite of the simulator's form keeps a slope away from 1 however many
patients it sees (at {settings.sizes[-1]:,}, {endpoints[0]}: {_plateau(summary, endpoints[0])}): where the
slope stops rising, the rest is the model form's, not the sample's.

{reached_table(summary)}

{images}

{curve_table(summary)}

Computed in {seconds:.0f} s. Research tool on synthetic data; not for clinical decisions.
"""


def _spread(mean: float, sd: float, digits: int, scale: float = 1.0) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{scale * mean:.{digits}f}" + (f" ± {scale * sd:.{digits}f}" if np.isfinite(sd) else "")


def _plateau(summary: pd.DataFrame, endpoint_name: str) -> str:
    rows = summary[(summary["endpoint"] == endpoint_name) & (summary["n"] == summary["n"].max())]
    return ", ".join(f"{r.family} {r.calibration_slope_mean:.2f}" for r in rows.itertuples()
                     if np.isfinite(r.calibration_slope_mean))


def _shrinkage(value: float) -> str:
    return "no consistent value (too few)" if not np.isfinite(value) else f"{value:.2f}"


def c_statistics_from(summary: pd.DataFrame, endpoint_name: str) -> dict[float, str]:
    """The conventional anticipated C-statistics (0.70, 0.75) and what the simulated world allows at
    ``endpoint_name``: the oracle's, and the best family's at the largest size."""
    chosen = {0.70: "conventional", 0.75: "conventional"}
    rows = summary[summary["endpoint"] == endpoint_name]
    if len(rows):
        largest = rows[rows["n"] == rows["n"].max()]
        chosen[round(float(largest["oracle_auroc_mean"].mean()), 3)] = "simulated oracle"
        best = largest.loc[largest["auroc_mean"].idxmax()]
        chosen[round(float(best["auroc_mean"]), 3)] = f"{best['family']} at {int(best['n']):,}"
    return dict(sorted(chosen.items()))


# --------------------------------------------------------------------------- I/O at the edge


@dataclass(frozen=True)
class SampleSizeResult:
    points: pd.DataFrame
    summary: pd.DataFrame
    riley: pd.DataFrame
    markdown: str
    run_id: str
    seconds: float


def log_sample_size(config: ExperimentConfig, settings: CurveSettings, points: pd.DataFrame, summary: pd.DataFrame,
                    riley: pd.DataFrame, markdown_text: str) -> str:
    """One MLflow run in the experiment ``sample-size``: the curves as metrics by step (the training
    size), per family in a nested run, the plots, the tables and the report. Returns the run id."""
    import mlflow

    ensure_experiment("sample-size", description=(
        "Learning curves (AUROC, its ratio to the oracle's, calibration slope, mean absolute error to the "
        "true risk against the number of training patients) and Riley's minimum sample size: how many "
        "patients a real IL-21 study would need. `autorisk sample-size`; one run per invocation."))
    description = markdown_text.split("## Riley's criteria")[0].split("\n", 2)[2].strip()
    with mlflow.start_run(run_name=f"sample-size/{config.name}", description=description,
                          tags={EXPERIMENT_TAG: config.name, ROLE_TAG: ROLE_PARENT}) as run:
        mlflow.log_params({"experiment": config.name, "sizes": ",".join(map(str, settings.sizes)),
                           "repeats": settings.repeats, "benchmark_cohort": settings.benchmark.label(),
                           "endpoints": ",".join(endpoint(o, h) for o, h in settings.endpoints),
                           "arm": ARM, "parameters": MODEL_PARAMETERS})
        for r in riley.itertuples():
            key = f"riley_{r.outcome}_{r.horizon_months}m_c{round(1000 * r.c_statistic)}"
            mlflow.log_metrics({f"{key}_n": r.n, f"{key}_events": r.events,
                                f"{key}_published_share": r.published_share_of_needed})
        for family, rows in summary.groupby("family", sort=False):
            with mlflow.start_run(run_name=f"sample-size/{config.name}/{family}", nested=True,
                                  tags={EXPERIMENT_TAG: config.name, ROLE_TAG: ROLE_MODEL, FAMILY_TAG: family},
                                  description=f"Learning curve of {family}: metrics by step = training patients."):
                for r in rows.itertuples():
                    values = {f"{r.endpoint}_{m}_{s}": getattr(r, f"{m}_{s}") for m in CURVE_METRICS
                              for s in ("mean", "sd")}
                    mlflow.log_metrics({k: float(v) for k, v in values.items() if np.isfinite(v)}, step=int(r.n))
        for e in dict.fromkeys(summary["endpoint"]):
            mlflow.log_figure(curve_figure(summary, e), f"plots/learning_curve_{e}.png")
        mlflow.log_text(points.to_csv(index=False), "learning_curves/fits.csv")
        mlflow.log_text(summary.to_csv(index=False), "learning_curves/summary.csv")
        mlflow.log_text(riley.to_csv(index=False), "riley.csv")
        mlflow.log_text(markdown_text, "sample-size.md")
        mlflow.log_text(html_page(markdown_text, f"sample size: {config.name}"), "sample-size.html")
    return run.info.run_id


def write_report(folder, summary: pd.DataFrame, riley: pd.DataFrame, markdown_text: str) -> list:
    """The report, its figures and tables under ``folder``; returns the paths written."""
    folder = Path(folder)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    paths = [folder / "sample-size.md", folder / "sample-size.html", folder / "riley.csv",
             folder / "learning_curves.csv"]
    paths[0].write_text(markdown_text, encoding="utf-8")
    paths[1].write_text(html_page(markdown_text, "sample size"), encoding="utf-8")
    riley.to_csv(paths[2], index=False)
    summary.to_csv(paths[3], index=False)
    for e in dict.fromkeys(summary["endpoint"]):
        path = folder / "plots" / f"learning_curve_{e}.png"
        curve_figure(summary, e).savefig(path, dpi=100)
        paths.append(path)
    return paths


def run_sample_size(config: ExperimentConfig, simulator: SimulatorConfig, settings: CurveSettings,
                    log=print) -> SampleSizeResult:
    """Learning curves, Riley's criteria and the report, logged as one MLflow run."""
    started = time.perf_counter()
    points = learning_curves(config, simulator, settings, log)
    summary = summarise(points)
    horizon = int(simulator.profiles["care-ms1"].follow_up_months)
    outcomes = dict.fromkeys(o for o, _ in settings.endpoints)
    riley = riley_table(riley_scenarios(simulator, {o: c_statistics_from(summary, endpoint(o, horizon))
                                                    for o in outcomes}))
    seconds = time.perf_counter() - started
    text = report_markdown(config, settings, summary, riley, seconds)
    run_id = log_sample_size(config, settings, points, summary, riley, text)
    return SampleSizeResult(points, summary, riley, text, run_id, seconds)
