"""Leads as a modelling problem, known at a date: which leads have an outcome, which are still open.

A lead's outcome is *known* at ``as_of`` once it has had `maturity_days` to convert (most conversions happen
within weeks; the bundled sample's conversion delay is capped at 180 days): it converted by ``as_of`` or it did
not. Younger leads are left out of training either way: counting the unconverted ones as failures would bias a
model toward "no", and keeping only the young ones that already converted would bias it toward "yes". The
young unconverted leads are the *open* ones a rep should prioritise; young converted leads need no score.

With an ``activities`` table naming leads, each lead also gets what was done on it by its *cutoff*, the end of its
first ``activity_days`` (3 by default: the first-response window), or ``as_of`` when that comes first (a lead
younger than that): ``activities`` so far, ``first_response_hours`` (hours from creation to the first activity;
censored at the cutoff, with ``responded`` 0, when none came by then) and ``days_since_activity``
(`salesforecast.models.activity_features.lead_activity_features`). An activity after the cutoff is never seen, so
the features of a lead are the same whenever it is scored once it is ``activity_days`` old, and the same with or
without the activities recorded later. Without activities on leads these columns are absent and the tables are as
they were. (An activity logged on a lead after its conversion inside the window would be seen: CRMs usually move
such activities to the contact and the deal, and a short window keeps it rare.)
"""

from __future__ import annotations

import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesforecast._utils import isin
from salesforecast.models.activity_features import LEAD_ACTIVITY_FEATURES, lead_activity_features
from salesforecast.models.lead_scoring import WeakModelWarning, auc_interval
from salesforecast.schema import CRMData
from salesforecast.session import ReportNeeds

__all__ = [
    "ACTIVITY_DAYS",
    "LEAD_OUTCOME_COLUMNS",
    "MIN_HOLDOUT_CONVERSIONS",
    "MIN_TRAIN_CONVERSIONS",
    "HoldoutCheck",
    "SplitAdvice",
    "LeadDataset",
    "check_holdout",
    "lead_dataset",
    "lead_holdout",
    "model_notes",
    "rank_leads",
    "suggest_split",
    "tier_table",
]

#: Fewer training conversions than this and a score is not worth judging: the usual rule of thumb for a logistic
#: model is ten outcomes of the rarer class per estimated parameter (Peduzzi et al., J Clin Epidemiol 1996), and
#: lead data's few columns (a source with several levels, a size, an engagement score) already hold about three.
MIN_TRAIN_CONVERSIONS = 30
#: Fewer holdout conversions than this and the holdout cannot tell a score from chance: with 20 conversions the
#: standard error of an AUC near 0.7 is about 0.065 (Hanley & McNeil 1982), so only an AUC above about 0.63 is
#: distinguishable from 0.5, and below it DeLong's normal approximation itself becomes unreliable.
MIN_HOLDOUT_CONVERSIONS = 20

#: Days after a lead's creation at which its activity features are read (its cutoff): the first-response window.
ACTIVITY_DAYS = 3.0

#: Columns that are ids or describe the outcome: never features.
LEAD_OUTCOME_COLUMNS: tuple[str, ...] = ("lead_id", "converted", "converted_at", "opportunity_id")


@dataclass(frozen=True)
class LeadDataset:
    """Leads split by what is known at `as_of`.

    Attributes
    ----------
    X : pandas.DataFrame
        Features of the matured leads (created at least `maturity_days` before `as_of`; index: lead_id),
        including ``created_at`` for time-ordered validation, and the activity features when the data have
        activities on leads (see this module's docstring).
    y : pandas.Series
        1 when the lead converted by `as_of`.
    open : pandas.DataFrame
        Features of the open leads (younger than `maturity_days`, not converted by `as_of`).
    young_converted : int
        Young leads that already converted: in neither table.
    as_of : pandas.Timestamp
    maturity_days : int
    """

    X: pd.DataFrame
    y: pd.Series
    open: pd.DataFrame
    as_of: pd.Timestamp
    maturity_days: int
    young_converted: int

    def open_among(self, lead_ids: Any) -> pd.DataFrame:
        """The open leads whose id is among `lead_ids` (e.g. the leads of a team or rep), in `open`'s order.

        Examples
        --------
        >>> from salesforecast.datasets import load_sample
        >>> ds = lead_dataset(load_sample(), "2025-06-30")
        >>> len(ds.open_among(ds.open.index[:3])), len(ds.open_among([]))
        (3, 0)
        """
        keep = isin(pd.Series(self.open.index.array), lead_ids).to_numpy()
        return self.open[keep]


