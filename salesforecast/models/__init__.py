"""Models fitted on canonical CRM data, in scikit-learn's estimator style.

`StageConversionModel` learns stage-to-stage conversion, win probabilities and time in stage from stage history;
`LeadScoringModel` scores leads (or any rows of features) with calibrated, explained probabilities;
`OpportunityScoringModel` scores open deals from features known at each snapshot date;
`BookingsModel` forecasts the bookings of the next periods from past periods' bookings (the time-series baseline).
"""

from salesforecast.models.bookings import BookingsModel
from salesforecast.models.lead_scoring import LeadScoringModel
from salesforecast.models.opportunity_scoring import OpportunityScoringModel
from salesforecast.models.stage_conversion import StageConversionModel, stage_visits

__all__ = ["BookingsModel", "LeadScoringModel", "OpportunityScoringModel", "StageConversionModel", "stage_visits"]
