"""Typed experiment configuration, loaded from ``experiments/*.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import OUTCOMES
from models.estimators import FAMILIES

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
DEFAULT_EXPERIMENT = EXPERIMENTS_DIR / "baseline-comparison.yaml"


class CohortSpec(BaseModel):
    """One simulated cohort: ``autorisk simulate --profile P --n N --seed S``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    profile: str
    n: int = Field(gt=0)
    seed: int

    def label(self) -> str:
        return f"{self.profile}(n={self.n},seed={self.seed})"


class ExperimentConfig(BaseModel):
    """One training experiment; becomes one MLflow experiment of the same name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    registered_model_name: str
    simulator_config: Path
    train_cohorts: list[CohortSpec] = Field(min_length=1)
    test_fraction: float = Field(gt=0, lt=1)
    split_seed: int
    external_cohorts: list[CohortSpec] = []
    outcomes: tuple[str, ...]
    families: dict[str, dict[str, Any]]

    @model_validator(mode="after")
    def _check_names(self) -> ExperimentConfig:
        unknown = [o for o in self.outcomes if o not in OUTCOMES]
        if unknown:
            raise ValueError(f"outcomes: unknown {unknown}; choose from {list(OUTCOMES)}")
        for family, params in self.families.items():
            if family not in FAMILIES:
                raise ValueError(f"families: unknown {family!r}; choose from {list(FAMILIES)}")
            try:
                FAMILIES[family](**params)
            except TypeError as error:
                raise ValueError(f"families.{family}: {error}") from error
        return self

    def params(self) -> dict[str, str]:
        """Flat experiment parameters for MLflow."""
        flat = {
            "experiment": self.name,
            "train_cohorts": "+".join(c.label() for c in self.train_cohorts),
            "external_cohorts": "+".join(c.label() for c in self.external_cohorts),
            "test_fraction": str(self.test_fraction),
            "split_seed": str(self.split_seed),
            "outcomes": ",".join(self.outcomes),
            "families": ",".join(self.families),
        }
        return flat


def load_experiment(path: Path | str = DEFAULT_EXPERIMENT) -> ExperimentConfig:
    """Read an experiment YAML; ``simulator_config`` is resolved relative to it."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of experiment settings")
    raw["simulator_config"] = (path.parent / raw.get("simulator_config", "cohorts.yaml")).resolve()
    return ExperimentConfig.model_validate(raw)
