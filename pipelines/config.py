"""Typed experiment configuration, loaded from ``experiments/*.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import EVALUATION_HORIZONS_MONTHS, FEATURE_NAMES, OUTCOMES, TREATMENT_FEATURE, check_horizons
from features.simulator_config import DEFAULT_CONFIG_PATH, SimulatorConfig
from models.families import FAMILIES

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
DEFAULT_EXPERIMENT = EXPERIMENTS_DIR / "baseline-comparison.yaml"
# Named worlds: each file holds overrides of the simulator config (docs/worlds.md).
WORLDS_DIR = EXPERIMENTS_DIR / "worlds"
DEFAULT_WORLD = "default"


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


class FileCohort(_Strict):
    """A cohort of a group's own patients with their observed outcomes, from a file (any format
    ``autorisk score`` reads; per outcome ``<outcome>_event`` and ``<outcome>_time_months``).

    It has no true risks: what it is used for is judged against its observed outcomes only.
    """

    file: Path
    il21_assay: Literal["legacy_elisa", "current_elisa"] | None = None
    sheet: str | None = None

    def label(self) -> str:
        assay = f",assay={self.il21_assay}" if self.il21_assay else ""
        return f"file:{self.file.name}{assay}"

    @property
    def profile(self) -> str:
        """What its patients' ``profile`` column says: the file's name."""
        return self.file.name


class ExternalFileCohort(FileCohort):
    """A file cohort the models are validated on, logged under ``ext_<name>_``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")


