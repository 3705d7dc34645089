"""Step 4 of training: every figure of a fitted family (:class:`Evaluation`).

Against observed, censored outcomes (IPCW) on the held-out split and on every evaluation cohort; and,
only where a cohort carries the simulator's true risks, against the truth per arm and horizon and for the
treatment contrast. A cohort of real patients (a file) is judged on its observed outcomes alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.schema import CATEGORY_CODES, MAX_HORIZON_MONTHS, TREATMENTS, endpoint
from features.simulator import SimulatorConfig, true_risk_at
from features.validation import COLUMN_INDEX, encode
from models.evaluation import evaluate_against_truth, evaluate_at_horizon, evaluate_contrast
from models.names import (
    BENCHMARK_COHORT,
    FALLING_RISK_METRIC,
    PROMOTION_METRIC,
    SUBGROUP_HORIZONS_MONTHS,
    SUBGROUP_METRICS,
    cohort_prefix,
    contrast_metric,
    endpoint_metric,
    external_cohort,
    subgroup_metric,
    truth_metric,
)
from models.scoring import RiskModel
from pipelines.biomarker import BiomarkerValue
from pipelines.config import ExperimentConfig
from pipelines.intervals import IntervalEvaluation
from pipelines.steps import Cohorts, has_truth, status_at

ALL_ARMS = "all"  # both arms together, in a cohort that has both


@dataclass(frozen=True)
class Evaluation:
    """Everything measured of one fitted family.

    Attributes
    ----------
    metrics : dict of str to float
        Named as in :mod:`models.names`.
    curves : dict of str to dict
        Per endpoint of the test split, the arrays behind the plots: ``y``, ``weight``, ``model``, ``oracle``.
    subgroups : DataFrame
        One row per subgroup and endpoint of the test split.
    truth : DataFrame
        One row per cohort, arm and endpoint: the risks against the simulator's truth.
    contrast : DataFrame
        One row per cohort and endpoint: the alemtuzumab-minus-interferon contrast against the truth.
    population : dict of str to dict
        Per outcome and treatment, the benchmark cohort's mean predicted and true risk by month 0–72.
    biomarker : BiomarkerValue, optional
        What each predictor of the config's ``added_value`` adds (:mod:`pipelines.biomarker`).
    intervals : IntervalEvaluation, optional
        Coverage of the true risk by the risks' 95% intervals (:mod:`pipelines.intervals`).
    """

    metrics: dict[str, float]
    curves: dict[str, dict[str, np.ndarray]]
    subgroups: pd.DataFrame
    truth: pd.DataFrame
    contrast: pd.DataFrame
    population: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    biomarker: BiomarkerValue | None = None
    intervals: IntervalEvaluation | None = None



def subgroups(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Masks of the reported subgroups: sex, age band, prior treatment, treatment arm (read from the encoded
    values, so that a file's ``F`` or ``yes`` counts as the simulator's ``female`` or ``True``)."""
    matrix = encode(frame)

    def column(name: str) -> np.ndarray:
        return matrix[:, COLUMN_INDEX[name]]

    age, prior, sex, treatment = column("age_years"), column("prior_dmt"), column("sex"), column("treatment")
    return {
        "female": sex == CATEGORY_CODES["sex"]["female"],
        "male": sex == CATEGORY_CODES["sex"]["male"],
        "age_under_30": age < 30,
        "age_30_39": (age >= 30) & (age < 40),
        "age_40_plus": age >= 40,
        "prior_dmt": prior == 1.0,
        "no_prior_dmt": prior == 0.0,
        **{t: treatment == CATEGORY_CODES["treatment"][t] for t in TREATMENTS},
    }


