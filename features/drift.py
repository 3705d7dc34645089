"""How far an incoming cohort is from the training data: aggregates only, never patient rows.

The reference is a per-feature histogram of the training model matrix (IL-21 already a
within-assay z-score), logged with every training run as ``reference/feature_profile.json``.
"""

from __future__ import annotations

import numpy as np

from features.schema import FEATURE_NAMES

BINS = 10
_EPS = 1e-4


def reference_profile(matrix: np.ndarray) -> dict:
    """Histogram of each model-matrix column: bin edges (deciles, or the distinct values of a
    column with few), the share of known values per bin, and the share missing.

    Parameters
    ----------
    matrix : ndarray of shape (n, n_features)
        Training model matrix, NaN where unknown.
    """
    features = {}
    for j, name in enumerate(FEATURE_NAMES):
        column = matrix[:, j]
        known = column[~np.isnan(column)]
        distinct = np.unique(known)
        if len(distinct) <= BINS:
            edges = np.concatenate([distinct, [np.inf]]) if len(distinct) else np.array([np.inf])
        else:
            edges = np.unique(np.quantile(known, np.linspace(0, 1, BINS + 1)[:-1]))
            edges = np.concatenate([edges, [np.inf]])
        features[name] = {
            "edges": [float(e) for e in edges[:-1]],
            "shares": histogram(known, edges[:-1]).tolist(),
            "missing": float(np.isnan(column).mean()) if len(column) else 0.0,
        }
    return {"n": int(len(matrix)), "features": features}


def histogram(values: np.ndarray, edges) -> np.ndarray:
    """Share of ``values`` in each bin ``[edges[k], edges[k+1])``; the first bin takes everything below."""
    if len(values) == 0:
        return np.zeros(len(edges))
    which = np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, len(edges) - 1)
    return np.bincount(which, minlength=len(edges)) / len(values)


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = Σ (a - e) ln(a / e) over bins (shares; empty bins floored at 1e-4)."""
    e = np.maximum(np.asarray(expected, dtype=float), _EPS)
    a = np.maximum(np.asarray(actual, dtype=float), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))
