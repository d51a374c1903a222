"""The ``activities`` table of `salesforecast.datasets.generate`: what reps did in each stage visit and for each lead.

Simulated after the deals and leads, from a random stream of its own (``numpy.random.default_rng([seed,
ACTIVITY_STREAM])``), so the other tables are the same with or without activities. Times are continuous days since
the start of the horizon, as in `salesforecast.datasets._generate` (its clock maps them into working hours).

The model (the numbers are the module's constants)
--------------------------------------------------
Exit criteria of the generator
    By position among the ``k`` open stages: stage 1 needs a meeting and a follow-up within 3 days of it, stage 3 a
    meeting, stage ``k - 2`` a proposal (`criteria_positions`; a position outside the map or already taken is
    left out). `with_generator_criteria` attaches them to a process map.
Deal visits
    Each visit to an open stage gets calls and e-mails (Poisson, 0.06 and 0.09 a day, at most 8 of each) while
    the rep works the deal: from the start of the visit to its end, or, for a visit longer than the stage's stall
    threshold (its segment's 80th percentile of days in stage), only up to that threshold: a stalled deal goes quiet,
    and an open deal stalled at ``as_of`` shows a gap since its last activity. Meetings, follow-ups and proposals
    fall in the visit's *window*: from the visit's start to the calendar day it ended (exclusive; a deal's next
    visit counts activities from the day it started, so none of them leaks into the next visit), and within the
    working period. A visit whose window is shorter than an hour (entered and left the same day) has none.
Criteria met, with a known effect (`CRITERIA_EFFECT`)
    Whether a visit to a stage with criteria meets them is drawn from the deal's (already simulated) outcome by
    Bayes' rule. With ``p`` the deal's win probability on entering the stage (the chain's, see the generator),
    ``q`` the compliance and ``delta`` the effect: ``P(win | met) = p0 + delta`` and ``P(win | not met) = p0``
    with ``p0 = p - q * delta`` (``delta`` clipped so that both are probabilities), so
    ``P(met | won) = q (p0 + delta) / p`` and ``P(met | lost) = q (1 - p0 - delta) / (1 - p)``; a deal still
    open at ``as_of`` meets them with probability ``q``. Among a rep's deals, met visits win exactly ``delta``
    more often than the others. A visit whose window is too short cannot meet them (``q = 0``). The activities
    are then placed so that the visit meets its criteria exactly when drawn (a visit that does not: no meeting,
    a meeting without follow-up, or a follow-up more than 3 days after the meeting).
Rep compliance
    The follow-up criterion (stage 1) is skipped by some reps: 30% of reps meet it with ``q = 0.3``, the others
    with ``q = 0.85``; stage 3 has ``q = 0.7`` and stage ``k - 2`` ``q = 0.65`` for every rep. Since a deal's
    outcome does not depend on its rep, ``p0`` is lower for compliant reps: a comparison that does not match on
    rep sees less than ``delta``. `GroundTruth.activity_effect` gives both: ``win_rate_diff``, the exact expected
    difference between met and not-met visits of the stage over all reps (ratio of expected counts over the
    simulated visits: what a comparison matched on stage, but not on rep, estimates), and ``within_rep``, ``delta``.
    Approximations: the truth counts every visit, while a comparison of outcomes sees closed deals only (deals
    still open at ``as_of`` are left out, a small selection); with a ``win_rate_shift`` the chain's unshifted ``p``
    is used, so the difference is then only about ``delta``. A process map given with exit criteria of its own keeps
    them, but the activities and this truth follow the generator's criteria.
Leads
    90% of leads get a first response (a call, or an e-mail) after a delay: lognormal, median 0.25 days times a
    rep factor (reps differ in speed), spread 0.9; then one more touch on average (Poisson, at most 4), until the
    lead converts or 30 days after it was created. None has an effect on conversion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from salesforecast.process import ExitCriterion, SalesProcess

__all__ = [
    "ACTIVITY_STREAM",
    "ACTIVITY_TYPES",
    "CRITERIA_EFFECT",
    "GENERATOR_CRITERIA",
    "criteria_positions",
    "simulate_activities",
    "with_generator_criteria",
]

#: Seed-sequence key of the activities' random stream (`numpy.random.default_rng([seed, ACTIVITY_STREAM])`).
ACTIVITY_STREAM = 19
#: The activity types simulated (codes are positions in this tuple).
ACTIVITY_TYPES = ("call", "email", "meeting", "follow_up", "proposal")
CALL, EMAIL, MEETING, FOLLOW_UP, PROPOSAL = range(5)
SUBJECTS = (
    "Call",
    "Email",
    "Meeting",
    "Thank-you letter",
    "Proposal sent",
    "First response call",
    "First response email",
)
#: Outcomes of calls (with their weights) and of meetings.
OUTCOMES, CALL_OUTCOME_WEIGHTS = ("Connected", "Left voicemail", "No answer", "Held"), (0.45, 0.35, 0.2)
#: The generator's exit criteria, by kind.
GENERATOR_CRITERIA: dict[str, tuple[ExitCriterion, ...]] = {
    "follow_up": (ExitCriterion("meeting"), ExitCriterion("follow_up", within_days=3, after="meeting")),
    "meeting": (ExitCriterion("meeting"),),
    "proposal": (ExitCriterion("proposal"),),
}
#: Per kind of criteria: the true effect ``delta`` (win-probability difference between deals that met the criteria
#: and comparable deals of the same rep that did not) and the compliance ``q`` (None: per rep, see `REP_COMPLIANCE`).
#: The meeting criterion has no effect, on purpose.
CRITERIA_EFFECT: dict[str, tuple[float, float | None]] = {
    "follow_up": (0.10, None),
    "meeting": (0.0, 0.7),
    "proposal": (0.12, 0.65),
}
#: Follow-up compliance of reps who skip follow-ups and of the others, and the share of reps who skip them.
REP_COMPLIANCE, SKIPPER_SHARE = (0.3, 0.85), 0.3
CALL_RATE, EMAIL_RATE, MAX_PER_TYPE = 0.06, 0.09, 8
EXTRA_MEETING, EXTRA_FOLLOW_UP, EXTRA_PROPOSAL = 0.25, 0.5, 0.3
MARGIN, MIN_WINDOW = 0.01, 0.05  # days: activities stay this far inside a visit; a shorter window has no meeting
FOLLOW_UP_MAX, LATE_MIN, LATE_MAX = 2.9, 3.3, 8.0  # days after the meeting: in time; late
LEAD_CONTACTED, LEAD_DELAY_MEDIAN, LEAD_DELAY_SIGMA, LEAD_REP_SIGMA = 0.9, 0.25, 0.9, 0.8
LEAD_WINDOW_DAYS, LEAD_TOUCHES, LEAD_MAX_TOUCHES = 30.0, 1.0, 4
_Z_STALL = 0.8416212335729143  # Phi^-1(0.8), as the generator's stall threshold


def criteria_positions(k: int) -> dict[int, str]:
    """Open-stage position -> kind of the generator's criteria (`GENERATOR_CRITERIA`), for ``k`` open stages.

    Examples
    --------
    >>> criteria_positions(8)
    {1: 'follow_up', 3: 'meeting', 6: 'proposal'}
    >>> criteria_positions(3)
    {1: 'follow_up'}
    """
    out: dict[int, str] = {}
    for pos, kind in ((1, "follow_up"), (3, "meeting"), (k - 2, "proposal")):
        if 0 <= pos < k and pos not in out:
            out[pos] = kind
    return out


def with_generator_criteria(process: SalesProcess) -> SalesProcess:
    """`process` with the generator's exit criteria on its open stages (see `criteria_positions`).

    Examples
    --------
    >>> p = with_generator_criteria(SalesProcess.default())
    >>> {s: [c.describe() for c in cs] for s, cs in p.exit_criteria.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'Qualification': ['at least 1 meeting', 'follow up within 3 days of the meeting'],
     'Value Proposition': ['at least 1 meeting'], 'Proposal/Price Quote': ['at least 1 proposal']}
    """
    spec = process.to_dict()
    positions = criteria_positions(len(process.open_stages))
    open_specs = [d for d in spec["stages"] if d["kind"] == "open"]
    for pos, kind in positions.items():
        open_specs[pos]["exit_criteria"] = [c.to_dict() for c in GENERATOR_CRITERIA[kind]]
    return SalesProcess.from_dict(spec, source="generate")


def _uniform(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + rng.random(len(lo)) * (hi - lo)


def simulate_activities(
    *,
    seed: int,
    open_stages: list[str],
    deal: np.ndarray,
    h_time: np.ndarray,
    h_stage: np.ndarray,
    deal_owner: np.ndarray,
    deal_segment: np.ndarray,
    deal_final: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    win_before: np.ndarray,
    win_treated: np.ndarray,
    deal_dev_time: np.ndarray,
    deal_dev_rho: np.ndarray,
    dev_delta: float,
    win_p: np.ndarray,
    horizon: float,
    n_reps: int,
    lead_created: np.ndarray,
    lead_end: np.ndarray,
    lead_owner: np.ndarray,
) -> tuple[dict[str, np.ndarray], pd.DataFrame, dict[str, np.ndarray]]:
    """Simulate the activities of deals and leads (see the module docstring).

    Parameters are the generator's arrays: the stage history rows (``deal``, ``h_time``, ``h_stage``: open stages
    ``0..k-1``, won ``k``, lost ``k + 1``; sorted by deal, then time), per deal its owner (rep code), segment code
    and final stage, the duration parameters ``mu`` (stage x segment) and ``sigma``, the win probability on entering
    each stage before any deviation (``win_before``) and in the visit of a first deviation (``win_treated``), and
    the deviation effect (per deal the start of the visit in which it first deviated and its flip chance;
    ``dev_delta``), the chain's ``win_p``, and per lead its creation, the end of its
    contact window (conversion, 30 days, or ``as_of``) and owner.

    Returns
    -------
    columns : dict of numpy arrays
        One entry per activity: ``time`` (continuous days), ``type`` (code into `ACTIVITY_TYPES`), ``deal`` and
        ``lead`` (codes, -1 when none), ``owner`` (rep code), ``subject`` (code into `SUBJECTS`), ``outcome`` (code into
        `OUTCOMES`, -1 for none), ``duration`` (minutes, NaN for e-mails, follow-ups and proposals); sorted by time,
        then deal, then lead.
    truth : pandas.DataFrame
        Per stage with criteria (index ``stage``): ``criteria`` (in words), ``win_rate_diff``, ``within_rep``,
        ``compliance`` (expected share of its visits that meet the criteria) and ``visits``.
    visits : dict of numpy arrays
        The visits to stages with criteria: ``deal``, ``stage``, ``entry``, ``exit`` (continuous days; the horizon
        for a visit still open) and ``met`` (bool).
    """
    rng = np.random.default_rng([seed, ACTIVITY_STREAM])
    k = len(open_stages)
    positions = criteria_positions(k)

    # ---- visits: runs of one stage in a deal's history
    start = np.r_[True, (deal[1:] != deal[:-1]) | (h_stage[1:] != h_stage[:-1])]
    vi = np.flatnonzero(start)
    v_deal, v_stage, v_entry = deal[vi], h_stage[vi], h_time[vi]
    has_next = np.r_[v_deal[1:] == v_deal[:-1], False]
    v_exit = np.where(has_next, np.r_[v_entry[1:], horizon], horizon)
    keep = v_stage < k
    v_deal, v_stage, v_entry, v_exit, has_next = (x[keep] for x in (v_deal, v_stage, v_entry, v_exit, has_next))
    nv = len(v_deal)
    seg = deal_segment[v_deal]
    stall = np.exp(mu[v_stage, seg] + _Z_STALL * sigma[v_stage])
    active_end = v_entry + np.minimum(v_exit - v_entry, stall)  # a stalled deal goes quiet after the threshold
    lo = v_entry + MARGIN
    hi = np.where(has_next, np.minimum(active_end, np.floor(v_exit)), active_end) - MARGIN
    window = hi - lo >= MIN_WINDOW

    times, types, deals, subjects = [], [], [], []

    def add(visits: np.ndarray, at: np.ndarray, kind: int) -> None:
        times.append(at)
        types.append(np.full(len(visits), kind))
        deals.append(v_deal[visits])
        subjects.append(np.full(len(visits), kind))

    # ---- calls and e-mails while the deal is worked
    work_hi = active_end - MARGIN
    worked = np.maximum(work_hi - lo, 0.0)
    for kind, rate in ((CALL, CALL_RATE), (EMAIL, EMAIL_RATE)):
        count = np.minimum(rng.poisson(rate * worked), MAX_PER_TYPE)
        idx = np.repeat(np.arange(nv), count)
        add(idx, _uniform(rng, lo[idx], work_hi[idx]), kind)

    # ---- criteria met, drawn from the outcome (Bayes), per stage with criteria
    rep_skips = rng.random(n_reps) < SKIPPER_SHARE
    rep_q = np.where(rep_skips, REP_COMPLIANCE[0], REP_COMPLIANCE[1])
    after_dev = v_entry >= deal_dev_time[v_deal]
    rho = deal_dev_rho[v_deal]
    p_after = np.where(dev_delta < 0, win_p[v_stage] * (1.0 - rho), win_p[v_stage] + (1.0 - win_p[v_stage]) * rho)
    treated_visit = v_entry == deal_dev_time[v_deal]  # the visit in which the deal first deviated
    p_visit = np.where(treated_visit, win_treated[v_stage], np.where(after_dev, p_after, win_before[v_stage]))
    final = deal_final[v_deal]
    met = np.zeros(nv, dtype=bool)
    truth_rows, crit_visits = [], []
    for pos, kind in sorted(positions.items()):  # a loop over (at most three) stages, in map order
        sel = np.flatnonzero(v_stage == pos)
        delta, q_stage = CRITERIA_EFFECT[kind]
        q = (rep_q[deal_owner[v_deal[sel]]] if q_stage is None else np.full(len(sel), q_stage)) * window[sel]
        p = p_visit[sel]
        d = np.full(len(sel), delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            if delta > 0:
                d = np.minimum(
                    d, np.minimum(np.where(q > 0, p / q, np.inf), np.where(q < 1, (1 - p) / (1 - q), np.inf))
                )
            elif delta < 0:
                d = np.maximum(
                    d, np.maximum(np.where(q > 0, -(1 - p) / q, -np.inf), np.where(q < 1, -p / (1 - q), -np.inf))
                )
            p0 = p - q * d
            p_met = np.where(
                final[sel] == k,
                q * (p0 + d) / p,
                np.where(final[sel] == k + 1, q * (1.0 - p0 - d) / (1.0 - p), q),
            )
        met[sel] = rng.random(len(sel)) < np.nan_to_num(p_met)
        win_met, n_met = np.sum(q * (p0 + d)), np.sum(q)
        win_not, n_not = np.sum((1.0 - q) * p0), np.sum(1.0 - q)
        diff = (win_met / n_met if n_met > 0 else np.nan) - (win_not / n_not if n_not > 0 else np.nan)
        realizable = q > 0
        truth_rows.append(
            {
                "stage": open_stages[pos],
                "criteria": "; ".join(c.describe() for c in GENERATOR_CRITERIA[kind]),
                "win_rate_diff": round(float(diff), 12) + 0.0,
                "within_rep": float(np.mean(d[realizable])) if realizable.any() else np.nan,
                "compliance": float(np.mean(q)) if len(q) else np.nan,
                "visits": len(sel),
            }
        )
        crit_visits.append(sel)

    # ---- meetings, follow-ups, proposals in the window of each visit
    kind_of = np.full(k, "", dtype=object)
    for pos, kind in positions.items():
        kind_of[pos] = kind
    v_kind = kind_of[v_stage]
    span = np.where(window, hi - lo, 0.0)
    u = rng.random((nv, 6))
    # stage 1: a meeting and a follow-up within 3 days of it, or one of the ways not to
    fu = np.flatnonzero(v_kind == "follow_up")
    ok, miss = fu[met[fu]], fu[~met[fu] & window[fu]]
    how = u[miss, 0]  # not met: no meeting (0.25), a meeting without follow-up (0.5), a late follow-up (0.25)
    meeting_at = lo + u[:, 1] * span * 0.7
    late_ok = hi - meeting_at >= LATE_MIN + 0.05
    met_meeting = np.r_[ok, miss[how >= 0.25]]
    add(met_meeting, meeting_at[met_meeting], MEETING)
    add(ok, meeting_at[ok] + u[ok, 2] * np.minimum(FOLLOW_UP_MAX, hi[ok] - meeting_at[ok]), FOLLOW_UP)
    late = miss[(how >= 0.75) & late_ok[miss]]
    add(
        late,
        meeting_at[late] + LATE_MIN + u[late, 2] * (np.minimum(LATE_MAX, hi[late] - meeting_at[late]) - LATE_MIN),
        FOLLOW_UP,
    )
    # stage 3: a meeting (sometimes two); stage k - 2: a proposal
    for kind, activity in (("meeting", MEETING), ("proposal", PROPOSAL)):
        ok = np.flatnonzero((v_kind == kind) & met)
        add(ok, lo[ok] + u[ok, 1] * span[ok], activity)
        two = ok[u[ok, 3] < 0.3]
        add(two, lo[two] + u[two, 4] * span[two], activity)
    # other stages (and the activities a stage's criteria do not name): meetings, their follow-ups, proposals
    free_meeting = np.flatnonzero(window & ~np.isin(v_kind, ["follow_up", "meeting"]) & (u[:, 3] < EXTRA_MEETING))
    extra_at = lo + u[:, 4] * span * 0.8
    add(free_meeting, extra_at[free_meeting], MEETING)
    free_fu = free_meeting[u[free_meeting, 5] < EXTRA_FOLLOW_UP]
    add(free_fu, extra_at[free_fu] + u[free_fu, 2] * (hi[free_fu] - extra_at[free_fu]), FOLLOW_UP)
    last = np.flatnonzero(window & (v_stage == k - 1) & (v_kind == "") & (u[:, 5] < EXTRA_PROPOSAL))
    add(last, lo[last] + u[last, 0] * span[last], PROPOSAL)  # a revised proposal in the last stage

    # ---- leads: first response and a few more touches
    nl = len(lead_created)
    rep_speed = np.exp(np.log(LEAD_DELAY_MEDIAN) + LEAD_REP_SIGMA * rng.standard_normal(n_reps))
    delay = rep_speed[lead_owner] * np.exp(LEAD_DELAY_SIGMA * rng.standard_normal(nl))
    first = lead_created + delay
    contacted = (rng.random(nl) < LEAD_CONTACTED) & (first < lead_end - MARGIN)
    first_type = np.where(rng.random(nl) < 0.55, CALL, EMAIL)
    touches = np.where(contacted, np.minimum(rng.poisson(LEAD_TOUCHES, nl), LEAD_MAX_TOUCHES), 0)
    li = np.flatnonzero(contacted)
    ti = np.repeat(np.arange(nl), touches)
    t_touch = _uniform(rng, first[ti], lead_end[ti] - MARGIN)
    type_touch = np.where(rng.random(len(ti)) < 0.5, CALL, EMAIL)
    lead_times = np.r_[first[li], t_touch]
    lead_types = np.r_[first_type[li], type_touch]
    lead_subjects = np.r_[first_type[li] + len(ACTIVITY_TYPES), type_touch]
    lead_codes = np.r_[li, ti]

    # ---- one table, in time order
    d_time, d_type, d_deal, d_subject = (np.concatenate(x) for x in (times, types, deals, subjects))
    time = np.r_[d_time, lead_times]
    code_type = np.r_[d_type, lead_types].astype(np.int64)
    code_deal = np.r_[d_deal, np.full(len(lead_times), -1)].astype(np.int64)
    code_lead = np.r_[np.full(len(d_time), -1), lead_codes].astype(np.int64)
    owner = np.where(code_deal >= 0, deal_owner[np.maximum(code_deal, 0)], lead_owner[np.maximum(code_lead, 0)])
    subject = np.r_[d_subject, lead_subjects].astype(np.int64)
    order = np.lexsort((code_type, code_lead, code_deal, time))
    duration = np.full(len(time), np.nan)
    calls = code_type == CALL
    duration[calls] = np.round(np.exp(np.log(8.0) + 0.6 * rng.standard_normal(int(calls.sum()))))
    meetings = code_type == MEETING
    duration[meetings] = rng.choice(np.array([30.0, 45.0, 60.0]), size=int(meetings.sum()))
    outcome = np.full(len(time), -1)  # codes into OUTCOMES; -1: none (e-mails, follow-ups, proposals)
    outcome[calls] = rng.choice(3, size=int(calls.sum()), p=CALL_OUTCOME_WEIGHTS)
    outcome[meetings] = 3
    columns = {
        "outcome": outcome[order],
        "time": time[order],
        "type": code_type[order],
        "deal": code_deal[order],
        "lead": code_lead[order],
        "owner": owner[order].astype(np.int64),
        "subject": subject[order],
        "duration": duration[order],
    }
    truth = pd.DataFrame(
        truth_rows, columns=["stage", "criteria", "win_rate_diff", "within_rep", "compliance", "visits"]
    ).astype({"stage": "str", "criteria": "str"})
    truth = truth.set_index("stage")
    sel = np.concatenate(crit_visits) if crit_visits else np.zeros(0, dtype=np.int64)
    sel = np.sort(sel)
    visits = {"deal": v_deal[sel], "stage": v_stage[sel], "entry": v_entry[sel], "exit": v_exit[sel], "met": met[sel]}
    return columns, truth, visits