def subgroup_table(curves: dict[str, dict[str, np.ndarray]], frame: pd.DataFrame) -> pd.DataFrame:
    """Metrics by subgroup at the subgroup horizons, from the test split's curves: one row per subgroup and endpoint."""
    rows = []
    for name, mask in subgroups(frame).items():
        if mask.sum() < 50:
            continue
        for key, c in curves.items():
            if int(key.rsplit("_", 1)[1].removesuffix("m")) not in SUBGROUP_HORIZONS_MONTHS:
                continue
            oracle = c["oracle"][mask] if c["oracle"] is not None else None
            values = evaluate_at_horizon(c["y"][mask], c["model"][mask], c["weight"][mask], oracle, detail=False)
            rows.append({"subgroup": name, "endpoint": key, "n": int(mask.sum())}
                        | {m: values.get(m, np.nan) for m in (*SUBGROUP_METRICS, "events")})
    return pd.DataFrame(rows)


def evaluate_labels(model: RiskModel, frame: pd.DataFrame, horizons: tuple[int, ...], *, prefix: str = "",
                    bootstrap: int = 0, seed: int = 0) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Metrics against observed, censored outcomes (IPCW) per endpoint, and the arrays behind them (with the
    oracle's where the cohort carries the simulator's true risks)."""
    metrics: dict[str, float] = {}
    curves = {}
    truths = has_truth(frame)
    for outcome, risk in model.risks(encode(frame), horizons).items():
        for k, h in enumerate(horizons):
            name = endpoint(outcome, h)
            labels = status_at(frame, outcome, h)
            truth = frame[f"true_risk_{name}"].to_numpy() if truths else None
            values = evaluate_at_horizon(labels.y, risk[:, k], labels.weight, truth, bootstrap=bootstrap, seed=seed)
            metrics |= {endpoint_metric(name, m, prefix): v for m, v in values.items()}
            curves[name] = {"y": labels.y, "weight": labels.weight, "model": risk[:, k], "oracle": truth}
    return metrics, curves


def evaluate_truth(model: RiskModel, simulator: SimulatorConfig, frame: pd.DataFrame, cohort: str,
                   horizons: tuple[int, ...]) -> tuple[dict[str, float], list[dict], list[dict]]:
    """Risks per arm (and both arms together) against the simulator's truth, and the contrast
    where the cohort has both arms.

    Returns
    -------
    metrics : dict
        ``truth_<cohort>_<treatment>_<endpoint>_<metric>`` and ``contrast_<cohort>_<endpoint>_<metric>``.
    truth_rows, contrast_rows : list of dict
        The same as table rows.
    """
    matrix = encode(frame)
    treatment = frame["treatment"].to_numpy()
    own = model.risks(matrix, horizons)
    both_arms = all(f"true_ever_risk_thyroid_if_{t}" in frame and frame[f"true_ever_risk_thyroid_if_{t}"].notna().all()
                    for t in TREATMENTS)
    counterfactual = model.contrast(matrix, horizons) if both_arms else {}
    metrics: dict[str, float] = {}
    truth_rows, contrast_rows = [], []
    for outcome, risk in own.items():
        true_own = true_risk_at(simulator, frame, outcome, horizons)
        true_by_treatment = {t: true_risk_at(simulator, frame, outcome, horizons, t) for t in TREATMENTS} \
            if both_arms else {}
        for k, h in enumerate(horizons):
            name = endpoint(outcome, h)
            for arm, members in {**{t: treatment == t for t in TREATMENTS},
                                 ALL_ARMS: np.ones(len(frame), dtype=bool)}.items():
                if members.sum() < 50 or (arm == ALL_ARMS and len(set(treatment)) < 2):
                    continue
                values = evaluate_against_truth(risk[members, k], true_own[members, k])
                metrics |= {truth_metric(cohort, arm, name, m): v for m, v in values.items()}
                truth_rows.append({"cohort": cohort, "treatment": arm, "endpoint": name, "n": int(members.sum())}
                                  | values)
            if both_arms:
                values = evaluate_contrast({t: counterfactual[outcome][t][:, k] for t in TREATMENTS},
                                           {t: true_by_treatment[t][:, k] for t in TREATMENTS},
                                           treatment, true_own[:, k], risk[:, k])
                metrics |= {contrast_metric(cohort, name, m): v for m, v in values.items()}
                contrast_rows.append({"cohort": cohort, "endpoint": name} | values)
    return metrics, truth_rows, contrast_rows


def population_curves(model: RiskModel, simulator: SimulatorConfig, frame: pd.DataFrame
                      ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Per outcome and treatment in ``frame``: mean predicted and true risk by month 0–72, extrapolated months flagged."""
    months = np.arange(1, MAX_HORIZON_MONTHS + 1)
    matrix = encode(frame)
    treatment = frame["treatment"].to_numpy()
    follow_up = model.follow_up_months()
    curves: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for outcome, risk in model.risks(matrix, months).items():
        truth = true_risk_at(simulator, frame, outcome, months)
        curves[outcome] = {}
        for arm in TREATMENTS:
            members = treatment == arm
            if not members.any():
                continue
            curves[outcome][arm] = {
                "months": np.concatenate([[0], months]),
                "predicted": np.concatenate([[0.0], risk[members].mean(axis=0)]),
                "true": np.concatenate([[0.0], truth[members].mean(axis=0)]),
                "extrapolated": np.concatenate([[False], months > follow_up[arm]]),
            }
    return curves


