"""Synthetic cohorts that match the published trials, with event times, censoring and true risks.

Every number comes from :class:`SimulatorConfig` (``experiments/cohorts.yaml``, in a named world of
``experiments/worlds/``), which cites its source in ``docs/clinical-evidence.md``. The functions here
are pure: config and seed in, DataFrame out.

Event model (:mod:`features.event_model`)
-----------------------------------------
In the ever-risk form, patient *i* develops an outcome at some point with probability ``p_i`` (a
logistic function of the baseline features) and the onset month follows the treatment's timing
``G`` (or, with patient timing, ``T(G, k_i)``); in the proportional-hazards form the same effects
multiply a baseline cumulative hazard. Observation ends at the profile's follow-up or at an
exponential drop-out time, whichever comes first; the outcome is observed when onset comes before
that. Each arm's intercept is solved so that its target is met in expectation. Each patient's IL-21
is read by the profile's kit (:class:`features.simulator_config.KitSpec`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from features.baseline import draw_baseline
from features.event_model import (
    arm_curve,
    arm_intercepts,
    dropout_rate,
    linear_predictor,
    observed_probability,
    onset_months,
    patient_parameters,
    risk_by_month,
    shift_transform,
    solve_intercept,
)
from features.schema import EVALUATION_HORIZONS_MONTHS, FEATURES, ID_COLUMN, OUTCOMES
from features.simulator_config import (
    DEFAULT_CONFIG_PATH,
    KITS,
    MissingSpec,
    ProfileSpec,
    SimulatorConfig,
    load_simulator_config,
)

__all__ = ["DEFAULT_CONFIG_PATH", "SimulatorConfig", "arm_intercepts", "draw_baseline", "ever_risk",
           "ever_risk_column", "linear_predictor", "load_simulator_config", "onset_cdf", "read_il21",
           "simulate_cohort", "true_risk", "true_risk_at", "write_frame"]

BOOLEAN_FEATURES = tuple(f.name for f in FEATURES if f.kind == "boolean")
# Which seed stream a kit's reading noise comes from: the same patients, whatever the kit.
KIT_NOISE_STREAM = 1


def onset_cdf(config: SimulatorConfig, treatment: str, months) -> np.ndarray:
    """``G(t)``: the treatment's onset timing (ever-risk form), the shape of its hazard otherwise."""
    spec = config.onset[treatment]
    return np.interp(np.asarray(months, dtype=float), spec.months, spec.cdf)


def ever_risk(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame) -> np.ndarray:
    """Each patient's probability of developing ``outcome`` by the end of the onset curve (month 72)."""
    lp, shift = patient_parameters(config, profile, outcome, baseline)
    return _risk_by_arm(config, outcome, baseline["treatment"].to_numpy(), lp, shift,
                        lambda curve: [curve.months[-1]])[:, 0]


def _risk_by_arm(config: SimulatorConfig, outcome: str, treatment: np.ndarray, lp: np.ndarray, shift: np.ndarray,
                 months_of) -> np.ndarray:
    columns = None
    for arm in dict.fromkeys(treatment):
        members = treatment == arm
        curve = arm_curve(config, arm, outcome)
        risk = risk_by_month(curve, lp[members], shift[members], months_of(curve))
        columns = np.empty((len(treatment), risk.shape[1])) if columns is None else columns
        columns[members] = risk
    return columns if columns is not None else np.empty((0, 1))


def true_risk(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame,
              horizon_months: float | None = None) -> np.ndarray:
    """Each patient's true probability of ``outcome``.

    With ``horizon_months``: of onset by that month (no drop-out). Without: of an *observed*
    event within the profile's follow-up (drop-out included), which is the probability of the
    ``<outcome>_event`` label.
    """
    lp, shift = patient_parameters(config, profile, outcome, baseline)
    treatment = baseline["treatment"].to_numpy()
    if horizon_months is not None:
        return _risk_by_arm(config, outcome, treatment, lp, shift, lambda _: [horizon_months])[:, 0]
    spec = config.profiles[profile]
    risk = np.empty(len(baseline))
    for arm in spec.arms:
        members = treatment == arm
        risk[members] = observed_probability(arm_curve(config, arm, outcome), lp[members], shift[members],
                                             dropout_rate(spec, arm), spec.follow_up_months)
    return risk


