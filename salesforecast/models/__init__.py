"""Models fitted on canonical CRM data, in scikit-learn's estimator style.

`StageConversionModel` learns stage-to-stage conversion, win probabilities and time in stage from stage history.
"""

from salesforecast.models.stage_conversion import StageConversionModel, stage_visits

__all__ = ["StageConversionModel", "stage_visits"]
