"""``python -m pipelines.cli``: the ``autorisk`` command."""

from pipelines.cli import app

app()
