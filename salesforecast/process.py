"""The sales process map (`SalesProcess`) and the fiscal calendar.

A standardized sales process is an ordered list of open stages every deal should pass, plus the terminal
won and lost stages. Each stage carries the CRM's default win probability and forecast category. Stage names
arriving from a CRM are matched case- and whitespace-insensitively, directly or through aliases.

The fiscal calendar turns dates into fiscal months (``2024-07``), quarters (``FY2024Q3``) and years
(``FY2024``) for any fiscal-year start month.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, field_validator, model_validator

from salesforecast.config import Problem, Schema, checked, load_model, mapping_of, read_yaml, text_of

__all__ = [
    "ACTIVITY_TYPES",
    "CURRENCY_SYMBOLS",
    "FORECAST_CATEGORIES",
    "PERIOD_PATTERN",
    "FiscalCalendar",
    "ProcessError",
    "ExitCriterion",
    "ProcessFile",
    "SalesProcess",
    "Stage",
    "currency_code",
    "fiscal_period",
    "normalize_activity_type",
    "normalize_forecast_category",
    "normalize_name",
]

#: Canonical forecast categories, in Salesforce's order from least to most certain.
FORECAST_CATEGORIES: tuple[str, ...] = ("omitted", "pipeline", "best_case", "most_likely", "commit", "closed")

_CATEGORY_ALIASES = {
    "omitted": "omitted",
    "omit": "omitted",
    "pipeline": "pipeline",
    "best case": "best_case",
    "bestcase": "best_case",
    "best_case": "best_case",
    "upside": "best_case",
    "most likely": "most_likely",
    "mostlikely": "most_likely",
    "most_likely": "most_likely",
    "commit": "commit",
    "committed": "commit",
    "forecast": "commit",
    "closed": "closed",
    "won": "closed",
}

#: Activity types every CRM has; an organisation's own names map onto them (or stay types of their own) through
#: the process map's ``activity_types:``.
ACTIVITY_TYPES: tuple[str, ...] = ("call", "meeting", "email", "task")

#: A period label: a calendar month ``2024-07``, a fiscal year ``FY2024`` or quarter ``FY2024Q3``.
PERIOD_PATTERN = r"\d{4}-(?:0[1-9]|1[0-2])|FY\d{4}(?:Q[1-4])?"

StageKind = Literal["open", "won", "lost"]
Freq = Literal["month", "quarter", "year"]


class ProcessError(ValueError):
    """A sales-process definition (YAML or arguments) is invalid; the message names the key."""


def normalize_name(name: object) -> str:
    """Return the matching key of a stage or category name: case-folded, inner whitespace collapsed.

    Examples
    --------
    >>> normalize_name("  Closed   WON ")
    'closed won'
    """
    return re.sub(r"\s+", " ", str(name)).strip().casefold()


def normalize_forecast_category(value: object) -> str | None:
    """Map a CRM forecast-category label (``"Best Case"``, ``"Commit"``...) to its canonical name.

    Returns ``None`` when the label is not a known forecast category.

    Examples
    --------
    >>> normalize_forecast_category("Best Case")
    'best_case'
    """
    key = normalize_name(value).replace("-", " ")
    return _CATEGORY_ALIASES.get(key, _CATEGORY_ALIASES.get(key.replace(" ", "_")))


def normalize_activity_type(name: object) -> str:
    """The key of an activity type: case-folded, runs of spaces, hyphens and underscores written ``_``.

    Examples
    --------
    >>> normalize_activity_type(" Follow-Up "), normalize_activity_type("follow_up")
    ('follow_up', 'follow_up')
    """
    return re.sub(r"[\s_\-]+", "_", str(name).strip().casefold()).strip("_")


@dataclass(frozen=True)
class ExitCriterion:
    """One exit criterion of a stage: what a deal should have done before it leaves the stage.

    Parameters
    ----------
    activity : str or None
        The activity type (a `normalize_activity_type` key, e.g. ``meeting``, ``follow_up``) the deal needs while
        in the stage.
    min : int
        How many activities of that type, at least (default 1).
    within_days : float or None
        The (first) activity must come within this many days of the anchor: the activity named by `after` when
        given, else the deal's entry into the stage. ``{activity: follow_up, after: meeting, within_days: 3}``
        is a thank-you letter within three days of the meeting.
    after : str or None
        The activity type whose first occurrence in the stage anchors `within_days`.
    field : str or None
        A deal field that must be filled when the deal leaves the stage (``amount``, ``close_date``...),
        instead of an activity.
    """

    activity: str | None = None
    min: int = 1
    within_days: float | None = None
    after: str | None = None
    field: str | None = None

    def describe(self) -> str:
        """The criterion in words, as reports show it.

        ``at least 1 meeting``, ``follow up within 3 days of the meeting``, ``amount filled``.
        """
        if self.field is not None:
            return f"{self.field.replace('_', ' ')} filled"
        what = str(self.activity).replace("_", " ")
        text = f"at least {self.min} {what}" if self.min > 1 or self.within_days is None else what
        if self.within_days is not None:
            days = f"{self.within_days:g} day{'s' if self.within_days != 1 else ''}"
            anchor = f"the {self.after.replace('_', ' ')}" if self.after else "entering the stage"
            text += f" within {days} of {anchor}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The YAML-shaped mapping of this criterion (inverse of the process map's reading)."""
        if self.field is not None:
            return {"field": self.field}
        out: dict[str, Any] = {"activity": self.activity}
        if self.min != 1:
            out["min"] = self.min
        if self.within_days is not None:
            out["within_days"] = self.within_days
        if self.after is not None:
            out["after"] = self.after
        return out


