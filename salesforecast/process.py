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

__all__ = [
    "FORECAST_CATEGORIES",
    "PERIOD_PATTERN",
    "FiscalCalendar",
    "ProcessError",
    "SalesProcess",
    "Stage",
    "fiscal_period",
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
    """

    name: str
    kind: StageKind = "open"
    probability: float = 0.0
    forecast_category: str = "pipeline"
    aliases: tuple[str, ...] = ()
    max_days: float | None = None


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
        if not isinstance(self.start_month, (int, np.integer)) or not 1 <= int(self.start_month) <= 12:
            raise ProcessError(f"fiscal_year_start_month must be an integer from 1 to 12, got {self.start_month!r}")
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

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
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
            p = s.probability
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= float(p) <= 1.0:
                raise ProcessError(f"{where}.probability: must be a number from 0 to 1 (write 0.1 for 10%), got {p!r}")
            if s.forecast_category not in FORECAST_CATEGORIES:
                raise ProcessError(
                    f"{where}.forecast_category: {s.forecast_category!r} is not one of {FORECAST_CATEGORIES}"
                )
            if s.max_days is not None and not (isinstance(s.max_days, (int, float)) and s.max_days > 0):
                raise ProcessError(f"{where}.max_days: must be a positive number of days, got {s.max_days!r}")
            for alias in (s.name, *s.aliases):
                key = normalize_name(alias)
                if key in lookup and lookup[key] != s.name:
                    raise ProcessError(
                        f"{where}.aliases: {alias!r} already names stage {lookup[key]!r}; each name must be unique"
                    )
                lookup[key] = s.name
        object.__setattr__(self, "_lookup", lookup)
        kinds = [s.kind for s in stages]
        first_terminal = next(i for i, k in enumerate(kinds) if k != "open")
        if "open" in kinds[first_terminal:]:
            raise ProcessError("stages: list the open stages first, in process order, then the won and lost stages")

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
        if not isinstance(spec, Mapping):
            raise ProcessError(f"{source}: expected a mapping with a 'stages' list, got {type(spec).__name__}")
        known = {"name", "stages", "fiscal_year_start_month", "fiscal_year_naming"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ProcessError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(known)}")
        raw_stages = spec.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise ProcessError(f"{source}: 'stages' must be a non-empty list of stages")
        stage_keys = {"name", "kind", "probability", "forecast_category", "aliases", "max_days"}
        stages = []
        for i, raw in enumerate(raw_stages):
            if isinstance(raw, str):
                raw = {"name": raw}
            if not isinstance(raw, Mapping) or "name" not in raw:
                raise ProcessError(f"{source}: stages[{i}] must be a mapping with at least a 'name'")
            if not isinstance(raw["name"], (str, int, float)) or isinstance(raw["name"], bool):
                raise ProcessError(f"{source}: stages[{i}].name must be a text, got {raw['name']!r}")
            bad = sorted(set(raw) - stage_keys)
            if bad:
                raise ProcessError(f"{source}: stages[{i}] ({raw['name']!r}) has unknown key(s) {bad}")
            kind = raw.get("kind", "open")
            if not isinstance(kind, str) or kind not in ("open", "won", "lost"):
                raise ProcessError(
                    f"{source}: stages[{i}] ({raw['name']!r}).kind: must be 'open', 'won' or 'lost', got {kind!r}"
                )
            default_p = {"won": 1.0, "lost": 0.0}.get(kind, 0.0)
            default_cat = {"won": "closed", "lost": "omitted"}.get(kind, "pipeline")
            cat_raw = raw.get("forecast_category", default_cat)
            cat = normalize_forecast_category(cat_raw)
            if cat is None:
                raise ProcessError(
                    f"{source}: stages[{i}] ({raw['name']!r}).forecast_category: {cat_raw!r} is not one of "
                    f"{FORECAST_CATEGORIES}"
                )
            aliases = raw.get("aliases", ()) or ()
            if isinstance(aliases, str):
                aliases = (aliases,)
            if not isinstance(aliases, (list, tuple)) or not all(isinstance(a, (str, int, float)) for a in aliases):
                raise ProcessError(
                    f"{source}: stages[{i}] ({raw['name']!r}).aliases: must be a list of names, got {aliases!r}"
                )
            stages.append(
                Stage(
                    name=str(raw["name"]),
                    kind=kind,
                    probability=raw.get("probability", default_p),
                    forecast_category=cat,
                    aliases=tuple(str(a) for a in aliases),
                    max_days=raw.get("max_days"),
                )
            )
        calendar = FiscalCalendar(spec.get("fiscal_year_start_month", 1), spec.get("fiscal_year_naming", "end"))
        return cls(tuple(stages), name=str(spec.get("name", "sales process")), calendar=calendar)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SalesProcess:
        """Load a process map from YAML.

        The file looks like::

            name: Acme sales process
            fiscal_year_start_month: 2      # February
            fiscal_year_naming: end         # FY2025 ends in January 2025
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
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProcessError(f"{path}: process file not found") from None
        except IsADirectoryError:
            raise ProcessError(f"{path}: is a folder; expected a process map YAML file") from None
        except UnicodeDecodeError as exc:
            raise ProcessError(f"{path}: bytes at offset {exc.start} are not UTF-8; save the file as UTF-8") from None
        except yaml.YAMLError as exc:
            raise ProcessError(f"{path}: not valid YAML ({exc})") from None
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
            out.append(d)
        return {
            "name": self.name,
            "fiscal_year_start_month": int(self.calendar.start_month),
            "fiscal_year_naming": self.calendar.naming,
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
            }
        )
