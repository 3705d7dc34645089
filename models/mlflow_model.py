"""Run by MLflow when a registered version loads (a model from code); autorisk never imports it.

The model it names reads its fitted numbers from the version's ``risk_model`` artifact in
:meth:`models.pyfunc.AutoimmunityRiskModel.load_context`.
"""

import mlflow

from models.pyfunc import AutoimmunityRiskModel

mlflow.models.set_model(AutoimmunityRiskModel())