def lead_dataset(
    data: CRMData, as_of: Any = None, maturity_days: int = 180, activity_days: float = ACTIVITY_DAYS
) -> LeadDataset:
    """Features and known outcomes of the leads at `as_of`, and the open leads to rank.

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        Default: the data's as-of. Leads created later do not exist yet; conversions later have not happened.
    maturity_days : int
        An unconverted lead older than this has a known outcome (not converted).
    activity_days : float
        With activities on leads: the activity features are read at the end of the lead's first `activity_days`
        days (or at `as_of`, when earlier); see this module's docstring.

    Returns
    -------
    LeadDataset

    Raises
    ------
    ValueError
        When the data has no leads, or `activity_days` is not a positive number.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> ds = lead_dataset(load_sample(), "2025-06-30")
    >>> bool(ds.X["created_at"].max() <= pd.Timestamp("2025-06-30")), sorted(set(ds.y.tolist()))
    (True, [0, 1])
    """
    leads = data.leads
    if leads.empty:
        raise ValueError("the data has no leads table (leads.csv): lead scoring needs one")
    as_of = pd.Timestamp(data.as_of if as_of is None else as_of)
    leads = leads[leads["created_at"] <= as_of]
    converted = (leads["converted"] & (leads["converted_at"].isna() | (leads["converted_at"] <= as_of))).to_numpy()
    mature = (leads["created_at"] <= as_of - pd.Timedelta(days=maturity_days)).to_numpy()
    known = mature
    features = leads.drop(columns=[c for c in LEAD_OUTCOME_COLUMNS if c in leads.columns])
    cutoff = (leads["created_at"] + pd.Timedelta(days=_positive_days(activity_days))).clip(upper=as_of)
    acts = lead_activity_features(data.activities, leads, cutoff)
    for name in acts.columns:
        features[name] = acts[name].to_numpy()
    features.index = pd.Index(leads["lead_id"], name="lead_id")
    y = pd.Series(converted.astype("int64"), index=features.index, name="converted")
    return LeadDataset(
        X=features[known],
        y=y[known],
        open=features[~mature & ~converted],
        as_of=as_of,
        maturity_days=int(maturity_days),
        young_converted=int((~mature & converted).sum()),
    )


def _positive_days(days: Any) -> float:
    """`days` as a float, or a ValueError naming ``activity_days``."""
    number = isinstance(days, (int, float, np.integer, np.floating)) and not isinstance(days, bool)
    if not number or not 0 < days < np.inf:
        raise ValueError(f"activity_days must be a positive number of days, got {days!r}")
    return float(days)


