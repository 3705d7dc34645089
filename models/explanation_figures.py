"""Pictures of SHAP values: a beeswarm and mean |SHAP| bars for a cohort, a waterfall for one patient.

The values are on the log cumulative hazard scale (:data:`features.schema.EXPLANATION_SCALE`),
where they are exact and add up. A clinician reads risks, so the waterfall shows each input's part
in percentage points of risk (:func:`risk_shares`), with the exact log-scale value beside it; the
page at ``/`` of the REST service draws the same waterfall with the same arithmetic.

Figures are built with matplotlib's object interface (no pyplot state), so that any number can be
made in a server or a training run without leaking memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.schema import EXPLANATION_SCALE, FEATURES_BY_NAME, RESEARCH_NOTICE

UP = "#a61b1b"      # raises the risk (the page's colours)
DOWN = "#17683a"    # lowers it
LEVEL = "#6b7583"
UNKNOWN = "#9a9a9a"  # a value not provided, in a beeswarm
NOT_PROVIDED = "not provided"


def _agg():
    import matplotlib

    # A file renderer: no display is needed, wherever this runs.
    matplotlib.use("Agg")


def label(name: str) -> str:
    """A feature's short name for people, from :mod:`features.schema` (the name itself otherwise)."""
    feature = FEATURES_BY_NAME.get(name)
    return feature.label if feature is not None and feature.label else name


def risk_of(log_cumulative_hazard):
    """``1 - exp(-exp(s))``: the risk on the scale of the explanations, computed without cancellation."""
    return -np.expm1(-np.exp(log_cumulative_hazard))


@dataclass(frozen=True)
class RiskShare:
    """One input's part in a patient's risk.

    Attributes
    ----------
    name : str
        Feature name.
    value : float
        Its exact SHAP value on the log cumulative hazard scale.
    share : float
        Its part in the change of risk from the reference patient's, in risk units (0.01 is one
        percentage point).
    """

    name: str
    value: float
    share: float


def risk_shares(base_value: float, shap: dict[str, float], risk: float, reference: float | None = None
                ) -> list[RiskShare]:
    """Each input's part in the change from the reference patient's risk to this patient's.

    The log-scale values add up exactly, the changes in risk do not: the same log-scale step moves a
    small risk less than a large one. Each input gets its log-scale value times the change in risk
    per unit of the log scale between the reference patient and this one, so that the parts add up
    to ``risk - risk_of(base_value)``, keep the signs of the SHAP values, and depend on no order.

    Parameters
    ----------
    base_value : float
        SHAP base value: the training population's mean log cumulative hazard at the horizon.
    shap : dict of str to float
        SHAP value per feature at the horizon.
    risk : float
        The patient's risk at the horizon (``risk_of(base_value + sum(shap))``).
    reference : float, optional
        The risk ``base_value`` alone gives (the reference patient's; by default ``risk_of(base_value)``, on the
        log cumulative hazard scale; the mixture-cure family's answers give theirs).

    Returns
    -------
    list of RiskShare
        Largest log-scale value (in absolute terms) first.
    """
    total = float(sum(shap.values()))
    explicit = reference is not None
    reference = float(risk_of(base_value)) if reference is None else float(reference)
    if abs(total) > 1e-9:
        slope = (risk - reference) / total
    elif explicit:  # no change, on a scale given only by its reference: no part moves the risk
        slope = 0.0
    else:  # no change: the derivative of the risk at the reference
        slope = float(np.exp(base_value) * np.exp(-np.exp(base_value)))
    shares = [RiskShare(name, float(value), float(value) * slope) for name, value in shap.items()]
    return sorted(shares, key=lambda s: -abs(s.value))


def _percent(risk: float) -> str:
    p = 100 * risk
    return f"{p:.1f}%" if p >= 1 else f"{p:.2f}%" if p >= 0.1 else "<0.1%"


def _points(share: float) -> str:
    p = 100 * share
    return f"{p:+.1f} pts" if abs(p) >= 0.1 else f"{p:+.2f} pts"


