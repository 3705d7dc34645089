"""Observed outcomes in files: per outcome, whether an onset was observed and when, checked row by row.

The convention is the simulator's (:mod:`features.simulator`) and a registry's export alike: per
outcome ``<outcome>_event`` (1 = onset observed, 0 = censored) and ``<outcome>_time_months`` (the
onset month, or the last month the patient was known to be without it, after the first course). A
row whose outcome cannot be used is rejected alone, with a reason naming the column and the problem;
a file without an outcome's columns cannot be used at all. :func:`kaplan_meier_survival` estimates
the share still without an onset from such censored times (the cohort report, the censoring weights).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from features.validation import MISSING_TOKENS, InputSchemaError

# The longest follow-up a record may state: ten years after the first course. A longer one is not a
# follow-up of alemtuzumab's reconstitution window but an error in the export (days or weeks for months).
MAX_FOLLOW_UP_MONTHS = 120.0
_EVENT_CODES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


def event_column(outcome: str) -> str:
    """``"thyroid"`` -> ``"thyroid_event"``."""
    return f"{outcome}_event"


def time_column(outcome: str) -> str:
    """``"thyroid"`` -> ``"thyroid_time_months"``."""
    return f"{outcome}_time_months"


def outcome_columns(outcomes: Iterable[str]) -> list[str]:
    """The event and time column of each outcome, in that order."""
    return [column for o in outcomes for column in (event_column(o), time_column(o))]


def check_outcome_columns(columns: Sequence[str], outcomes: Sequence[str]) -> None:
    """InputSchemaError naming every missing outcome column of ``outcomes``."""
    missing = [c for c in outcome_columns(outcomes) if c not in columns]
    if missing:
        raise InputSchemaError(f"outcome columns missing: {', '.join(missing)} (per outcome, <outcome>_event: 1 "
                               "onset observed, 0 censored; <outcome>_time_months: onset or censoring month)")


def _text(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    text = values.astype("string").str.strip().str.lower()
    return text, (text.isna() | text.isin(MISSING_TOKENS)).to_numpy(dtype=bool)


def read_outcome(frame: pd.DataFrame, outcome: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One outcome's columns of ``frame`` as ``(event, time, reason)``, each of shape (n,).

    ``event`` is 0/1 (0 where rejected), ``time`` float months (NaN where rejected) and ``reason`` ""
    for a usable row, else what is wrong, naming the column: the event not 0 or 1, the time missing,
    not a number, negative or over :data:`MAX_FOLLOW_UP_MONTHS`, or an event without a time.
    """
    events, event_missing = _text(frame[event_column(outcome)])
    event = events.map(_EVENT_CODES).to_numpy(dtype=float, na_value=np.nan)
    times, time_missing = _text(frame[time_column(outcome)])
    time = pd.to_numeric(times.where(~time_missing), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    reason = np.full(len(frame), "", dtype=object)
    shown_event = frame[event_column(outcome)].astype("string").to_numpy(dtype=object, na_value=None)
    shown_time = frame[time_column(outcome)].astype("string").to_numpy(dtype=object, na_value=None)
    name_e, name_t = event_column(outcome), time_column(outcome)
    for i in np.flatnonzero(np.isnan(event)):
        reason[i] = f"{name_e}: missing" if event_missing[i] else f"{name_e}: {shown_event[i]!r} is not 0 or 1"
    with np.errstate(invalid="ignore"):
        problems = {
            "missing": time_missing & (event != 1),
            "event": time_missing & (event == 1),
            "number": ~time_missing & np.isnan(time),
            "negative": time < 0,
            "long": time > MAX_FOLLOW_UP_MONTHS,
        }
    messages = {
        "missing": lambda i: f"{name_t}: missing",
        "event": lambda i: f"{name_t}: missing for an observed onset ({name_e} 1): an event without a time",
        "number": lambda i: f"{name_t}: {shown_time[i]!r} is not a number of months",
        "negative": lambda i: f"{name_t}: {time[i]:g} is negative",
        "long": lambda i: f"{name_t}: {time[i]:g} is over {MAX_FOLLOW_UP_MONTHS:g} months after the first course",
    }
    for kind, mask in problems.items():
        for i in np.flatnonzero(mask):
            reason[i] = f"{reason[i]}; {messages[kind](i)}" if reason[i] else messages[kind](i)
    bad = reason != ""
    return np.where(bad, 0, event).astype(np.int8), np.where(bad, np.nan, time), reason


def read_outcomes(frame: pd.DataFrame, outcomes: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Every outcome of ``frame``: the usable columns and the reasons of the rows that cannot be used.

    Parameters
    ----------
    frame : DataFrame of shape (n, ...)
        Records with the outcome columns (any other columns are ignored).
    outcomes : sequence of str

    Returns
    -------
    values : DataFrame of shape (n, 2 * len(outcomes))
        ``<outcome>_event`` (int8) and ``<outcome>_time_months`` (float) per outcome.
    reasons : ndarray of object, shape (n,)
        "; "-joined reasons ("" for a usable row).

    Raises
    ------
    InputSchemaError
        When an outcome's columns are missing, naming them.
    """
    check_outcome_columns(list(frame.columns), outcomes)
    values, reasons = {}, np.full(len(frame), "", dtype=object)
    for outcome in outcomes:
        event, time, reason = read_outcome(frame, outcome)
        values[event_column(outcome)], values[time_column(outcome)] = event, time
        both = (reasons != "") & (reason != "")
        reasons = np.where(both, reasons + "; " + reason, np.where(reason != "", reason, reasons))
    return pd.DataFrame(values, index=frame.index), reasons


def kaplan_meier_survival(time: np.ndarray, event: np.ndarray):
    """Kaplan–Meier survival function of ``time`` with ``event`` = 1 where the time is observed
    (scikit-survival's estimator).

    Returns
    -------
    callable
        ``S(t)``, right-continuous step function, evaluated on arrays.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if not event.any():
        return lambda t: np.ones(np.shape(t))
    times, survival = kaplan_meier_estimator(event, time)

    def evaluate(t) -> np.ndarray:
        position = np.searchsorted(times, np.asarray(t, dtype=float), side="right") - 1
        return np.where(position >= 0, survival[np.maximum(position, 0)], 1.0)

    return evaluate