def lead_holdout(
    data: CRMData,
    as_of: Any = None,
    maturity_days: int = 180,
    holdout_months: int = 6,
    activity_days: float = ACTIVITY_DAYS,
    now: LeadDataset | None = None,
) -> tuple[LeadDataset, pd.DataFrame, pd.Series]:
    """A time-honest split: train on what was known at the holdout start, test on the leads that matured after.

    The holdout starts `holdout_months` before the last lead that is mature at `as_of` was created, i.e. at
    ``start = as_of - maturity_days - holdout_months``. Training uses `lead_dataset` at ``start`` (the leads
    mature then, with the outcomes known then); the test set holds the leads mature at `as_of` but not at
    ``start``, with their outcomes known at `as_of`. No test lead's outcome is visible to training. The activity
    features of both sides are read at each lead's cutoff (`activity_days`, see `lead_dataset`).

    Parameters
    ----------
    data : CRMData
    as_of : date, optional
        Default: the data's as-of.
    maturity_days, activity_days : see `lead_dataset`
    holdout_months : int
        Months of lead creation dates in the holdout.
    now : LeadDataset, optional
        ``lead_dataset(data, as_of, maturity_days, activity_days)`` when the caller has it already (a report
        ranks the open leads with it): the holdout is taken from it instead of building it again. Its date and
        maturity must be those asked.

    Returns
    -------
    train : LeadDataset
        Known at the holdout start.
    X_test, y_test : DataFrame, Series
        The later leads and their outcomes.

    Raises
    ------
    salesforecast.session.ReportNeeds
        (a ValueError) When no lead falls on one side of the holdout start (before it for training, from it for
        the holdout): the message names the side, the leads' creation dates, the holdout start and a
        `holdout_months` that works, or else what to change.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> train, X_test, y_test = lead_holdout(load_sample())
    >>> bool(train.X["created_at"].max() < X_test["created_at"].min())
    True
    """
    if now is None:
        full = lead_dataset(data, as_of, maturity_days, activity_days)
    else:
        asked = pd.Timestamp(data.as_of if as_of is None else as_of)
        if now.as_of != asked or now.maturity_days != int(maturity_days):
            raise ValueError(
                f"now holds the leads known at {now.as_of.date()} with maturity_days={now.maturity_days}, not at "
                f"{asked.date()} with maturity_days={maturity_days}: build it with the same settings"
            )
        full = now
    start = full.as_of - pd.Timedelta(days=maturity_days) - pd.DateOffset(months=holdout_months)
    train = lead_dataset(data, start, maturity_days, activity_days)
    later = ~isin(pd.Series(full.X.index.array), train.X.index).to_numpy()
    if not later.any() or train.X.empty:
        problem = _holdout_problem(data, full, start, holdout_months, train.X.empty, not later.any())
        raise ReportNeeds(problem, needs=["leads on both sides of the holdout start"], lacking=[problem])
    return train, full.X[later], full.y[later]


def _holdout_problem(
    data: CRMData, full: LeadDataset, start: pd.Timestamp, holdout_months: int, no_train: bool, no_test: bool
) -> str:
    """Why `lead_holdout` has no leads on a side of `start`: the side, the leads' dates and a setting that works.

    Training holds the leads created by ``cut = start - maturity_days``; the holdout the leads created after
    `cut` and by ``as_of - maturity_days`` (mature at as_of). A setting works when both sets have a lead.
    """
    as_of, m = full.as_of, full.maturity_days
    created = np.sort(data.leads.loc[data.leads["created_at"] <= as_of, "created_at"].to_numpy())

    def works(days: int, months: int) -> bool:
        cut = as_of - pd.Timedelta(days=2 * days) - pd.DateOffset(months=months)
        mature = np.searchsorted(created, (as_of - pd.Timedelta(days=days)).to_datetime64(), side="right")
        return mature > 0 and created[0] <= cut.to_datetime64() < created[mature - 1]

    cut = (start - pd.Timedelta(days=m)).date()
    train_side = f"training takes the leads mature at the holdout start, created by {cut}"
    mature_by = (full.as_of - pd.Timedelta(days=m)).date()
    test_side = f"the holdout takes the leads created after {cut} and mature at the report date, by {mature_by}"
    where = "on either side of" if no_train and no_test else "before" if no_train else "from"
    said = "; ".join(t for t, empty in ((train_side, no_train), (test_side, no_test)) if empty)
    text = (
        f"no leads {where} the holdout start {start.date()} (the report date {as_of.date()} - maturity_days={m} - "
        f"holdout_months={holdout_months}): {said}"
    )
    if not len(created):
        return f"{text}; no lead was created by the report date {as_of.date()}: choose a later report date (--as-of)"
    first, last = pd.Timestamp(created[0]), pd.Timestamp(created[-1])
    text += f"; the leads were created from {first.date()} to {last.date()}"
    if not full.X.empty:
        text += f" (mature at the report date: up to {full.X['created_at'].max().date()})"
    advice = suggest_split(data, as_of)
    useful = (
        f". A split with enough conversions on both sides: {advice.sentence}"
        if advice.works
        else f". Even so, {advice.sentence}"
    )
    pass_as = " (report parameters: -p maturity_days=N -p holdout_months=N)"
    months = [h for h in range(1, 1200) if works(m, h)]
    if months:
        best = min(months, key=lambda h: (abs(h - holdout_months), h))
        return f"{text}: use holdout_months={best} (any from {min(months)} to {max(months)} works){pass_as}{useful}"
    for days in range(m - 1, 0, -1):  # the longest maturity that works, with the longest holdout up to the one asked
        fits = [h for h in range(holdout_months, 0, -1) if works(days, h)]
        if fits:
            also = "" if fits[0] == holdout_months else f" and holdout_months={fits[0]}"
            return (
                f"{text}: no holdout length works with maturity_days={m}; use maturity_days={days}{also}"
                f"{pass_as}{useful}"
            )
    return (
        f"{text}: no holdout length or lead maturity works; use leads created over a longer span (more than "
        f"twice the lead maturity plus the holdout between the first lead and the report date)"
    )


