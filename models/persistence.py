"""A fitted :class:`models.scoring.RiskModel` as plain files: numbers, xgboost's own format, no pickles.

A registered version carries its model as these files (an MLflow artifact), so that it loads
wherever autorisk is installed, whatever the Python objects looked like when it was trained:

- ``risk_model.json``: the format, the family, what the training data covered (the input domain:
  ranges and IL-21 kit scales, :mod:`models.domain`), and per outcome the estimator's name and
  parameters, its fitted arrays (the linear family's medians, scaling and coefficients) and the
  baseline cumulative hazard per treatment with the follow-up it rests on, and the calibration slope a
  recalibration put on the relative hazard (1 otherwise);
- for the mixture-cure family, each treatment's timing shares in place of the baseline (the same arrays);
- per outcome of a tree family, ``<outcome>.xgboost.ubj`` (the booster in xgboost's own binary
  format) and ``<outcome>.treeshap.npz`` (the exact SHAP tables, built once at training time);
- per outcome with risk intervals, ``<outcome>.intervals.npz`` (the linear family's refits as
  arrays) or ``<outcome>.intervals.ubj`` (the tree family's learned spread), described under
  ``intervals`` in the manifest (:mod:`models.intervals`), with ``<outcome>.model-error.npz`` (the
  model-error variance per treatment and month, :mod:`models.model_error`) and, for a recalibrated
  version, ``<outcome>.recalibration.npz``.

JSON keeps every float64 exactly (Python writes the shortest repr that reads back the same).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.domain import InputDomain
from models.cure import CureXGBoost, MixtureCure, TimingShares
from models.estimators import LinearCoxRegression, XGBoostCoxRegression
from models.families import FAMILIES
from models.intervals import load_spread, save_spread
from models.model_error import ModelErrorSpread
from models.recalibration import RecalibratedSpread, ScaledRelativeHazard
from models.scoring import RiskModel
from models.survival import BaselineHazards, StratifiedCox
from models.treeshap import TreeShapTables

FORMAT = "autorisk.risk-model/2"
MANIFEST = "risk_model.json"
LINEAR_ARRAYS = ("indicated_", "medians_", "mean_", "scale_", "coef_")
BASELINE_ARRAYS = ("cumulative", "follow_up_months", "events", "share", "patients")


def _save_spread(spread, folder: Path, outcome: str) -> dict:
    """A spread's files and manifest entry; a recalibrated one as its local variance and the source's spread."""
    if isinstance(spread, RecalibratedSpread):
        np.savez(folder / f"{outcome}.recalibration.npz", local_variance=spread.local_variance)
        return {"kind": spread.kind, "slope": spread.slope, "inner": _save_spread(spread.inner, folder, outcome)}
    if isinstance(spread, ModelErrorSpread):
        np.savez(folder / f"{outcome}.model-error.npz", variance=spread.variance)
        return {"kind": spread.kind, "inner": save_spread(spread.inner, folder, outcome)}
    return save_spread(spread, folder, outcome)


def _load_spread(entry: dict, folder: Path, outcome: str):
    if entry["kind"] == RecalibratedSpread.kind:
        with np.load(folder / f"{outcome}.recalibration.npz") as arrays:
            local = arrays["local_variance"]
        return RecalibratedSpread(_load_spread(entry["inner"], folder, outcome), entry["slope"], local)
    if entry["kind"] == ModelErrorSpread.kind:
        with np.load(folder / f"{outcome}.model-error.npz") as arrays:
            variance = arrays["variance"]
        return ModelErrorSpread(load_spread(entry["inner"], folder, outcome), variance)
    return load_spread(entry, folder, outcome)


def _family_name(estimator) -> str:
    return next(name for name, kind in FAMILIES.items() if type(estimator) is kind)


def save_risk_model(model: RiskModel, folder: Path) -> Path:
    """Write ``model`` into ``folder`` (created); return the folder.

    Raises
    ------
    TypeError
        For an estimator this module cannot write as plain files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outcomes = {}
    for outcome, survival in model.outcomes.items():
        estimator, slope, offsets = survival.estimator_, 1.0, None
        if isinstance(estimator, ScaledRelativeHazard):  # recalibrated: the slope, the offsets and the model
            estimator, slope = estimator.inner, survival.estimator_.slope
            if survival.estimator_.offsets is not None:
                offsets = {"offsets": [float(v) for v in survival.estimator_.offsets],
                           "reference": float(survival.estimator_.reference)}
        entry = {"estimator": _family_name(estimator), "params": estimator.get_params(), "slope": slope,
                 "recalibration_offsets": offsets,
                 "n_features_in": int(estimator.n_features_in_),
                 "baseline": {name: getattr(survival.baseline_, name).tolist() for name in BASELINE_ARRAYS}}
        if isinstance(estimator, LinearCoxRegression):
            entry["fitted"] = {name: getattr(estimator, name).tolist() for name in LINEAR_ARRAYS}
        elif isinstance(estimator, (XGBoostCoxRegression, CureXGBoost)):
            estimator.booster_.save_model(folder / f"{outcome}.xgboost.ubj")
            state = estimator.shap_tables_.to_state()
            arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
            np.savez(folder / f"{outcome}.treeshap.npz", **arrays)
            entry["treeshap"] = {k: v for k, v in state.items() if k not in arrays}
        else:
            raise TypeError(f"cannot store a {type(estimator).__name__} as plain files")
        if isinstance(survival, MixtureCure):
            entry["em_rounds"] = int(survival.em_rounds)
        if outcome in model.spreads:
            entry["intervals"] = _save_spread(model.spreads[outcome], folder, outcome)
        outcomes[outcome] = entry
    manifest = {"format": FORMAT, "family": model.family, "domain": model.domain.state(), "outcomes": outcomes}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return folder


