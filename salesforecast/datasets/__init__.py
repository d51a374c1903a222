"""Synthetic and sample CRM data.

`generate` simulates a seeded B2B sales organisation with known ground truth (`GroundTruth`);
`load_sample` reads the small sample made by it that ships with the package; `with_generator_criteria` gives a
process map the exit criteria the generator's activities follow.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

from salesforecast.datasets._activities import with_generator_criteria
from salesforecast.datasets._generate import SAMPLE_PARAMS, GroundTruth, generate, lead_linear_predictor
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, read_canonical

__all__ = [
    "SAMPLE_PARAMS",
    "GroundTruth",
    "generate",
    "lead_linear_predictor",
    "load_sample",
    "sample_folder",
    "with_generator_criteria",
]


def sample_folder() -> Path:
    """Path of the committed sample folder (``salesforecast/datasets/sample``) in the installed package.

    Examples
    --------
    >>> sorted(p.name for p in sample_folder().iterdir())[:2]
    ['activities.csv.gz', 'forecast_submissions.csv.gz']
    """
    return Path(str(resources.files(__name__) / "sample"))


def load_sample(process: SalesProcess | str | Path | None = None) -> CRMData:
    """Load the bundled sample CRM: a synthetic B2B software seller over three fiscal years.

    The sample is synthetic: ``generate(**SAMPLE_PARAMS)``, that is 3,000 opportunities created from
    2023-01-01 over three years (fiscal years FY2023-FY2025, calendar fiscal year, Salesforce's standard
    stages), seed 2024, as of 2026-01-01 (deals still open then stay open). 24 reps in four teams (NA East,
    NA West, EMEA, APAC) and three segments (SMB, Mid-Market, Enterprise). About 17% of the opportunities
    are won, 78% lost, 5% still open; 20% of the leads converted. The true parameters behind it (transition
    matrix, win probability per stage, lead-conversion model, rep forecast biases) are returned by
    ``generate(**SAMPLE_PARAMS)[1]``; the model is described in `salesforecast.datasets._generate`.

    Size and columns (rows x columns):

    ``opportunities`` (3000 x 16)
        opportunity_id, owner, created_at, stage, amount, close_date, is_closed, is_won, team, region,
        segment, account_id, lead_id (missing when not from a lead), lead_source, product,
        forecast_category.
    ``stage_history`` (13823 x 6)
        opportunity_id, changed_at, stage, amount, close_date, forecast_category: one row per change
        (stage, amount or close date), the first at creation.
    ``leads`` (6600 x 15)
        lead_id, created_at, converted, converted_at, opportunity_id, owner, lead_source, and the features
        industry, employees, title_seniority, engagement_score, email_opens, web_visits, country,
        form_fill_seconds (pure noise).
    ``forecast_submissions`` (7536 x 6)
        submitted_at (Mondays 09:00), owner, period (``FY2024Q3``), category (commit, best_case), amount,
        team.
    ``quotas`` (288 x 3)
        owner, period, amount.
    ``activities`` (37221 x 9)
        activity_id, occurred_at, type (call, email, meeting, follow_up, proposal), owner, opportunity_id (25,429
        activities on deals) or lead_id (11,792 on leads: calls and e-mails, the first response and a few
        touches), subject, outcome (of calls and meetings), duration (minutes, calls and meetings).

    The process map (``process.yml``) carries the generator's exit criteria: Qualification needs a meeting and a
    follow-up within 3 days of it, Value Proposition a meeting, Proposal/Price Quote a proposal. Deals whose
    visit met them win more often by a known amount (none for the meeting, on purpose), given with the other
    truths by ``generate(**SAMPLE_PARAMS)[1].activity_effect``.

    The files are gzip-compressed canonical CSV files plus ``process.yml`` in
    ``salesforecast/datasets/sample/`` (see `sample_folder`); regenerate them with
    ``python scripts/make_sample.py`` (byte-identical).

    Parameters
    ----------
    process : SalesProcess, path, "salesforce", "default" or None, optional
        The process map to validate against; by default (None or ``"default"``, see `SalesProcess.resolve`) the
        sample's own ``process.yml``.

    Returns
    -------
    CRMData
        The validated tables (nothing is quarantined).

    Examples
    --------
    >>> data = load_sample()
    >>> data.opportunities.shape
    (3000, 16)
    >>> data.counts["quarantined"].sum()
    np.int64(0)
    """
    source = resources.files(__name__) / "sample"
    if isinstance(source, Path):
        return read_canonical(source, process=process)
    with tempfile.TemporaryDirectory() as tmp:  # a package inside a zip file: copy the files out first
        for entry in source.iterdir():
            with entry.open("rb") as src, open(Path(tmp) / entry.name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return read_canonical(tmp, process=process)
