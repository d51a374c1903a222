"""Models fitted on canonical CRM data, in scikit-learn's estimator style.

`StageConversionModel` learns stage-to-stage conversion, win probabilities and time in stage from stage history.
"""

from salesforecast.models.stage_conversion import (
    CRMComparison,
    StageConversionModel,
    compare_with_crm,
    known_at,
    stage_visits,
)

__all__ = ["CRMComparison", "StageConversionModel", "compare_with_crm", "known_at", "stage_visits"]
