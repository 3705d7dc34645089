"""Training's SHAP pictures: per outcome, a beeswarm and a mean |SHAP| bar chart, logged and in the model card.

They are drawn from a sample of the held-out split (synthetic patients), at one horizon, from the
model's input columns only: no patient identifier reaches MLflow. The model card's HTML carries the
pictures embedded, so that it shows them wherever it is opened (the MLflow UI, ``autorisk report``).
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import FEATURE_NAMES, INPUT_NAMES
from features.validation import input_values, validate_frame
from models.explanation_figures import beeswarm_figure, importance_figure
from models.model_card import ModelCard

ARTIFACT_DIR = "explanations"
# Onsets are monitored for 48 months after the last course: the horizon the pictures explain.
HORIZON_MONTHS = 48
# Enough points for the beeswarm's shape; more would only hide each other.
SAMPLE = 2000
DPI = 110


def explanation_artifacts(outcome: str) -> tuple[str, str, str]:
    """Artifact paths of an outcome's beeswarm, bar chart and mean |SHAP| table."""
    return (f"{ARTIFACT_DIR}/beeswarm_{outcome}.png", f"{ARTIFACT_DIR}/mean_abs_shap_{outcome}.png",
            f"{ARTIFACT_DIR}/mean_abs_shap_{outcome}.csv")


def log_explanations(model, held_out: pd.DataFrame, card: ModelCard, *, seed: int = 0) -> ModelCard:
    """Log each outcome's beeswarm and mean |SHAP| chart to the active run; return the card showing them.

    Parameters
    ----------
    model : models.scoring.RiskModel
        The fitted family.
    held_out : DataFrame
        The held-out split (synthetic); only its input columns are read.
    card : ModelCard
        The family's model card, to which a section with the pictures is added.
    seed : int
        Seed of the sample and of the beeswarm's spread.

    Returns
    -------
    ModelCard
        ``card`` with an "Explanations" section: Markdown linking the artifacts, HTML embedding them.
    """
    import mlflow
    from markdown import markdown as render_markdown

    sample = held_out.sample(n=min(SAMPLE, len(held_out)), random_state=seed)[[c for c in INPUT_NAMES if c in held_out]]
    batch = validate_frame(sample)
    explained = model.explain(batch.matrix, (HORIZON_MONTHS,))
    markdown = [f"## Explanations (SHAP, held-out split)\n\nPer outcome, on {len(batch.rows):,} patients of the "
                f"held-out split, at {HORIZON_MONTHS} months, on the {model.explanation_scale} scale: every patient's "
                "SHAP value per feature (colour: the feature's value; grey: not provided) and the mean |SHAP| per "
                "feature. An unknown value gets a SHAP value too: the model's treatment of unknown.\n"]
    html = [render_markdown(markdown[0])]
    with tempfile.TemporaryDirectory() as folder:
        for outcome, scores in explained.items():
            shap = scores.shap_at(0)
            mean_abs = dict(zip(FEATURE_NAMES, np.abs(shap).mean(axis=0).tolist()))
            beeswarm, bars, table = explanation_artifacts(outcome)
            pictures = {
                beeswarm: beeswarm_figure(shap, input_values(batch.matrix), list(FEATURE_NAMES),
                                          f"{outcome}: SHAP values at {HORIZON_MONTHS} months", seed=seed),
                bars: importance_figure(mean_abs, f"{outcome}: mean |SHAP| at {HORIZON_MONTHS} months"),
            }
            for artifact, figure in pictures.items():
                path = Path(folder) / Path(artifact).name
                figure.savefig(path, dpi=DPI)
                mlflow.log_artifact(str(path), ARTIFACT_DIR)
                encoded = base64.b64encode(path.read_bytes()).decode("ascii")
                html.append(f"<p><img alt='{outcome}: {path.stem.replace('_', ' ')}' "
                            f"src='data:image/png;base64,{encoded}'></p>")
                markdown.append(f"![{outcome}: {path.stem.replace('_', ' ')}](../{artifact})")
            mlflow.log_text(pd.Series(mean_abs, name="mean_abs_shap").rename_axis("feature")
                            .sort_values(ascending=False).to_csv(), table)
    section_md = "\n\n".join(markdown) + "\n"
    return ModelCard(markdown=card.markdown + "\n" + section_md,
                     html=card.html.replace("</body>", "".join(html) + "</body>"))
