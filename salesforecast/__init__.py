"""salesforecast: forecast-accuracy analytics for sales organisations.

Make the sales process explicit (`SalesProcess`), load CRM data into validated canonical tables
(`load`, `read_canonical`, `validate`, `CRMData`), rebuild the pipeline as it stood at any date (`pipeline_snapshots`),
and compare forecasts with what actually closed. A report that the data cannot support raises `ReportNeeds`.
"""

from salesforecast.io import load
from salesforecast.process import FiscalCalendar, SalesProcess, fiscal_period
from salesforecast.schema import CRMData, DataFileError, read_canonical, validate
from salesforecast.session import ReportNeeds

__version__ = "0.1.0"

__all__ = [
    "CRMData",
    "DataFileError",
    "FiscalCalendar",
    "ReportNeeds",
    "SalesProcess",
    "fiscal_period",
    "load",
    "read_canonical",
    "validate",
]