def _estimator(entry: dict, folder: Path, outcome: str):
    import xgboost as xgb

    estimator = FAMILIES[entry["estimator"]](**entry["params"])
    estimator.n_features_in_ = entry["n_features_in"]
    if isinstance(estimator, LinearCoxRegression):
        for name in LINEAR_ARRAYS:
            setattr(estimator, name, np.asarray(entry["fitted"][name], dtype=int if name == "indicated_" else float))
    else:
        estimator.booster_ = xgb.Booster()
        estimator.booster_.load_model(folder / f"{outcome}.xgboost.ubj")
        if estimator.n_jobs is not None:
            estimator.booster_.set_param({"nthread": estimator.n_jobs})
        with np.load(folder / f"{outcome}.treeshap.npz") as arrays:
            state = {**entry["treeshap"], **{k: arrays[k] for k in arrays.files}}
        estimator.shap_tables_ = TreeShapTables.from_state(state, estimator.booster_)
    return estimator


def load_risk_model(folder: Path) -> RiskModel:
    """Read a model written by :func:`save_risk_model`.

    Raises
    ------
    ValueError
        When the folder holds another format, naming it.
    """
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder / MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    outcomes, spreads = {}, {}
    for outcome, entry in manifest["outcomes"].items():
        if "intervals" in entry:
            spreads[outcome] = _load_spread(entry["intervals"], folder, outcome)
        fitted = _estimator(entry, folder, outcome)
        arrays = {name: np.asarray(entry["baseline"][name], dtype=float) for name in BASELINE_ARRAYS}
        slope, offsets = float(entry.get("slope", 1.0)), entry.get("recalibration_offsets")
        if slope != 1.0 or offsets is not None:
            fitted = ScaledRelativeHazard(inner=fitted, slope=slope,
                                          offsets=None if offsets is None else np.asarray(offsets["offsets"]),
                                          reference=0.0 if offsets is None else offsets["reference"])
        if isinstance(getattr(fitted, "inner", fitted), CureXGBoost):  # the ever-risk and each treatment's shares
            survival = MixtureCure(estimator=FAMILIES[entry["estimator"]](**entry["params"]),
                                   em_rounds=entry["em_rounds"])
            survival.estimator_, survival.baseline_ = fitted, TimingShares(**arrays)
        else:
            survival = StratifiedCox(estimator=FAMILIES[entry["estimator"]](**entry["params"]))
            survival.estimator_, survival.baseline_ = fitted, BaselineHazards(**arrays)
        outcomes[outcome] = survival
    return RiskModel(family=manifest["family"], outcomes=outcomes, domain=InputDomain.from_state(manifest["domain"]),
                     spreads=spreads)
