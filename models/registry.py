"""The model registry: choosing the champion and loading it by alias."""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.schema import ENDPOINTS
from models.scoring import RiskModel

MODEL_NAME = "autoimmunity-risk"
CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_METRIC = "mean_log_loss"
SLOPE_RANGE = (0.8, 1.2)
PROMOTION_RULE = (
    "among the versions trained by one experiment config (the newest version's, or --experiment's "
    "newest), so that all were tested on the same held-out cohort, and whose held-out calibration "
    f"slope lies within {SLOPE_RANGE[0]}–{SLOPE_RANGE[1]} for every endpoint: the lowest held-out "
    "log loss of the (calibrated) risks averaged over endpoints (run metric 'mean_log_loss'); ties "
    "go to the newer version. The previous champion becomes the challenger"
)


class NoChampionError(LookupError):
    """The registry has no version under the requested alias."""


class ModelLoadError(RuntimeError):
    """A registered version exists but cannot be loaded: its artifacts are missing or unreadable.

    The cause (``__cause__``) is the error MLflow or unpickling raised.
    """

    def __init__(self, name: str, version: str, cause: BaseException) -> None:
        missing = isinstance(cause, FileNotFoundError) or (
            isinstance(cause, MlflowException) and cause.error_code == "RESOURCE_DOES_NOT_EXIST")
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        state = "are missing" if missing else "cannot be read"
        super().__init__(f"model {name!r} version {version} is registered but its artifacts {state} "
                         f"({type(cause).__name__}{': ' + detail if detail else ''})")
        self.missing = missing


@dataclass(frozen=True)
class Candidate:
    version: str
    run_id: str
    family: str
    experiment: str
    config_digest: str
    metric: float
    slopes: dict[str, float] | None = None

    @property
    def calibrated(self) -> bool:
        """Every endpoint's calibration slope within :data:`SLOPE_RANGE`."""
        low, high = SLOPE_RANGE
        return bool(self.slopes) and all(low <= s <= high for s in self.slopes.values())


@dataclass(frozen=True)
class Promotion:
    chosen: Candidate
    candidates: list[Candidate]
    previous: str | None
    rule: str = PROMOTION_RULE


@dataclass(frozen=True)
class LoadedModel:
    """A registered version, loaded once: its identity and its risk model."""

    name: str
    version: str
    run_id: str
    risk_model: RiskModel


def candidates(client: MlflowClient, name: str = MODEL_NAME) -> list[Candidate]:
    """Every registered version of ``name`` with its promotion metric."""
    found = []
    for version in client.search_model_versions(f"name='{name}'"):
        run = client.get_run(version.run_id)
        found.append(Candidate(
            version=str(version.version),
            run_id=version.run_id,
            family=version.tags.get("family", run.data.tags.get("autorisk.family", "?")),
            experiment=version.tags.get("experiment", "?"),
            config_digest=run.data.tags.get("autorisk.config_digest", "?"),
            metric=run.data.metrics.get(PROMOTION_METRIC, math.inf),
            slopes={e: run.data.metrics[f"{e}_calibration_slope"] for e in ENDPOINTS
                    if f"{e}_calibration_slope" in run.data.metrics},
        ))
    return sorted(found, key=lambda c: int(c.version))


def comparable(found: list[Candidate], experiment: str | None = None) -> list[Candidate]:
    """The versions trained by the newest config of ``experiment`` (of any experiment when None)."""
    pool = [c for c in found if experiment is None or c.experiment == experiment]
    if not pool:
        known = sorted({c.experiment for c in found})
        raise NoChampionError(f"no registered versions from experiment {experiment!r}; "
                              f"experiments with versions: {', '.join(known) or 'none'}")
    newest = max(pool, key=lambda c: int(c.version))
    return [c for c in pool if (c.experiment, c.config_digest) == (newest.experiment, newest.config_digest)]


