"""Training steps for the interval on every risk: bootstrap refits, and how well their intervals cover the truth.

:func:`fit_intervals` refits each outcome's model on ``interval_refits`` bootstrap resamples of the
training split (:mod:`models.intervals`) and gives the model what scoring needs (the linear
family's refits in closed form, the tree family's spread learned). :func:`evaluate_intervals`
measures, on the benchmark cohort, how often the simulator's true risk lies inside each
patient's 95% interval, per outcome, horizon and arm, beside what the refits' own spread gives
(for the tree family, how closely the learned spread follows it), how the misses fall (true risk
above or below the interval) and how far the model is from the truth in units of its spread: a
bias that refits cannot see shows as an error many spreads wide.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import TREATMENTS, endpoint
from features.simulator import SimulatorConfig, true_risk_at
from features.validation import encode
from models.intervals import (
    MONTH_GRID,
    BootstrapRefits,
    bootstrap_refits,
    interval,
    risk_from_log_hazard,
    served_spread,
)
from models.model_error import ModelErrorSpread, model_error_variance, sampling_spread
from models.names import BENCHMARK_COHORT, INTERVAL_ARM_METRICS, INTERVAL_METRICS, interval_metric
from models.scoring import RiskModel, not_provided
from models.survival import treatment_index

ALL_ARMS = "all"
PLOT_PATIENTS = 200


@dataclass(frozen=True)
class IntervalEvaluation:
    """Coverage of the true risk by the intervals, per outcome, horizon and arm, and the instability plot's data.

    Attributes
    ----------
    table : DataFrame
        One row per cohort, arm and endpoint (:data:`models.names.INTERVAL_METRICS` and the arm's size).
    refits : int
    kind : dict of str to str
        Per outcome, how scoring computes the spread (``linear``: closed form; ``learned``).
    plot : dict of str to dict
        Per outcome and horizon (24, 48 when evaluated): ``risk`` (m,), ``refit_risks`` (B, m), ``lo``, ``hi`` (m,)
        for a sample of benchmark patients.
    seconds : float
        Time the refits took.
    """

    table: pd.DataFrame
    refits: int
    kind: dict[str, str]
    plot: dict[str, dict[int, dict[str, np.ndarray]]]
    seconds: float

    def metrics(self) -> dict[str, float]:
        values = {"interval_refits": float(self.refits), "interval_fit_seconds": self.seconds}
        for r in self.table.to_dict("records"):
            names = INTERVAL_METRICS if r["arm"] == ALL_ARMS else INTERVAL_ARM_METRICS
            values |= {interval_metric(r["cohort"], r["arm"], r["endpoint"], m): r[m] for m in names
                       if np.isfinite(r[m])}
        return values


def fit_intervals(model: RiskModel, train: pd.DataFrame, refits: int, seed: int, held_out: pd.DataFrame | None = None
                  ) -> tuple[RiskModel, dict[str, BootstrapRefits], float]:
    """Refit each outcome's model on ``refits`` bootstrap resamples of ``train``; the model with its spreads,
    widened by the model's error measured on the observed outcomes of ``held_out`` when given
    (:mod:`models.model_error`).

    Returns
    -------
    model : RiskModel
        ``model`` with, per outcome, what scoring needs for the intervals.
    refits : dict of str to BootstrapRefits
        The refits themselves, for :func:`evaluate_intervals`.
    seconds : float
    """
    started = time.perf_counter()
    bounded = model.prepare(encode(train))
    fitted, spreads = {}, {}
    for k, (outcome, survival) in enumerate(model.outcomes.items()):
        event = train[f"{outcome}_event"].to_numpy() == 1
        months = train[f"{outcome}_time_months"].to_numpy(dtype=float)
        fitted[outcome] = bootstrap_refits(survival, bounded, event, months, refits=refits, seed=seed + 1000 * k)
        spreads[outcome] = served_spread(fitted[outcome], bounded, seed=seed)
        if held_out is not None:
            spreads[outcome] = ModelErrorSpread(spreads[outcome], held_out_model_error(model, outcome, held_out))
    return model.with_spreads(spreads), fitted, time.perf_counter() - started


def held_out_model_error(model: RiskModel, outcome: str, held_out: pd.DataFrame) -> np.ndarray:
    """:func:`models.model_error.model_error_variance` of ``outcome`` on the held-out patients' observed outcomes."""
    survival = model.outcomes[outcome]
    prepared = model.prepare(encode(held_out))
    strata = treatment_index(prepared)
    log_hazard = survival.log_cumulative_hazard(survival.log_relative_hazard(prepared), strata, MONTH_GRID)
    return model_error_variance(log_hazard, held_out[f"{outcome}_event"].to_numpy() == 1,
                                held_out[f"{outcome}_time_months"].to_numpy(dtype=float), strata,
                                len(survival.baseline_.follow_up_months))


@dataclass(frozen=True)
class _Bounds:
    """One outcome's served and refit intervals on a cohort, with the true risks, each of shape (n, H)
    (``refit_risks`` (B, n, H)); :meth:`figures` measures them for a group of patients at a horizon."""

    truth: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    refit_lo: np.ndarray
    refit_hi: np.ndarray
    risk: np.ndarray
    log_hazard: np.ndarray
    refit_risks: np.ndarray
    refit_sd: np.ndarray
    sampling_sd: np.ndarray
    served_sd: np.ndarray

    def figures(self, members: np.ndarray, k: int, full: np.ndarray) -> dict[str, float]:
        """Coverage, widths and spreads of the patients ``members`` at horizon ``k``; ``full``: of those, who gave
        every input."""
        t, l, u = self.truth[members, k], self.lo[members, k], self.hi[members, k]
        risk, refit_sd = self.risk[members, k], self.refit_sd[members, k]
        ratio = self.sampling_sd[members, k] / np.maximum(refit_sd, 1e-12)
        inside = (l <= t) & (t <= u)
        return {
            "coverage": float(np.mean(inside)),
            "complete_share": float(np.mean(full)),
            "coverage_complete": float(np.mean(inside[full])) if full.any() else np.nan,
            "mean_width_complete": float(np.mean((u - l)[full])) if full.any() else np.nan,
            "coverage_refits": float(np.mean((self.refit_lo[members, k] <= t) & (t <= self.refit_hi[members, k]))),
            "miss_above": float(np.mean(t > u)), "miss_below": float(np.mean(t < l)),
            "mean_width": float(np.mean(u - l)), "mean_risk": float(np.mean(risk)),
            "mean_true_risk": float(np.mean(t)),
            "spread_ratio": float(np.median(ratio)),
            "spread_correlation": _correlation(np.log(self.sampling_sd[members, k]),
                                               np.log(np.maximum(refit_sd, 1e-12))),
            "instability_mape": float(np.mean(np.abs(self.refit_risks[:, members, k] - risk[None]))),
            "error_over_spread": _error_over_spread(self.log_hazard[members, k], t, self.served_sd[members, k]),
        }


def evaluate_intervals(model: RiskModel, refits: dict[str, BootstrapRefits], simulator: SimulatorConfig,
                       frame: pd.DataFrame, horizons: tuple[int, ...], *, cohort: str = BENCHMARK_COHORT,
                       seconds: float = 0.0, seed: int = 0) -> IntervalEvaluation:
    """Coverage of the simulator's true risk on ``frame`` by the served 95% intervals, per outcome, horizon and arm.

    Beside it, the coverage of intervals from the refits' own spread (the same for the linear family),
    the mean width, the share of misses with the true risk above and below the interval, how the
    served spread compares with the refits' (median ratio, correlation of their logarithms), and
    Riley and Collins' instability index: the mean absolute difference between a refit's risk and the
    model's, over refits and patients.
    """
    matrix = encode(frame)
    bounded = model.prepare(matrix)
    strata = treatment_index(bounded)
    treatment = frame["treatment"].to_numpy()
    explained = model.explain(matrix, horizons)
    served = model.intervals(matrix, horizons, explained)
    arms = {ALL_ARMS: np.ones(len(frame), dtype=bool)} | {t: treatment == t for t in TREATMENTS}
    complete = ~not_provided(matrix).any(axis=1)  # every input given: the refits' spread alone applies
    sample = np.random.default_rng(seed).permutation(len(frame))[:PLOT_PATIENTS]
    rows, plot = [], {}
    for outcome, survival in model.outcomes.items():
        log_hazard = survival.log_cumulative_hazard(explained[outcome].log_relative_hazard, strata, horizons)
        deviations = refits[outcome].log_hazard_deviations(bounded, horizons)  # (B, n, H)
        refit_sd = deviations.std(axis=0, ddof=1)
        refit_lo, refit_hi = interval(log_hazard, refit_sd, refits[outcome].refits.__len__())
        lo, hi = served[outcome]
        bounds = _Bounds(
            truth=true_risk_at(simulator, frame, outcome, horizons), lo=lo, hi=hi, refit_lo=refit_lo,
            refit_hi=refit_hi, risk=explained[outcome].risk, log_hazard=log_hazard,
            refit_risks=risk_from_log_hazard(log_hazard[None] + deviations), refit_sd=refit_sd,
            sampling_sd=sampling_spread(model.spreads[outcome]).log_sd(bounded, horizons),  # the learned refits' part
            served_sd=model.spreads[outcome].log_sd(bounded, horizons))
        plot[outcome] = {}
        for k, h in enumerate(horizons):
            if h in (24, 48):
                plot[outcome][h] = {"risk": bounds.risk[sample, k], "refit_risks": bounds.refit_risks[:, sample, k],
                                    "lo": lo[sample, k], "hi": hi[sample, k]}
            for arm, members in arms.items():
                if members.sum() >= 50:
                    rows.append({"cohort": cohort, "arm": arm, "endpoint": endpoint(outcome, h),
                                 "n": int(members.sum())} | bounds.figures(members, k, complete[members]))
    kind = {o: sampling_spread(model.spreads[o]).kind for o in model.outcomes}
    return IntervalEvaluation(pd.DataFrame(rows), len(next(iter(refits.values())).refits), kind, plot, seconds)


def _error_over_spread(log_hazard: np.ndarray, truth: np.ndarray, log_sd: np.ndarray) -> float:
    """How far the model is from the truth in units of its bootstrap spread, on the log cumulative
    hazard scale: root mean square error over root mean square spread.

    About 1 when the errors are what refitting alone explains (the interval then holds the truth
    about 95% of the time); well above 1 when a bias refits share dominates. Patients whose true risk
    is 0 or 1 (a log cumulative hazard of minus or plus infinity; 1 in a proportional-hazards world
    for the highest relative hazards) are left out; NaN where none is left.
    """
    positive = (truth > 0) & (truth < 1)
    if not positive.any():
        return float("nan")
    error = log_hazard[positive] - np.log(-np.log1p(-truth[positive]))
    return float(np.sqrt(np.mean(error ** 2)) / np.sqrt(np.mean(log_sd[positive] ** 2)))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# --------------------------------------------------------------------------- report (pure) and logging


def coverage_table(evaluation: IntervalEvaluation) -> str:
    """Markdown: per endpoint and arm, coverage of the true risk by the served intervals (all patients, and those
    with every input given), by the refits' own spread, and how the misses and widths fall."""
    lines = ["| endpoint | arm | patients | true risk inside (served) | with every input given (share) | inside "
             "(refits' own spread) | above / below | mean width (every input given) | mean risk / true risk | "
             "error over spread (RMS, log H) | instability (mean abs. refit - model) |", "|" + "---|" * 11]
    for r in evaluation.table.itertuples():
        ratio = "—" if not np.isfinite(r.error_over_spread) else f"{r.error_over_spread:.1f}"
        lines.append(f"| {r.endpoint} | {r.arm} | {r.n:,} | {r.coverage:.1%} | {r.coverage_complete:.1%} "
                     f"({r.complete_share:.0%}) | {r.coverage_refits:.1%} | {r.miss_above:.1%} / {r.miss_below:.1%} | "
                     f"{100 * r.mean_width:.2f} pts ({100 * r.mean_width_complete:.2f}) | {100 * r.mean_risk:.2f}% / "
                     f"{100 * r.mean_true_risk:.2f}% | {ratio} | {100 * r.instability_mape:.2f} pts |")
    return "\n".join(lines)


def card_section(evaluation: IntervalEvaluation) -> str:
    """The model card's section on the intervals."""
    how = {"linear": "closed form: every refit is affine in the patient's design (exact)",
           "learned": "learned: a small booster of the refits' log spread from the inputs and the month"}
    kinds = "; ".join(f"{o}: {how[k]}" for o, k in evaluation.kind.items())
    return (f"Each risk comes with a 95% interval on the log cumulative hazard scale: Student's t for "
            f"{evaluation.refits} bootstrap refits of the whole fitting procedure on resamples of the training split "
            f"(hyperparameters as chosen) times their spread, together with the spread of the model's risk over the "
            f"values training patients had for each input not provided, and widened where a horizon is "
            f"extrapolated, and the model's own error where the held-out split's observed outcomes measured it (the "
            f"95% Q-profile upper bound of the calibration residuals' variance beyond sampling, per treatment and "
            f"month); [0, the rule of three's bound] on a treatment without training onsets. Served spread "
            f"per outcome — {kinds}. Coverage of the simulator's true risk on the benchmark cohort, for all patients "
            f"and for those with every input given; misses with the true risk above or below the interval show "
            f"bias that none of these explain.\n\n{coverage_table(evaluation)}\n\n"
            + "\n".join(f"![{o}: prediction instability](../plots/instability_{o}.png)" for o in evaluation.kind))


def instability_figure(data: dict[int, dict[str, np.ndarray]], outcome: str, refits: int):
    """Each refit's risk against the model's for a sample of patients, with the served 95% intervals."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * max(len(data), 1), 4.6))
    panels = np.atleast_1d(figure.subplots(1, max(len(data), 1)))
    for axes, (h, d) in zip(panels, data.items()):
        order = np.argsort(d["risk"])
        risk = d["risk"][order]
        axes.vlines(100 * risk, 100 * d["lo"][order], 100 * d["hi"][order], color="#2166ac", alpha=0.35,
                    linewidth=1, label="served 95% interval")
        axes.scatter(np.tile(100 * risk, len(d["refit_risks"])), 100 * d["refit_risks"][:, order].ravel(),
                     s=3, color="#b2182b", alpha=0.25, label=f"each of {refits} refits")
        top = 100 * max(float(d["hi"].max()), float(d["refit_risks"].max()), float(risk.max()))
        axes.plot([0, top], [0, top], color="black", linewidth=0.8)
        axes.set(xlabel="model's risk (%)", ylabel="refit's risk (%)", title=f"{outcome} by {h} months")
        axes.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"{outcome}: prediction instability, {len(risk) if data else 0} benchmark patients")
    figure.tight_layout()
    return figure


def log_intervals(evaluation: IntervalEvaluation) -> str:
    """Log the coverage table and the instability plots to the active run; return the card's section."""
    import mlflow

    mlflow.log_text(evaluation.table.to_csv(index=False), "intervals/coverage.csv")
    for outcome, data in evaluation.plot.items():
        mlflow.log_figure(instability_figure(data, outcome, evaluation.refits), f"plots/instability_{outcome}.png")
    return card_section(evaluation)