def waterfall_figure(panels: list[dict]):
    """One waterfall per panel, stacked: a patient's risk explained input by input.

    Parameters
    ----------
    panels : list of dict
        Each with ``title`` (str), ``base_value`` (float), ``shap`` (dict of feature to float),
        ``risk`` (float), ``values`` (dict of feature to the patient's value as text, or None
        when not provided) and ``extrapolated`` (bool).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _agg()
    from matplotlib.figure import Figure

    rows = max(len(p["shap"]) for p in panels) + 2
    figure = Figure(figsize=(8.5, 0.34 * rows * len(panels) + 1.1 * len(panels) + 0.6), layout="constrained")
    axes_list = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for axes, panel in zip(axes_list, panels):
        reference = float(panel.get("reference_risk", risk_of(panel["base_value"])))
        shares = risk_shares(panel["base_value"], panel["shap"], panel["risk"], reference)
        names = ["Reference patient (average in training)"]
        names += [f"{label(s.name)}: {panel['values'].get(s.name) or NOT_PROVIDED}" for s in shares]
        names.append("This patient")
        level = reference
        for row, share in enumerate(shares, start=1):
            axes.barh(row, 100 * share.share, left=100 * level, height=0.6, color=UP if share.share >= 0 else DOWN)
            level += share.share
        axes.barh(0, 100 * reference, height=0.6, color=LEVEL)
        axes.barh(len(names) - 1, 100 * panel["risk"], height=0.6, color=LEVEL)
        levels = [reference, panel["risk"]] + list(reference + np.cumsum([s.share for s in shares]))
        low, high = 100 * min(levels), 100 * max(levels)
        span = max(high - low, 1e-6)
        axes.set_xlim(max(0.0, low - 0.55 * span), high + 0.45 * span)
        for row, share in enumerate(shares, start=1):
            end = 100 * (reference + sum(s.share for s in shares[:row]))
            axes.text(max(end, end - 100 * share.share) + 0.01 * span, row,
                      f" {_points(share.share)}  (log {share.value:+.3f})", va="center", fontsize=8,
                      color=UP if share.share >= 0 else DOWN)
        axes.text(100 * reference + 0.01 * span, 0, f" {_percent(reference)}  (log {panel['base_value']:.3f})",
                  va="center", fontsize=8)
        total = panel["base_value"] + sum(panel["shap"].values())
        axes.text(100 * panel["risk"] + 0.01 * span, len(names) - 1,
                  f" {_percent(panel['risk'])}  (log {total:.3f})", va="center", fontsize=8, fontweight="bold")
        axes.set_yticks(range(len(names)), names, fontsize=8)
        axes.invert_yaxis()
        axes.spines[["top", "right"]].set_visible(False)
        axes.set_xlabel("risk of onset (%); each bar: the input's part in percentage points", fontsize=8)
        axes.set_title(panel["title"] + (" (extrapolated)" if panel.get("extrapolated") else ""), fontsize=10,
                       loc="left")
    scale = panels[0].get("scale", EXPLANATION_SCALE)
    figure.suptitle(f"{RESEARCH_NOTICE}\nParts in points: the exact SHAP values (in brackets, on the {scale} "
                    "scale), rescaled to add up to the change in risk.", fontsize=8, x=0.01, ha="left")
    return figure


def _swarm_offsets(x: np.ndarray, rng: np.random.Generator, width: float = 0.38, bins: int = 80) -> np.ndarray:
    """Vertical offsets that spread points of similar ``x`` apart, as in a beeswarm."""
    if len(x) == 0:
        return np.zeros(0)
    span = float(np.ptp(x)) or 1.0
    cell = np.round((x - x.min()) / span * bins).astype(int)
    order = np.lexsort((rng.random(len(x)), cell))  # random order within each cell
    sorted_cells = cell[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_cells)) + 1]
    rank = np.arange(len(x)) - np.repeat(starts, np.diff(np.r_[starts, len(x)]))
    step = (rank + 1) // 2 * np.where(rank % 2, 1, -1)
    offsets = np.empty(len(x))
    offsets[order] = step
    largest = np.abs(offsets).max()
    return offsets / largest * width if largest else offsets


def _colour_scale(values: np.ndarray) -> np.ndarray:
    """Each known value's rank among the known values, 0 (lowest) to 1 (highest); NaN stays NaN."""
    known = ~np.isnan(values)
    scaled = np.full(len(values), np.nan)
    if known.sum() == 0:
        return scaled
    low, high = np.nanpercentile(values, [5, 95])
    if high <= low:
        low, high = np.nanmin(values), np.nanmax(values)
    scaled[known] = np.clip((values[known] - low) / (high - low), 0, 1) if high > low else 0.5
    return scaled