def _split_sizes(data: CRMData, as_of: pd.Timestamp, days: int, months: int) -> tuple[int, int, int, int]:
    """Leads and conversions on each side of `lead_holdout`'s split: training (known at the holdout start), holdout."""
    leads = data.leads[data.leads["created_at"] <= as_of]
    created, at = leads["created_at"], leads["converted_at"]
    converted = leads["converted"].astype(bool)
    start = as_of - pd.Timedelta(days=days) - pd.DateOffset(months=months)
    train = (created <= start - pd.Timedelta(days=days)).to_numpy()
    test = ~train & (created <= as_of - pd.Timedelta(days=days)).to_numpy()
    k_train = (converted & (at.isna() | (at <= start))).to_numpy() & train
    k_test = (converted & (at.isna() | (at <= as_of))).to_numpy() & test
    return int(train.sum()), int(k_train.sum()), int(test.sum()), int(k_test.sum())


@dataclass(frozen=True)
class SplitAdvice:
    """A `maturity_days` and `holdout_months` that balance `lead_holdout`'s split, and the sizes they give.

    Attributes
    ----------
    maturity_days, holdout_months : int
        The suggested settings.
    train_leads, train_conversions, test_leads, test_conversions : int
        What training and the holdout hold with them.
    lag_p95, lag_p99 : float
        Days from a lead's creation to its conversion within which 95% and 99% of the converted leads converted.
    works : bool
        Whether the settings give both sides enough conversions (`MIN_TRAIN_CONVERSIONS`, `MIN_HOLDOUT_CONVERSIONS`);
        when False no setting does, and these are the closest.
    source : str
        The report's source, for the command (empty: a placeholder the reader fills in).
    """

    maturity_days: int
    holdout_months: int
    train_leads: int
    train_conversions: int
    test_leads: int
    test_conversions: int
    lag_p95: float
    lag_p99: float
    works: bool
    source: str = ""

    @property
    def command(self) -> str:
        """The report parameters, as typed on the command line."""
        source = shlex.quote(f"source={self.source}") if self.source else "source=<your source>"
        return (
            f"salesforecast report --only 03_lead_scoring -p {source} -p maturity_days={self.maturity_days} "
            f"-p holdout_months={self.holdout_months}"
        )

    @property
    def sentence(self) -> str:
        """The advice for a reader: the conversion lag, the settings as report parameters, the sizes they give."""
        sizes = (
            f"training would hold {self.train_leads:,} leads ({self.train_conversions:,} conversions) and the "
            f"holdout {self.test_leads:,} ({self.test_conversions:,})"
        )
        lag = (
            f"95% of the converted leads converted within {self.lag_p95:.0f} days of their creation and 99% within "
            f"{self.lag_p99:.0f}"
            if np.isfinite(self.lag_p99)
            else "no conversion date is recorded"
        )
        if self.works:
            return (
                f"{lag}, so maturity_days={self.maturity_days} is long enough to know a lead's outcome; with "
                f"holdout_months={self.holdout_months} {sizes}: run `{self.command}`."
            )
        return (
            f"{lag}; no lead maturity and holdout length leave both sides enough conversions (at least "
            f"{MIN_TRAIN_CONVERSIONS} for training and {MIN_HOLDOUT_CONVERSIONS} for the holdout): the data are too "
            f"short to judge a lead score on later leads. The closest, `{self.command}`, gives: {sizes}."
        )


