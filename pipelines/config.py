"""Typed experiment configuration, loaded from ``experiments/*.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import ENDPOINTS
from models.estimators import FAMILIES

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
DEFAULT_EXPERIMENT = EXPERIMENTS_DIR / "baseline-comparison.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CohortSpec(_Strict):
    """One simulated cohort: ``autorisk simulate --profile P --n N --seed S [--il21-assay A]``."""

    profile: str
    n: int = Field(gt=0)
    seed: int
    il21_assay: Literal["legacy_elisa", "current_elisa"] | None = None

    def label(self) -> str:
        assay = f",assay={self.il21_assay}" if self.il21_assay else ""
        return f"{self.profile}(n={self.n},seed={self.seed}{assay})"


class ExternalCohort(CohortSpec):
    """A cohort the models are validated on, logged under ``ext_<name>_``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")


class TuningSpec(_Strict):
    """Optuna search of a family's hyperparameters, one study per outcome.

    The outcomes differ in incidence by more than an order of magnitude (thyroid disorder
    in about one patient in five by 24 months, ITP in under one in a hundred), so each
    outcome gets its own study over ``space`` and its own hyperparameters, shared by its
    horizons. Each study stops after ``n_trials``, or earlier when its share of ``timeout_s``
    runs out: the family's tuning as a whole stays within ``timeout_s``.

    Attributes
    ----------
    n_trials : int
        Trials per outcome's study.
    timeout_s : float
        Time limit of the family's tuning, in seconds; each outcome's study may use an equal
        share of the time left when it starts.
    space : dict of str to (low, high)
        Estimator parameter -> bounds. Searched as integers when both bounds are written as
        integers (``[1, 3]``), else on a log scale (``[0.5, 50.0]``).
    seed : int
        Seed of each study's sampler.
    """

    n_trials: int = Field(ge=1)
    timeout_s: float = Field(gt=0)
    space: dict[str, tuple[int | float, int | float]] = Field(min_length=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check_bounds(self) -> TuningSpec:
        for name, (low, high) in self.space.items():
            if not low < high:
                raise ValueError(f"space.{name}: the low bound {low} must be below the high bound {high}")
            if not (isinstance(low, int) and isinstance(high, int)) and low <= 0:
                raise ValueError(f"space.{name}: a real-valued range is searched on a log scale, "
                                 f"so its low bound must be positive (got {low})")
        return self


class FamilySpec(_Strict):
    """A model family: which estimator, how it treats censoring, whether it is recalibrated."""

    estimator: str
    censoring: Literal["ipcw", "ignore"]
    calibration: Literal["platt", "none"]
    params: dict[str, Any] = {}
    tuning: TuningSpec | None = None

    @model_validator(mode="after")
    def _known_estimator(self) -> FamilySpec:
        if self.estimator not in FAMILIES:
            raise ValueError(f"estimator: unknown {self.estimator!r}; choose from {list(FAMILIES)}")
        try:
            FAMILIES[self.estimator](**self.params)
        except TypeError as error:
            raise ValueError(f"params: {error}") from error
        if self.tuning is not None:
            try:
                FAMILIES[self.estimator](**self.params | {name: low for name, (low, _) in self.tuning.space.items()})
            except TypeError as error:
                raise ValueError(f"tuning.space: {error}") from error
        return self


class ExperimentConfig(_Strict):
    """One training experiment; becomes one MLflow experiment of the same name."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    registered_model_name: str
    simulator_config: Path
    simulator_overrides: dict[str, Any] = {}
    train_cohorts: list[CohortSpec] = Field(min_length=1)
    test_fraction: float = Field(gt=0, lt=1)
    calibration_fraction: float = Field(gt=0, lt=1)
    split_seed: int
    endpoints: tuple[str, ...]
    external_cohorts: list[ExternalCohort] = []
    benchmark_cohort: CohortSpec
    bootstrap: int = Field(ge=0)
    families: dict[str, FamilySpec]

    @model_validator(mode="after")
    def _check_names(self) -> ExperimentConfig:
        unknown = [e for e in self.endpoints if e not in ENDPOINTS]
        if unknown:
            raise ValueError(f"endpoints: unknown {unknown}; choose from {list(ENDPOINTS)}")
        return self

    def params(self) -> dict[str, str]:
        """Flat experiment parameters for MLflow (the same keys in every experiment)."""
        return {
            "experiment": self.name,
            "train_cohorts": "+".join(c.label() for c in self.train_cohorts),
            "external_cohorts": "+".join(f"{c.name}={c.label()}" for c in self.external_cohorts),
            "benchmark_cohort": self.benchmark_cohort.label(),
            "test_fraction": str(self.test_fraction),
            "calibration_fraction": str(self.calibration_fraction),
            "split_seed": str(self.split_seed),
            "endpoints": ",".join(self.endpoints),
            "bootstrap": str(self.bootstrap),
            "simulator_overrides": yaml.safe_dump(self.simulator_overrides, default_flow_style=True).strip(),
        }


def deep_merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied key by key (nested mappings merged, values replaced)."""
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def load_experiment(path: Path | str = DEFAULT_EXPERIMENT) -> ExperimentConfig:
    """Read an experiment YAML; ``simulator_config`` is resolved relative to it."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of experiment settings")
    raw["simulator_config"] = (path.parent / raw.get("simulator_config", "cohorts.yaml")).resolve()
    return ExperimentConfig.model_validate(raw)