def falling_risks(model: RiskModel, frame: pd.DataFrame) -> int:
    """Patients whose risk of any outcome falls from one month to the next over months 1–72 (0 by construction)."""
    months = np.arange(1, MAX_HORIZON_MONTHS + 1)
    falling = np.zeros(len(frame), dtype=bool)
    for risk in model.risks(encode(frame), months).values():
        falling |= (np.diff(risk, axis=1) < 0).any(axis=1)
    return int(falling.sum())


def evaluate(model: RiskModel, cohorts: Cohorts, config: ExperimentConfig,
             simulator: SimulatorConfig | None) -> Evaluation:
    """Step 4: every metric of a fitted family (see :mod:`models.names` for the names)."""
    horizons = config.evaluation_horizons_months
    metrics, curves = evaluate_labels(model, cohorts.test, horizons, bootstrap=config.bootstrap, seed=config.split_seed)
    if cohorts.benchmark is not None:
        metrics |= evaluate_labels(model, cohorts.benchmark, horizons, prefix=cohort_prefix(BENCHMARK_COHORT), bootstrap=config.bootstrap,
                                   seed=config.split_seed)[0]
    for name, frame in cohorts.external.items():
        metrics |= evaluate_labels(model, frame, horizons, prefix=cohort_prefix(external_cohort(name)))[0]
    table = subgroup_table(curves, cohorts.test)
    for row in table.itertuples():
        metrics |= {subgroup_metric(row.subgroup, row.endpoint, m): getattr(row, m)
                    for m in SUBGROUP_METRICS if np.isfinite(getattr(row, m))}
    truth_rows, contrast_rows = [], []
    for cohort, frame in cohorts.with_truth().items():
        values, truth, contrast = evaluate_truth(model, simulator, frame, cohort, horizons)
        metrics |= values
        truth_rows += truth
        contrast_rows += contrast
    promotion = [metrics[endpoint_metric(endpoint(o, h), "log_loss_over_null")] for o in model.outcome_names
                 for h in horizons if endpoint_metric(endpoint(o, h), "log_loss_over_null") in metrics]
    metrics[PROMOTION_METRIC] = float(np.mean(promotion)) if promotion else float("nan")
    benchmark = cohorts.benchmark if cohorts.benchmark is not None else cohorts.test
    on = BENCHMARK_COHORT if cohorts.benchmark is not None else None
    metrics[cohort_prefix(on) + FALLING_RISK_METRIC] = float(falling_risks(model, benchmark))
    truth = cohorts.benchmark is not None and has_truth(cohorts.benchmark)
    return Evaluation(metrics=metrics, curves=curves, subgroups=table, truth=pd.DataFrame(truth_rows),
                      contrast=pd.DataFrame(contrast_rows),
                      population=population_curves(model, simulator, cohorts.benchmark) if truth else {})