def choose(found: list[Candidate]) -> Candidate:
    """Among calibrated candidates, the lowest ``mean_log_loss``; ties go to the newer version."""
    eligible = [c for c in found if c.calibrated]
    if not eligible:
        raise NoChampionError(
            f"no candidate has every calibration slope within {SLOPE_RANGE[0]}–{SLOPE_RANGE[1]}: "
            + "; ".join(f"v{c.version}: " + ", ".join(f"{e} {s:.2f}" for e, s in (c.slopes or {}).items())
                        for c in found))
    return min(eligible, key=lambda c: (c.metric, -int(c.version)))


def promote(client: MlflowClient, name: str = MODEL_NAME, *, experiment: str | None = None,
            dry_run: bool = False) -> Promotion:
    """Choose the champion by :data:`PROMOTION_RULE` and point the ``champion`` alias at it."""
    found = candidates(client, name)
    if not found:
        raise NoChampionError("no registered versions to promote; run `autorisk train` first")
    chosen = choose(comparable(found, experiment))
    try:
        previous = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        previous = None
    decision = Promotion(chosen=chosen, candidates=comparable(found, experiment), previous=previous)
    if not dry_run:
        if previous is not None and previous != chosen.version:
            client.set_registered_model_alias(name, CHALLENGER, previous)
        client.set_registered_model_alias(name, CHAMPION, chosen.version)
        log_promotion(decision, name)
    return decision


def log_promotion(decision: Promotion, name: str) -> None:
    """Record the decision as a run of the MLflow experiment ``promotions``: rule, candidates, choice."""
    from pipelines.tracking import ensure_experiment

    ensure_experiment("promotions")
    with mlflow.start_run(run_name=f"promote/{name}/v{decision.chosen.version}",
                          tags={"autorisk.role": "promotion"}):
        mlflow.log_params({"model": name, "rule": decision.rule, "champion": decision.chosen.version,
                           "challenger": decision.previous or "none"})
        mlflow.log_text("version,family,experiment,config,mean_log_loss,calibrated\n" + "".join(
            f"{c.version},{c.family},{c.experiment},{c.config_digest},{c.metric},{c.calibrated}\n"
            for c in decision.candidates), "candidates.csv")


def resolve_version(name: str = MODEL_NAME, alias: str = CHAMPION, version: str | None = None):
    """The registered version to use: ``version`` when given, else the one under ``alias``.

    Raises
    ------
    NoChampionError
        Only when the registry answers that the model, version or alias does not exist. Any
        other fault of the store (locked, unreachable, damaged) propagates as raised, so that
        it is never mistaken for "train first".
    """
    client = MlflowClient()
    target = f"version {version}" if version else f"alias @{alias}"
    missing = NoChampionError(f"no model {name!r} {target} in the registry at {mlflow.get_tracking_uri()}; "
                              "run `autorisk train` and `autorisk promote` first")
    try:
        if version is None:
            # The alias is looked up among the model's aliases rather than by
            # get_model_version_by_alias, whose "not found" comes as INVALID_PARAMETER_VALUE.
            aliases = client.get_registered_model(name).aliases
            if alias not in aliases:
                raise missing
            version = str(aliases[alias])
        return client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise missing from error


def load_model(name: str = MODEL_NAME, alias: str = CHAMPION, version: str | None = None) -> LoadedModel:
    """Load a registered version, by explicit version or by alias (never "latest").

    Raises
    ------
    NoChampionError
        When the registry has no such model, version or alias.
    ModelLoadError
        When the version is registered but its artifacts are missing or unreadable.
    """
    found = resolve_version(name, alias, version)
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{found.version}")
        risk_model = pyfunc.unwrap_python_model().risk_model
    except Exception as error:  # unpickling damaged bytes can raise any type; re-raised, typed, here
        raise ModelLoadError(name, str(found.version), error) from error
    return LoadedModel(name=name, version=str(found.version), run_id=found.run_id, risk_model=risk_model)
