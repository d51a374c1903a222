"""The headlines of the reports: each report's answer in one sentence and three to six figures.

One function per report computes its `Headline` from what the report already computed (the data, the fitted
model, the holdout check, the coverage table); the notebook shows it with ``Headline.html()``
(`salesforecast.reports.headline`), and the page opens with it. Each sentence answers the report's question and
claims no more than the data allow: a small sample is named ("on 12 closed deals"), a history that cannot show
what the sentence would say is named, a score no better than chance says so.

- `data_quality` (``01_data_quality``): a verdict on the data: rows read, accepted, quarantined, the main problem.
- `stage_conversion` (``02_stage_conversion``): the stages whose CRM probability is furthest from what deals do.
- `lead_scoring` (``03_lead_scoring``): the lead score's quality verdict and how many open leads are tier A.
- `pipeline_review` (``05_pipeline_review``): attainment and coverage of the period, from the table's total row.

Percentages of a whole are written with ``%``, differences of probabilities in percentage points (``pp``),
amounts with `salesforecast.labels.format_amount` (short: ``1.75M``) in the process map's currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesforecast import quality
from salesforecast._utils import listed
from salesforecast.labels import format_amount, format_value, label
from salesforecast.leads import MIN_HOLDOUT_CONVERSIONS, MIN_TRAIN_CONVERSIONS, HoldoutCheck, tier_table
from salesforecast.movement import coverage_total
from salesforecast.reports import Figure, headline
from salesforecast.schema import CRMData

if TYPE_CHECKING:
    from IPython.display import HTML

    from salesforecast.review import StepReview

__all__ = ["Headline", "data_quality", "lead_scoring", "pipeline_review", "stage_conversion"]


@dataclass(frozen=True)
class Headline:
    """A report's answer: the sentence, the figures behind it and an optional note.

    Attributes
    ----------
    sentence : str
        One sentence answering the report's question (``**bold**`` is the only markup).
    figures : tuple of Figure
        Three to six figures (`salesforecast.reports.Figure`).
    note : str
        A smaller second line: what the sentence rests on or leaves out ("" for none).
    """

    sentence: str
    figures: tuple[Figure, ...]
    note: str = ""

    def html(self) -> HTML:
        """The ``<section id="headline">`` block of `salesforecast.reports.headline` (escaped)."""
        return headline(self.sentence, self.figures, self.note)


# ------------------------------------------------------------------------------------------------ helpers
def _share(part: float, whole: float) -> str:
    """``part / whole`` in percent with one decimal that never rounds to 0% or 100% unless it is exactly that."""
    if not whole:
        return "–"
    x = 100.0 * part / whole
    if x in (0.0, 100.0):
        return f"{x:.0f}%"
    if x < 0.1:
        return "<0.1%"
    if x > 99.9:
        return ">99.9%"
    return f"{x:.1f}%"


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 deal``, ``2,045 deals``."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _whose(team: str = "", owner: str = "") -> str:
    """`` of team EMEA``, `` of ann``: whose deals or leads a report is restricted to ("" for everybody's)."""
    return f" of {owner}" if owner else f" of team {team}" if team else ""


def _have(n: int) -> str:
    """The verb after a count: ``1 deal has``, ``2 deals have``."""
    return "has" if n == 1 else "have"


def _pct(x: float) -> str:
    """A probability or rate as a whole percent (``37%``)."""
    return f"{x:.0%}"


#: What a row of each table is, in the plural, for a sentence ("212 of the 15,204 stage changes").
_ROWS = {
    "opportunities": "opportunities",
    "stage_history": "stage changes",
    "leads": "leads",
    "forecast_submissions": "forecast calls",
    "quotas": "quota rows",
}


def _no_open_moves(data: CRMData) -> bool:
    """True when the stage history records no deal moving between open stages.

    At most one open-stage change a deal (its first stage; then its outcome), as a history derived from creation
    and close dates holds.
    """
    hist = data.stage_history
    if hist.empty or len(data.process.open_stages) < 2:
        return False
    open_rows = ~data.process.is_closed(hist["stage"])
    return bool((open_rows.groupby(hist["opportunity_id"]).sum() <= 1).all())


def _history_limit(data: CRMData) -> str:
    """What the stage history cannot show, in words for a sentence ("" when nothing): no moves, one moment."""
    if data.opportunities.empty or data.stage_history.empty:
        return ""
    if _no_open_moves(data):
        return "a history that records no move between open stages, only each deal's first stage and outcome"
    cover = quality.history_coverage(data).set_index("measure")["opportunities"]
    single, n = int(cover["single-timestamp history"]), int(cover["opportunities"])
    if single * 10 >= n:
        return (
            f"{single:,} of the {n:,} deals {_have(single)} a history loaded at one moment, so the order of their "
            "stages is unknown"
        )
    return ""


# ------------------------------------------------------------------------------------------- 01 data quality
def _quality_problems(data: CRMData, as_of: Any) -> list[tuple[str, str]]:
    """What limits the data, most limiting first: ``(kind, words)``, kind ``major`` or ``minor``."""
    counts = quality.table_counts(data).set_index("table")
    out: list[tuple[str, str]] = []
    read, accepted = int(counts["read"].sum()), int(counts["accepted"].sum())
    if read and not accepted:
        out.append(("major", "no row passed the checks (every row was quarantined)"))
    reasons = quality.quarantine_by_reason(data)
    top = None
    if len(reasons):
        # the cause before its consequence: a history row set aside with its opportunity is that opportunity's reason
        consequence = (reasons["reason"] == "opportunity quarantined").to_numpy()
        ranked = reasons.assign(_c=consequence).sort_values(["_c", "rows"], ascending=[True, False], kind="stable")
        top = ranked.iloc[0]
        rows = _ROWS.get(str(top["table"]), f"{label(top['table'])} rows")
        top_words = (
            f"{int(top['rows']):,} of the {int(counts.loc[top['table'], 'read']):,} {rows} "
            f"({_share(int(top['rows']), int(counts.loc[top['table'], 'read']))}) "
            f"{'was' if int(top['rows']) == 1 else 'were'} quarantined as "
            f"{top['reason']}: {top['definition']}"
        )
        if float(top["pct_of_table"]) >= 5.0:
            out.append(("major", top_words))
    n_opps = len(data.opportunities)
    if accepted and n_opps == 0:
        out.append(
            (
                "major",
                "the data hold no opportunities, so the deal reports (stage conversion, forecast accuracy, pipeline "
                "review) cannot run",
            )
        )
    n_open = undated = passed = 0
    if n_opps:
        cover = quality.history_coverage(data).set_index("measure")["opportunities"]
        without, single = int(cover["without stage history"]), int(cover["single-timestamp history"])
        derived = _no_open_moves(data)
        if without == n_opps:
            out.append(
                (
                    "major",
                    "there is no stage history, so stage conversion, the pipeline as it stood at past dates and "
                    "the backtests see only each deal's current stage",
                )
            )
        elif derived:
            out.append(
                (
                    "major",
                    "the stage history records no move between open stages (only each deal's first stage and its "
                    "outcome, as a history derived from dates holds), so the stages in between look skipped and the "
                    "time in each stage is unknown",
                )
            )
        elif single * 10 >= n_opps:
            out.append(
                (
                    "major",
                    f"{single:,} of the {n_opps:,} deals ({_share(single, n_opps)}) {_have(single)} a history whose "
                    "changes all carry one timestamp (a data load): the order of their stages and the time in each "
                    "are unknown",
                )
            )
        elif without * 10 >= n_opps:
            out.append(
                (
                    "major",
                    f"{without:,} of the {n_opps:,} deals ({_share(without, n_opps)}) {_have(without)} no stage "
                    "history: the analyses of stages see only their current stage",
                )
            )
        dates = quality.open_deal_close_dates(data, as_of=as_of).set_index("measure")["deals"]
        n_open, undated, passed = (int(dates[m]) for m in ("open deals", "without a close date", "close date passed"))
    undated_words = (
        f"{undated:,} of the {n_open:,} open deals ({_share(undated, n_open)}) {_have(undated)} no expected close "
        "date, so no forecast can place them in a period by that date"
    )
    if undated and undated * 10 >= n_open:  # a CRM that keeps no expected close date: a limit of the forecasts
        out.append(("major", undated_words))
    if top is not None and float(top["pct_of_table"]) < 5.0:
        out.append(("minor", top_words))
    if undated and undated * 10 < n_open:
        out.append(("minor", undated_words))
    if data.notes:
        out.append(("minor", f"the importer left {_count(len(data.notes), 'note')} on what the export cannot tell"))
    if passed:
        out.append(
            (
                "minor",
                f"{passed:,} of the {n_open:,} open deals ({_share(passed, n_open)}) {_have(passed)} an expected "
                "close date that has passed",
            )
        )
    return out


def data_quality(data: CRMData, as_of: Any = None) -> Headline:
    """The data-quality report's verdict: rows read, accepted and quarantined, and the main problem, in words.

    Parameters
    ----------
    data : CRMData
        The loaded data (accepted tables, quarantine, counts, notes).
    as_of : date, optional
        The report date (default: the data's own).

    Returns
    -------
    Headline
        The sentence gives a verdict (clean; usable; usable with limits; much of it, a quarter of the rows or
        more, quarantined; not usable), the share of the rows read that were accepted and the main problem: the
        first of, in this order, every row quarantined, a reason that quarantined 5% or more of a table, no
        opportunities, no stage history, a history with no move between open stages (derived from dates),
        single-timestamp or missing histories for 10% or more of the deals, open deals without a close date (10%
        or more of them), the top quarantine reason, fewer open deals without a close date, the importer's notes,
        open deals whose close date passed.
        The figures: rows read (and tables provided), accepted, quarantined, the deals with a stage history and
        the importer's notes. Its counts are `salesforecast.quality.table_counts`' totals.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> h = data_quality(load_sample())
    >>> h.sentence[:62]
    'The data are clean: all 68,468 rows read were accepted (none q'
    """
    counts = quality.table_counts(data)
    read, accepted, quarantined = (int(counts[c].sum()) for c in ("read", "accepted", "quarantined"))
    provided = int((counts["read"] > 0).sum())
    problems = _quality_problems(data, as_of)
    major = any(kind == "major" for kind, _ in problems)
    if read == 0:
        sentence = "The source holds no data rows, so there is nothing to use."
    else:
        if accepted == 0:
            verdict = "The data cannot be used"
        elif quarantined * 4 >= read:
            verdict = "Much of the data could not be used"
        elif major:
            verdict = "The data are usable with limits"
        elif quarantined or data.notes:
            verdict = "The data are usable"
        else:
            verdict = "The data are clean"
        kept = (
            f"all {read:,} rows read were accepted (none quarantined)"
            if accepted == read
            else f"{_share(accepted, read)} of the {read:,} rows read were accepted ({quarantined:,} quarantined)"
        )
        if problems:
            kind, words = problems[0]
            fix = "the one thing to fix" if len(problems) == 1 else "the first thing to fix"
            what = "the main problem" if kind == "major" or verdict != "The data are clean" else fix
            sentence = f"{verdict}: {kept}; {what}: {words}."
        else:
            sentence = f"{verdict}: {kept}, and nothing else limits them."
    n_opps = len(data.opportunities)
    figures = [
        Figure("Rows read", f"{read:,}", f"{provided} of {len(counts)} tables provided"),
        Figure(
            "Accepted", _share(accepted, read), f"{accepted:,} rows", tone="good" if read and accepted == read else None
        ),
        Figure(
            "Quarantined",
            f"{quarantined:,}",
            f"{_share(quarantined, read)} of the rows read" if read else "",
            tone="bad" if read and quarantined * 20 >= read else "warn" if quarantined else None,
        ),
    ]
    if n_opps:
        cover = quality.history_coverage(data).set_index("measure")["opportunities"]
        with_history = int(cover["with stage history"])
        figures.append(
            Figure(
                "Deals with stage history",
                _share(with_history, n_opps),
                f"{with_history:,} of {_count(n_opps, 'deal')}",
                tone="bad" if with_history == 0 else None,
            )
        )
    figures.append(
        Figure("Import notes", f"{len(data.notes):,}" if data.notes else "none", "listed below" if data.notes else "")
    )
    return Headline(sentence, tuple(figures))


# --------------------------------------------------------------------------------------- 02 stage conversion
def stage_conversion(model: Any, data: CRMData, most: int = 3, team: str = "", owner: str = "") -> Headline:
    """Where the CRM's stage probabilities are furthest from what deals do: learned against default, in points.

    Parameters
    ----------
    model : StageConversionModel
        Fitted on `data` (its ``summary``: the learned win probability per stage with its bootstrap interval, the
        CRM default, ``learned_from``).
    data : CRMData
        The data it was fitted on (the deals counted in the figures: closed, won, open).
    most : int
        The stages named in the sentence, largest gap first.
    team, owner : str
        The team and the rep the report is restricted to ("" for all): whose deals the sentence names.

    Returns
    -------
    Headline
        A stage counts as off when its CRM probability lies outside the learned interval (the model's ``ci``);
        the sentence names the off stages with the largest gaps (learned minus CRM, in percentage points), or
        says the CRM's probabilities match the history when none is off. It always says how many closed deals
        the learning rests on, what the history cannot show (no move between open stages; histories loaded at one
        moment, for a tenth of the deals or more) and how many stages no deal has left (nothing learned there:
        not checked).
        Figures: the overall win rate, the largest gap (CRM and learned with its interval), the stages off, the
        deals analysed.
    """
    summary = model.summary
    level = f"{float(getattr(model, 'ci', 0.9)):.0%}"
    opps = data.opportunities
    closed = opps["is_closed"].astype(bool)
    n_closed, n_won, n_deals = int(closed.sum()), int((closed & opps["is_won"].astype(bool)).sum()), len(opps)
    learned = summary[summary["learned_from"] == "history"]
    # a stage is checked where something was learned and its interval computed (none without a bootstrap)
    checked = learned[(learned["lower"].notna() & learned["upper"].notna()).to_numpy()]
    n_stages, n_learned = len(summary), len(checked)
    crm, low, high = checked["crm_probability"], checked["lower"], checked["upper"]
    off = checked[((crm < low) | (crm > high)).to_numpy()]
    off = off.iloc[np.argsort(-off["difference"].abs().to_numpy(), kind="stable")]
    limit = _history_limit(data)
    basis = f"On {_count(n_closed, 'closed deal')}{_whose(team, owner)}" + (f" ({limit})" if limit else "")
    unlearned = n_stages - len(learned)
    not_checked = (
        f"; {_count(unlearned, 'stage')} no deal has left yet {'keeps' if unlearned == 1 else 'keep'} the CRM "
        "default, unchecked"
        if unlearned and len(learned)
        else ""
    )
    stages = "the one stage learned" if n_learned == 1 else f"the {n_learned} stages learned"
    if len(learned) == 0:
        sentence = (
            f"{basis}, no deal has left any stage of the process map yet, so nothing is learned to set against the "
            "CRM's probabilities."
        )
    elif n_learned == 0:
        sentence = (
            f"{basis}, the learned probabilities have no interval (no bootstrap), so no stage's CRM probability "
            "can be said to differ from the history."
        )
    elif off.empty:
        sentence = (
            f"{basis}, the CRM's probabilities match the history: at {stages}, the CRM's probability lies inside "
            f"the learned {level} interval{not_checked}."
        )
    else:
        named = [
            f"{row.stage} (CRM {_pct(row.crm_probability)}, learned {_pct(row.win_probability)}: "
            f"**{format_value(row.difference, 'points')}**)"
            for row in off.head(most).itertuples()
        ]
        where = f"at {stages}, " if n_learned == 1 else f"at {len(off)} of {stages}, furthest at "
        sentence = f"{basis}, the CRM's probability is off {where}{listed(named)}{not_checked}."
    figures = [
        Figure(
            "Overall win rate",
            format_value(n_won / n_closed, "fraction") if n_closed else "–",
            f"{n_won:,} won of {_count(n_closed, 'closed deal')}",
        )
    ]
    if not off.empty:
        worst = off.iloc[0]
        figures.append(
            Figure(
                f"Largest gap: {worst['stage']}",
                format_value(worst["difference"], "points"),
                f"CRM {_pct(worst['crm_probability'])}, learned {_pct(worst['win_probability'])} "
                f"({_pct(worst['lower'])}–{_pct(worst['upper'])})",
                tone="bad",
            )
        )
    figures.append(
        Figure(
            "Stages off",
            f"{len(off)} of {n_learned}",
            f"CRM outside the learned {level} interval" if n_learned else "no stage learned yet",
            tone="warn" if len(off) else "good" if n_learned else None,
        )
    )
    figures.append(Figure("Deals analysed", f"{n_deals:,}", f"{n_closed:,} closed, {n_deals - n_closed:,} open"))
    return Headline(sentence, tuple(figures))


# ------------------------------------------------------------------------------------------ 03 lead scoring
def lead_scoring(
    check: HoldoutCheck,
    open_leads: pd.DataFrame,
    final: Any = None,
    holdout_tiers: pd.Series | None = None,
    y_test: Sequence[int] | pd.Series | None = None,
    team: str = "",
    owner: str = "",
) -> Headline:
    """The lead score's verdict (better than chance or not, with its ROC AUC and interval) and the tier A leads.

    Parameters
    ----------
    check : HoldoutCheck
        `salesforecast.leads.check_holdout` of the score on its holdout.
    open_leads : pandas.DataFrame
        The open leads the report lists (those of the team or rep asked for).
    final : LeadScoringModel, optional
        The model refitted on every mature lead, which ranks the open leads (``final.tiers``); needed when the
        score is better than chance and some lead is open.
    holdout_tiers, y_test : optional
        The holdout leads' tiers (``model.tiers(X_test)``) and outcomes: tier A's conversion rate on the holdout.
    team, owner : str
        The team and the rep whose open leads are listed ("" for all; the model learns from every lead).

    Returns
    -------
    Headline
        Better than chance: the AUC with its interval, and how many open leads are tier A. Not better than chance:
        the sentence says so plainly, with why (the interval includes 0.5, lies below it, or too few
        conversions), and that no lead is ranked or put in a tier; the figures show no tier.
    """
    auc = (
        f"holdout ROC AUC {check.auc:.2f}, {check.level:.0%} interval {check.auc_low:.2f}–{check.auc_high:.2f}"
        if np.isfinite(check.auc) and np.isfinite(check.auc_low)
        else ""
    )
    on = f"{_count(check.test_leads, 'later lead')}, {_count(check.test_conversions, 'conversion')}"
    n_open = len(open_leads)
    auc_figure = Figure(
        "Holdout ROC AUC",
        f"{check.auc:.2f}" if np.isfinite(check.auc) else "–",
        (f"{check.level:.0%} interval {check.auc_low:.2f}–{check.auc_high:.2f}; " if auc else "") + "0.5 = chance",
        tone="good" if check.better_than_chance else "bad",
    )
    checked = Figure("Later leads checked", f"{check.test_leads:,}", f"{_count(check.test_conversions, 'conversion')}")
    if not check.better_than_chance:
        few = check.train_conversions < MIN_TRAIN_CONVERSIONS or check.test_conversions < MIN_HOLDOUT_CONVERSIONS
        if few:
            why = (
                f"too few conversions to tell ({check.train_conversions:,} to learn from, "
                f"{check.test_conversions:,} to check on; at least {MIN_TRAIN_CONVERSIONS} and "
                f"{MIN_HOLDOUT_CONVERSIONS} needed)"
            )
        elif np.isfinite(check.auc_high) and check.auc_high < 0.5:
            why = f"it ranks later leads worse than a coin ({auc}, on {on})"
        else:
            why = f"its interval includes 0.5, a coin toss ({auc}, on {on})" if auc else f"on {on}"
        sentence = (
            f"The lead score is **no better than chance** on this data: {why}. No lead is ranked or put in a tier, "
            "since the tiers would sort leads by noise."
        )
        figures = (
            auc_figure,
            checked,
            Figure("Open leads", f"{n_open:,}", "not ranked: the score is no better than chance"),
        )
        return Headline(sentence, figures)
    if n_open and final is None:
        raise ValueError("lead_scoring: the score is better than chance and leads are open: give the final model")
    tiers = final.tiers(open_leads).astype("str") if n_open else pd.Series([], dtype="str")
    n_a = int((tiers == "A").sum())
    if n_open:
        n_tiers = len(getattr(final, "tier_thresholds_", ())) or len(list(final.tier_labels))
        answer = (
            f"**{n_a:,} of the {_count(n_open, 'open lead')}{_whose(team, owner)} are in tier A**, the best of "
            f"{n_tiers} tiers"
        )
    else:
        answer = f"no lead{_whose(team, owner)} is open at the report date, so there is none to rank"
    sentence = f"The lead score ranks later leads better than chance ({auc}, on {on}): {answer}."
    figures = [auc_figure, Figure("Open leads in tier A", f"{n_a:,}", f"of {_count(n_open, 'open lead')}")]
    if holdout_tiers is not None and y_test is not None and len(holdout_tiers):
        table = tier_table(holdout_tiers, pd.Series(np.asarray(y_test), index=holdout_tiers.index))
        a = table[table["tier"].astype("str") == "A"]
        base = check.test_conversions / check.test_leads if check.test_leads else np.nan
        if len(a):
            figures.append(
                Figure(
                    "Tier A conversion (holdout)",
                    format_value(float(a["conversion_rate"].iloc[0]), "fraction"),
                    f"against {format_value(base, 'fraction')} for all later leads",
                )
            )
    figures.append(checked)
    return Headline(sentence, tuple(figures))


# ---------------------------------------------------------------------------------------- 05 pipeline review
def pipeline_review(
    coverage: pd.DataFrame,
    currency: str | None = None,
    team: str = "",
    owner: str = "",
    steps: StepReview | None = None,
) -> Headline:
    """Attainment and coverage of the period, from the total row of the review's table.

    Parameters
    ----------
    coverage : pandas.DataFrame
        `salesforecast.movement.pipeline_coverage` by team or rep (``attrs["period"]``); its total
        (`salesforecast.movement.coverage_total`) is the headline's, as in the table's last row.
    currency : str, optional
        The amounts' currency (the process map's).
    team, owner : str
        The team and the rep the report is restricted to ("" for all): whose numbers the sentence names.
    steps : StepReview, optional
        `salesforecast.review.step_review` of the review: when the exit criteria could be judged, a figure (the share
        of completed stage visits that met them, when there is room among the six) and a clause in the note for each
        stage whose criteria clearly pay or clearly do not (the 90% interval excludes no difference).

    Returns
    -------
    Headline
        **attainment** = closed won / quota; **coverage** = open pipeline / (quota - closed won), as in
        `salesforecast.review.COVERAGE_FORMULAS`. Without a quota the sentence says so and gives what was won and
        what is open; with the quota met, that it is met. The figures: attainment, coverage (and weighted),
        closed won, quota, open pipeline, and how many teams (reps) of those with a quota made it, with the lowest.
        The note names what the numbers leave out: open deals without a close date, rows without a quota.
    """
    period = coverage.attrs.get("period", "the period")
    total = coverage_total(coverage).iloc[0]
    who = f"{owner} (team {team})" if owner and team else owner or (f"Team {team}" if team else "")
    subject = who or "The company"
    as_of = coverage.attrs.get("as_of")
    when = f"by {format_value(as_of, 'date')}" if as_of is not None else "by the report date"
    money = lambda x: format_amount(x, currency, short=True)  # noqa: E731
    won, n_won = float(total["closed_won"]), int(total["won_deals"])
    pipe, n_pipe = float(total["open_pipeline"]), int(total["open_deals"])
    quota = float(total["quota"]) if pd.notna(total["quota"]) else np.nan
    won_figure = Figure("Closed won", money(won), _count(n_won, "deal"))
    pipe_figure = Figure("Open pipeline", money(pipe), f"{_count(n_pipe, 'deal')} closing in {period}")
    notes = []
    if int(total["undated_deals"]):
        n = int(total["undated_deals"])
        notes.append(
            f"{_count(n, 'open deal')} without a close date ({money(float(total['undated_pipeline']))}) "
            f"{'is' if n == 1 else 'are'} in no period, so not in the open pipeline or the coverage."
        )
    known = coverage["quota"].notna()
    if len(coverage) > 1 and known.any() and not known.all():
        by = {"team": "teams", "owner": "reps"}.get(str(coverage.index.name), "rows")
        notes.append(
            f"The quota is known for {int(known.sum())} of the {len(coverage)} {by}: the others' deals count in "
            "closed won and pipeline, their quota nowhere."
        )
    if not (quota > 0):
        sentence = (
            f"The data have no quota for {period}, so there is no attainment or coverage: {who or 'the company'} "
            f"won {money(won)} ({_count(n_won, 'deal')}) with a close date in {period} {when}, and "
            f"{money(pipe)} is open for it ({_count(n_pipe, 'deal')})."
        )
        figures = [won_figure, pipe_figure, Figure("Quota", "none", f"no quota for {period} in the data")]
        return Headline(sentence, *_with_steps(figures, notes, steps))
    attainment = won / quota
    left = quota - won
    attained = Figure(
        "Attainment",
        format_value(attainment, "fraction"),
        "closed won / quota",
        tone="good" if attainment >= 1 else None,
    )
    quota_figure = Figure("Quota", money(quota), f"{period}")
    if left <= 0:
        sentence = (
            f"{subject} has met its {period} quota: **{format_value(attainment, 'fraction')}** attained "
            f"({money(won)} won of {money(quota)}) {when}, with {money(pipe)} more open in the period."
        )
        coverage_figure = Figure("Coverage", "met", "no quota left to cover")
    else:
        times = float(pipe / left)
        shortfall = (
            f"; even if every open deal {'dated in the period ' if int(total['undated_deals']) else ''}closed won, "
            f"it would end {money(left - pipe)} short"
            if pipe < left
            else ""
        )
        sentence = (
            f"{subject} has won **{format_value(attainment, 'fraction')} of its {period} quota** {when} "
            f"({money(won)} of {money(quota)}); the open pipeline of {money(pipe)} covers the {money(left)} left "
            f"**{format_value(times, 'multiple')}**{shortfall}."
        )
        coverage_figure = Figure(
            "Coverage",
            format_value(times, "multiple"),
            f"weighted: {format_value(float(total['weighted_coverage']), 'multiple')}",
            tone="bad" if times < 1 else None,
        )
    figures = [attained, coverage_figure, won_figure, quota_figure, pipe_figure]
    rated = coverage["attainment"].dropna()
    if len(rated) > 1:  # the total hides the rows: how many made their quota, and the furthest from it
        by = {"team": "Teams", "owner": "Reps"}.get(str(coverage.index.name), "Rows")
        lowest = rated.idxmin()
        figures.append(
            Figure(
                f"{by} at quota",
                f"{int((rated >= 1).sum())} of {len(rated)}",
                f"lowest: {lowest}, {format_value(float(rated[lowest]), 'fraction')}",
            )
        )
    return Headline(sentence, *_with_steps(figures, notes, steps))


def _with_steps(figures: list[Figure], notes: list[str], steps: StepReview | None) -> tuple[tuple[Figure, ...], str]:
    """The review's figures and note with what was done at each step (see `pipeline_review`).

    The share of completed visits that met the criteria (a figure while there are fewer than six, else a sentence
    of the note) and the stages whose criteria clearly pay or not (the note).
    """
    met, told = steps.met() if steps is not None else (0, 0)
    if told:
        share = _share(met, told)
        if len(figures) < 6:
            figures = [*figures, Figure("Exit criteria met", share, f"of {_count(told, 'completed stage visit')}")]
        else:
            notes = [*notes, f"Exit criteria were met on {share} of {_count(told, 'completed stage visit')}."]
        out = steps.outcomes
        clear = out[(out["ci_low"] > 0) | (out["ci_high"] < 0)] if out is not None and len(out) else out
        for stage, row in clear.iterrows() if clear is not None else ():
            way = "higher" if row["win_rate_diff"] > 0 else "lower"
            notes = [
                *notes,
                f"Deals that met the {stage} exit criteria had a win rate "
                f"{abs(row['win_rate_diff']) * 100:.1f} pp {way} than comparable deals that did not "
                f"(90% interval {row['ci_low'] * 100:+.1f} to {row['ci_high'] * 100:+.1f} pp).",
            ]
    return tuple(figures), " ".join(notes)