def suggest_split(data: CRMData, as_of: Any = None, source: str | Path | None = None) -> SplitAdvice:
    """Settings of `lead_holdout` that leave most leads for training and enough conversions on both sides.

    `maturity_days` comes from the conversion lag (days from creation to conversion of the leads converted by
    `as_of`): its 99th percentile rounded up to a month of 30 days, else its 95th; then the largest
    `holdout_months` (1 to 24) that keeps at least two thirds of the leads for training, with at least
    `MIN_TRAIN_CONVERSIONS` training and `MIN_HOLDOUT_CONVERSIONS` holdout conversions (else the smallest that
    gives both). When none does, the setting with the most conversions on its scarcer side, ``works=False``.
    `source`, when given, is written into the suggested command (`SplitAdvice.command`).

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> advice = suggest_split(load_sample())
    >>> advice.works, advice.train_leads > 2 * advice.test_leads
    (True, True)
    """
    as_of = pd.Timestamp(data.as_of if as_of is None else as_of)
    leads = data.leads[data.leads["created_at"] <= as_of]
    done = leads["converted"].astype(bool) & (leads["converted_at"] <= as_of).fillna(False).astype(bool)
    lag = ((leads["converted_at"] - leads["created_at"]) / pd.Timedelta(days=1))[done.to_numpy()].to_numpy(float)
    p95, p99 = (float(np.quantile(lag, q)) for q in (0.95, 0.99)) if len(lag) else (np.nan, np.nan)
    days_options = [int(max(30, 30 * np.ceil(q / 30))) for q in (p99, p95) if np.isfinite(q)] or [180]
    best: tuple[float, SplitAdvice] | None = None
    for days in dict.fromkeys(days_options):
        sizes = {h: _split_sizes(data, as_of, days, h) for h in range(1, 25)}
        enough = [
            h
            for h, (_, k_tr, _, k_te) in sizes.items()
            if k_tr >= MIN_TRAIN_CONVERSIONS and k_te >= MIN_HOLDOUT_CONVERSIONS
        ]
        balanced = [h for h in enough if sizes[h][0] >= 2 * sizes[h][2]]
        if enough:
            h = max(balanced) if balanced else min(enough)
            return SplitAdvice(days, h, *sizes[h], p95, p99, True, str(source or ""))
        for h, (n_tr, k_tr, n_te, k_te) in sizes.items():
            score = min(k_tr / MIN_TRAIN_CONVERSIONS, k_te / MIN_HOLDOUT_CONVERSIONS)
            if best is None or score > best[0]:
                best = (score, SplitAdvice(days, h, n_tr, k_tr, n_te, k_te, p95, p99, False, str(source or "")))
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class HoldoutCheck:
    """Whether a lead score ranks later leads better than chance, and what that judgement rests on.

    Attributes
    ----------
    train_leads, train_conversions : int
        Leads the model learned from, and how many of them converted.
    test_leads, test_conversions : int
        Later leads it was checked on (the holdout), and how many converted.
    auc, auc_low, auc_high : float
        Holdout ROC AUC and its DeLong interval at `level` (NaN without two leads of each outcome).
    level : float
    better_than_chance : bool
        Enough conversions on both sides and an interval entirely above 0.5.
    verdict : str
        One or two sentences for the reader: the figures and what they mean.
    """

    train_leads: int
    train_conversions: int
    test_leads: int
    test_conversions: int
    auc: float
    auc_low: float
    auc_high: float
    level: float
    better_than_chance: bool
    verdict: str

    def table(self) -> pd.DataFrame:
        """Leads and conversions behind the check: one row for training, one for the holdout."""
        return pd.DataFrame(
            {
                "rows": ["training (outcomes known at the holdout start)", "holdout (later leads)"],
                "leads": [self.train_leads, self.test_leads],
                "conversions": [self.train_conversions, self.test_conversions],
                "conversion_rate": [
                    self.train_conversions / self.train_leads if self.train_leads else np.nan,
                    self.test_conversions / self.test_leads if self.test_leads else np.nan,
                ],
            }
        )