TrainCohort = CohortSpec | FileCohort


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
    """A model family: which relative-hazard estimator, its parameters and its tuning."""

    estimator: str
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
    """One training experiment; becomes one MLflow experiment of the same name.

    Every family fits one survival model per outcome on the training cohorts' whole follow-up;
    tuning holds out ``validation_fraction`` of the training split; the models are evaluated at
    ``evaluation_horizons_months`` on the held-out test split, the benchmark cohort and the
    external cohorts. Each predictor named in ``added_value`` is dropped in turn and every family
    refitted without it, to measure what it adds (:mod:`pipelines.biomarker`).
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    registered_model_name: str
    simulator_config: Path
    # The world the cohorts are simulated in (experiments/worlds/<world>.yaml), then these overrides.
    world: str = DEFAULT_WORLD
    simulator_overrides: dict[str, Any] = {}
    train_cohorts: list[TrainCohort] = Field(min_length=1)
    test_fraction: float = Field(gt=0, lt=1)
    validation_fraction: float = Field(gt=0, lt=1)
    split_seed: int
    outcomes: tuple[str, ...] = OUTCOMES
    evaluation_horizons_months: tuple[int, ...] = EVALUATION_HORIZONS_MONTHS
    external_cohorts: list[ExternalCohort | ExternalFileCohort] = []
    # The simulated cohort the project's stated performance is measured on; none for an experiment on files.
    benchmark_cohort: CohortSpec | None = None
    bootstrap: int = Field(ge=0)
    families: dict[str, FamilySpec] = Field(min_length=1)
    added_value: tuple[str, ...] = ()
    # Bootstrap refits behind each risk's 95% interval (models.intervals); 0: no intervals.
    interval_refits: int = Field(default=20, ge=0)

    @model_validator(mode="after")
    def _check_names(self) -> ExperimentConfig:
        unknown = [o for o in self.outcomes if o not in OUTCOMES]
        if unknown or not self.outcomes:
            raise ValueError(f"outcomes: unknown {unknown}; choose from {list(OUTCOMES)}")
        missing = [h for h in self.evaluation_horizons_months if h not in EVALUATION_HORIZONS_MONTHS]
        if missing:
            raise ValueError(f"evaluation_horizons_months: the simulator gives true risks at "
                             f"{list(EVALUATION_HORIZONS_MONTHS)} months only, not at {missing}")
        check_horizons(self.evaluation_horizons_months)
        inputs = [n for n in FEATURE_NAMES if n != TREATMENT_FEATURE]
        wrong = [p for p in self.added_value if p not in inputs]
        if wrong:
            raise ValueError(f"added_value: {wrong} are not predictors; choose from {inputs}")
        if self.interval_refits == 1:
            raise ValueError("interval_refits: a spread needs at least 2 refits (0 for no intervals)")
        if len(set(self.added_value)) != len(self.added_value):
            raise ValueError(f"added_value: names a predictor twice ({list(self.added_value)})")
        world_overrides(self.world)  # names a shipped world
        return self

    @property
    def simulated(self) -> bool:
        """Whether any cohort of the experiment is simulated (so that the simulator's assumptions apply)."""
        return any(isinstance(c, CohortSpec) for c in [*self.train_cohorts, *self.external_cohorts,
                                                        *([self.benchmark_cohort] if self.benchmark_cohort else [])])

    def params(self) -> dict[str, str]:
        """Flat experiment parameters for MLflow (the same keys in every experiment)."""
        return {
            "experiment": self.name,
            "train_cohorts": "+".join(c.label() for c in self.train_cohorts),
            "external_cohorts": "+".join(f"{c.name}={c.label()}" for c in self.external_cohorts),
            "benchmark_cohort": self.benchmark_cohort.label() if self.benchmark_cohort else "none",
            "test_fraction": str(self.test_fraction),
            "validation_fraction": str(self.validation_fraction),
            "split_seed": str(self.split_seed),
            "outcomes": ",".join(self.outcomes),
            "evaluation_horizons_months": ",".join(map(str, self.evaluation_horizons_months)),
            "bootstrap": str(self.bootstrap),
            "added_value": ",".join(self.added_value) or "none",
            "interval_refits": str(self.interval_refits),
            "world": self.world,
            "simulator_overrides": yaml.safe_dump(self.simulator_overrides, default_flow_style=True).strip(),
        }


def deep_merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied key by key: nested mappings merged, values replaced,
    and a key set to ``None`` in ``overrides`` removed."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def world_names() -> list[str]:
    """The shipped worlds (``experiments/worlds/*.yaml``), the default first."""
    return sorted((p.stem for p in WORLDS_DIR.glob("*.yaml")), key=lambda name: (name != DEFAULT_WORLD, name))


def world_overrides(world: str) -> dict:
    """The overrides of the simulator config that make the named world, its name included."""
    path = WORLDS_DIR / f"{world}.yaml"
    if not path.is_file():
        raise ValueError(f"world: unknown {world!r}; choose from {', '.join(world_names())}")
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of overrides of the simulator config")
    return raw | {"world": world}


def load_world(world: str = DEFAULT_WORLD, path: Path | str = DEFAULT_CONFIG_PATH,
               overrides: dict | None = None) -> SimulatorConfig:
    """The simulator config at ``path`` in the named world, with further ``overrides`` on top."""
    with open(path, encoding="utf-8") as handle:
        raw = deep_merge(yaml.safe_load(handle), world_overrides(world))
    return SimulatorConfig.model_validate(deep_merge(raw, overrides or {}))


def _raw_experiment(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The settings of an experiment YAML with what it ``extends:`` merged in (paths resolved)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ValueError(f"{path}: 'extends' goes round in a circle ({chain})")
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of experiment settings")
    if "simulator_config" in raw:
        raw["simulator_config"] = str((path.parent / raw["simulator_config"]).resolve())
    for key in ("train_cohorts", "external_cohorts"):  # a cohort's file, like the simulator's, beside the config
        for cohort in raw.get(key) or []:
            if isinstance(cohort, dict) and "file" in cohort:
                cohort["file"] = str((path.parent / cohort["file"]).resolve())
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise ValueError(f"{path}: extends {parent!r}, which is not a file beside it")
    return deep_merge(_raw_experiment(parent_path, (*seen, path)), raw)


def load_experiment(path: Path | str = DEFAULT_EXPERIMENT) -> ExperimentConfig:
    """Read an experiment YAML.

    ``extends: other.yaml`` (a path relative to this file) starts from that experiment's
    settings: this file's settings replace its values key by key, nested mappings are
    merged, and a key set to ``null`` is removed (``families: {cox-linear: null}`` drops
    a family). ``simulator_config`` is resolved relative to the file that names it
    (``cohorts.yaml`` beside the experiment by default).
    """
    path = Path(path)
    raw = _raw_experiment(path)
    raw.setdefault("simulator_config", str((path.parent / "cohorts.yaml").resolve()))
    return ExperimentConfig.model_validate(raw)