# --------------------------------------------------------------------------- measurement


def read_il21(config: SimulatorConfig, assay: str, true_pg_ml: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What ``assay`` reads for patients whose true IL-21 is ``true_pg_ml`` (legacy-ELISA scale), pg/mL."""
    kit = config.il21_assays[assay]
    population = config.population
    if kit.correlation == 1 and kit.median_pg_ml is None and kit.log_sd is None:
        reading = np.asarray(true_pg_ml, dtype=float)
    else:
        z = (np.log(true_pg_ml) - np.log(population.il21_median_pg_ml)) / population.il21_log_sd
        noise = rng.standard_normal(len(z)) if kit.correlation < 1 else np.zeros(len(z))
        median = kit.median_pg_ml or population.il21_median_pg_ml
        log_sd = kit.log_sd or population.il21_log_sd
        reading = np.exp(np.log(median) + log_sd * (kit.correlation * z + np.sqrt(1 - kit.correlation**2) * noise))
    return np.round(np.clip(reading, *kit.range_pg_ml), 2)


def _feature_matrix(baseline: pd.DataFrame, names) -> np.ndarray:
    columns = []
    for name in names:
        values = baseline[name]
        if name == "sex":
            values = values == "female"
        elif name == "treatment":
            values = values == "alemtuzumab"
        columns.append(values.to_numpy(dtype=float))
    return np.column_stack(columns) if columns else np.zeros((len(baseline), 0))


def missing_mask(spec: MissingSpec, baseline: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Which values to hide: share ``spec.rate``, more often where ``depends_on`` says (MAR)."""
    n = len(baseline)
    if not spec.depends_on:
        return rng.random(n) < spec.rate
    names = list(spec.depends_on)
    x = _feature_matrix(baseline, names)
    eta = (x - x.mean(axis=0)) @ np.array([spec.depends_on[k] for k in names])
    intercept = solve_intercept(eta, spec.rate) if spec.rate > 0 else -np.inf
    return rng.random(n) < expit(intercept + eta)


# --------------------------------------------------------------------------- cohorts


def _events(config: SimulatorConfig, profile: str, baseline: pd.DataFrame, censored_at: np.ndarray,
            rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per outcome the observed event and time; and each patient's ``(lp, k)``."""
    treatment = baseline["treatment"].to_numpy()
    outcomes, parameters = {}, {}
    for outcome in OUTCOMES:
        lp, shift = patient_parameters(config, profile, outcome, baseline)
        u_ever, u_time = rng.random(len(baseline)), rng.random(len(baseline))
        onset = np.full(len(baseline), np.inf)
        for arm in config.profiles[profile].arms:
            members = treatment == arm
            onset[members] = onset_months(arm_curve(config, arm, outcome), lp[members], shift[members],
                                          u_ever[members], u_time[members])
        event = onset <= censored_at
        outcomes[f"{outcome}_event"] = event.astype(np.int8)
        outcomes[f"{outcome}_time_months"] = np.round(np.where(event, onset, censored_at), 3)
        parameters[outcome] = (lp, shift)
    return outcomes, parameters


def _observe(config: SimulatorConfig, profile: str, baseline: pd.DataFrame, assay: str, seed: int,
             rng: np.random.Generator) -> pd.DataFrame:
    """The features as measured: IL-21 read by the kit, missing values as configured."""
    spec = config.profiles[profile]
    observed = baseline.drop(columns="relapses_prior_year")
    kit_rng = np.random.default_rng([seed, KIT_NOISE_STREAM])
    observed["il21_pg_ml"] = read_il21(config, assay, baseline["il21_pg_ml"].to_numpy(), kit_rng)
    observed.insert(observed.columns.get_loc("il21_pg_ml") + 1, "il21_assay", assay)
    for name in BOOLEAN_FEATURES:
        # object dtype (True / False / None): what MLflow's boolean schema accepts with missing values
        observed[name] = pd.Series(baseline[name].to_numpy() > 0, dtype=object)
    for name, missing in spec.missing.items():
        hidden = missing_mask(missing, baseline, rng)
        if name in BOOLEAN_FEATURES:
            observed[name] = observed[name].where(~hidden, None)
        else:
            observed[name] = observed[name].mask(hidden)
    observed["il21_assay"] = observed["il21_assay"].where(observed["il21_pg_ml"].notna(), None)
    return observed


def simulate_cohort(config: SimulatorConfig, profile: str, n: int, seed: int,
                    il21_assay: str | None = None) -> pd.DataFrame:
    """Simulate one synthetic cohort.

    Parameters
    ----------
    config : SimulatorConfig
        Simulator assumptions (one world).
    profile : str
        One of ``config.profiles`` (``camms223``, ``care-ms1``, ``care-ms2``, ``extension``, ``clinic``, ...).
    n : int
        Number of patients.
    seed : int
        Random seed; the same seed gives the same cohort.
    il21_assay : str, optional
        Measure IL-21 with this kit instead of the profile's own (the same patients and outcomes).

    Returns
    -------
    DataFrame
        ``patient_id``; the features as observed (missing values as configured, IL-21 as the kit
        reads it); per outcome ``<outcome>_event`` (1 = onset observed before censoring) and
        ``<outcome>_time_months`` (onset, or censoring); per outcome the true probabilities
        ``true_risk_<outcome>`` (of the event label within follow-up) and ``true_risk_<outcome>_<h>m``
        (of onset by month h, for h in :data:`features.schema.EVALUATION_HORIZONS_MONTHS`); per
        outcome and arm of the profile, the counterfactual truth under that arm:
        ``true_ever_risk_<outcome>_if_<arm>`` (of onset by month 72), with
        ``true_log_hazard_<outcome>_if_<arm>`` in the proportional-hazards form and
        ``true_onset_shift_<outcome>_if_<arm>`` with patient timing; :func:`true_risk_at` turns
        them into a risk by any month.
    """
    if profile not in config.profiles:
        raise ValueError(f"profile: unknown {profile!r}; choose from {', '.join(config.profiles)}")
    if n < 1:
        raise ValueError(f"n: must be at least 1, got {n}")
    spec = config.profiles[profile]
    assay = il21_assay or spec.il21_assay
    if assay not in KITS:
        raise ValueError(f"il21_assay: unknown {assay!r}; choose from {', '.join(KITS)}")
    rng = np.random.default_rng(seed)
    baseline = draw_baseline(config, profile, n, rng)
    treatment = baseline["treatment"].to_numpy()

    censored_at = _censoring_months(spec, treatment, rng)
    outcomes, _ = _events(config, profile, baseline, censored_at, rng)

    observed = _observe(config, profile, baseline, assay, seed, rng)
    width = len(str(n))
    observed.insert(0, ID_COLUMN, [f"{profile}-{seed}-{i:0{width}d}" for i in range(n)])
    for column, values in outcomes.items():
        observed[column] = values
    truth = _truth_columns(config, profile, baseline)
    return pd.concat([observed, pd.DataFrame(truth, index=observed.index)], axis=1)


def _censoring_months(spec: ProfileSpec, treatment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each patient's end of follow-up: dropout at the arm's rate, or the profile's follow-up."""
    n = len(treatment)
    rate = np.zeros(n)
    for arm in spec.arms:
        rate[treatment == arm] = dropout_rate(spec, arm)
    with np.errstate(divide="ignore"):
        dropout = np.where(rate > 0, rng.exponential(1.0, n) / np.where(rate > 0, rate, 1.0), np.inf)
    return np.minimum(dropout, spec.follow_up_months)


def _truth_columns(config: SimulatorConfig, profile: str, baseline: pd.DataFrame) -> dict[str, np.ndarray]:
    """The true risks of :func:`simulate_cohort`'s columns: own arm, by horizon, and counterfactual per arm."""
    truth = {}
    for outcome in OUTCOMES:
        truth[f"true_risk_{outcome}"] = true_risk(config, profile, outcome, baseline)
        for horizon in EVALUATION_HORIZONS_MONTHS:
            truth[f"true_risk_{outcome}_{horizon}m"] = true_risk(config, profile, outcome, baseline, horizon)
    for outcome in OUTCOMES:
        for arm in config.profiles[profile].arms:
            truth |= _counterfactual_columns(config, profile, outcome, baseline.assign(treatment=arm), arm)
    return truth


def _counterfactual_columns(config: SimulatorConfig, profile: str, outcome: str, baseline: pd.DataFrame,
                            arm: str) -> dict[str, np.ndarray]:
    lp, shift = patient_parameters(config, profile, outcome, baseline)
    columns = {ever_risk_column(outcome, arm): risk_by_month(arm_curve(config, arm, outcome), lp, shift,
                                                             [config.onset[arm].months[-1]])[:, 0]}
    if config.event_model.form == "proportional-hazards":
        columns[truth_column("log_hazard", outcome, arm)] = lp
    elif config.event_model.patient_timing is not None:
        columns[truth_column("onset_shift", outcome, arm)] = shift
    return columns


def ever_risk_column(outcome: str, treatment: str) -> str:
    """Cohort column of each patient's true probability of ``outcome`` by month 72 under ``treatment``."""
    return truth_column("ever_risk", outcome, treatment)


def truth_column(kind: str, outcome: str, treatment: str) -> str:
    """Cohort column of one counterfactual truth: ``ever_risk``, ``log_hazard`` or ``onset_shift``."""
    return f"true_{kind}_{outcome}_if_{treatment}"


def true_risk_at(config: SimulatorConfig, cohort: pd.DataFrame, outcome: str, months,
                 treatment: str | None = None) -> np.ndarray:
    """Each patient's true risk of onset by each of ``months``, under their own or another treatment.

    Parameters
    ----------
    config : SimulatorConfig
        The assumptions (world) the cohort was simulated with.
    cohort : DataFrame of shape (n, ...)
        A frame from :func:`simulate_cohort` (it carries each patient's truth per arm of its profile).
    outcome : str
        ``thyroid`` or ``itp``.
    months : sequence of float, length H
        Months after the first course.
    treatment : str, optional
        The counterfactual treatment for everyone; by default each patient's own.

    Returns
    -------
    ndarray of shape (n, H)
        Ever-risk form: ``p_i * T(G(t), k_i)`` (``k_i = 0`` without patient timing);
        proportional-hazards form: ``1 - exp(-exp(lp_i) * L(t))``.

    Raises
    ------
    KeyError
        When the cohort's profile has no arm of ``treatment`` (its intercept is unknown).
    """
    months = np.atleast_1d(np.asarray(months, dtype=float))
    own = cohort["treatment"].to_numpy()
    arms = [treatment] if treatment is not None else list(dict.fromkeys(own))
    risk = np.empty((len(cohort), len(months)))
    for arm in arms:
        members = np.ones(len(cohort), dtype=bool) if treatment is not None else own == arm
        column = ever_risk_column(outcome, arm)
        if column not in cohort:
            raise KeyError(f"{column}: the cohort has no arm {arm!r}, so its true risk under it is unknown")
        curve = arm_curve(config, arm, outcome)
        if curve.form == "proportional-hazards":
            lp = cohort[truth_column("log_hazard", outcome, arm)].to_numpy(dtype=float)[members]
            risk[members] = risk_by_month(curve, lp, np.zeros(len(lp)), months)
            continue
        p = cohort[column].to_numpy(dtype=float)[members]
        shift_column = truth_column("onset_shift", outcome, arm)
        shift = cohort[shift_column].to_numpy(dtype=float)[members] if shift_column in cohort else 0.0
        risk[members] = p[:, None] * shift_transform(curve.at(months)[None, :], np.reshape(shift, (-1, 1)))
    return risk


def write_frame(frame: pd.DataFrame, path: Path | str) -> None:
    """Write a frame as CSV or Parquet, by the file's extension."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"out: unsupported extension {path.suffix!r}; use .csv or .parquet")