def check_holdout(
    y_train: Any,
    y_test: Any,
    p_test: Any,
    *,
    level: float = 0.95,
    min_train_conversions: int = MIN_TRAIN_CONVERSIONS,
    min_test_conversions: int = MIN_HOLDOUT_CONVERSIONS,
    split: SplitAdvice | None = None,
    settings: str = "",
) -> HoldoutCheck:
    """Judge a lead score on its holdout: better than chance, or not (with a `WeakModelWarning` saying why).

    A score is better than chance when the model learned from at least `min_train_conversions` conversions, the
    holdout holds at least `min_test_conversions`, and the holdout ROC AUC's DeLong interval at `level`
    (`salesforecast.models.lead_scoring.auc_interval`) lies entirely above 0.5. Otherwise its tiers and reasons
    would sort leads by noise, and a report should present none of them.

    Parameters
    ----------
    y_train : array-like
        Outcomes (1 converted) of the training leads.
    y_test, p_test : array-like
        Outcomes and predicted probabilities of the holdout leads.
    level : float
        Confidence level of the AUC interval.
    min_train_conversions, min_test_conversions : int
        The least conversions to judge on (see `MIN_TRAIN_CONVERSIONS`, `MIN_HOLDOUT_CONVERSIONS`).
    split : SplitAdvice, optional
        `suggest_split`'s settings for this data. When training has too few conversions while the holdout holds
        more leads than training, and the advice gives both sides enough, the split is the cause: the verdict
        says so, with both sizes, and gives this advice (the report parameters that balance the split).
    settings : str
        The settings that made the split, named in that verdict (e.g. ``"maturity_days=180, holdout_months=6"``).

    Returns
    -------
    HoldoutCheck

    Warns
    -----
    WeakModelWarning
        When the score is not better than chance, with the verdict as its message.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(2000) < 0.2).astype(int)
    >>> check = check_holdout(y, y, np.where(y == 1, 0.6, 0.4) + rng.normal(0, 0.2, 2000))
    >>> check.better_than_chance, check.test_conversions == int(y.sum())
    (True, True)
    """
    yt = np.asarray(y_train, dtype="float64")
    ys = np.asarray(y_test, dtype="float64")
    ps = np.asarray(p_test, dtype="float64")
    n_tr, k_tr, n_te, k_te = len(yt), int(yt.sum()), len(ys), int(ys.sum())
    auc, low, high = auc_interval(ys, ps, level) if len(ys) else (np.nan, np.nan, np.nan)
    pct = f"{level:.0%}"
    figures = (
        f"trained on {n_tr:,} leads ({k_tr:,} conversions) and checked on {n_te:,} later leads ({k_te:,} conversions)"
    )
    if n_te and len(np.unique(ps)) == 1:
        figures += ", and it gives every one of them the same score (holdout ROC AUC 0.5, a coin toss)"
    elif np.isfinite(auc):
        figures += (
            f", where its holdout ROC AUC is {auc:.2f} ({pct} interval {low:.2f} to {high:.2f}; 0.5 is a coin toss)"
        )
    few = [
        f"{what} {k} conversions are fewer than the {least} needed to tell"
        for what, k, least in (
            ("the training set's", k_tr, min_train_conversions),
            ("the holdout's", k_te, min_test_conversions),
        )
        if k < least
    ]
    consequence = "its tiers and reasons would sort leads by noise, so none are presented"
    if split is not None and split.works and k_tr < min_train_conversions and n_te > n_tr:
        used = f" ({settings})" if settings else ""
        verdict = (
            f"The lead score cannot be judged with this split of the leads{used}: training gets only {n_tr:,} leads "
            f"({k_tr:,} conversions, fewer than the {min_train_conversions} needed), those whose outcome was known "
            f"at the holdout start, while the holdout gets {n_te:,} ({k_te:,} conversions). The split, not drift or "
            f"the features, is the cause; {split.sentence} {consequence[0].upper()}{consequence[1:]}."
        )
    elif few:
        verdict = (
            f"The lead score is no better than chance on this data, as far as it can be told: it was {figures}; "
            f"{', and '.join(few)}. {consequence[0].upper()}{consequence[1:]}."
        )
    elif not (np.isfinite(low) and low > 0.5):
        where = "below 0.5: it ranks later leads worse than a coin" if high < 0.5 else "includes 0.5"
        verdict = (
            f"The lead score is no better than chance on this data: it was {figures}, and that interval {where}. "
            f"{consequence[0].upper()}{consequence[1:]}."
        )
    else:
        verdict = f"The lead score ranks later leads better than chance: it was {figures}."
    useful = not few and bool(np.isfinite(low) and low > 0.5)
    if not useful:
        warnings.warn(verdict, WeakModelWarning, stacklevel=2)
    return HoldoutCheck(n_tr, k_tr, n_te, k_te, float(auc), float(low), float(high), float(level), useful, verdict)


