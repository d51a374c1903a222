"""The shared opening of every report: load the source, fix the report date, take the known-at view, filter.

Each notebook of ``notebooks/`` starts from the same steps with the same parameters (``source``, ``process``,
``as_of`` and, where the report has them, ``team``, ``owner``, ``period``). `open_report` takes them as the
parameters cell holds them and returns a `ReportData` with what the notebook reads; the views are built when first
read, so a report that needs only the loaded data pays for nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from salesforecast.io import load
from salesforecast.process import SalesProcess
from salesforecast.quality import report_as_of
from salesforecast.schema import CRMData
from salesforecast.snapshots import known_at

__all__ = ["ReportData", "open_report"]


@dataclass
class ReportData:
    """What a report works on, from `open_report`.

    Attributes
    ----------
    data : CRMData
        The source as loaded: every row, up to the data's end (the quarantine and counts are the load's).
    as_of : pandas.Timestamp
        The report date (`salesforecast.quality.report_as_of`: the data's latest time for ``"latest"``).
    team, owner : str or None
        The team and the rep the report is restricted to (None: all).
    period : str or None
        The fiscal quarter the report is about (``"current"`` resolved at `as_of`), when one was asked for.
    known : CRMData
        `data` as known at `as_of` (`salesforecast.snapshots.known_at`): nothing created, changed or submitted later.
    view : CRMData
        `known` restricted to `team` and `owner` (`CRMData.filter`).
    selection : CRMData
        `data` (not cut at `as_of`) restricted to `team` and `owner`: the rows a report lists as they are now.
    period_bounds : tuple of pandas.Timestamp
        Start and (exclusive) end of `period`: ``start <= t < end``.
    notes : tuple of str
        What the load found and could not fix (`CRMData.notes`), for the report's read-this-first box.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> data = load_sample()
    >>> report = ReportData(data, pd.Timestamp("2025-06-30"), team="EMEA", period="FY2025Q2")
    >>> report.period_bounds
    (Timestamp('2025-04-01 00:00:00'), Timestamp('2025-07-01 00:00:00'))
    >>> bool(report.known.opportunities["created_at"].max() <= report.as_of)
    True
    >>> view, selection = report.view.opportunities, report.selection.opportunities
    >>> sorted(set(view["team"])), len(view) < len(selection), sorted(set(selection["team"]))
    (['EMEA'], True, ['EMEA'])
    """

    data: CRMData
    as_of: pd.Timestamp
    team: str | None = None
    owner: str | None = None
    period: str | None = None
    notes: tuple[str, ...] = field(default=())

    @cached_property
    def known(self) -> CRMData:
        """`data` as known at `as_of` (built on first use)."""
        return known_at(self.data, self.as_of)

    @cached_property
    def view(self) -> CRMData:
        """`known` restricted to `team` and `owner` (built on first use)."""
        return self.known.filter(team=self.team, owner=self.owner)

    @cached_property
    def selection(self) -> CRMData:
        """`data` restricted to `team` and `owner` (built on first use)."""
        return self.data.filter(team=self.team, owner=self.owner)

    @property
    def period_bounds(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Start and (exclusive) end of `period` (a ValueError without one)."""
        if self.period is None:
            raise ValueError("no period: pass period= to open_report")
        return self.data.process.calendar.period_bounds(self.period)


def open_report(
    source: str | Path = "sample",
    process: SalesProcess | str | Path | None = "default",
    as_of: str = "latest",
    team: str | None = "",
    owner: str | None = "",
    period: str | None = None,
) -> ReportData:
    """Open the data of a report: the one call at the top of every notebook.

    Parameters
    ----------
    source : str or path
        What `salesforecast.io.load` takes: ``"sample"``, a canonical folder, an export, a mapping file.
    process : SalesProcess, path, "salesforce", "default" or None
        The process map; ``"default"`` (or None) is the source's own, else Salesforce's standard stages
        (`SalesProcess.resolve`).
    as_of : str
        The report date: ``"latest"`` or an ISO date (`salesforecast.quality.report_as_of`).
    team, owner : str, optional
        Restrict the views to one team and/or one rep (``""`` or None: all), as the notebooks' parameters hold them.
    period : str, optional
        A fiscal quarter (``"FY2024Q3"``) or ``"current"`` (the quarter holding the report date).

    Returns
    -------
    ReportData

    Raises
    ------
    ValueError
        When `as_of` is no date, or (on reading `view` or `selection`) `team` or `owner` names nobody.

    Examples
    --------
    >>> report = open_report("sample", as_of="2025-06-30", period="current")
    >>> report.as_of, report.period
    (Timestamp('2025-06-30 00:00:00'), 'FY2025Q2')
    >>> bool(report.view.opportunities["created_at"].max() <= report.as_of)
    True
    """
    data = load(source, process=process)
    date = report_as_of(data, as_of)
    label = data.process.calendar.resolve(period, date) if period is not None else None
    return ReportData(data, date, team or None, owner or None, label, tuple(data.notes))
