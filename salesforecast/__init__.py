"""salesforecast: forecast-accuracy analytics for sales organisations.

Make the sales process explicit (`SalesProcess`), load CRM data into validated canonical tables
(`load`, `read_canonical`, `validate`, `CRMData`), rebuild the pipeline as it stood at any date (`pipeline_snapshots`),
and compare forecasts with what actually closed. A report that the data cannot support raises `ReportNeeds`.
"""

import os

# OpenMP threads (scikit-learn's gradient boosting) sleep while they wait instead of spinning, unless the caller
# set a policy: with more busy threads than cores (two reports at a time on 2 cores, the `salesforecast report`
# default, or any other load) spinning threads take the cores the working ones need. Measured on 2 cores under a
# load of about 7: the lead scoring fit of 184,000 leads took 90-136 s on 2 threads with libgomp's default, 15 s
# with passive waiting (and 14 s on one thread). It must be set before OpenMP starts, i.e. before scikit-learn's
# first import, which comes after this package's.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from salesforecast.io import load  # noqa: E402
from salesforecast.process import FiscalCalendar, SalesProcess, fiscal_period  # noqa: E402
from salesforecast.schema import CRMData, DataFileError, read_canonical, validate  # noqa: E402
from salesforecast.session import ReportNeeds  # noqa: E402

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