def beeswarm_figure(shap: np.ndarray, values: np.ndarray, names: list[str], title: str, seed: int = 0):
    """Every patient's SHAP value per feature, coloured by the feature's value; grey where not provided.

    Parameters
    ----------
    shap : ndarray of shape (n, n_features)
        SHAP values on the log cumulative hazard scale.
    values : ndarray of shape (n, n_features)
        The features' values as the model reads them (categories coded, NaN where not provided).
    names : list of str
        Feature names, in column order.
    title : str
    seed : int
        Seed of the points' vertical spread.

    Returns
    -------
    matplotlib.figure.Figure
        Features ordered by mean |SHAP|, largest on top.
    """
    _agg()
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    rng = np.random.default_rng(seed)
    order = np.argsort(np.abs(shap).mean(axis=0))  # ascending: the largest ends on top
    cmap = matplotlib.colormaps["coolwarm"]
    figure = Figure(figsize=(8, 0.42 * len(names) + 1.6), layout="constrained")
    axes = figure.subplots()
    size = 10 if len(shap) <= 1000 else 5
    for row, column in enumerate(order):
        x = shap[:, column]
        y = row + _swarm_offsets(x, rng)
        colour = _colour_scale(values[:, column])
        known = ~np.isnan(colour)
        axes.scatter(x[~known], y[~known], s=size, color=UNKNOWN, linewidths=0, rasterized=True)
        axes.scatter(x[known], y[known], s=size, c=colour[known], cmap=cmap, vmin=0, vmax=1, linewidths=0,
                     rasterized=True)
    axes.axvline(0, color="#555555", linewidth=0.8)
    axes.set_yticks(range(len(names)), [label(names[c]) for c in order], fontsize=8)
    axes.set_ylim(-0.6, len(names) - 0.4)
    axes.set_xlabel(f"SHAP value ({EXPLANATION_SCALE}); right of 0 raises the risk", fontsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(f"{title}\n{len(shap):,} patients; grey: not provided", fontsize=10, loc="left")
    bar = figure.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=cmap), ax=axes, ticks=[0, 1], aspect=40)
    bar.ax.set_yticklabels(["low", "high"], fontsize=8)
    bar.set_label("feature value", fontsize=8)
    return figure


def importance_figure(mean_abs: dict[str, float], title: str):
    """Mean |SHAP| per feature as horizontal bars, largest on top.

    Parameters
    ----------
    mean_abs : dict of str to float
        Mean absolute SHAP value per feature (log cumulative hazard scale).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    _agg()
    from matplotlib.figure import Figure

    items = sorted(mean_abs.items(), key=lambda item: item[1])
    figure = Figure(figsize=(7, 0.36 * len(items) + 1.2), layout="constrained")
    axes = figure.subplots()
    axes.barh(range(len(items)), [v for _, v in items], color="#0b57a4", height=0.6)
    axes.set_yticks(range(len(items)), [label(n) for n, _ in items], fontsize=8)
    for row, (_, value) in enumerate(items):
        axes.text(value, row, f" {value:.3f}", va="center", fontsize=8)
    axes.set_xlim(0, max([v for _, v in items] + [1e-9]) * 1.18)
    axes.set_xlabel(f"mean |SHAP value| ({EXPLANATION_SCALE})", fontsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(title, fontsize=10, loc="left")
    return figure