def model_notes(model: Any, activity_days: float = ACTIVITY_DAYS) -> list[str]:
    """What a fitted `LeadScoringModel` used from the activities, left out or kept quiet about, in sentences.

    The leads it learnt from when it sampled them (``max_rows``: how many of how many, and how drawn), the
    activity features it uses (`lead_dataset`'s, when the data have activities on leads), columns left out
    as probable leakage (with their single-feature AUC), date parts left out because they did not improve the
    validation score (both scores), features whose values are never given as reasons, and tiers merged because
    scores tie. Nothing to say gives an empty list. `activity_days` is the one `lead_dataset` read the activity
    features with (named in the note).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = pd.Series(rng.random(1000) < 0.3)
    >>> X = pd.DataFrame({"visits": rng.poisson(3, 1000), "closer": np.where(y, "Ann", None)})
    >>> from salesforecast.models.lead_scoring import LeadScoringModel
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     model = LeadScoringModel("logistic").fit(X, y)
    >>> model_notes(model)[0][:61]
    "Left out of the model as probable leakage: 'closer' (single-f"
    """
    notes = []
    n_in, n_fit = getattr(model, "n_rows_in_", 0), getattr(model, "n_rows_fit_", 0)
    if n_fit < n_in:
        notes.append(
            f"The model learnt from {n_fit:,} of the {n_in:,} training leads: a random sample drawn at the same "
            f"rate ({n_fit / n_in:.1%}) from the converted and the other leads, weighted so that its conversion "
            "rate is that of all of them. Beyond that many, more leads change a score of this kind little and cost "
            "time and memory; the holdout figures are those of the model learnt from the sample."
        )
    given = list(getattr(model, "feature_names_in_", ()))
    dropped = getattr(model, "dropped_columns_", {})
    acts = [c for c in LEAD_ACTIVITY_FEATURES if c in given and c not in dropped]
    leaky = getattr(model, "dropped_leaky_", {})
    if leaky:
        cols = ", ".join(f"{c!r} (single-feature AUC {a:.2f})" for c, a in leaky.items())
        notes.append(
            f"Left out of the model as probable leakage: {cols}. Alone, such a column separates converted from "
            "other leads, which a field known before the outcome rarely does: it is usually filled after or "
            "because of the conversion (e.g. only for converted leads)."
        )
    if acts:
        notes.append(
            f"The score also reads what was done with each lead in its first {activity_days:g} days (its cutoff): "
            "the activities on it by then, the hours to the first one (or to the cutoff, when none came) and the "
            "days since the last one. No activity after the cutoff is seen."
        )
    scores = getattr(model, "date_parts_scores_", None)
    parts = [c for c, why in model.dropped_columns_.items() if why.startswith("a date part that did not improve")]
    if parts and scores is not None and len(scores) == 2:
        s = scores.set_index("date_parts")
        # the date columns the parts were read from, as the data spells them: created_at_month -> created_at
        dates = dict.fromkeys(re.sub(r"_(?:month|day_of_week)$", "", c) for c in parts)
        notes.append(
            f"The month and weekday of the dates ({', '.join(dates)}) were left out: they did not "
            f"improve the validation score (ROC AUC {s.loc['with', 'roc_auc']:.2f} with them, "
            f"{s.loc['without', 'roc_auc']:.2f} without; log loss {s.loc['with', 'log_loss']:.3f} against "
            f"{s.loc['without', 'log_loss']:.3f})."
        )
    quiet = getattr(model, "not_reasons_", {})
    if quiet:
        cols = "; ".join(f"{c!r}: {why}" for c, why in quiet.items())
        notes.append(
            f"Never given as reasons, since their values explain nothing to a reader (the score uses them): {cols}."
        )
    used, asked = len(model.tier_thresholds_), len(list(model.tier_labels))
    if model.tier_method == "quantile" and used < asked:
        notes.append(
            f"The scores tie too often for {asked} tiers of equal size: {used} tier{'s' if used > 1 else ''} "
            f"({', '.join(model.tier_thresholds_.index)}) {'are' if used > 1 else 'is'} used."
        )
    return notes