@dataclass(frozen=True)
class Stage:
    """One stage of the process map.

    Parameters
    ----------
    name : str
        Canonical stage name, as reports show it.
    kind : {"open", "won", "lost"}
        Open stages are ordered; won and lost are terminal.
    probability : float
        The CRM's default probability of winning from this stage, in [0, 1].
    forecast_category : str
        One of `FORECAST_CATEGORIES`.
    aliases : tuple of str
        Other names the CRM may use for this stage.
    max_days : float or None
        Optional stall limit: days in stage beyond which a deal counts as stalled.
    exit_criteria : tuple of ExitCriterion
        What a deal should have done before it leaves this (open) stage.
    """

    name: str
    kind: StageKind = "open"
    probability: float = 0.0
    forecast_category: str = "pipeline"
    aliases: tuple[str, ...] = ()
    max_days: float | None = None
    exit_criteria: tuple[ExitCriterion, ...] = ()


@dataclass(frozen=True)
class FiscalCalendar:
    """Fiscal months, quarters and years for a fiscal year starting in `start_month`.

    Parameters
    ----------
    start_month : int
        Calendar month (1-12) in which the fiscal year starts.
    naming : {"end", "start"}
        A fiscal year is named after the calendar year in which it ends (``"end"``, Salesforce's default)
        or starts. Irrelevant when ``start_month == 1``.

    Notes
    -----
    Month periods are labelled by calendar month (``2024-07``); quarters ``FY2024Q3``; years ``FY2024``.

    Examples
    --------
    >>> cal = FiscalCalendar(start_month=2)
    >>> cal.period(pd.Series(pd.to_datetime(["2024-01-31", "2024-02-01"])), "quarter").tolist()
    ['FY2024Q4', 'FY2025Q1']
    """

    start_month: int = 1
    naming: Literal["end", "start"] = "end"

    def __post_init__(self) -> None:
        try:
            _start_month(self.start_month)
        except ValueError as exc:
            raise ProcessError(f"fiscal_year_start_month {exc}") from None
        if self.naming not in ("end", "start"):
            raise ProcessError(f"fiscal_year_naming must be 'end' or 'start', got {self.naming!r}")

    def _fiscal_parts(self, dates: pd.Series | pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """Return (fiscal year number, fiscal month 1-12) for each date; NaT gives -1."""
        idx = pd.DatetimeIndex(dates)
        mask = idx.isna()
        year = np.where(mask, 0, idx.year).astype(np.int64)
        month = np.where(mask, 1, idx.month).astype(np.int64)
        shifted = year * 12 + (month - 1) - (self.start_month - 1)
        start_year = shifted // 12
        fiscal_month = shifted % 12 + 1
        fy = start_year + (1 if (self.naming == "end" and self.start_month != 1) else 0)
        fy = np.where(mask, -1, fy)
        return fy, np.where(mask, -1, fiscal_month)

    def fiscal_year(self, dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        """Fiscal year number of each date (-1 for NaT)."""
        return self._fiscal_parts(dates)[0]

    def fiscal_quarter(self, dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        """Fiscal quarter (1-4) of each date (-1 for NaT)."""
        fm = self._fiscal_parts(dates)[1]
        return np.where(fm < 0, -1, (fm - 1) // 3 + 1)

    def period(self, dates: pd.Series | pd.DatetimeIndex | Iterable, freq: Freq = "quarter") -> pd.Series:
        """Label each date with its fiscal period.

        Parameters
        ----------
        dates : array-like of datetime
        freq : {"month", "quarter", "year"}

        Returns
        -------
        pandas.Series of str
            ``2024-07`` for months, ``FY2024Q3`` for quarters, ``FY2024`` for years; missing for NaT.
        """
        if not isinstance(dates, (pd.Series, pd.DatetimeIndex)):
            dates = pd.to_datetime(pd.Series(list(dates)))
        index = dates.index if isinstance(dates, pd.Series) else None
        idx = pd.DatetimeIndex(dates)
        mask = np.asarray(idx.isna())
        if freq == "month":
            labels = pd.Series(idx.strftime("%Y-%m"), index=index, dtype="str")
        elif freq in ("quarter", "year"):
            fy, fm = self._fiscal_parts(idx)
            fy_str = pd.Series(fy.astype(str), dtype="str")
            if freq == "year":
                labels = "FY" + fy_str
            else:
                q = pd.Series(((fm - 1) // 3 + 1).astype(str), dtype="str")
                labels = "FY" + fy_str + "Q" + q
            labels.index = index if index is not None else labels.index
        else:
            raise ValueError(f"freq must be 'month', 'quarter' or 'year', got {freq!r}")
        return labels.mask(pd.Series(mask, index=labels.index))

    def period_bounds(self, label: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Return ``(start, end)`` of a period label, end exclusive (the start of the next period).

        Examples
        --------
        >>> FiscalCalendar(start_month=2).period_bounds("FY2025Q1")
        (Timestamp('2024-02-01 00:00:00'), Timestamp('2024-05-01 00:00:00'))
        """
        text = str(label).strip()
        m = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if m:
            start = pd.Timestamp(year=int(m.group(1)), month=int(m.group(2)), day=1)
            return start, start + pd.DateOffset(months=1)
        m = re.fullmatch(r"FY(\d{4})(?:Q([1-4]))?", text, flags=re.IGNORECASE)
        if not m:
            raise ValueError(
                f"period {label!r} is not a fiscal period label; expected 'YYYY-MM', 'FYyyyy' or 'FYyyyyQn'"
            )
        fy = int(m.group(1))
        start_year = fy - (1 if (self.naming == "end" and self.start_month != 1) else 0)
        start = pd.Timestamp(year=start_year, month=self.start_month, day=1)
        if m.group(2) is None:
            return start, start + pd.DateOffset(years=1)
        q = int(m.group(2))
        qstart = start + pd.DateOffset(months=3 * (q - 1))
        return qstart, qstart + pd.DateOffset(months=3)

    def resolve(self, period: str, as_of: Any, freq: Freq = "quarter") -> str:
        """A period parameter as a label: ``"current"`` (or ``"latest"``) is the period containing `as_of`.

        Examples
        --------
        >>> FiscalCalendar().resolve("current", "2024-08-15")
        'FY2024Q3'
        >>> FiscalCalendar().resolve("fy2024q1", "2024-08-15")
        'FY2024Q1'
        """
        text = str(period).strip()
        if text.lower() in ("current", "latest", ""):
            return str(self.period(pd.DatetimeIndex([pd.Timestamp(as_of)]), freq).iloc[0])
        label = text.upper() if text.lower().startswith("fy") else text
        self.period_bounds(label)  # raises a clear error for a bad label
        return label

    def is_period(self, label: object) -> bool:
        """True when `label` is a valid period label (month, quarter or year)."""
        return re.fullmatch(PERIOD_PATTERN, str(label).strip().upper()) is not None

    def periods_between(self, start: Any, end: Any, freq: Freq = "quarter") -> list[str]:
        """All period labels overlapping ``[start, end]``, in order."""
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        months = pd.date_range(start.to_period("M").to_timestamp(), end, freq="MS")
        if len(months) == 0:
            months = pd.DatetimeIndex([start])
        return list(dict.fromkeys(self.period(months, freq).tolist()))


def fiscal_period(
    dates: Any, freq: Freq = "quarter", start_month: int = 1, naming: Literal["end", "start"] = "end"
) -> pd.Series:
    """Label dates with fiscal periods; a shortcut for ``FiscalCalendar(start_month, naming).period``.

    Examples
    --------
    >>> fiscal_period(pd.to_datetime(pd.Series(["2024-07-15"])), "quarter").tolist()
    ['FY2024Q3']
    >>> fiscal_period(pd.to_datetime(pd.Series(["2024-07-15"])), "quarter", start_month=7).tolist()
    ['FY2025Q1']
    """
    return FiscalCalendar(start_month, naming).period(dates, freq)


# ---------------------------------------------------------------------------------------------- the YAML file
def _start_month(value: Any) -> Any:
    """The fiscal year's start month as given, when it is a month number (1-12)."""
    if isinstance(value, str) or not isinstance(value, (int, np.integer)) or not 1 <= int(value) <= 12:
        raise ValueError(f"must be an integer from 1 to 12, got {value!r}")
    return value


#: Currency codes that reports show as a symbol before the amount (others show the code after it: ``1,234 CHF``).
CURRENCY_SYMBOLS: dict[str, str] = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹"}


def currency_code(value: Any) -> str | None:
    """A process map's ``currency:`` as an ISO 4217 code (three letters, upper-cased), or None when not given.

    Examples
    --------
    >>> currency_code("eur"), currency_code(None)
    ('EUR', None)
    >>> currency_code("euro")
    Traceback (most recent call last):
    ...
    ValueError: must be an ISO 4217 currency code of three letters such as EUR or USD, got 'euro'
    """
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        shown = repr(value) if isinstance(value, str) and len(value) <= 20 else type(value).__name__
        raise ValueError(f"must be an ISO 4217 currency code of three letters such as EUR or USD, got {shown}")
    return value.strip().upper()


def _probability(value: Any) -> Any:
    """A stage's probability as given, when it is a number in [0, 1]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"must be a number from 0 to 1 (write 0.1 for 10%), got {value!r}")
    return value


def _max_days(value: Any) -> Any:
    """A stage's stall limit as given, when it is None or a positive number of days."""
    if value is not None and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"must be a positive number of days, got {value!r}")
    return value


def _not_a_category(value: object) -> str:
    return f"{value!r} is not one of {FORECAST_CATEGORIES}"


def _category(value: Any) -> str | None:
    """A forecast-category label in any spelling `normalize_forecast_category` knows, as its canonical name."""
    if value is None:
        return None
    category = normalize_forecast_category(value)
    if category is None:
        raise ValueError(_not_a_category(value))
    return category


def _aliases(value: Any) -> tuple[str, ...]:
    """Stage aliases: one name or a list of names (numbers are taken as text); nothing is none."""
    value = value or ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value
    ):
        raise ValueError(f"must be a list of names, got {value!r}")
    return tuple(str(a) for a in value)


#: Probability and forecast category of a stage that gives none, by kind.
_KIND_DEFAULTS: dict[str, tuple[float, str]] = {
    "open": (0.0, "pipeline"),
    "won": (1.0, "closed"),
    "lost": (0.0, "omitted"),
}


def _activity_type(value: Any) -> str:
    """An activity type as a `normalize_activity_type` key."""
    if isinstance(value, bool) or not isinstance(value, str) or not normalize_activity_type(value):
        raise ValueError(f"must be an activity type (call, meeting, email, task or your own), got {value!r}")
    return normalize_activity_type(value)


def _min_count(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number of activities, 1 or more, got {value!r}")
    return value


def _days(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        raise ValueError(f"must be a positive number of days, got {value!r}")
    return value


class CriterionEntry(Schema):
    """One entry of a stage's ``exit_criteria:``: an activity (with a count or a deadline) or a field to fill."""

    activity: checked(_activity_type, {"type": "string"}) | None = None
    min: checked(_min_count, {"type": "integer", "minimum": 1}) = 1
    within_days: checked(_days, {"type": "number", "exclusiveMinimum": 0}) | None = None
    after: checked(_activity_type, {"type": "string"}) | None = None
    field: checked(text_of("a field name"), {"type": "string"}) | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CriterionEntry:
        if (self.activity is None) == (self.field is None):
            raise ValueError("give either activity: (a type of activity) or field: (a field to fill), not both")
        if self.field is not None and (self.within_days is not None or self.after is not None or self.min != 1):
            raise ValueError("min, within_days and after apply to an activity, not to a field")
        if self.after is not None and self.within_days is None:
            raise ValueError("after: needs within_days: (how many days after it)")
        return self


def _aliases_of_type(key: str, value: Any) -> tuple[str, ...]:
    return tuple(normalize_activity_type(a) for a in _aliases(value))


class StageEntry(Schema):
    """One entry of ``stages:``: a mapping with at least a name (or just the name, for an open stage)."""

    unknown_keys = "all"

    name: checked(text_of("a stage name", strip=False), {"type": ["string", "number"]})
    kind: StageKind = "open"
    probability: checked(_probability, {"type": "number", "minimum": 0, "maximum": 1}) | None = Field(
        None, description="default: 1 for a won stage, else 0"
    )
    forecast_category: checked(_category, {"type": "string"}) | None = Field(
        None, description=f"one of {', '.join(FORECAST_CATEGORIES)}; default: closed (won), omitted (lost), pipeline"
    )
    aliases: checked(_aliases, {"type": ["array", "string"], "items": {"type": "string"}}) = ()
    max_days: checked(_max_days, {"type": "number", "exclusiveMinimum": 0}) | None = None
    exit_criteria: list[CriterionEntry] = Field(
        default_factory=list, description="what a deal should have done before it leaves the stage"
    )


class ProcessFile(Schema):
    """The process map YAML file (see `SalesProcess.from_yaml`); `model_json_schema()` describes it for editors.

    The rules between stages (open stages first, a won and a lost stage, unique names and aliases) are
    `SalesProcess`'s own: they hold for every process, also one built in Python.

    Examples
    --------
    >>> from salesforecast.config import load_model
    >>> stages = ["Lead", {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]
    >>> spec = load_model(ProcessFile, {"stages": stages})
    >>> spec.name, [(s.name, s.kind) for s in spec.stages], spec.fiscal_year_start_month
    ('sales process', [('Lead', 'open'), ('Won', 'won'), ('Lost', 'lost')], 1)
    >>> str(load_model(ProcessFile, {"stages": ["Lead"], "fiscal_year_naming": "middle"}))
    "fiscal_year_naming: must be 'end' or 'start', got 'middle'"
    """

    unknown_keys = "all"

    name: checked(text_of("a name", strip=False), {"type": "string"}) = "sales process"
    stages: list[StageEntry] = Field(min_length=1)
    fiscal_year_start_month: checked(_start_month, {"type": "integer", "minimum": 1, "maximum": 12}) = 1
    fiscal_year_naming: Literal["end", "start"] = "end"
    currency: checked(currency_code, {"type": "string", "pattern": "^[A-Za-z]{3}$"}) | None = Field(
        None, description="ISO 4217 code of the amounts (EUR, USD...), shown in the reports; default: none shown"
    )
    activity_types: checked(
        mapping_of(_aliases_of_type, " of activity types to the names your CRM gives them"), {"type": "object"}
    ) = Field(default_factory=dict, description="activity type: [the CRM's names for it]")

    @field_validator("stages", mode="before")
    @classmethod
    def _names_are_stages(cls, value: Any) -> Any:
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


def _stage_label(item: Any) -> str | None:
    """A stages entry as key paths show it: ``stages[1] ('Demo')``."""
    return repr(str(item["name"])) if isinstance(item, Mapping) and "name" in item else None


_SALESFORCE_DEFAULT = [
    ("Prospecting", 0.10),
    ("Qualification", 0.10),
    ("Needs Analysis", 0.20),
    ("Value Proposition", 0.50),
    ("Id. Decision Makers", 0.60),
    ("Perception Analysis", 0.70),
    ("Proposal/Price Quote", 0.75),
    ("Negotiation/Review", 0.90),
]


@dataclass(frozen=True)
class SalesProcess:
    """The sales process map: ordered open stages, terminal stages and the fiscal calendar.

    Parameters
    ----------
    stages : sequence of Stage
        Open stages in process order, then terminal stages (at least one won and one lost).
    name : str
        A label for reports.
    calendar : FiscalCalendar
        The organisation's fiscal calendar.
    currency : str or None
        ISO 4217 code of the amounts (``EUR``), shown in the reports' amount columns; None shows no currency.
    activity_types : mapping of str to sequence of str
        The organisation's names of each activity type (``{"follow_up": ["Thank-you letter"]}``): activities
        are read with the type they map to (`canonical_activity_type`). Types are `normalize_activity_type` keys.

    Examples
    --------
    >>> p = SalesProcess.default()
    >>> p.open_stages[:2]
    ['Prospecting', 'Qualification']
    >>> p.canonical_stage("  closed won ")
    'Closed Won'
    >>> float(p.probability["Negotiation/Review"])
    0.9
    """

    stages: tuple[Stage, ...]
    name: str = "sales process"
    calendar: FiscalCalendar = field(default_factory=FiscalCalendar)
    currency: str | None = None
    activity_types: Mapping[str, tuple[str, ...]] | tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        self._check_activity_types()
        try:
            object.__setattr__(self, "currency", currency_code(self.currency))
        except ValueError as exc:
            raise ProcessError(f"currency: {exc}") from None
        if not any(s.kind == "open" for s in stages):
            raise ProcessError("stages: the process needs at least one open stage")
        if not any(s.kind == "won" for s in stages):
            raise ProcessError("stages: the process needs a won stage (kind: won)")
        if not any(s.kind == "lost" for s in stages):
            raise ProcessError("stages: the process needs a lost stage (kind: lost)")
        lookup: dict[str, str] = {}
        for i, s in enumerate(stages):
            where = f"stages[{i}] ({s.name!r})"
            if not str(s.name).strip():
                raise ProcessError(f"stages[{i}].name: a stage needs a non-empty name")
            if s.kind not in ("open", "won", "lost"):
                raise ProcessError(f"{where}.kind: must be 'open', 'won' or 'lost', got {s.kind!r}")
            for key, rule in (("probability", _probability), ("max_days", _max_days)):
                try:
                    rule(getattr(s, key))
                except ValueError as exc:
                    raise ProcessError(f"{where}.{key}: {exc}") from None
            if s.forecast_category not in FORECAST_CATEGORIES:
                raise ProcessError(f"{where}.forecast_category: {_not_a_category(s.forecast_category)}")
            for alias in (s.name, *s.aliases):
                key = normalize_name(alias)
                if key in lookup and lookup[key] != s.name:
                    raise ProcessError(
                        f"{where}.aliases: {alias!r} already names stage {lookup[key]!r}; each name must be unique"
                    )
                lookup[key] = s.name
            if s.exit_criteria and s.kind != "open":
                raise ProcessError(f"{where}.exit_criteria: only an open stage has exit criteria (a deal leaves it)")
            for j, c in enumerate(s.exit_criteria):
                if not isinstance(c, ExitCriterion) or (c.activity is None) == (c.field is None):
                    raise ProcessError(f"{where}.exit_criteria[{j}]: give either an activity or a field, got {c!r}")
        object.__setattr__(self, "_lookup", lookup)
        kinds = [s.kind for s in stages]
        first_terminal = next(i for i, k in enumerate(kinds) if k != "open")
        if "open" in kinds[first_terminal:]:
            raise ProcessError("stages: list the open stages first, in process order, then the won and lost stages")

    def _check_activity_types(self) -> None:
        """Store `activity_types` as sorted ``(type, aliases)`` pairs and build the alias lookup."""
        given = self.activity_types
        pairs = given.items() if isinstance(given, Mapping) else given
        types: dict[str, tuple[str, ...]] = {}
        lookup: dict[str, str] = {}
        for name, aliases in pairs:
            key = normalize_activity_type(name)
            if not key:
                raise ProcessError(f"activity_types: {name!r} is not a name of an activity type")
            aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)
            types[key] = tuple(normalize_activity_type(a) for a in aliases)
            for alias in (key, *types[key]):
                if lookup.get(alias, key) != key:
                    raise ProcessError(
                        f"activity_types.{key}: {alias!r} already names the type {lookup[alias]!r}; each name must "
                        "be unique"
                    )
                lookup[alias] = key
        object.__setattr__(self, "activity_types", tuple(sorted(types.items())))
        object.__setattr__(self, "_activity_lookup", lookup)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def default(cls) -> SalesProcess:
        """Salesforce's standard opportunity stages, probabilities and forecast categories.

        Prospecting 10%, Qualification 10%, Needs Analysis 20%, Value Proposition 50%, Id. Decision Makers 60%,
        Perception Analysis 70%, Proposal/Price Quote 75%, Negotiation/Review 90% (all in the Pipeline
        category), Closed Won 100% (Closed), Closed Lost 0% (Omitted). Calendar fiscal year.
        """
        stages = [Stage(n, "open", p, "pipeline") for n, p in _SALESFORCE_DEFAULT]
        stages.append(Stage("Closed Won", "won", 1.0, "closed", aliases=("Won",)))
        stages.append(Stage("Closed Lost", "lost", 0.0, "omitted", aliases=("Lost",)))
        return cls(tuple(stages), name="Salesforce standard")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], source: str = "process") -> SalesProcess:
        """Build a process from a mapping shaped like the YAML file (see `from_yaml`)."""
        model = load_model(ProcessFile, spec, label=_stage_label)
        if isinstance(model, Problem):
            raise ProcessError(f"{source}: {model}")
        stages = tuple(
            Stage(
                name=s.name,
                kind=s.kind,
                probability=_KIND_DEFAULTS[s.kind][0] if s.probability is None else s.probability,
                forecast_category=s.forecast_category or _KIND_DEFAULTS[s.kind][1],
                aliases=s.aliases,
                max_days=s.max_days,
                exit_criteria=tuple(
                    ExitCriterion(c.activity, c.min, c.within_days, c.after, c.field) for c in s.exit_criteria
                ),
            )
            for s in model.stages
        )
        calendar = FiscalCalendar(model.fiscal_year_start_month, model.fiscal_year_naming)
        return cls(
            stages,
            name=model.name,
            calendar=calendar,
            currency=model.currency,
            activity_types=model.activity_types,
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> SalesProcess:
        """Load a process map from YAML.

        The file looks like::

            name: Acme sales process
            fiscal_year_start_month: 2      # February
            fiscal_year_naming: end         # FY2025 ends in January 2025
            currency: EUR                   # optional: the amounts' ISO 4217 code, shown in the reports
            stages:
              - {name: Discovery, probability: 0.1, aliases: [Disco, Prospecting]}
              - {name: Demo, probability: 0.3, max_days: 30}
              - {name: Proposal, probability: 0.6, forecast_category: best_case}
              - {name: Negotiation, probability: 0.8, forecast_category: commit}
              - {name: Closed Won, kind: won}
              - {name: Closed Lost, kind: lost}

        Open stages come first, in process order. Probabilities are fractions in [0, 1].
        """
        path = Path(path)
        spec, problem = read_yaml(path, "process file")
        if problem is not None:
            raise ProcessError(f"{path}: {problem}")
        try:
            return cls.from_dict(spec, source=str(path))
        except ProcessError as exc:
            msg = str(exc)
            raise ProcessError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None

    @staticmethod
    def is_default(process: SalesProcess | str | Path | None) -> bool:
        """True when `process` asks for the default process map: None or ``"default"`` (see `resolve`).

        Examples
        --------
        >>> SalesProcess.is_default(None), SalesProcess.is_default("default"), SalesProcess.is_default("acme.yml")
        (True, True, False)
        """
        return process is None or (not isinstance(process, SalesProcess) and str(process).strip().lower() == "default")

    @classmethod
    def resolve(cls, process: SalesProcess | str | Path | None) -> SalesProcess:
        """Accept a process, a YAML path, ``"salesforce"``, ``"default"`` or ``None`` and return a process.

        What the default process map is, everywhere (the loaders, ``load``, the notebooks' ``process`` parameter,
        the command line's ``--process``, `load_sample`, `generate`): ``None`` and ``"default"`` are the same and
        mean **the data's own process map when the source carries one, else Salesforce's standard stages**. The
        data's own map is the ``process.yml`` beside a canonical folder (the bundled sample has one), the
        ``OpportunityStage.csv`` (and ``Organization.csv`` calendar) of a Salesforce export, HubSpot's default
        pipeline for a HubSpot export, and the ``process:`` of a mapping file. Here, without a source, the default
        is Salesforce's standard stages (`default`), and ``"salesforce"`` asks for them whatever the source.

        Parameters
        ----------
        process : SalesProcess, path of a process YAML, "salesforce", "default" or None

        Returns
        -------
        SalesProcess

        Examples
        --------
        >>> SalesProcess.resolve(None) == SalesProcess.resolve("default") == SalesProcess.default()
        True
        """
        if isinstance(process, SalesProcess):
            return process
        if cls.is_default(process) or str(process).strip().lower() == "salesforce":
            return cls.default()
        return cls.from_yaml(process)

    def to_dict(self) -> dict[str, Any]:
        """The YAML-shaped mapping of this process (inverse of `from_dict`)."""
        out = []
        for s in self.stages:
            d: dict[str, Any] = {"name": s.name, "kind": s.kind, "probability": float(s.probability)}
            d["forecast_category"] = s.forecast_category
            if s.aliases:
                d["aliases"] = list(s.aliases)
            if s.max_days is not None:
                d["max_days"] = s.max_days
            if s.exit_criteria:
                d["exit_criteria"] = [c.to_dict() for c in s.exit_criteria]
            out.append(d)
        return {
            "name": self.name,
            "fiscal_year_start_month": int(self.calendar.start_month),
            "fiscal_year_naming": self.calendar.naming,
            **({"currency": self.currency} if self.currency else {}),
            **({"activity_types": {k: list(v) for k, v in self.activity_types}} if self.activity_types else {}),
            "stages": out,
        }

    def to_yaml(self, path: str | Path) -> Path:
        """Write the process to a YAML file and return its path."""
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ views
    @property
    def stage_names(self) -> list[str]:
        """All stage names: open stages in order, then terminal stages."""
        return [s.name for s in self.stages]

    @property
    def open_stages(self) -> list[str]:
        """Open stages in process order."""
        return [s.name for s in self.stages if s.kind == "open"]

    @property
    def won_stages(self) -> list[str]:
        """Terminal won stages."""
        return [s.name for s in self.stages if s.kind == "won"]

    @property
    def lost_stages(self) -> list[str]:
        """Terminal lost stages."""
        return [s.name for s in self.stages if s.kind == "lost"]

    @property
    def won_stage(self) -> str:
        """The (first) won stage."""
        return self.won_stages[0]

    @property
    def lost_stage(self) -> str:
        """The (first) lost stage."""
        return self.lost_stages[0]

    @property
    def closed_stages(self) -> list[str]:
        """Won and lost stages."""
        return [s.name for s in self.stages if s.kind != "open"]

    @property
    def probability(self) -> pd.Series:
        """CRM default probability per stage (Series indexed by stage name)."""
        return pd.Series({s.name: float(s.probability) for s in self.stages}, name="probability")

    @property
    def forecast_category(self) -> pd.Series:
        """Default forecast category per stage."""
        return pd.Series({s.name: s.forecast_category for s in self.stages}, name="forecast_category", dtype="str")

    @property
    def order(self) -> pd.Series:
        """Position of each stage: 0..n-1 for open stages, n for won, n+1.. for lost."""
        return pd.Series({name: i for i, name in enumerate(self.stage_names)}, name="order")

    def stage(self, name: str) -> Stage:
        """The `Stage` named `name` (or one of its aliases)."""
        canonical = self.canonical_stage(name)
        if canonical is None:
            raise KeyError(f"unknown stage {name!r}; known stages: {self.stage_names}")
        return next(s for s in self.stages if s.name == canonical)

    def canonical_stage(self, name: object) -> str | None:
        """Canonical name of a stage name or alias (case- and whitespace-insensitive); None when unknown."""
        if name is None or (isinstance(name, float) and np.isnan(name)) or name is pd.NA:
            return None
        return self._lookup.get(normalize_name(name))  # type: ignore[attr-defined]

    @property
    def exit_criteria(self) -> dict[str, tuple[ExitCriterion, ...]]:
        """The exit criteria of each open stage that has some, in process order."""
        return {s.name: s.exit_criteria for s in self.stages if s.exit_criteria}

    def canonical_activity_type(self, name: object) -> str | None:
        """The activity type a CRM's name stands for: its `activity_types` entry, else the name's own key.

        None for a missing or empty name.

        Examples
        --------
        >>> p = SalesProcess.from_dict({"stages": ["Lead", {"name": "Won", "kind": "won"},
        ...     {"name": "Lost", "kind": "lost"}], "activity_types": {"follow_up": ["Thank-you letter"]}})
        >>> p.canonical_activity_type("Thank-you Letter"), p.canonical_activity_type("Call")
        ('follow_up', 'call')
        """
        if name is None or (isinstance(name, float) and np.isnan(name)) or name is pd.NA:
            return None
        key = normalize_activity_type(name)
        return self._activity_lookup.get(key, key) or None  # type: ignore[attr-defined]

    def map_activity_types(self, values: pd.Series) -> pd.Series:
        """`canonical_activity_type` of each value, computed once per distinct value (``str`` dtype)."""
        uniques = pd.unique(values.dropna())
        return values.map({u: self.canonical_activity_type(u) for u in uniques}).astype("str")

    def stage_codes(self, values: pd.Series) -> np.ndarray:
        """Position of each stage in `stage_names` (aliases mapped; -1 unknown or missing), once per distinct value.

        Examples
        --------
        >>> SalesProcess.resolve("default").stage_codes(pd.Series(["Prospecting", None, "nope"])).tolist()
        [0, -1, -1]
        """
        codes, uniques = pd.factorize(values)
        known = pd.Index(self.stage_names).get_indexer(self.map_stages(pd.Series(uniques, dtype="str")))
        return np.append(known, -1).astype(np.int64)[codes]  # code -1 (missing) takes the appended -1

    def map_stages(self, values: pd.Series) -> pd.Series:
        """Map a Series of CRM stage names to canonical names (missing where unknown), vectorised per unique value."""
        uniques = pd.unique(values.dropna())
        mapping = {u: self.canonical_stage(u) for u in uniques}
        return values.map(mapping).astype("str")

    def is_open(self, stages: pd.Series) -> pd.Series:
        """Boolean Series: stage is an open stage."""
        return stages.isin(self.open_stages)

    def is_won(self, stages: pd.Series) -> pd.Series:
        """Boolean Series: stage is a won stage."""
        return stages.isin(self.won_stages)

    def is_closed(self, stages: pd.Series) -> pd.Series:
        """Boolean Series: stage is a terminal stage."""
        return stages.isin(self.closed_stages)

    def summary(self) -> pd.DataFrame:
        """One row per stage: order, kind, default probability, forecast category, aliases, stall limit."""
        return pd.DataFrame(
            {
                "stage": [s.name for s in self.stages],
                "kind": [s.kind for s in self.stages],
                "probability": [float(s.probability) for s in self.stages],
                "forecast_category": [s.forecast_category for s in self.stages],
                "aliases": [", ".join(s.aliases) for s in self.stages],
                "max_days": [s.max_days for s in self.stages],
                "exit_criteria": ["; ".join(c.describe() for c in s.exit_criteria) for s in self.stages],
            }
        )
