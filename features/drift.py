"""How far an incoming cohort is from the training data: aggregates only, never patient rows.

The reference is a per-feature histogram of the training model matrix (IL-21 already a
within-assay z-score), logged with every training run as ``reference/feature_profile.json``.

Scoring compares a cohort with it while streaming: each chunk of accepted records is
reduced to integer counts on the reference's bins (:func:`bin_counts`); counts add up
across chunks or Spark tasks; :func:`compare` turns the total into a :class:`DriftReport`
with, per feature, the population stability index (PSI) over the reference's bins plus an
"unknown" bin, the share of known values outside the training range (the middle 99.8% of
training values), and a verdict in plain words.

PSI levels (the usual rule of thumb): below 0.1 similar; 0.1 to 0.25 somewhat different;
0.25 and above different. A cohort of ``n`` records shows a PSI of about ``(bins - 1) / n``
by chance alone, so a feature is flagged only when its PSI is also at least
:data:`NOISE_FACTOR` times that; below :data:`MIN_ROWS` scored records nothing is compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from features.schema import MODEL_COLUMNS

BINS = 10
_EPS = 1e-4
PSI_SOMEWHAT = 0.1
PSI_DIFFERENT = 0.25
NOISE_FACTOR = 3.0
OUTSIDE_WARN = 0.01
MIN_ROWS = 100
RANGE_QUANTILES = (0.001, 0.999)  # the training range: the middle 99.8% of known values
REFERENCE_ARTIFACT = "reference/feature_profile.json"


def reference_profile(matrix: np.ndarray) -> dict:
    """Histogram of each model-matrix column: bin edges (deciles, or the distinct values of a
    column with few), the share of known values per bin, the share missing, and the range.

    Parameters
    ----------
    matrix : ndarray of shape (n, n_features)
        Training model matrix, NaN where unknown; columns in ``MODEL_COLUMNS`` order.

    Returns
    -------
    dict
        ``{"n": n, "features": {name: {"edges", "shares", "missing", "low", "high"}}}``;
        ``low`` / ``high`` bound the middle 99.8% of known values (the 0.1st and 99.9th
        percentiles; None when none is known). Not the extremes: those are single patients' values.
    """
    features = {}
    for j, name in enumerate(MODEL_COLUMNS):
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
            "low": float(np.quantile(known, RANGE_QUANTILES[0])) if len(known) else None,
            "high": float(np.quantile(known, RANGE_QUANTILES[1])) if len(known) else None,
        }
    return {"n": int(len(matrix)), "features": features}


def _bin_index(values: np.ndarray, edges) -> np.ndarray:
    """Bin of each value: ``[edges[k], edges[k+1])``, the first bin also takes everything below."""
    edges = np.asarray(edges, dtype=float)
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(len(edges) - 1, 0))


def histogram(values: np.ndarray, edges) -> np.ndarray:
    """Share of ``values`` in each bin ``[edges[k], edges[k+1])``; the first bin takes everything below."""
    if len(values) == 0:
        return np.zeros(len(edges))
    return np.bincount(_bin_index(values, edges), minlength=len(edges)) / len(values)


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = Σ (a - e) ln(a / e) over bins (shares; empty bins floored at 1e-4)."""
    e = np.maximum(np.asarray(expected, dtype=float), _EPS)
    a = np.maximum(np.asarray(actual, dtype=float), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftCounts:
    """Counts of a cohort on a reference's bins; add them up over chunks.

    Attributes
    ----------
    n : int
        Records counted.
    counts : dict of str to ndarray of int64, shape (n_bins + 3,)
        Per feature: one count per reference bin (known values), then the number unknown,
        the number below the training range and the number above it (0 when the reference
        does not record its range).
    """

    n: int
    counts: dict[str, np.ndarray]

    def __add__(self, other: DriftCounts) -> DriftCounts:
        return DriftCounts(self.n + other.n, {k: v + other.counts[k] for k, v in self.counts.items()})

    def to_json(self) -> dict:
        """Plain JSON types (to travel between processes)."""
        return {"n": self.n, "counts": {k: v.tolist() for k, v in self.counts.items()}}

    @classmethod
    def from_json(cls, payload: dict) -> DriftCounts:
        return cls(int(payload["n"]), {k: np.asarray(v, dtype=np.int64) for k, v in payload["counts"].items()})


def empty_counts(reference: dict) -> DriftCounts:
    """Zero counts on ``reference``'s bins."""
    return DriftCounts(0, {name: np.zeros(len(spec["edges"]) + 3, dtype=np.int64)
                           for name, spec in reference["features"].items()})


def bin_counts(matrix: np.ndarray, reference: dict) -> DriftCounts:
    """Count one chunk of a model matrix on the reference's bins.

    Parameters
    ----------
    matrix : ndarray of shape (n, n_features)
        Model matrix of accepted records (``MODEL_COLUMNS`` order, NaN where unknown).
    reference : dict
        A :func:`reference_profile`.

    Returns
    -------
    DriftCounts
    """
    counts = {}
    for name, spec in reference["features"].items():
        column = matrix[:, MODEL_COLUMNS.index(name)]
        unknown = np.isnan(column)
        known = column[~unknown]
        edges = spec["edges"]
        bins = np.bincount(_bin_index(known, edges), minlength=len(edges)) if len(edges) else np.zeros(0, int)
        low, high = spec.get("low"), spec.get("high")
        below = int((known < low).sum()) if low is not None else 0
        # A column no training patient had a value in (a kit nobody was measured with): every known value is
        # beyond what the training data covered.
        above = int((known > high).sum()) if high is not None else (len(known) if not len(edges) else 0)
        counts[name] = np.concatenate([bins, [int(unknown.sum()), below, above]]).astype(np.int64)
    return DriftCounts(len(matrix), counts)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature of a cohort against the training data.

    Attributes
    ----------
    name : str
        Model-matrix column (``il21_pg_ml@<kit>``: ln pg/mL of IL-21 measured with that kit).
    psi : float
        Population stability index over the reference bins and the unknown bin.
    level : {"similar", "somewhat different", "different"}
        Verdict from the PSI (and its noise floor).
    unknown_training, unknown_cohort : float
        Share unknown in the training data and in the cohort, 0–1.
    outside : float or None
        Share of the cohort's known values outside the training range, 0–1
        (None when the reference does not record the range).
    low, high : float or None
        The training range: the 0.1st and 99.9th percentiles of the known training values.
    """

    name: str
    psi: float
    level: str
    unknown_training: float
    unknown_cohort: float
    outside: float | None
    low: float | None
    high: float | None

    @property
    def outside_flagged(self) -> bool:
        return self.outside is not None and self.outside >= OUTSIDE_WARN


@dataclass(frozen=True)
class DriftReport:
    """The cohort against the champion's training data; aggregates only.

    Attributes
    ----------
    status : {"compared", "no-reference", "too-few"}
        Whether a comparison was made.
    n : int
        Scored records compared.
    reference_n : int
        Training records behind the reference (0 without one).
    features : tuple of FeatureDrift
        Per feature (empty unless compared).
    headline : str
        The verdict in plain words.
    details : tuple of str
        One plain sentence per flagged feature.
    """

    status: str
    n: int
    reference_n: int
    features: tuple[FeatureDrift, ...]
    headline: str
    details: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        """Whether the cohort differs enough from the training data to warn."""
        return any(f.level != "similar" or f.outside_flagged for f in self.features)

    def to_json(self) -> dict:
        return {
            "status": self.status, "n": self.n, "reference_n": self.reference_n,
            "differs": self.differs, "headline": self.headline, "details": list(self.details),
            "thresholds": {"psi_somewhat_different": PSI_SOMEWHAT, "psi_different": PSI_DIFFERENT,
                           "noise_factor": NOISE_FACTOR, "outside_share_warning": OUTSIDE_WARN,
                           "min_rows": MIN_ROWS},
            "features": [asdict(f) for f in self.features],
        }


def _level(psi: float, n_bins: int, n: int) -> str:
    noise = NOISE_FACTOR * (n_bins - 1) / max(n, 1)
    if psi >= max(PSI_DIFFERENT, noise):
        return "different"
    if psi >= max(PSI_SOMEWHAT, noise):
        return "somewhat different"
    return "similar"


def _feature_drift(name: str, spec: dict, counts: np.ndarray, n: int) -> FeatureDrift:
    n_bins = len(spec["edges"])
    bins, unknown, below, above = counts[:n_bins], counts[n_bins], counts[n_bins + 1], counts[n_bins + 2]
    known_training = 1.0 - spec["missing"]
    known = n - unknown
    if n_bins == 0:  # no training value at all: the cohort's known values are one bin the training data left empty
        expected, actual = np.array([0.0, 1.0]), np.array([known, unknown]) / n
    else:
        expected = np.concatenate([np.asarray(spec["shares"], dtype=float) * known_training, [spec["missing"]]])
        actual = np.concatenate([bins, [unknown]]) / n
    psi = population_stability_index(expected, actual)
    has_range = spec.get("low") is not None and spec.get("high") is not None
    outside = (below + above) / known if has_range and known else (0.0 if has_range else None)
    if n_bins == 0 and "low" in spec:  # a reference that records ranges, with none for this column
        outside = 1.0 if known else 0.0
    return FeatureDrift(name=name, psi=psi, level=_level(psi, n_bins + 1, n),
                        unknown_training=float(spec["missing"]), unknown_cohort=float(unknown / n),
                        outside=None if outside is None else float(outside),
                        low=spec.get("low"), high=spec.get("high"))


def _describe(feature: FeatureDrift) -> str:
    parts = []
    if feature.level != "similar":
        parts.append(f"{feature.level} (PSI {feature.psi:.2f})")
    if abs(feature.unknown_cohort - feature.unknown_training) >= 0.05:
        parts.append(f"unknown in {feature.unknown_cohort:.0%} of patients (training {feature.unknown_training:.0%})")
    if feature.outside_flagged and feature.low is None:
        parts.append(f"{feature.outside:.1%} of patients have a value, where no training patient had one")
    elif feature.outside_flagged and feature.low == feature.high:
        parts.append(f"{feature.outside:.1%} of known values differ from {feature.low:g}, "
                     "the value of nearly all training records")
    elif feature.outside_flagged:
        scale = " (ln pg/mL on the kit's scale)" if feature.name.startswith("il21_pg_ml@") else ""
        parts.append(f"{feature.outside:.1%} of known values outside the training range "
                     f"{feature.low:g}–{feature.high:g}{scale}")
    return f"{feature.name}: " + "; ".join(parts)


def compare(reference: dict | None, counts: DriftCounts | None, *, why_no_reference: str = "") -> DriftReport:
    """Compare a cohort's counts with the training reference.

    Parameters
    ----------
    reference : dict or None
        A :func:`reference_profile`; None when the model has none.
    counts : DriftCounts or None
        The cohort's accepted records counted on ``reference``'s bins.
    why_no_reference : str
        Said in the report when ``reference`` is None.

    Returns
    -------
    DriftReport
    """
    if reference is None or counts is None:
        return DriftReport("no-reference", 0 if counts is None else counts.n, 0, (),
                           f"No drift comparison: {why_no_reference or 'the model has no training reference'}.")
    if counts.n < MIN_ROWS:
        return DriftReport("too-few", counts.n, int(reference["n"]), (),
                           f"No drift comparison: {counts.n} scored records are too few "
                           f"(at least {MIN_ROWS} are needed for a stable comparison).")
    features = tuple(_feature_drift(name, spec, counts.counts[name], counts.n)
                     for name, spec in reference["features"].items())
    strong = [f.name for f in features if f.level == "different" or f.outside_flagged]
    mild = [f.name for f in features if f.level == "somewhat different" and f.name not in strong]
    details = tuple(_describe(f) for f in features if f.name in strong or f.name in mild)
    if strong:
        headline = (f"WARNING: this cohort differs from the model's training data in {', '.join(strong)}; "
                    "the risks may then be off. Check that these patients resemble the trial "
                    "populations the model learned from before relying on the risks.")
        if mild:
            headline += f" It differs somewhat in {', '.join(mild)}."
    elif mild:
        headline = (f"This cohort differs somewhat from the model's training data in {', '.join(mild)}; "
                    "the risks may be less accurate than in validation.")
    else:
        headline = (f"This cohort resembles the model's training data: every feature's population "
                    f"stability index is below {PSI_SOMEWHAT:g} (or within chance for {counts.n:,} "
                    f"records) and fewer than {OUTSIDE_WARN:.0%} of values lie outside the training range.")
    return DriftReport("compared", counts.n, int(reference["n"]), features, headline, details)


def to_markdown(report: DriftReport, *, model: str) -> str:
    """The report as a small Markdown document (aggregates only).

    Parameters
    ----------
    report : DriftReport
    model : str
        Which model the cohort was scored with, e.g. ``autoimmunity-risk v3``.
    """
    lines = [f"# Drift: scored cohort vs the training data of {model}", "", report.headline, ""]
    lines += [f"- {detail}" for detail in report.details]
    if report.details:
        lines.append("")
    if report.status != "compared":
        return "\n".join(lines)
    lines += [
        f"{report.n:,} scored records against {report.reference_n:,} training records. "
        f"PSI over the training deciles (or distinct values) plus an 'unknown' bin: below {PSI_SOMEWHAT:g} "
        f"similar, {PSI_SOMEWHAT:g}–{PSI_DIFFERENT:g} somewhat different, {PSI_DIFFERENT:g} and above "
        f"different (and at least {NOISE_FACTOR:g}× the chance level (bins − 1) / n). 'Outside' is the "
        "share of known values outside the training range, the middle 99.8% of training values; "
        "IL-21 is compared as the within-assay z-score the model reads.",
        "",
        "| feature | PSI | verdict | unknown (cohort) | unknown (training) | outside training range | training range |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report.features:
        outside = "not recorded" if f.outside is None else f"{f.outside:.1%}"
        span = "" if f.low is None or f.high is None else f"{f.low:g} – {f.high:g}"
        lines.append(f"| `{f.name}` | {f.psi:.3f} | {f.level} | {f.unknown_cohort:.1%} | "
                     f"{f.unknown_training:.1%} | {outside} | {span} |")
    return "\n".join(lines) + "\n"