def tier_table(tiers: pd.Series, y: pd.Series) -> pd.DataFrame:
    """Leads and conversion per priority tier.

    Returns
    -------
    pandas.DataFrame
        ``tier, leads, share_of_leads, conversions, share_of_conversions, conversion_rate`` (best tier first).

    Examples
    --------
    >>> tier_table(pd.Series(["A", "A", "B", "B"]), pd.Series([1, 1, 0, 1]))["conversion_rate"].tolist()
    [1.0, 0.5]
    """
    y = pd.Series(np.asarray(y, dtype=float), index=tiers.index)
    g = y.groupby(tiers, observed=True, sort=True)
    out = pd.DataFrame({"leads": g.size(), "conversions": g.sum()})
    out["share_of_leads"] = out["leads"] / out["leads"].sum()
    out["share_of_conversions"] = out["conversions"] / max(out["conversions"].sum(), 1)
    out["conversion_rate"] = out["conversions"] / out["leads"]
    out.index.name = "tier"
    cols = ["leads", "share_of_leads", "conversions", "share_of_conversions", "conversion_rate"]
    return out[cols].reset_index()


def rank_leads(model: Any, X: pd.DataFrame, top: int = 3, rows: int | None = None) -> pd.DataFrame:
    """Leads ranked by a fitted `LeadScoringModel`: probability, tier and the reasons in words, best first.

    Parameters
    ----------
    model : LeadScoringModel
        Fitted.
    X : pandas.DataFrame
        The leads to rank (features as the model was fitted with).
    top : int
        Reasons per lead.
    rows : int, optional
        Only the `rows` best-scored leads (default all): every lead is scored, and only those are explained,
        which on hundreds of thousands of open leads saves most of the time (an explanation re-predicts each
        lead once per feature).

    Returns
    -------
    pandas.DataFrame
        Index lead_id; ``created_at`` and ``owner``/``lead_source`` when present, ``probability``, ``tier``,
        ``reasons`` (the `top` strongest, joined with "; "). No open leads (an empty X) give an empty table with
        the same columns and dtypes, so a report can show it or say there is nothing to rank.
    """
    if rows is not None and (not isinstance(rows, (int, np.integer)) or isinstance(rows, bool) or rows < 1):
        raise ValueError(f"rows must be a positive number of leads or None (all), got {rows!r}")
    context = [c for c in ("created_at", "owner", "lead_source") if c in X.columns]
    if X.empty:
        out = X[context].copy()
        out["probability"] = pd.Series(dtype="float64", index=out.index)
        out["tier"] = pd.Series(dtype="str", index=out.index)
        out["reasons"] = pd.Series(dtype="str", index=out.index)
        return out
    p = model.predict_proba(X).to_numpy()
    order = np.argsort(-p, kind="stable")[: len(p) if rows is None else int(rows)]
    best = X.iloc[order]
    explained = model.explain(best, top=top)
    reasons = explained[[f"reason_{k}" for k in range(1, top + 1)]]
    joined = reasons.apply(lambda r: "; ".join(str(v) for v in r if isinstance(v, str) and v), axis=1)
    out = best[context].copy()
    out["probability"] = p[order]
    out["tier"] = model.tiers_of(p[order]).astype("str").to_numpy()
    out["reasons"] = joined.astype("str").to_numpy()
    return out
