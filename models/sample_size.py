"""Minimum sample size to develop a clinical prediction model, by Riley et al.'s criteria.

The criteria of Riley et al. (Stat Med 2019, part II, with its 2019 correction; BMJ 2020;368:m441),
as implemented by the R and Stata package ``pmsampsize``, for a binary outcome (logistic model) and
a time-to-event outcome (Cox model). With ``p`` candidate predictor parameters and an anticipated
(adjusted) Cox–Snell R² of the new model:

1. **Shrinkage.** Expected uniform shrinkage of the predictor effects at least ``S`` (0.9):
   ``n = p / ((S - 1) ln(1 - R²_CS / S))``.
2. **Optimism in R².** Apparent and adjusted Nagelkerke R² differ by at most ``delta`` (0.05),
   which is criterion 1 with ``S = R²_CS / (R²_CS + delta * max R²_CS)``.
3. **Overall risk.** The overall risk is estimated within ``margin`` (±0.05, 95% confidence):
   for a binary outcome ``n = (1.96 / margin)² phi (1 - phi)``; for a time-to-event outcome the
   smallest ``n`` whose 95% interval of the cumulative incidence at the timepoint (exponential
   event times, rate estimated from ``n * mean_follow_up`` person-time) lies within ``margin``.

The largest of the three binds. ``pmsampsize`` prints the interval of criterion 3 for a
time-to-event outcome at ``max(n1, n2)`` rather than a minimum ``n``; the minimum is computed
here so that each criterion has its own number (the final ``n`` is the same whenever that interval
already meets the margin, which is the usual case).

The anticipated R²_CS comes from a previous model, from a Nagelkerke R² (a share of the maximum
R²_CS), or, for a binary outcome, from a reported C-statistic (Riley, Van Calster & Collins,
Stat Med 2021): see :func:`cox_snell_r2_from_c_statistic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, stats

from features.schema import FEATURE_NAMES

_Z95 = 1.96  # the published criteria use 1.96, not the exact normal quantile
# Candidate predictor parameters of the project's models: every explained input, and one more for IL-21's
# threshold-shaped effect.
MODEL_PARAMETERS = len(FEATURE_NAMES) + 1


@dataclass(frozen=True)
class Criterion:
    """Sample size that meets one criterion.

    Attributes
    ----------
    name : str
        ``shrinkage`` (criterion 1), ``optimism`` (criterion 2) or ``overall_risk`` (criterion 3).
    n : int
        Minimum number of participants.
    events : float
        Expected outcome events among ``n`` (``n * prevalence``; ``n * rate * mean_follow_up``).
    epp : float
        Expected events per candidate predictor parameter.
    shrinkage : float
        Expected uniform shrinkage of a model developed on ``n`` participants.
    """

    name: str
    n: int
    events: float
    epp: float
    shrinkage: float


@dataclass(frozen=True)
class SampleSize:
    """Minimum sample size by the three criteria and the one that binds.

    Attributes
    ----------
    outcome : str
        ``binary`` or ``survival``.
    parameters : int
        Candidate predictor parameters.
    cox_snell_r2 : float
        Anticipated (adjusted) Cox–Snell R² of the new model.
    max_cox_snell_r2 : float
        The largest Cox–Snell R² possible for this outcome frequency.
    nagelkerke_r2 : float
        ``cox_snell_r2 / max_cox_snell_r2``.
    criteria : tuple of Criterion
        Criteria 1 to 3, in that order.
    binding : str
        Name of the criterion with the largest ``n`` (the first of them on a tie).
    n : int
        Minimum number of participants (the binding criterion's).
    events : float
        Expected events among ``n``.
    epp : float
        Expected events per candidate predictor parameter at ``n``.
    risk : float
        Overall risk the third criterion estimates: the prevalence, or the cumulative incidence
        at the timepoint under a constant event rate.
    risk_interval : tuple of float
        95% interval of that risk with ``n`` participants.
    person_time : float or None
        Follow-up at ``n`` in the time unit of the rate (time-to-event outcome only).
    """

    outcome: str
    parameters: int
    cox_snell_r2: float
    max_cox_snell_r2: float
    nagelkerke_r2: float
    criteria: tuple[Criterion, Criterion, Criterion]
    binding: str
    n: int
    events: float
    epp: float
    risk: float
    risk_interval: tuple[float, float]
    person_time: float | None = None

    def criterion(self, name: str) -> Criterion:
        """The criterion called ``name``."""
        return next(c for c in self.criteria if c.name == name)


# --------------------------------------------------------------------------- R² of the new model


def max_cox_snell_r2_binary(prevalence: float) -> float:
    """Largest Cox–Snell R² of a logistic model when the outcome proportion is ``prevalence``.

    ``1 - exp(2 ln L_null / n)`` with ``ln L_null / n = phi ln phi + (1 - phi) ln(1 - phi)``
    (Riley et al. 2019, part II).
    """
    _check_open_unit("prevalence", prevalence)
    log_null = prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence)
    return 1.0 - math.exp(2.0 * log_null)


def max_cox_snell_r2_survival(rate: float, mean_follow_up: float) -> float:
    """Largest Cox–Snell R² of a Cox model with this event rate and mean follow-up.

    ``ln L_null / n = e ln e - e`` with ``e = rate * mean_follow_up`` the expected events per
    participant: the published correction to part II, which makes the result free of the time
    unit (the rate and the follow-up must share one).
    """
    _check_positive("rate", rate)
    _check_positive("mean_follow_up", mean_follow_up)
    events_per_person = rate * mean_follow_up
    log_null = events_per_person * math.log(events_per_person) - events_per_person
    return 1.0 - math.exp(2.0 * log_null)


def cox_snell_r2_from_nagelkerke(nagelkerke_r2: float, max_cox_snell_r2: float) -> float:
    """Cox–Snell R² from a Nagelkerke R², which is its share of the maximum.

    With nothing better known, Riley et al. suggest a Nagelkerke R² of 0.15 as a conservative
    anticipated value.
    """
    _check_open_unit("nagelkerke_r2", nagelkerke_r2)
    return nagelkerke_r2 * max_cox_snell_r2


def cox_snell_r2_from_c_statistic(c_statistic: float, prevalence: float) -> float:
    """Anticipated Cox–Snell R² of a logistic model from its C-statistic and outcome proportion.

    The approximation of Riley, Van Calster & Collins (Stat Med 2021): the linear predictor is
    normal with unit variance in events and in non-events, its means ``sqrt(2) Phi^-1(C)`` apart
    so that the C-statistic is ``C``; the R² is that of a logistic regression of the outcome on
    it in a very large sample. ``pmsampsize`` fits that regression to a million simulated
    patients; here its large-sample limit is integrated instead, so the value has no Monte Carlo
    error: the two-normal model makes the log-odds exactly linear in the predictor, so the fit
    recovers the true posterior and ``LR / n`` tends to twice the mutual information ``I`` between
    outcome and predictor, giving ``R²_CS = 1 - exp(-2 I)``.

    Parameters
    ----------
    c_statistic : float
        Anticipated C-statistic (AUROC), in (0.5, 1).
    prevalence : float
        Outcome proportion, in (0, 1).
    """
    if not 0.5 < c_statistic < 1.0:
        raise ValueError(f"c_statistic must lie in (0.5, 1), got {c_statistic}")
    _check_open_unit("prevalence", prevalence)
    mu = math.sqrt(2.0) * stats.norm.ppf(c_statistic)

    def log_odds_ratio(x: float) -> float:  # log f_event(x) - log f_non_event(x)
        return mu * x - mu**2 / 2

    # H(outcome | x) = prevalence E_event[-log P(event | x)] + (1 - prevalence) E_non-event[-log P(non-event | x)]
    def event_term(x: float) -> float:
        return stats.norm.pdf(x, mu) * np.logaddexp(0.0, math.log((1 - prevalence) / prevalence) - log_odds_ratio(x))

    def non_event_term(x: float) -> float:
        return stats.norm.pdf(x) * np.logaddexp(0.0, math.log(prevalence / (1 - prevalence)) + log_odds_ratio(x))

    entropy = -(prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence))
    conditional = (prevalence * integrate.quad(event_term, -np.inf, np.inf)[0]
                   + (1 - prevalence) * integrate.quad(non_event_term, -np.inf, np.inf)[0])
    information = entropy - conditional
    return 1.0 - math.exp(-2.0 * information)


# --------------------------------------------------------------------------- criteria 1 and 2


def sample_size_for_shrinkage(parameters: int, cox_snell_r2: float, shrinkage: float = 0.9) -> int:
    """Smallest ``n`` whose expected uniform shrinkage is at least ``shrinkage`` (criterion 1)."""
    _check_parameters(parameters)
    if not 0 < cox_snell_r2 < shrinkage < 1:
        raise ValueError(f"need 0 < cox_snell_r2 < shrinkage < 1, got {cox_snell_r2} and {shrinkage}")
    return _ceil(parameters / ((shrinkage - 1.0) * math.log(1.0 - cox_snell_r2 / shrinkage)))


def shrinkage_for_optimism(cox_snell_r2: float, max_cox_snell_r2: float, optimism: float = 0.05) -> float:
    """Shrinkage that keeps the optimism in Nagelkerke R² at ``optimism`` (criterion 2)."""
    if not 0 < cox_snell_r2 < max_cox_snell_r2:
        raise ValueError(f"cox_snell_r2 {cox_snell_r2} must lie in (0, max {max_cox_snell_r2:.4f})")
    return cox_snell_r2 / (cox_snell_r2 + optimism * max_cox_snell_r2)


def expected_shrinkage(n: float, parameters: int, cox_snell_r2: float) -> float:
    """Expected uniform shrinkage of a model with ``parameters`` fitted on ``n`` participants.

    Solves ``S = 1 + p / (n ln(1 - R²_CS / S))`` (van Houwelingen's heuristic shrinkage with the
    apparent R² written as ``R²_CS / S``), the relation criterion 1 inverts. NaN when ``n`` is so
    small that no shrinkage in (R²_CS, 1) satisfies it.
    """
    _check_parameters(parameters)

    def gap(s: float) -> float:
        return s - 1.0 - parameters / (n * math.log(1.0 - cox_snell_r2 / s))

    low = cox_snell_r2 * (1 + 1e-12) + 1e-300
    if gap(low) >= 0:  # so few participants that no shrinkage in (R², 1) is consistent
        return float("nan")
    return float(optimize.brentq(gap, low, 1.0 - 1e-15, xtol=1e-14))


# --------------------------------------------------------------------------- criterion 3


def sample_size_for_prevalence(prevalence: float, margin: float = 0.05) -> int:
    """Smallest ``n`` that estimates the outcome proportion within ``margin`` (criterion 3, binary)."""
    _check_open_unit("prevalence", prevalence)
    return _ceil((_Z95 / margin) ** 2 * prevalence * (1.0 - prevalence))


def cumulative_incidence_interval(rate: float, timepoint: float, person_time: float) -> tuple[float, float, float]:
    """Cumulative incidence at ``timepoint`` under a constant rate, with its 95% interval.

    The rate's standard error is ``sqrt(rate / person_time)``; the interval is that of the rate
    carried through ``1 - exp(-rate * timepoint)``.

    Returns
    -------
    tuple of float
        ``(risk, lower, upper)``.
    """
    half_width = _Z95 * math.sqrt(rate / person_time)
    risk = 1.0 - math.exp(-rate * timepoint)
    return risk, 1.0 - math.exp(-(rate - half_width) * timepoint), 1.0 - math.exp(-(rate + half_width) * timepoint)


def sample_size_for_cumulative_incidence(rate: float, timepoint: float, mean_follow_up: float,
                                         margin: float = 0.05) -> int:
    """Smallest ``n`` that estimates the risk at ``timepoint`` within ``margin`` (criterion 3, survival).

    The lower side of the interval is the wider (the risk is concave in the rate), so the margin
    binds there: ``exp(-rate t) (exp(1.96 se t) - 1) <= margin`` gives the largest standard error
    ``se = ln(1 + margin exp(rate t)) / (1.96 t)``, and ``se² = rate / (n * mean_follow_up)``.
    """
    _check_positive("rate", rate)
    _check_positive("timepoint", timepoint)
    _check_positive("mean_follow_up", mean_follow_up)
    largest_se = math.log1p(margin * math.exp(rate * timepoint)) / (_Z95 * timepoint)
    return _ceil(rate / (mean_follow_up * largest_se**2))


# --------------------------------------------------------------------------- the whole calculation


def binary_sample_size(parameters: int, prevalence: float, cox_snell_r2: float, *,
                       shrinkage: float = 0.9, optimism: float = 0.05, margin: float = 0.05) -> SampleSize:
    """Minimum sample size to develop a logistic prediction model (criteria 1 to 3).

    Parameters
    ----------
    parameters : int
        Candidate predictor parameters (every coefficient, including spline terms and dummies).
    prevalence : float
        Anticipated outcome proportion in the development data.
    cox_snell_r2 : float
        Anticipated adjusted Cox–Snell R² (see :func:`cox_snell_r2_from_c_statistic`).
    shrinkage, optimism, margin : float
        Target shrinkage (criterion 1), largest optimism in Nagelkerke R² (criterion 2) and
        margin of error of the overall risk (criterion 3).

    Returns
    -------
    SampleSize
    """
    max_r2 = max_cox_snell_r2_binary(prevalence)
    optimism_shrinkage = shrinkage_for_optimism(cox_snell_r2, max_r2, optimism)
    sizes = (sample_size_for_shrinkage(parameters, cox_snell_r2, shrinkage),
             sample_size_for_shrinkage(parameters, cox_snell_r2, optimism_shrinkage),
             sample_size_for_prevalence(prevalence, margin))
    criteria = _criteria(sizes, parameters, cox_snell_r2, events_per_person=prevalence)
    final = max(criteria, key=lambda c: c.n)
    half_width = _Z95 * math.sqrt(prevalence * (1 - prevalence) / final.n)
    return SampleSize(
        outcome="binary", parameters=parameters, cox_snell_r2=cox_snell_r2, max_cox_snell_r2=max_r2,
        nagelkerke_r2=cox_snell_r2 / max_r2, criteria=criteria, binding=final.name, n=final.n,
        events=final.events, epp=final.epp, risk=prevalence,
        risk_interval=(prevalence - half_width, prevalence + half_width))


def survival_sample_size(parameters: int, rate: float, timepoint: float, mean_follow_up: float,
                         cox_snell_r2: float, *, shrinkage: float = 0.9, optimism: float = 0.05,
                         margin: float = 0.05) -> SampleSize:
    """Minimum sample size to develop a Cox prediction model (criteria 1 to 3).

    Parameters
    ----------
    parameters : int
        Candidate predictor parameters.
    rate : float
        Anticipated overall event rate, per unit of time.
    timepoint : float
        Time at which the model predicts risk, same unit.
    mean_follow_up : float
        Anticipated mean follow-up in the development data, same unit.
    cox_snell_r2 : float
        Anticipated adjusted Cox–Snell R².
    shrinkage, optimism, margin : float
        As in :func:`binary_sample_size`.

    Returns
    -------
    SampleSize
    """
    max_r2 = max_cox_snell_r2_survival(rate, mean_follow_up)
    optimism_shrinkage = shrinkage_for_optimism(cox_snell_r2, max_r2, optimism)
    sizes = (sample_size_for_shrinkage(parameters, cox_snell_r2, shrinkage),
             sample_size_for_shrinkage(parameters, cox_snell_r2, optimism_shrinkage),
             sample_size_for_cumulative_incidence(rate, timepoint, mean_follow_up, margin))
    criteria = _criteria(sizes, parameters, cox_snell_r2, events_per_person=rate * mean_follow_up)
    final = max(criteria, key=lambda c: c.n)
    person_time = final.n * mean_follow_up
    risk, lower, upper = cumulative_incidence_interval(rate, timepoint, person_time)
    return SampleSize(
        outcome="survival", parameters=parameters, cox_snell_r2=cox_snell_r2, max_cox_snell_r2=max_r2,
        nagelkerke_r2=cox_snell_r2 / max_r2, criteria=criteria, binding=final.name, n=final.n,
        events=final.events, epp=final.epp, risk=risk, risk_interval=(lower, upper), person_time=person_time)


def _criteria(sizes: tuple[int, int, int], parameters: int, cox_snell_r2: float,
              events_per_person: float) -> tuple[Criterion, Criterion, Criterion]:
    names = ("shrinkage", "optimism", "overall_risk")
    return tuple(
        Criterion(name=name, n=n, events=n * events_per_person, epp=n * events_per_person / parameters,
                  shrinkage=expected_shrinkage(n, parameters, cox_snell_r2))
        for name, n in zip(names, sizes))


def _ceil(x: float) -> int:
    # Round up, but not past an integer that floating point missed by a hair (220.00000000001).
    return math.ceil(x - 1e-9)


def _check_parameters(parameters: int) -> None:
    if int(parameters) != parameters or parameters < 1:
        raise ValueError(f"parameters must be a positive integer, got {parameters}")


def _check_open_unit(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
