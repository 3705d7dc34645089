"""Where MLflow keeps runs and models: ``sqlite:///mlflow.db`` in the project root by default."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACKING_URI = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def configure_tracking() -> str:
    """Use ``MLFLOW_TRACKING_URI`` when set, else the project's SQLite store; return the URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    return uri


def artifact_root(tracking_uri: str) -> str | None:
    """For a local SQLite store, ``mlartifacts/`` beside the database file; else the server's default."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.parent / "mlartifacts").resolve().as_uri()


# MLflow shows this tag of an experiment or a run as its description (Markdown) in the UI.
NOTE_TAG = "mlflow.note.content"
# Tells the UI an experiment trains models (its runs table, charts and compare view), not a GenAI
# application (traces and judges), which it would otherwise have to guess from the runs.
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def ensure_experiment(name: str, description: str | None = None) -> str:
    """Create the MLflow experiment ``name`` if needed (artifacts beside a SQLite store), give it
    ``description`` (shown above its runs in the UI), and return its id."""
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        experiment_id = existing.experiment_id
    else:
        root = artifact_root(mlflow.get_tracking_uri())
        location = f"{root}/{name}" if root else None
        experiment_id = mlflow.create_experiment(name, artifact_location=location,
                                                 tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    if description:
        mlflow.MlflowClient().set_experiment_tag(experiment_id, NOTE_TAG, description)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
