"""The model registry: choosing the champion and loading it by alias."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.schema import OUTCOMES, endpoint
from models.names import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    CONFIG_DIGEST_TAG,
    FAMILY_TAG,
    PROMOTION_HORIZONS_MONTHS,
    PROMOTION_METRIC,
    ROLE_PROMOTION,
    ROLE_TAG,
    VERSION_EXPERIMENT_TAG,
    VERSION_FAMILY_TAG,
    VERSION_ORIGIN_TAG,
    ORIGIN_TRAINING,
    endpoint_metric,
)
from models.scoring import RiskModel
from models.store import ModelLoadError, NoChampionError
from models.tracking import ensure_experiment

# The rule uses only what a real study has: the held-out split's observed, censored outcomes. A version is
# passed over only when its held-out calibration is shown to be off: the 95% bootstrap interval of its
# calibration slope lies wholly outside 1 ± SLOPE_TOLERANCE, or that of its observed-over-expected ratio wholly
# outside OE_RANGE, at a promotion horizon of any outcome. A tolerance rather than "contains 1": with tens of
# thousands of held-out patients the intervals are so narrow that a slope of 1.03 would be refused; with a
# hundred ITP onsets they are so wide that nothing would be. The figures against the simulator's truth stay
# evaluation, logged beside.
SLOPE_TOLERANCE = 0.2
OE_RANGE = (0.8, 1.25)
PROMOTION_RULE = (
    "among the versions trained by one experiment config (the newest version's, or --experiment's "
    "newest), so that all were tested on the same held-out split, and whose held-out calibration is not shown "
    f"to be off at {' and '.join(map(str, PROMOTION_HORIZONS_MONTHS))} months for any outcome (the 95% bootstrap "
    f"interval of the calibration slope reaches within 1 ± {SLOPE_TOLERANCE}, and that of observed over expected "
    f"within {OE_RANGE[0]:g}–{OE_RANGE[1]:g}; IPCW, observed outcomes only): the lowest held-out IPCW log loss "
    f"relative to the incidence's, averaged over outcomes and evaluation horizons (run metric '{PROMOTION_METRIC}'); "
    "ties go to the newer version. The previous champion becomes the challenger"
)


@dataclass(frozen=True)
class Candidate:
    version: str
    run_id: str
    family: str
    experiment: str
    config_digest: str
    metric: float
    calibration: dict[str, dict[str, float]] | None = None

    @property
    def calibrated(self) -> bool:
        """No promotion endpoint's held-out calibration shown to be off (see :data:`PROMOTION_RULE`).

        ``calibration`` holds per endpoint the slope and O/E with their 95% intervals (NaN without a
        bootstrap: the point estimate decides then).
        """
        def within(value: float, lo: float, hi: float, low: float, high: float) -> bool:
            if not (math.isfinite(lo) and math.isfinite(hi)):
                lo = hi = value
            return lo <= high and hi >= low

        return bool(self.calibration) and all(
            within(c["slope"], c["slope_lo"], c["slope_hi"], 1 - SLOPE_TOLERANCE, 1 + SLOPE_TOLERANCE)
            and within(c["oe"], c["oe_lo"], c["oe_hi"], *OE_RANGE) for c in self.calibration.values())

    def calibration_text(self) -> str:
        return ", ".join(f"{e} slope {c['slope']:.2f} ({c['slope_lo']:.2f}–{c['slope_hi']:.2f}), O/E {c['oe']:.2f} "
                         f"({c['oe_lo']:.2f}–{c['oe_hi']:.2f})" for e, c in (self.calibration or {}).items())


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


def _calibration(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per promotion endpoint with a held-out slope: the slope and O/E with their intervals."""
    found = {}
    for outcome in OUTCOMES:
        for horizon in PROMOTION_HORIZONS_MONTHS:
            name = endpoint(outcome, horizon)
            values = {key: metrics.get(endpoint_metric(name, metric), math.nan) for key, metric in (
                ("slope", "calibration_slope"), ("slope_lo", "calibration_slope_lo"),
                ("slope_hi", "calibration_slope_hi"), ("oe", "observed_over_expected"),
                ("oe_lo", "observed_over_expected_lo"), ("oe_hi", "observed_over_expected_hi"))}
            if math.isfinite(values["slope"]) and math.isfinite(values["oe"]):
                found[name] = values
    return found


def candidates(client: MlflowClient, name: str = MODEL_NAME) -> list[Candidate]:
    """Every version of ``name`` that training registered (not a recalibration's), with its promotion figures."""
    found = []
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get(VERSION_ORIGIN_TAG, ORIGIN_TRAINING) != ORIGIN_TRAINING:
            continue  # a recalibrated version is for the population it was recalibrated to, never the champion
        run = client.get_run(version.run_id)
        found.append(Candidate(
            version=str(version.version),
            run_id=version.run_id,
            family=version.tags.get(VERSION_FAMILY_TAG, run.data.tags.get(FAMILY_TAG, "?")),
            experiment=version.tags.get(VERSION_EXPERIMENT_TAG, "?"),
            config_digest=run.data.tags.get(CONFIG_DIGEST_TAG, "?"),
            metric=run.data.metrics.get(PROMOTION_METRIC, math.inf),
            calibration=_calibration(run.data.metrics),
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
    """Among calibrated candidates, the lowest promotion metric; ties go to the newer version."""
    eligible = [c for c in found if c.calibrated]
    if not eligible:
        raise NoChampionError(
            "every candidate's held-out calibration is shown to be off (slope beyond 1 ± "
            f"{SLOPE_TOLERANCE} or O/E beyond {OE_RANGE[0]:g}–{OE_RANGE[1]:g}): "
            + "; ".join(f"v{c.version}: {c.calibration_text()}" for c in found))
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
    ensure_experiment("promotions", description=(
        "Each `autorisk promote`: the rule, every candidate version's figures (candidates.csv) and the "
        "version @champion was set to."))
    with mlflow.start_run(run_name=f"promote/{name}/v{decision.chosen.version}",
                          tags={ROLE_TAG: ROLE_PROMOTION}):
        mlflow.log_params({"model": name, "rule": decision.rule, "champion": decision.chosen.version,
                           "challenger": decision.previous or "none"})
        mlflow.log_text(f"version,family,experiment,config,{PROMOTION_METRIC},calibrated,calibration\n" + "".join(
            f"{c.version},{c.family},{c.experiment},{c.config_digest},{c.metric},{c.calibrated},"
            f"\"{c.calibration_text()}\"\n" for c in decision.candidates), "candidates.csv")


def version_or_alias(text: str | None) -> tuple[str | None, str]:
    """What ``--model-version`` names: ``(version, alias)``.

    ``None`` -> ``(None, "champion")``; ``"3"`` -> ``("3", "champion")`` (the version wins);
    ``"@local"`` -> ``(None, "local")``.

    Raises
    ------
    ValueError
        For anything else, naming the forms that are understood.
    """
    if text is None:
        return None, CHAMPION
    text = text.strip()
    if text.startswith("@") and len(text) > 1 and text[1:].replace("-", "").replace("_", "").isalnum():
        return None, text[1:]
    if text.isdigit() and int(text) > 0:
        return str(int(text)), CHAMPION
    raise ValueError(f"--model-version: {text!r} is not a registered version; versions are whole numbers "
                     "(1, 2, ...), or an alias (@champion)")


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


@contextmanager
def _no_bytecode_cache() -> Iterator[None]:
    """No ``__pycache__`` written while a version loads: MLflow imports the version's model code
    (``mlflow_model.py``) from its artifact folder, and Python would cache its bytecode there, so
    that every load wrote into the store, which may be read-only or shared."""
    previous = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = previous


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
        with _no_bytecode_cache():
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{found.version}")
        risk_model = pyfunc.unwrap_python_model().risk_model
    except (OSError, ValueError, KeyError, TypeError, MlflowException) as error:
        # Missing or cut-short files (the model's JSON, xgboost's binary, the tables' npz, MLmodel):
        # re-raised, typed, so that the command names the version and exits with its code.
        raise ModelLoadError(name, str(found.version), error) from error
    return LoadedModel(name=name, version=str(found.version), run_id=found.run_id, risk_model=risk_model)
