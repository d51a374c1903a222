"""A seeded synthetic B2B sales organisation with known ground truth.

`generate` simulates reps, leads, opportunities moving through the stages of a `SalesProcess`, weekly
forecast calls and quotas, and the activities on deals and leads, fully vectorised with numpy (loops run only
over simulation steps, teams, reps and quarters). Every random number of the deals, leads, submissions and quotas
comes from one ``numpy.random.default_rng(seed)``; the activities and the deviation effects have streams of their
own derived from the seed (so adding them changes nothing else): the same arguments give byte-identical tables.
The true parameters behind the data come back as a `GroundTruth`, so that models fitted on the tables can be
checked against the truth.

The model in brief (all numbers are the defaults; the exact values are in the returned `GroundTruth`)
------------------------------------------------------------------------------------------------------
Time
    The data run from ``start`` to ``as_of = start + years`` (midnight). Nothing happens at or after
    ``as_of``: deals still open then stay open, leads not yet converted are not converted.
    Event times are simulated in continuous days, then mapped into working hours: an event at fraction
    ``f`` of a calendar day happens at ``08:00 + f * 10h`` of that day (a monotone map, so order is kept);
    times are rounded to the minute. Dates (close dates) are midnights.
Organisation
    Four teams (``NA East``, ``NA West``, ``EMEA``, ``APAC``; region ``North America``, ``EMEA``, ``APAC``)
    times three segments (``SMB``, ``Mid-Market``, ``Enterprise``) form 12 territories; each rep owns one
    territory; reps are spread over territories in proportion to their expected deal volume (at least one
    each). Deals and leads go to a uniformly chosen rep of their territory.
Leads
    A prospect with features ``industry, employees, title_seniority, engagement_score, email_opens,
    web_visits, country, form_fill_seconds`` and a ``lead_source``. It converts with the TRUE probability
    ``p = 1 / (1 + exp(-eta))``, ``eta`` the linear predictor given by `GroundTruth.lead_coefficients`
    (`GroundTruth.lead_linear_predictor` computes it from the leads table). ``country`` has no effect and
    ``form_fill_seconds`` is pure noise (coefficient 0). A converting lead converts after a lognormal delay
    (median 12 days, capped at 180 days); conversions that would fall after ``as_of`` have not happened
    yet, so leads created less than 180 days before ``as_of`` are censored. A random subset of the converted
    leads (about ``lead_share`` of the opportunities) opens an opportunity at ``converted_at`` with the
    lead's owner and lead source, on a new account; the other converted leads convert to a contact only
    (no ``opportunity_id``). The remaining opportunities come from existing accounts, without a lead,
    with lead source ``Existing Customer``.
Deal dynamics (a semi-Markov process whose jump chain is exactly Markov)
    A deal is created in an open stage drawn from `GroundTruth.initial_stage`. Each visit to open stage
    ``s`` draws ``z ~ N(0, 1)``, stays ``exp(mu[s, segment] + sigma[s] * z)`` days (at least one hour), and
    then jumps to the next stage drawn from one of two rows: the *long* row when the visit is longer than
    the stage's segment-specific 80th percentile (``z > Phi^-1(0.8)``, probability exactly 0.2 for every
    stage and segment), the *short* row otherwise (`GroundTruth.stall_transition_matrix`). Long visits
    lose twice as often as the marginal row, short visits 0.75 times as often. The mixture
    ``0.8 * short + 0.2 * long`` equals `GroundTruth.transition_matrix` in every segment, and each visit
    draws afresh, so the embedded jump chain is a Markov chain with exactly that matrix (the stall effect
    only couples a jump with the length of the visit before it).
    From open stage ``i`` of ``K``: advance to ``i + 1`` (``Closed Won`` from the last stage), skip to
    ``i + 2`` (when ``i + 2 < K``), regress to ``i - 1`` (when ``i > 0``), lose, or (stages in the last
    40% of the map, but not the last) win directly.
    Step cap: a deal still open after ``max_steps`` jumps is closed lost at its next jump; the probability
    of reaching the cap is `GroundTruth.step_cap_probability` (below 1e-15 with the defaults).
    ``GroundTruth.win_probability`` is the absorption probability in the won stage of that chain.
Win-rate shift between years (``win_rate_shift``, default 0: none)
    From the second year of the horizon on (``start + 1 year``), win probabilities change by the relative
    amount ``win_rate_shift`` (e.g. ``-1/3``: a deal open in year two or later wins a third less often
    than the same deal in year one). It is done by thinning wins: a jump to the won stage at time ``t``
    (after the end-of-quarter push) is a jump to the lost stage instead with probability ``1 - f(t)``,
    ``f = 1`` in year one and ``1 + win_rate_shift`` later for a fall; for a rise (``win_rate_shift > 0``)
    year one is thinned instead, ``f = 1 / (1 + win_rate_shift)`` in year one and 1 later. The chain up to
    the win is unchanged, so a deal open at a time in year two or later wins with exactly
    ``(1 + win_rate_shift)`` times the probability of a deal in year one in the same state
    (`GroundTruth.win_within` applies the same factors, so the oracle stays exact). Expected bookings and
    quotas use the chain's unthinned probabilities (the planners do not foresee the shift). With the
    default 0, no random number is drawn for it and the tables are those of earlier versions.
End-of-quarter push (time only)
    A win that would happen less than 21 days before a fiscal quarter end is, with probability
    ``eoq_delay``, delayed to a uniform time in the last 2.5 days of the quarter. Only the time of the win
    changes, never the chain.
Amounts and close dates
    Amount at creation: lognormal by segment (median 9k SMB, 40k Mid-Market, 160k Enterprise) times a
    product factor, rounded to 10. At an open-to-open jump the amount changes with probability 0.15
    (lognormal factor); at a win it is discounted by 0-15% with probability 0.3. The planned close date is
    the rep's (optimistic) estimate of the remaining time: the sum of the stage medians still ahead times
    a lognormal factor with median 0.8. When the planned date passes during a visit, one to six days later
    the rep sets a new date, estimated the same way (a history row without a stage change), unless the deal
    is neglected (probability 0.3); at a jump a stale date is re-estimated, and a current one is pushed by
    7-45 days with probability 0.1. Closed deals carry their actual close date (the day of the last change).
Forecast category (per history row)
    The process default of the stage, raised for deals whose planned close date is in the fiscal quarter
    of the row: the last open stage to ``commit``, the two before it to ``best_case``. Won rows are
    ``closed``, lost rows ``omitted``.
Forecast submissions
    Every Monday at 09:00 in ``[start, as_of)``, each rep submits for the current fiscal quarter ``q``:

        commit_{r,q,w} = rep_bias_r * base_{r,q,w} * exp(0.12 * e - 0.12**2 / 2),   e ~ N(0, 1)
        base_{r,q,w}   = (1 - lam_w) * E_r + lam_w * A_{r,q}
        best_case      = commit * (1.1 + 0.4 * (1 - lam_w))

    with ``A_{r,q}`` the rep's actual closed-won amount with close date in ``q`` (the opportunities table's
    final amounts, as of ``as_of``), ``E_r`` the rep's expected quarterly bookings
    (`GroundTruth.expected_bookings`: the sum over the rep's deals of amount at creation times the win
    probability of the creation stage, divided by the number of quarters in the horizon, ``days / 91.3125``)
    and ``lam_w`` the elapsed fraction of the quarter at submission. Submissions are rounded to 100.
    So ``rep_bias_r = E[commit / base]``: a rep with ``rep_bias = 0.8`` calls 80% of what the blend says
    (a sandbagger); late in the quarter ``lam`` is near 1 and ``commit / actual`` estimates ``rep_bias``.
Quotas
    ``round(1.1 * E_r, -3)`` per rep and fiscal quarter of the horizon.
Activities (``activities=True``, the default)
    Simulated after everything above from a random stream of their own (``default_rng([seed, 19])``), so the other
    tables are byte-identical with or without them: calls and e-mails while a deal is worked in each stage visit
    (a deal that stalls goes quiet after its stall threshold), meetings, follow-ups and proposals, and on leads a
    first response and a few touches; none after ``as_of``. The process returned carries the generator's exit
    criteria (stage 1: a meeting and a follow-up within 3 days of it; stage 3: a meeting; stage ``k - 2``: a
    proposal), unless the given process has criteria of its own. Whether a visit met its stage's criteria is drawn
    from the deal's outcome by Bayes' rule, so that met visits win by a known amount more often
    (`GroundTruth.activity_effect`; none for the meeting of stage 3), while the deals themselves are unchanged;
    some reps skip follow-ups. Details in `salesforecast.datasets._activities`.
Deviation effects (``deviation_effect``, default none)
    A deal's first skip (a jump over one stage), first regression (back one stage) or first stall (a long visit,
    above its segment's ``p80_days``), when given an effect ``delta``, changes the deal's outcome at absorption:
    from the visit of the deviation (the one the skip or regression led into, or the stalled one; win probability
    ``w``), a win is lost with probability ``-delta / w`` (``delta < 0``) or a loss is won with probability
    ``delta / (1 - w)`` (``delta > 0``), from a random stream of its own (``default_rng([seed, 2])``): the deal
    then wins with ``w + delta`` (clipped to [0, 1]). One deviation at a time. Deals that have not deviated yet
    may still do so, and then get the effect, so the stage-matched comparison of
    `salesforecast.adherence.deviation_outcomes` sees somewhat less than ``delta``: `GroundTruth.deviation_effect`
    gives exactly what it estimates, ``sum_s f_s * (treated_s - control_s)``, with ``f_s`` the expected share of
    first deviations in stage ``s``, ``treated_s`` the win probability of the visit of a first deviation and
    ``control_s`` that of a visit to ``s`` without a deviation (yet, nor in it; from the absorbing chain with the
    deviating moves taken out). Without an effect the truths of a skip and a regression are exactly 0 (the jump
    chain is Markov), and a stall's is the built-in one (long visits lose twice as often); with an effect on one
    deviation, the others' truths are not computed (NaN: the effect reaches them through the deals' pasts). The
    stall's truth is that of stalls measured at the generator's threshold: ``deal_adherence`` with ``stall_days``
    the truth's ``p80_days`` of each segment, and ``eoq_delay=0`` (the end-of-quarter push lengthens won visits).
    The comparison counts closed deals only: deals still open at ``as_of`` are left out by it, which biases it
    slightly (about 0.01 for a skip effect of -0.3 over three years; nothing over eight). The win probabilities of
    the truth ignore ``win_rate_shift``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from salesforecast._utils import DAY_US
from salesforecast.datasets._activities import (
    ACTIVITY_TYPES,
    LEAD_WINDOW_DAYS,
    OUTCOMES,
    SUBJECTS,
    simulate_activities,
    with_generator_criteria,
)
from salesforecast.process import FORECAST_CATEGORIES, SalesProcess
from salesforecast.schema import CRMData, validate

__all__ = ["SAMPLE_PARAMS", "GroundTruth", "generate", "lead_linear_predictor"]

#: Arguments of the committed sample (`load_sample`); `scripts/make_sample.py` regenerates it.
SAMPLE_PARAMS: dict[str, Any] = {"n_opportunities": 3000, "seed": 2024, "start": "2023-01-01", "years": 3}

# ------------------------------------------------------------------------------------------- constants
TEAMS = ("NA East", "NA West", "EMEA", "APAC")
TEAM_WEIGHTS = np.array([0.30, 0.25, 0.30, 0.15])
REGIONS = {"NA East": "North America", "NA West": "North America", "EMEA": "EMEA", "APAC": "APAC"}
COUNTRIES = {
    "NA East": (("United States", "Canada"), (0.85, 0.15)),
    "NA West": (("United States", "Canada"), (0.92, 0.08)),
    "EMEA": (("United Kingdom", "Germany", "France", "Netherlands", "Sweden"), (0.32, 0.28, 0.2, 0.12, 0.08)),
    "APAC": (("Australia", "Japan", "Singapore", "India"), (0.4, 0.25, 0.2, 0.15)),
}
COUNTRY_LIST = list(dict.fromkeys(c for team in TEAMS for c in COUNTRIES[team][0]))
SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
#: Segment by company size: employees < 200 SMB, < 2000 Mid-Market, else Enterprise.
SEGMENT_EMPLOYEE_BOUNDS = (200, 2000)
EMPLOYEES_MEDIAN, EMPLOYEES_SIGMA = 200.0, 1.9
SEGMENT_DURATION_FACTOR = np.array([0.55, 1.0, 1.9])
#: Median and log-sd of the amount at creation, by segment.
AMOUNT_MEDIAN = np.array([9_000.0, 40_000.0, 160_000.0])
AMOUNT_SIGMA = np.array([0.55, 0.6, 0.7])
PRODUCTS = ("Core Platform", "Analytics & Insights", "Integrations", "Premium Support")
PRODUCT_WEIGHTS = np.array([0.45, 0.25, 0.18, 0.12])
PRODUCT_FACTOR = np.array([1.0, 0.6, 0.45, 0.3])

INDUSTRIES = ("Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education")
INDUSTRY_WEIGHTS = (0.24, 0.17, 0.15, 0.18, 0.16, 0.10)
SENIORITIES = ("Individual Contributor", "Manager", "Director", "VP", "C-Level")
SENIORITY_WEIGHTS = (0.35, 0.30, 0.18, 0.10, 0.07)
LEAD_SOURCES = ("Web", "Paid Search", "Event", "Referral", "Partner", "Outbound")
LEAD_SOURCE_WEIGHTS = (0.30, 0.18, 0.12, 0.10, 0.10, 0.20)
ACCOUNT_SOURCE = "Existing Customer"

#: The TRUE conversion model: logit p = sum of these terms (categorical terms `feature=level`).
LEAD_COEFFICIENTS: dict[str, float] = {
    "intercept": -2.45,
    **dict(zip([f"industry={v}" for v in INDUSTRIES], (0.5, 0.3, 0.0, -0.2, -0.4, -0.6), strict=True)),
    **dict(zip([f"title_seniority={v}" for v in SENIORITIES], (-0.6, -0.1, 0.3, 0.5, 0.4), strict=True)),
    **dict(zip([f"lead_source={v}" for v in LEAD_SOURCES], (0.0, -0.3, 0.2, 0.9, 0.6, -0.5), strict=True)),
    "log10(employees) - 2": 0.35,
    "(engagement_score - 50) / 10": 0.45,
    "log1p(email_opens)": 0.25,
    "log1p(web_visits)": 0.35,
    "form_fill_seconds": 0.0,
}
_NUMERIC_TERMS = {
    "log10(employees) - 2": lambda d: np.log10(d["employees"].to_numpy(dtype=float)) - 2.0,
    "(engagement_score - 50) / 10": lambda d: (d["engagement_score"].to_numpy(dtype=float) - 50.0) / 10.0,
    "log1p(email_opens)": lambda d: np.log1p(d["email_opens"].to_numpy(dtype=float)),
    "log1p(web_visits)": lambda d: np.log1p(d["web_visits"].to_numpy(dtype=float)),
    "form_fill_seconds": lambda d: d["form_fill_seconds"].to_numpy(dtype=float),
}
_EXPECTED_CONVERSION = 0.20  # used only to size the lead population
CONVERSION_DELAY_MEDIAN, CONVERSION_DELAY_SIGMA, CONVERSION_DELAY_MAX = 12.0, 0.9, 180.0

STALL_QUANTILE = 0.8
_Z_STALL = 0.8416212335729143  # Phi^-1(0.8)
STALL_LOSS_FACTOR = 2.0  # a long visit loses at twice the marginal rate; short visits at 0.75 times it
MIN_VISIT_DAYS = 1.0 / 24.0
EOQ_WINDOW_DAYS, EOQ_LAST_DAYS = 21.0, 2.5
COMMIT_NOISE_SIGMA = 0.12
QUARTER_DAYS = 365.25 / 4
CLOSE_ESTIMATE_MEDIAN, CLOSE_ESTIMATE_SIGMA = 0.8, 0.35
NEGLECT_PROBABILITY = 0.3
RANDOM_PUSH_PROBABILITY = 0.1
AMOUNT_CHANGE_PROBABILITY, WIN_DISCOUNT_PROBABILITY = 0.15, 0.3
#: The deviations `generate` can give an effect (``deviation_effect``): the jump that makes one, as the difference
#: ``next stage - stage`` between open stages (a skip jumps over one stage, a regression goes back one), or None for
#: a stall (a visit longer than its stage's stall threshold, the segment's 80th percentile of days in stage).
DEVIATION_JUMPS: dict[str, int | None] = {"skipped_stage": 2, "regression": -1, "stalled": None}
#: Seed-sequence key of the random stream of the deviation effects (`numpy.random.SeedSequence([seed, key])`).
DEVIATION_STREAM = 2

_FIRST_NAMES = (
    "Ava",
    "Liam",
    "Mia",
    "Noah",
    "Sofia",
    "Lucas",
    "Amara",
    "Mateo",
    "Chloe",
    "Ethan",
    "Priya",
    "Kenji",
    "Zoe",
    "Omar",
    "Lena",
    "Diego",
    "Hannah",
    "Ravi",
    "Elena",
    "Jonas",
    "Fatima",
    "Oliver",
    "Aisha",
    "Marco",
    "Ingrid",
    "Samuel",
    "Yuki",
    "Daniel",
    "Nadia",
    "Tomás",
    "Grace",
    "Arjun",
    "Clara",
    "Felix",
    "Leila",
    "Hugo",
    "Maya",
    "Kwame",
    "Sara",
    "Björn",
)
_LAST_NAMES = (
    "Chen",
    "Okafor",
    "Müller",
    "Rossi",
    "Nakamura",
    "Garcia",
    "Patel",
    "Johansson",
    "O'Brien",
    "Kowalski",
    "Dubois",
    "Haddad",
    "Silva",
    "Kim",
    "Novak",
    "Fischer",
    "Mensah",
    "Larsen",
    "Tanaka",
    "Moreau",
    "Singh",
    "Andersen",
    "Costa",
    "Ivanova",
    "Walsh",
    "Nguyen",
    "Schmidt",
    "Lopez",
    "Berg",
    "Hughes",
    "Yilmaz",
    "Reyes",
    "Sato",
    "Murphy",
    "Jansen",
    "Alvarez",
    "Brooks",
    "Kaur",
    "Weber",
    "Park",
)


def rep_names(n: int) -> list[str]:
    """Deterministic, unique rep names ("Ava Chen", ...) for ``n <= 1600`` reps.

    Examples
    --------
    >>> rep_names(3)
    ['Ava Chen', 'Liam Okafor', 'Mia Müller']
    """
    nf, nl = len(_FIRST_NAMES), len(_LAST_NAMES)
    if n > nf * nl:
        raise ValueError(f"at most {nf * nl} reps have distinct names, got n_reps={n}")
    return [f"{_FIRST_NAMES[i % nf]} {_LAST_NAMES[(i // nf + i) % nl]}" for i in range(n)]


# ------------------------------------------------------------------------------------------- truth
@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The true parameters behind a `generate` data set.

    Attributes
    ----------
    transition_matrix : pandas.DataFrame
        Rows: open stages; columns: every stage of the process (open, won, lost); rows sum to 1. Entry
        ``[s, t]`` is the probability that a deal's next stage change from ``s`` goes to ``t`` (the embedded
        jump chain; identical in every segment).
    win_probability : pandas.Series
        Open stage -> probability of eventually winning from that stage (absorbing Markov chain:
        ``N = (I - Q)^-1``, ``B = N R``; ignoring the step cap, see `step_cap_probability`).
    lead_probability : pandas.Series
        lead_id -> true probability that the lead (eventually) converts.
    lead_coefficients : pandas.Series
        The true logistic model: term -> coefficient. ``intercept``; ``feature=level`` for the categorical
        features ``industry``, ``title_seniority``, ``lead_source`` (a lead gets the coefficient of its
        level); numeric terms named by their transform (``log10(employees) - 2``,
        ``(engagement_score - 50) / 10``, ``log1p(email_opens)``, ``log1p(web_visits)``,
        ``form_fill_seconds``, the last with coefficient 0). ``country`` has no effect.
    rep_bias : pandas.Series
        owner -> true multiplicative bias of the rep's commit calls: ``E[commit / base]`` with
        ``base = (1 - lam) * expected_bookings + lam * actual closed-won amount of the quarter`` and
        ``lam`` the elapsed fraction of the quarter at submission (see the module docstring). Below 1:
        sandbagger; above 1: optimist.
    stage_duration : pandas.DataFrame
        One row per (open stage, segment): ``mu``, ``sigma`` (days in stage are
        ``exp(mu + sigma * Z)``, at least one hour), ``median_days``, ``mean_days`` and ``p80_days`` (the
        stall threshold). Durations are calendar days before the working-hours mapping of times (which
        shifts each event by less than a day); won visits may be lengthened by the end-of-quarter push.
    params : dict
        The arguments `generate` was called with (after defaults are resolved); ``win_rate_shift`` and
        ``deviation_effect`` only when they are not 0. `win_probability` and `transition_matrix` describe the chain
        before the win-rate shift and the deviation effects; `win_rate_factor` gives the factor of each time.
    initial_stage : pandas.Series
        Open stage -> probability that a deal is created in it.
    stall_transition_matrix : dict of str to pandas.DataFrame
        ``{"short": ..., "long": ...}``: the transition rows used after visits no longer / longer than the
        stage's ``p80_days``; ``0.8 * short + 0.2 * long == transition_matrix``.
    step_cap_probability : pandas.Series
        Open stage -> probability that a deal starting there is still open after ``max_steps`` jumps
        (and is then forced to lost).
    expected_bookings : pandas.Series
        owner -> ``E_r``, the rep's expected quarterly bookings used by submissions and quotas.
    as_of : pandas.Timestamp
        End of the horizon: no event at or after it exists.
    activity_effect : pandas.DataFrame
        One row per stage with the generator's exit criteria (index ``stage``; empty without activities):
        ``criteria`` (in words), ``win_rate_diff`` (the true difference in win probability between visits to the
        stage that met its criteria and those that did not, over all reps: what a comparison matched on the stage,
        and on segment, amount or age, but not on rep, estimates), ``within_rep`` (the same among one rep's deals:
        the effect ``delta``), ``compliance`` (expected share of visits that meet the criteria) and ``visits``.
        See "Activities" in the module docstring.
    criteria_visits : pandas.DataFrame
        The simulated visits to stages with criteria: ``opportunity_id``, ``stage``, ``entered_at``, ``until``
        (when the deal left the stage, ``as_of`` for a visit still open) and ``met`` (whether the visit met the
        criteria, as drawn; `salesforecast.activities.criteria_check` agrees on every visit).
    deviation_effect : pandas.DataFrame
        One row per deviation the generator can give an effect (index ``deviation``: ``skipped_stage``,
        ``regression``, ``stalled``): ``effect`` (the ``deviation_effect`` parameter, 0 by default) and
        ``win_rate_diff``, the difference the stage-matched comparison of
        `salesforecast.adherence.deviation_outcomes` estimates (without an effect, exactly 0 for a skip and a
        regression; for a stall, measured at the generator's threshold, the built-in effect of long visits). See
        "Deviation effects" in the module docstring.

    Examples
    --------
    >>> data, truth = generate(n_opportunities=300, seed=1)
    >>> truth.transition_matrix.sum(axis=1).round(12).eq(1).all()
    np.True_
    >>> bool(truth.win_probability.is_monotonic_increasing)
    True
    """

    transition_matrix: pd.DataFrame
    win_probability: pd.Series
    lead_probability: pd.Series
    lead_coefficients: pd.Series
    rep_bias: pd.Series
    stage_duration: pd.DataFrame
    params: dict[str, Any]
    initial_stage: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    stall_transition_matrix: dict[str, pd.DataFrame] = field(default_factory=dict)
    step_cap_probability: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    expected_bookings: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    as_of: pd.Timestamp | None = None
    activity_effect: pd.DataFrame = field(default_factory=pd.DataFrame)
    criteria_visits: pd.DataFrame = field(default_factory=pd.DataFrame)
    deviation_effect: pd.DataFrame = field(default_factory=pd.DataFrame)

    def win_rate_factor(self, when: Any) -> np.ndarray:
        """The factor of the win-rate shift at each time: the probability that a win at `when` stays a win.

        1 everywhere without a shift (``params["win_rate_shift"]`` absent or 0); otherwise the year-one and
        later factors of the module docstring ("Win-rate shift between years"), the boundary at
        ``params["start"] + 1 year``.

        Examples
        --------
        >>> _, truth = generate(n_opportunities=200, seed=1, win_rate_shift=-0.25)
        >>> truth.win_rate_factor(["2023-06-01", "2024-06-01"]).tolist()
        [1.0, 0.75]
        """
        times = pd.DatetimeIndex(pd.to_datetime(np.atleast_1d(np.asarray(when, dtype=object))))
        f1, f2 = _win_rate_factors(float(self.params.get("win_rate_shift", 0.0)))
        boundary = pd.Timestamp(self.params.get("start", "1970-01-01")) + pd.DateOffset(years=1)
        return np.where(times < boundary, f1, f2).astype(float)

    def lead_linear_predictor(self, leads: pd.DataFrame) -> np.ndarray:
        """The true logit of conversion for each row of a leads table (see `lead_linear_predictor`)."""
        return lead_linear_predictor(leads, self.lead_coefficients)

    def win_within(
        self,
        snapshot: pd.DataFrame,
        end_date: Any,
        as_of: Any = None,
        n_sims: int = 400,
        seed: int = 0,
        *,
        process: SalesProcess | None = None,
    ) -> pd.Series:
        """The oracle: the true probability that each deal of a pipeline snapshot is won before `end_date`.

        Monte Carlo over `n_sims` futures per deal, drawn from the TRUE dynamics of the data set (see the
        module docstring): the current visit's remaining duration conditional on the time already spent in
        the stage, then fresh visits through the short / long transition rows, the end-of-quarter push of
        wins and the working-hours clock of the tables, and the win-rate shift between years (a win at time
        ``t`` counts with the weight `win_rate_factor` of ``t``).

        Parameters
        ----------
        snapshot : pandas.DataFrame
            Open deals as `salesforecast.snapshots.pipeline_snapshots` returns them: columns ``stage``,
            ``days_in_stage`` (fractional days already spent in the current stage, in the clock time of the
            tables), ``segment`` and ``as_of`` (the snapshot time; not needed when `as_of` is given).
        end_date : date or sequence of dates
            Exclusive end of the window, e.g. the end of the fiscal quarter: one date for every row, or one
            per row (a Series is aligned on the snapshot index; other sequences are taken in row order).
        as_of : date or sequence of dates, optional
            The snapshot time per row (default: the ``as_of`` column). ``days_in_stage`` counts up to it.
        n_sims : int
            Simulated futures per deal; the Monte Carlo standard error is ``sqrt(p * (1 - p) / n_sims)``.
        seed : int
            Seed of the random numbers: the same arguments give the same result.
        process : SalesProcess, optional
            The process the data were generated with (``data.process``); needed only when it is not the
            default process, because `params` records only its name. Gives the fiscal calendar (quarter ends,
            for the end-of-quarter push) and the won / lost stage names (aliases are accepted).

        Returns
        -------
        pandas.Series
            ``win_probability_within``, aligned to the snapshot index: the probability that the deal reaches
            the won stage strictly before `end_date`. Missing where the stage, segment, ``days_in_stage``,
            ``as_of`` or `end_date` is missing or unknown; 1 for a deal already in a won stage, 0 for one in a
            lost stage; 0 for an open deal when ``end_date <= as_of``.

        Notes
        -----
        What the oracle knows: the true parameters (the short / long transition rows of every stage, the
        lognormal stage durations per segment, the stall threshold, the end-of-quarter push probability,
        the fiscal calendar) and the deal's state at the snapshot (stage, segment and time in stage). It
        conditions on the deal still being in its stage: either the visit lasts longer than
        ``days_in_stage`` (``z`` drawn from a normal truncated to ``z > (log(d) - mu) / sigma``, which also
        decides whether the next jump uses the long row) or, in the last 21 days of a quarter, the visit has
        already ended in a win that the end-of-quarter push holds back to the last 2.5 days of the quarter
        (weighted by their exact probabilities). It is the best possible forecast of each deal under the
        true model, and nothing else about the deal (owner, amount, close date, forecast category, earlier
        visits) would change it.

        What it does not know: the future randomness (the durations, jumps and pushes not yet drawn), so it
        is a probability, not the outcome; and the amounts: it says whether a deal is won, not for how much
        (amounts change at jumps and wins are discounted). It also ignores the horizon of the generated
        tables, where nothing happens at or after `GroundTruth.as_of`: compare it with the tables only for
        end dates up to then.

        Approximations: times are compared in the continuous time of the simulation, with the snapshot,
        entry and end times mapped back through the working-hours clock (an event at fraction ``f`` of a
        day is at ``08:00 + f * 10h``; times outside working hours map to the start or end of the working
        day); this is exact except that the tables round event times to the minute (under a minute). The
        step cap counts jumps from the snapshot on, because the number of earlier jumps is unknown (its
        probability is below `step_cap_probability`). Normal draws come from 32-bit uniforms (no ``|z|``
        beyond 6.2; probability 5e-10), and a visit more than 30 standard deviations into its tail uses the
        asymptotic tail of the truncated normal.

        The random numbers of each (row, simulation, jump) are a fixed function of `seed` and those three
        counters (SplitMix64 of the counter), so paths do not depend on `end_date` or on the other rows:
        the result is monotone in `end_date` for a fixed seed. Paths are simulated together (vectorised
        over rows and simulations), with a loop over jumps only, until each is absorbed or past its end;
        2,000 deals x 400 simulations take a fraction of a second.

        Examples
        --------
        >>> from salesforecast.snapshots import pipeline_snapshots
        >>> data, truth = generate(n_opportunities=500, seed=7)
        >>> snap = pipeline_snapshots(data, "2024-05-01")
        >>> p = truth.win_within(snap, "2024-07-01")
        >>> p.name, bool(p.between(0.0, 1.0).all()), len(p) == len(snap)
        ('win_probability_within', True, True)
        """
        if int(n_sims) < 1:
            raise ValueError(f"n_sims must be at least 1, got {n_sims}")
        proc = _truth_process(self, process)
        open_stages = [str(s) for s in self.transition_matrix.index]
        k = len(open_stages)
        index = snapshot.index
        n = len(snapshot)
        for col in ("stage", "days_in_stage", "segment", *(("as_of",) if as_of is None else ())):
            if col not in snapshot.columns:
                raise KeyError(f"snapshot has no column {col!r} (expected pipeline_snapshots output)")

        # ---- stage codes: open 0..k-1, won k, lost k + 1, unknown -1
        stage = proc.map_stages(snapshot["stage"].astype("str"))
        code = pd.Index(open_stages).get_indexer(stage)
        code[stage.isin(proc.won_stages).to_numpy()] = k
        code[stage.isin(proc.lost_stages).to_numpy()] = k + 1
        now_us = _row_times(snapshot["as_of"] if as_of is None else as_of, index, "as_of")
        end_us = _row_times(end_date, index, "end_date")
        days = pd.to_numeric(snapshot["days_in_stage"], errors="coerce").to_numpy(dtype=float)

        # ---- true durations per (open stage, segment) and jump rows
        mu, sigma, segments = _duration_table(self.stage_duration, open_stages)
        seg = pd.Index(segments).get_indexer(snapshot["segment"].astype("str"))
        p_short, p_long = _jump_rows(self, open_stages, proc)

        out = np.full(n, np.nan)
        out[code == k] = 1.0
        out[code == k + 1] = 0.0
        is_open = (code >= 0) & (code < k)
        known = is_open & ~np.isnat(now_us) & ~np.isnat(end_us) & np.isfinite(days) & (seg >= 0)
        known[known] &= np.isfinite(mu[code[known], seg[known]])
        over = known & (end_us <= now_us)
        out[over] = 0.0
        run = np.flatnonzero(known & ~over)
        if len(run):
            now = _clock_days(now_us[run])
            elapsed_us = np.round(np.maximum(days[run], 0.0) * DAY_US).astype(np.int64)
            entered = np.minimum(_clock_days(now_us[run] - elapsed_us.astype("timedelta64[us]")), now)
            end = _clock_days(end_us[run])
            eoq_delay = float(self.params.get("eoq_delay", 0.5))
            shift = float(self.params.get("win_rate_shift", 0.0))
            boundary = pd.Timestamp(self.params.get("start", "1970-01-01")) + pd.DateOffset(years=1)
            boundary_day = float((boundary - pd.Timestamp(0)) / pd.Timedelta(days=1))
            win_factor = (*_win_rate_factors(shift), boundary_day) if shift else None
            q_starts = _quarter_start_days(proc.calendar, now_us[run].min(), end_us[run].max())
            out[run] = _simulate_wins(
                stage=code[run],
                seg=seg[run],
                entered=entered,
                now=now,
                end=end,
                mu=mu,
                sigma=sigma,
                p_short=p_short,
                p_long=p_long,
                q_starts=q_starts,
                eoq_delay=eoq_delay,
                max_steps=int(self.params.get("max_steps", 40)),
                n_sims=int(n_sims),
                seed=int(seed),
                win_factor=win_factor,
            )
        return pd.Series(out, index=index, name="win_probability_within")


def lead_linear_predictor(leads: pd.DataFrame, coefficients: pd.Series | None = None) -> np.ndarray:
    """Compute the linear predictor of the true lead-conversion model from a leads table.

    Parameters
    ----------
    leads : pandas.DataFrame
        A leads table with the feature columns of `generate`.
    coefficients : pandas.Series, optional
        Term -> coefficient (`GroundTruth.lead_coefficients`); the built-in model by default.

    Returns
    -------
    numpy.ndarray
        ``eta`` per lead; the conversion probability is ``1 / (1 + exp(-eta))``.

    Examples
    --------
    >>> leads = pd.DataFrame({"industry": ["Software"], "title_seniority": ["VP"], "lead_source": ["Web"],
    ...                       "employees": [100.0], "engagement_score": [50.0], "email_opens": [0.0],
    ...                       "web_visits": [0.0], "form_fill_seconds": [30.0]})
    >>> float(lead_linear_predictor(leads).round(6)[0])
    -1.45
    """
    coef = pd.Series(LEAD_COEFFICIENTS) if coefficients is None else coefficients
    eta = np.full(len(leads), float(coef.get("intercept", 0.0)))
    for term, beta in coef.items():
        term = str(term)
        if term == "intercept" or beta == 0.0:
            continue
        if "=" in term:
            feature, level = term.split("=", 1)
            eta += beta * (leads[feature] == level).fillna(False).to_numpy(dtype=bool)
        else:
            eta += beta * _NUMERIC_TERMS[term](leads)
    return eta


def _transition_rows(k: int) -> np.ndarray:
    """Marginal jump-chain matrix, shape (k, k + 2): open stages, then won (k) and lost (k + 1)."""
    p = np.zeros((k, k + 2))
    for i in range(k):
        x = i / (k - 1) if k > 1 else 1.0
        lost = 0.28 - 0.14 * x
        regress = 0.05 if i > 0 else 0.0
        skip = 0.07 if i + 2 < k else 0.0
        won_direct = 0.05 if (i < k - 1 and x >= 0.6) else 0.0
        advance = 1.0 - lost - regress - skip - won_direct
        p[i, i + 1 if i + 1 < k else k] += advance
        if skip:
            p[i, i + 2] += skip
        if regress:
            p[i, i - 1] += regress
        p[i, k] += won_direct
        p[i, k + 1] += lost
    return p


def _stall_rows(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Short- and long-visit rows with ``0.8 * short + 0.2 * long == p``.

    A long visit loses with probability ``STALL_LOSS_FACTOR * lost``; the extra mass comes from the
    forward moves (advance, skip, direct win) in proportion; regressions keep their probability.
    """
    k = p.shape[0]
    lost = p[:, k + 1]
    extra = (STALL_LOSS_FACTOR - 1.0) * lost
    regress = np.zeros_like(p)
    rows = np.arange(1, k)
    regress[rows, rows - 1] = p[rows, rows - 1]
    forward = p - regress
    forward[:, k + 1] = 0.0
    scale = 1.0 - extra / forward.sum(axis=1)
    long_ = forward * scale[:, None] + regress
    long_[:, k + 1] = lost + extra
    short = (p - (1.0 - STALL_QUANTILE) * long_) / STALL_QUANTILE
    return short, long_


def _absorbing(p: np.ndarray) -> np.ndarray:
    """Absorption probabilities B = (I - Q)^-1 R, shape (k, 2): won, lost."""
    k = p.shape[0]
    q, r = p[:, :k], p[:, k:]
    return np.linalg.solve(np.eye(k) - q, r)


def _durations(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal days in stage: ``mu`` (k stages x 3 segments) and ``sigma`` (k,)."""
    x = np.arange(k) / (k - 1) if k > 1 else np.ones(1)
    median_mid = 100.0 / k * (0.7 + 0.6 * x)  # a Mid-Market deal passes all stages in ~100 days (median)
    sigma = 0.7 + 0.2 * x
    mu = np.log(median_mid[:, None] * SEGMENT_DURATION_FACTOR[None, :])
    return mu, sigma


def _initial_stage(k: int) -> np.ndarray:
    w = np.array([0.72, 0.14, 0.09, 0.05])[: min(k, 4)]
    out = np.zeros(k)
    out[: len(w)] = w / w.sum()
    return out


# ------------------------------------------------------------------------------------------- helpers
def _quarter_starts(process: SalesProcess, start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """Fiscal quarter starts from the quarter containing ``start - 1 year`` to ``end + 6 years``."""
    cal = process.calendar
    first = cal.period(pd.DatetimeIndex([start - pd.DateOffset(years=1)]), "quarter").iloc[0]
    q0 = cal.period_bounds(first)[0]
    out = [q0]
    last = end + pd.DateOffset(years=6)
    while out[-1] <= last:  # a loop over quarters
        out.append(out[-1] + pd.DateOffset(months=3))
    return out


def _to_times(days: np.ndarray, origin: np.datetime64) -> np.ndarray:
    """Continuous days since `origin` -> datetime64[us] in working hours (08:00-18:00), to the minute."""
    day = np.floor(days)
    minutes = day * 1440.0 + np.round(480.0 + (days - day) * 600.0)
    us = np.where(np.isnan(minutes), 0, minutes).astype(np.int64) * 60_000_000
    out = origin + us.astype("timedelta64[us]")
    return np.where(np.isnan(days), np.datetime64("NaT", "us"), out)


def _to_dates(days: np.ndarray, origin: np.datetime64) -> np.ndarray:
    """Integer day numbers since `origin` -> midnight datetime64[us]."""
    return origin + (days.astype(np.int64) * DAY_US).astype("timedelta64[us]")


def _ids(prefix: str, n: int, width: int) -> pd.Series:
    return prefix + pd.Series(np.arange(1, n + 1)).astype("str").str.zfill(width)


def _choice(rng: np.random.Generator, n: int, weights: Any) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def _labels(
    codes: np.ndarray, names: tuple[str, ...] | list[str] | np.ndarray, valid: np.ndarray | None = None
) -> pd.Series:
    """``names[codes]`` as a ``str`` Series, missing where ``valid`` is False (through Arrow: fast)."""
    codes = np.asarray(codes, dtype=np.int64)
    index = pa.array(codes, mask=None if valid is None else ~np.asarray(valid, dtype=bool))
    return pd.Series(pa.array(list(names), pa.string()).take(index), dtype="str")


def _take(values: pd.Series, positions: np.ndarray, valid: np.ndarray | None = None) -> pd.Series:
    """``values[positions]`` of a ``str`` Series, with a fresh index; missing where ``valid`` is False."""
    return _labels(positions, values.to_numpy(dtype=object), valid)


def _segment_of(employees: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(SEGMENT_EMPLOYEE_BOUNDS, dtype=float), employees, side="right")


def _allocate_reps(n_reps: int) -> np.ndarray:
    """Reps per territory (team-major, 4 x 3), proportional to expected deal volume, at least one each."""
    z = np.log(np.asarray(SEGMENT_EMPLOYEE_BOUNDS, dtype=float) / EMPLOYEES_MEDIAN) / EMPLOYEES_SIGMA
    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z])
    seg_share = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    # deal volume per rep: SMB reps handle more, smaller deals than Enterprise reps
    seg_share = seg_share * np.array([0.7, 1.0, 1.8])
    w = (TEAM_WEIGHTS[:, None] * seg_share[None, :]).ravel()
    w = w / w.sum()
    extra = n_reps - len(w)
    raw = w * extra
    counts = np.floor(raw).astype(int)
    rest = extra - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts + 1


# ------------------------------------------------------------------------------------------- oracle helpers
_WORK_START_US, _WORK_US = 8 * 3_600_000_000, 10 * 3_600_000_000  # the working day: 08:00 + f * 10h
# 64-bit hashes per (path, jump), each split into two 32-bit uniforms: (z, next stage), (push, push shift) and,
# before the first jump, (win already due and held back, its time)
_N_DRAWS = 3
_LUT_BINS = 1024  # next-stage lookup table: bins of the uniform per jump row
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
_FAR_TAIL = 30.0  # beyond this many standard deviations, the asymptotic tail of the truncated normal


def _truth_process(truth: GroundTruth, process: SalesProcess | None) -> SalesProcess:
    """The process a truth was generated with: `process`, or the default one when `params` names it."""
    open_stages = [str(s) for s in truth.transition_matrix.index]
    if process is None:
        default = SalesProcess.default()
        name = truth.params.get("process")
        if name not in (None, "default", default.name):
            raise ValueError(
                f"the truth was generated with the process {name!r}, of which params records only the name: "
                "pass it as process= (e.g. data.process)"
            )
        process = default
    if process.open_stages != open_stages:
        raise ValueError(
            f"process {process.name!r} has the open stages {process.open_stages}, the truth {open_stages}; "
            "pass the process the data were generated with"
        )
    return process


def _row_times(value: Any, index: pd.Index, what: str) -> np.ndarray:
    """One time for every row, or one per row (a Series aligned on `index`), as naive datetime64[us]."""
    n = len(index)
    try:
        if pd.api.types.is_scalar(value) or value is None:
            ts = pd.Timestamp(value) if value is not None else pd.NaT
            if ts is not pd.NaT and ts.tz is not None:
                ts = ts.tz_convert("UTC").tz_localize(None)
            return np.full(n, np.datetime64("NaT") if ts is pd.NaT else ts.as_unit("us").to_datetime64(), "M8[us]")
        if isinstance(value, pd.Series) and not value.index.equals(index):
            value = value.reindex(index)
        idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(value) if not isinstance(value, pd.Series) else value))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {exc}") from None
    if len(idx) != n:
        raise ValueError(f"{what}: expected one date or {n} (one per row), got {len(idx)}")
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.as_unit("us").to_numpy("datetime64[us]")


def _clock_days(times: np.ndarray) -> np.ndarray:
    """Clock times (datetime64[us]) -> continuous days of the simulation (inverse of `_to_times`).

    An event at fraction ``f`` of day ``D`` is shown at ``D 08:00 + f * 10h``; a time outside working hours is
    the start (before 08:00) or the end (after 18:00) of its working day. Days count from 1970-01-01.
    """
    us = np.asarray(times, dtype="datetime64[us]").view(np.int64)
    day = np.floor_divide(us, DAY_US)
    return day + np.clip((us - day * DAY_US - _WORK_START_US) / _WORK_US, 0.0, 1.0)


def _duration_table(durations: pd.DataFrame, open_stages: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``mu`` and ``sigma`` as (open stage x segment) arrays (NaN where absent), and the segment names."""
    segments = [str(s) for s in pd.unique(durations["segment"])]
    rows = pd.Index(open_stages).get_indexer(durations["stage"])
    cols = pd.Index(segments).get_indexer(durations["segment"])
    ok = rows >= 0
    mu, sigma = np.full((len(open_stages), len(segments)), np.nan), np.full((len(open_stages), len(segments)), np.nan)
    mu[rows[ok], cols[ok]] = durations["mu"].to_numpy(dtype=float)[ok]
    sigma[rows[ok], cols[ok]] = durations["sigma"].to_numpy(dtype=float)[ok]
    return mu, sigma, segments


def _jump_rows(truth: GroundTruth, open_stages: list[str], process: SalesProcess) -> tuple[np.ndarray, np.ndarray]:
    """Short- and long-visit jump rows, shape (k, k + 2): open stages, won, lost (the generator's layout)."""
    out = []
    for key in ("short", "long"):
        m = truth.stall_transition_matrix.get(key, truth.transition_matrix).reindex(index=open_stages)
        open_p = m.reindex(columns=open_stages, fill_value=0.0).to_numpy(dtype=float)
        won_p = m.reindex(columns=process.won_stages, fill_value=0.0).to_numpy(dtype=float).sum(axis=1)
        out.append(np.column_stack([open_p, won_p, 1.0 - open_p.sum(axis=1) - won_p]))
    return out[0], out[1]


def _quarter_start_days(calendar: Any, first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """Fiscal quarter starts (continuous days) from the quarter containing `first` to beyond `last`."""
    label = calendar.period(pd.DatetimeIndex([pd.Timestamp(first)]), "quarter").iloc[0]
    q0 = calendar.period_bounds(label)[0]
    starts = pd.date_range(q0, pd.Timestamp(last) + pd.DateOffset(months=6), freq="3MS")
    return (starts.as_unit("us").asi8 // DAY_US).astype(float)


def _mix64(x: int) -> int:
    """The SplitMix64 output function on a Python integer (64-bit)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK64
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK64
    return x ^ (x >> 31)


def _hash64(base: int, counter: np.ndarray) -> np.ndarray:
    """Term `counter` of the SplitMix64 sequence started at `base`: 64 random bits per counter (uint64)."""
    z = counter.astype(np.uint64)
    z *= np.uint64(_GOLDEN_GAMMA)
    z += np.uint64(base)
    z ^= z >> np.uint64(30)
    z *= np.uint64(_MIX1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_MIX2)
    z ^= z >> np.uint64(31)
    return z


def _uniform32(bits: np.ndarray, high: bool) -> np.ndarray:
    """Uniforms in (0, 1) from the high or the low 32 of 64 random bits."""
    half = bits >> np.uint64(32) if high else bits & np.uint64(0xFFFFFFFF)
    return (half.astype(np.float64) + 0.5) * 2.0**-32


def _next_stage_table(cum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lookup of the next stage by uniform bin: ``(stage, exact)``, both (jump rows x `_LUT_BINS`).

    The next stage is the number of cumulated probabilities ``<= u`` (as in the generator); it is the same for
    every ``u`` of bin ``[b, b + 1) / _LUT_BINS`` unless a cumulated probability falls inside the bin
    (``exact`` is False there, and the caller compares those few paths exactly).
    """
    edges = np.arange(_LUT_BINS + 1) / _LUT_BINS
    at_lo = (cum[:, None, :] <= edges[None, :-1, None]).sum(axis=2)
    below_hi = (cum[:, None, :] < edges[None, 1:, None]).sum(axis=2)
    return at_lo, at_lo == below_hi


def _simulate_wins(
    *,
    stage: np.ndarray,
    seg: np.ndarray,
    entered: np.ndarray,
    now: np.ndarray,
    end: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    p_short: np.ndarray,
    p_long: np.ndarray,
    q_starts: np.ndarray,
    eoq_delay: float,
    max_steps: int,
    n_sims: int,
    seed: int,
    win_factor: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Share of `n_sims` simulated futures per deal that are won before `end` (all times continuous days).

    Each deal is in open stage `stage` (segment `seg`) since `entered`, still there at `now`. Paths run
    vectorised over (deal, simulation) with a loop over jumps; a path stops when absorbed or past its end.
    `win_factor` ``(f1, f2, boundary)``: a win at time ``t`` counts ``f1`` before ``boundary`` and ``f2``
    from it on (the win-rate shift); None counts every win once.
    """
    from scipy.special import ndtr, ndtri

    k = p_short.shape[0]
    won, lost = k, k + 1
    cum = np.cumsum(np.vstack([p_short, p_long]), axis=1)  # jump row r: stage r (short), stage r - k (long)
    cum[:, -1] = 1.0
    lut, lut_exact = (t.ravel() for t in _next_stage_table(cum))
    n = len(stage)
    n_seg = mu.shape[1]
    mu_flat, sigma_flat = mu.ravel(), sigma.ravel()
    q_last = len(q_starts) - 1
    base = _mix64(int(seed) * _GOLDEN_GAMMA + _GOLDEN_GAMMA)
    per_path = (max_steps + 1) * _N_DRAWS

    # ---- the current visit, per deal: still in the stage at `now` (elapsed d) happens in two ways
    m0, s0 = mu[stage, seg], sigma[stage, seg]
    d = now - entered
    lasted = d >= MIN_VISIT_DAYS  # shorter: the one-hour minimum says nothing yet
    with np.errstate(divide="ignore"):
        a = np.where(lasted, (np.log(np.maximum(d, MIN_VISIT_DAYS)) - m0) / s0, -np.inf)
    # (A) the visit lasts longer than d: z > a
    p_a = ndtr(-a)
    # (B) the visit ended in a win within 21 days of the quarter end, held back by the push to (now, q_end)
    q_end = q_starts[np.minimum(np.searchsorted(q_starts, now, side="right"), q_last)]
    lo = np.maximum(q_end - EOQ_WINDOW_DAYS - entered, 0.0)  # natural win after lo days: inside the window
    with np.errstate(divide="ignore"):
        z_lo = np.where(lo < MIN_VISIT_DAYS, -np.inf, (np.log(np.maximum(lo, MIN_VISIT_DAYS)) - m0) / s0)
    mass_short = np.maximum(ndtr(np.minimum(a, _Z_STALL)) - ndtr(z_lo), 0.0)
    mass_long = np.maximum(ndtr(-np.maximum(z_lo, _Z_STALL)) - ndtr(-a), 0.0)
    held = eoq_delay * np.minimum((q_end - now) / EOQ_LAST_DAYS, 1.0)
    p_b = np.where(
        lasted & (lo < d) & (q_end > now),
        held * (p_short[stage, won] * mass_short + p_long[stage, won] * mass_long),
        0.0,
    )
    total = p_a + p_b
    p_due = np.divide(p_b, total, out=np.zeros(n), where=total > 0)

    def count(rows: np.ndarray, t_win: np.ndarray) -> np.ndarray:
        if win_factor is None:
            return np.bincount(rows, minlength=n)
        f1, f2, boundary = win_factor
        return np.bincount(rows, weights=np.where(t_win < boundary, f1, f2), minlength=n)

    wins = np.zeros(n)
    path = np.arange(n * n_sims, dtype=np.int64)
    row = path // n_sims
    maybe = np.flatnonzero(p_due[row] > 0.0)
    if len(maybe):  # (B) paths: the held-back win comes at a uniform time in (now, q_end), in the last 2.5 days
        bits = _hash64(base, path[maybe] * per_path + 2)
        due = maybe[_uniform32(bits, high=True) < p_due[row[maybe]]]
        r = row[due]
        width = np.minimum(q_end[r] - now[r], EOQ_LAST_DAYS)
        t_win = q_end[r] - width * _uniform32(bits[np.searchsorted(maybe, due)], high=False)
        inside = t_win < end[r]
        wins += count(r[inside], t_win[inside])
        keep = np.ones(len(path), dtype=bool)
        keep[due] = False
        path, row = path[keep], row[keep]
    s, g, t = stage[row], seg[row], entered[row]

    # ---- jumps: the first from the current visit (z truncated to z > a), then fresh visits
    for step in range(max_steps + 1):
        if len(path) == 0:
            break
        counter = path * per_path + step * _N_DRAWS
        bits = _hash64(base, counter)
        u_z = _uniform32(bits, high=True)
        if step == 0:
            ar = a[row]
            z = -ndtri(u_z * p_a[row])
            far = ar > _FAR_TAIL
            z[far] = np.sqrt(ar[far] ** 2 - 2.0 * np.log(u_z[far]))
        else:
            z = ndtri(u_z)
        cell = s * n_seg + g
        t_end = t + np.maximum(np.exp(mu_flat[cell] + sigma_flat[cell] * z), MIN_VISIT_DAYS)
        if step == max_steps:
            ns = np.full(len(path), lost)
        else:
            jr = s + k * (z > _Z_STALL)
            u = _uniform32(bits, high=False)
            pos = jr * _LUT_BINS + (u * _LUT_BINS).astype(np.int64)
            ns = lut[pos]
            amb = np.flatnonzero(~lut_exact[pos])
            ns[amb] = (u[amb, None] >= cum[jr[amb]]).sum(axis=1)
        is_win = ns == won
        if eoq_delay > 0.0 and is_win.any():
            w = np.flatnonzero(is_win)
            qe = q_starts[np.minimum(np.searchsorted(q_starts, t_end[w], side="right"), q_last)]
            bits_w = _hash64(base, counter[w] + 1)
            push = (qe - t_end[w] < EOQ_WINDOW_DAYS) & (_uniform32(bits_w, high=True) < eoq_delay)
            shift = EOQ_LAST_DAYS * _uniform32(bits_w, high=False)
            t_end[w] = np.where(push, np.maximum(t_end[w], qe - shift), t_end[w])
        before = t_end < end[row]
        counted = is_win & before
        wins += count(row[counted], t_end[counted])
        keep = before & (ns < k)
        path, row, s, g, t = path[keep], row[keep], ns[keep], g[keep], t_end[keep]
    return wins / n_sims


# ------------------------------------------------------------------------------------------- generate
def generate(
    n_opportunities: int = 5000,
    seed: int = 0,
    start: str | pd.Timestamp = "2023-01-01",
    years: int = 3,
    process: SalesProcess | str | None = None,
    *,
    n_reps: int | None = None,
    lead_share: float = 0.4,
    eoq_delay: float = 0.5,
    max_steps: int = 40,
    win_rate_shift: float = 0.0,
    activities: bool = True,
    deviation_effect: Mapping[str, float] | None = None,
) -> tuple[CRMData, GroundTruth]:
    """Simulate a B2B sales organisation with known ground truth.

    Parameters
    ----------
    n_opportunities : int
        Number of opportunities created over the horizon.
    seed : int
        Seed of the one random generator; the same arguments give byte-identical tables.
    start : str or Timestamp
        First day of the horizon (midnight).
    years : int
        Length of the horizon; the data are as of ``start + years`` (nothing happens at or after it).
    process : SalesProcess, path or None
        The process map (default, None or ``"default"``: Salesforce's standard stages, `SalesProcess.default`, as
        `SalesProcess.resolve` gives them without a source); any number of open stages works.
    n_reps : int, optional
        Number of reps (default ``clip(n_opportunities // 125, 12, 400)``; at least 12, one per territory).
    lead_share : float
        Target share of the opportunities that come from converted leads.
    eoq_delay : float
        Probability that a win in the last 21 days of a fiscal quarter is delayed to its last 2.5 days.
    max_steps : int
        Step cap: a deal still open after this many stage changes is lost at its next change.
    win_rate_shift : float
        Relative change of the win probabilities from the second year of the horizon on, at least -1
        (e.g. ``-1/3``: win rates fall by a third between years; ``0.5``: they rise by half). Wins are
        thinned (see "Win-rate shift between years" in the module docstring); the default 0 gives the
        same tables as without the argument.
    activities : bool
        Simulate the ``activities`` table (calls, e-mails, meetings, follow-ups and proposals on deals, calls
        and e-mails on leads) and attach the generator's exit criteria to the process returned (unless the
        given process has exit criteria of its own, which it keeps); see "Activities" in the module docstring.
        The activities come from a random stream of their own, so the other tables are the same either way.
        False: no activities table, no criteria attached.
    deviation_effect : mapping of str to float, optional
        A true effect on the win probability of a deviation from the stage map, for at most one of
        ``skipped_stage``, ``regression`` and ``stalled`` (names of `salesforecast.adherence.DEVIATIONS`), e.g.
        ``{"skipped_stage": -0.1}``: a deal that skips a stage then wins 10 points less often than it would
        have. See "Deviation effects" in the module docstring; `GroundTruth.deviation_effect` gives what the
        stage-matched comparison of `salesforecast.adherence.deviation_outcomes` estimates. The default (none,
        or all 0) draws nothing and gives the same tables as without the argument.

    Returns
    -------
    data : CRMData
        The validated canonical tables (no quarantined row), sources ``generate(seed=...)``.
    truth : GroundTruth
        The true parameters (transition matrix, win probabilities, lead model, rep biases...).

    Notes
    -----
    The model is described in the docstring of `salesforecast.datasets._generate`. Memory and time grow
    linearly: one million opportunities (about 4.6 million history rows, 2.2 million leads) are simulated
    in about 10 s within 2 GB; `validate` then takes most of the time.

    Examples
    --------
    >>> data, truth = generate(n_opportunities=500, seed=7)
    >>> len(data.opportunities), len(data.quarantine)
    (500, 0)
    >>> truth.win_probability.index[0]
    'Prospecting'
    """
    process, params = _resolve(
        n_opportunities,
        seed,
        start,
        years,
        process,
        n_reps,
        lead_share,
        eoq_delay,
        max_steps,
        win_rate_shift,
        activities,
        deviation_effect,
    )
    tables, truth = _simulate(process, params)
    if params["activities"] and not process.exit_criteria:
        process = with_generator_criteria(process)
    data = validate(tables, process=process, sources=dict.fromkeys(tables, f"generate(seed={seed})"))
    return data, truth


def _resolve(
    n_opportunities: int,
    seed: int,
    start: str | pd.Timestamp,
    years: int,
    process: SalesProcess | str | None,
    n_reps: int | None = None,
    lead_share: float = 0.4,
    eoq_delay: float = 0.5,
    max_steps: int = 40,
    win_rate_shift: float = 0.0,
    activities: bool = True,
    deviation_effect: Mapping[str, float] | None = None,
) -> tuple[SalesProcess, dict[str, Any]]:
    """Check the arguments of `generate` and return the process and the resolved parameters."""
    process = SalesProcess.resolve(process)
    if n_opportunities < 1:
        raise ValueError(f"n_opportunities must be at least 1, got {n_opportunities}")
    if not 0.0 <= lead_share <= 1.0:
        raise ValueError(f"lead_share must be in [0, 1], got {lead_share}")
    if not 0.0 <= eoq_delay <= 1.0:
        raise ValueError(f"eoq_delay must be in [0, 1], got {eoq_delay}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if not (math.isfinite(win_rate_shift) and win_rate_shift >= -1.0):
        raise ValueError(f"win_rate_shift must be a finite relative change of at least -1, got {win_rate_shift}")
    n_reps = int(np.clip(n_opportunities // 125, 12, 400)) if n_reps is None else int(n_reps)
    if n_reps < 12:
        raise ValueError(f"n_reps must be at least 12 (one rep per team and segment), got {n_reps}")
    start_ts = pd.Timestamp(start).normalize()
    params = {
        "n_opportunities": int(n_opportunities),
        "seed": int(seed),
        "start": str(start_ts.date()),
        "years": int(years),
        "process": process.name,
        "n_reps": n_reps,
        "lead_share": float(lead_share),
        "eoq_delay": float(eoq_delay),
        "max_steps": int(max_steps),
    }
    if win_rate_shift:
        params["win_rate_shift"] = float(win_rate_shift)
    params["activities"] = bool(activities)
    effects = {}
    for name, value in dict(deviation_effect or {}).items():
        if name not in DEVIATION_JUMPS:
            raise ValueError(
                f"deviation_effect: {name!r} is not a deviation the generator can give an effect; "
                f"use one of {', '.join(DEVIATION_JUMPS)}"
            )
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) and math.isfinite(value) and -1 < value < 1):
            raise ValueError(f"deviation_effect.{name}: a win-probability difference in (-1, 1), got {value!r}")
        if value:
            effects[name] = float(value)
    if len(effects) > 1:
        raise ValueError(
            f"deviation_effect: give an effect to one deviation at a time (got {sorted(effects)}); the truth of a "
            "stage-matched comparison is exact only then"
        )
    if effects:
        params["deviation_effect"] = effects
    return process, params


def _simulate(process: SalesProcess, params: dict[str, Any]) -> tuple[dict[str, pd.DataFrame], GroundTruth]:
    """Simulate the raw canonical tables (typed, before `validate`) and the truth; see `generate`."""
    n_opportunities, seed, years = params["n_opportunities"], params["seed"], params["years"]
    n_reps, lead_share, eoq_delay = params["n_reps"], params["lead_share"], params["eoq_delay"]
    max_steps = params["max_steps"]
    win_shift = params.get("win_rate_shift", 0.0)
    start_ts = pd.Timestamp(params["start"])
    end_ts = start_ts + pd.DateOffset(years=int(years))
    rng = np.random.default_rng(seed)
    origin = np.datetime64(start_ts.to_datetime64(), "us")
    horizon = float((end_ts - start_ts) / pd.Timedelta(days=1))
    open_stages = process.open_stages
    k = len(open_stages)
    won, lost = k, k + 1

    # ---- truth of the deal process
    p = _transition_rows(k)
    p_short, p_long = _stall_rows(p)
    cum_short, cum_long = np.cumsum(p_short, axis=1), np.cumsum(p_long, axis=1)
    cum_short[:, -1] = cum_long[:, -1] = 1.0
    absorb = _absorbing(p)
    mu, sigma = _durations(k)
    init = _initial_stage(k)
    win_p = absorb[:, 0]
    f_year1, f_later = _win_rate_factors(win_shift)
    year_one = float((start_ts + pd.DateOffset(years=1) - start_ts) / pd.Timedelta(days=1))
    q_starts_ts = _quarter_starts(process, start_ts, end_ts)
    q_starts = np.array([(q - start_ts) / pd.Timedelta(days=1) for q in q_starts_ts])

    # ---- reps
    per_cell = _allocate_reps(n_reps)
    cell_offset = np.concatenate([[0], np.cumsum(per_cell)[:-1]])
    rep_cell = np.repeat(np.arange(len(per_cell)), per_cell)
    rep_team = rep_cell // 3
    names = rep_names(n_reps)

    def owner_of(cell: np.ndarray) -> np.ndarray:
        return cell_offset[cell] + np.floor(rng.random(len(cell)) * per_cell[cell]).astype(np.int64)

    # ---- leads
    n_target_lead_opps = int(round(lead_share * n_opportunities))
    n_leads = int(math.ceil(n_target_lead_opps * 1.1 / _EXPECTED_CONVERSION))
    lead_created = np.sort(rng.uniform(0.0, horizon, n_leads))
    lead_team = _choice(rng, n_leads, TEAM_WEIGHTS)
    lead_country = np.empty(n_leads, dtype=np.int64)
    for ti, team in enumerate(TEAMS):  # a loop over teams
        sel = np.flatnonzero(lead_team == ti)
        countries, w = COUNTRIES[team]
        codes = np.asarray([COUNTRY_LIST.index(ct) for ct in countries])
        lead_country[sel] = codes[_choice(rng, len(sel), w)]
    employees = np.maximum(
        1.0, np.round(np.exp(np.log(EMPLOYEES_MEDIAN) + EMPLOYEES_SIGMA * rng.standard_normal(n_leads)))
    )
    lead_segment = _segment_of(employees)
    industry = _choice(rng, n_leads, INDUSTRY_WEIGHTS)
    seniority = _choice(rng, n_leads, SENIORITY_WEIGHTS)
    source = _choice(rng, n_leads, LEAD_SOURCE_WEIGHTS)
    engagement = rng.standard_normal(n_leads)
    engagement_score = np.round(np.clip(50.0 + 18.0 * engagement + 6.0 * rng.standard_normal(n_leads), 0.0, 100.0), 1)
    email_opens = rng.poisson(np.exp(1.0 + 0.4 * engagement)).astype(float)
    web_visits = rng.poisson(np.exp(0.8 + 0.5 * engagement)).astype(float)
    form_seconds = np.round(np.exp(np.log(90.0) + 0.5 * rng.standard_normal(n_leads)), 1)
    lead_owner = owner_of(lead_team * 3 + lead_segment)
    leads = pd.DataFrame(
        {
            "lead_id": _ids("LEAD-", n_leads, 7),
            "lead_source": _labels(source, LEAD_SOURCES),
            "industry": _labels(industry, INDUSTRIES),
            "employees": employees,
            "title_seniority": _labels(seniority, SENIORITIES),
            "engagement_score": engagement_score,
            "email_opens": email_opens,
            "web_visits": web_visits,
            "country": _labels(lead_country, COUNTRY_LIST),
            "form_fill_seconds": form_seconds,
        }
    )
    coefficients = pd.Series(LEAD_COEFFICIENTS, name="coefficient")
    lead_prob = 1.0 / (1.0 + np.exp(-lead_linear_predictor(leads, coefficients)))
    delay = np.minimum(
        np.exp(np.log(CONVERSION_DELAY_MEDIAN) + CONVERSION_DELAY_SIGMA * rng.standard_normal(n_leads)),
        CONVERSION_DELAY_MAX,
    )
    converts = rng.random(n_leads) < lead_prob
    converted_at = lead_created + delay
    converted = converts & (converted_at < horizon)
    conv_idx = np.flatnonzero(converted)
    n_lead_opps = min(len(conv_idx), n_target_lead_opps)
    linked = np.sort(rng.choice(conv_idx, size=n_lead_opps, replace=False)) if n_lead_opps else conv_idx[:0]

    # ---- opportunities: from leads, and from existing accounts
    n_acc_opps = n_opportunities - n_lead_opps
    n_accounts = max(20, n_acc_opps // 3)
    acc_team = _choice(rng, n_accounts, TEAM_WEIGHTS)
    acc_segment = _segment_of(np.exp(np.log(EMPLOYEES_MEDIAN) + EMPLOYEES_SIGMA * rng.standard_normal(n_accounts)))
    opp_acc = rng.integers(0, n_accounts, n_acc_opps)
    acc_created = rng.uniform(0.0, horizon, n_acc_opps)
    acc_owner = owner_of(acc_team[opp_acc] * 3 + acc_segment[opp_acc])
    t0 = np.concatenate([converted_at[linked], acc_created])
    order = np.argsort(t0, kind="stable")  # opportunity ids follow creation time
    t0 = t0[order]
    from_lead = np.concatenate([np.ones(n_lead_opps, bool), np.zeros(n_acc_opps, bool)])[order]
    lead_of = np.concatenate([linked, np.full(n_acc_opps, -1)])[order]
    account = np.concatenate([n_accounts + np.arange(n_lead_opps), opp_acc])[order]
    segment = np.concatenate([lead_segment[linked], acc_segment[opp_acc]])[order]
    owner = np.concatenate([lead_owner[linked], acc_owner])[order]
    src = np.concatenate([source[linked], np.full(n_acc_opps, len(LEAD_SOURCES))])[order]
    n = n_opportunities
    product = _choice(rng, n, PRODUCT_WEIGHTS)
    amount0 = np.exp(np.log(AMOUNT_MEDIAN[segment]) + AMOUNT_SIGMA[segment] * rng.standard_normal(n))
    amount0 = np.maximum(10.0, np.round(amount0 * PRODUCT_FACTOR[product] / 10.0) * 10.0)
    stage0 = _choice(rng, n, init)

    # remaining-time estimate (days) from each open stage, per segment: sum of medians still ahead
    medians = np.exp(mu)
    remaining = np.cumsum(medians[::-1], axis=0)[::-1]

    def estimate(stage: np.ndarray, seg: np.ndarray, t: np.ndarray) -> np.ndarray:
        noise = np.exp(np.log(CLOSE_ESTIMATE_MEDIAN) + CLOSE_ESTIMATE_SIGMA * rng.standard_normal(len(t)))
        return np.floor(t) + np.maximum(1.0, np.round(remaining[stage, seg] * noise))

    close0 = estimate(stage0, segment, t0)

    # ---- deviation effect (none by default: no draw then): per deal, when it first deviated and its flip chance
    dev_name, dev_delta = next(iter(params.get("deviation_effect", {}).items()), (None, 0.0))
    dev_time = np.full(n, np.inf)  # time of the deal's first deviation (its treated visit starts then)
    dev_rho = np.zeros(n)  # probability that its outcome flips at absorption
    dev_rng = np.random.default_rng([seed, DEVIATION_STREAM]) if dev_name else None
    win_long = p_long[:, :k] @ win_p + p_long[:, k]  # win probability from a long (stalled) visit

    # ---- the simulation: one iteration per jump (at most max_steps + 1)
    r_deal, r_time, r_stage, r_amount, r_close = [np.arange(n)], [t0], [stage0], [amount0], [close0]
    act = np.arange(n)
    s, t, c, a = stage0.copy(), t0.copy(), close0.copy(), amount0.copy()
    q_last = len(q_starts) - 1
    for step in range(max_steps + 1):
        m = len(act)
        if m == 0:
            break
        seg = segment[act]
        z = rng.standard_normal(m)
        u = rng.random(m)
        dur = np.maximum(np.exp(mu[s, seg] + sigma[s] * z), MIN_VISIT_DAYS)
        if step == max_steps:
            ns = np.full(m, lost)
        else:
            cum = np.where((z > _Z_STALL)[:, None], cum_long[s], cum_short[s])
            ns = (u[:, None] >= cum).sum(axis=1)
        t_end = t + dur
        if dev_rng is not None:  # the deviation effect: flip the outcome of deals that deviated (a stall: now)
            before = np.isfinite(dev_time[act])
            if dev_name == "stalled":  # this visit is the deal's first long one: it is the treated visit
                first_dev = ~before & (z > _Z_STALL)
                dev_time[act[first_dev]] = t[first_dev]
                dev_rho[act[first_dev]] = _flip_chance(win_long[s[first_dev]], dev_delta)
                before = before | first_dev
            flip = dev_rng.random(m) < dev_rho[act]
            absorbing = won if dev_delta < 0 else lost
            ns = np.where(before & flip & (ns == absorbing), (lost if dev_delta < 0 else won), ns)
            if dev_name != "stalled":  # the jump leads into the treated visit
                first_dev = ~before & (ns < k) & (ns - s == DEVIATION_JUMPS[dev_name])
                dev_time[act[first_dev]] = t_end[first_dev]
                dev_rho[act[first_dev]] = _flip_chance(win_p[ns[first_dev]], dev_delta)
        # end-of-quarter push of wins (time only)
        qi = np.minimum(np.searchsorted(q_starts, t_end, side="right"), q_last)
        q_end = q_starts[qi]
        u_eoq, shift = rng.random(m), rng.uniform(0.0, EOQ_LAST_DAYS, m)
        push_win = (ns == won) & (q_end - t_end < EOQ_WINDOW_DAYS) & (u_eoq < eoq_delay)
        t_end = np.where(push_win, np.maximum(t_end, q_end - shift), t_end)
        if win_shift:  # the win-rate shift between years: a thinned win is a loss (no draw without a shift)
            keep_p = np.where(t_end < year_one, f_year1, f_later)
            ns = np.where((ns == won) & (rng.random(m) >= keep_p), lost, ns)
        # the planned close date passes during the visit: the rep pushes it (a row without stage change)
        u_neglect, offset = rng.random(m), rng.uniform(0.0, 5.0, m)
        p_time = c + 1.0 + offset
        push = (c + 1.0 < t_end) & (u_neglect >= NEGLECT_PROBABILITY) & (p_time < t_end - 0.05) & (p_time < horizon)
        new_c = estimate(s, seg, p_time)
        if push.any():
            r_deal.append(act[push])
            r_time.append(p_time[push])
            r_stage.append(s[push])
            r_amount.append(a[push])
            r_close.append(new_c[push])
        c = np.where(push, new_c, c)
        # the jump, when it happens before as_of
        is_open = ns < k
        u_amt, amt_f = rng.random(m), np.exp(-0.02 + 0.15 * rng.standard_normal(m))
        u_disc, disc = rng.random(m), rng.uniform(0.85, 1.0, m)
        a_new = np.where(is_open & (u_amt < AMOUNT_CHANGE_PROBABILITY), a * amt_f, a)
        a_new = np.where((ns == won) & (u_disc < WIN_DISCOUNT_PROBABILITY), a * disc, a_new)
        a_new = np.where(a_new != a, np.maximum(10.0, np.round(a_new / 10.0) * 10.0), a)
        u_push, push_days = rng.random(m), rng.integers(7, 46, m).astype(float)
        reest = estimate(np.minimum(ns, k - 1), seg, t_end)
        stale = c < np.floor(t_end) + 1.0
        c_new = np.where(stale, reest, np.where(u_push < RANDOM_PUSH_PROBABILITY, c + push_days, c))
        c_new = np.where(is_open, c_new, np.floor(t_end))
        happens = t_end < horizon
        r_deal.append(act[happens])
        r_time.append(t_end[happens])
        r_stage.append(ns[happens])
        r_amount.append(a_new[happens])
        r_close.append(c_new[happens])
        keep = happens & is_open
        act, s, t, c, a = act[keep], ns[keep], t_end[keep], c_new[keep], a_new[keep]

    deal = np.concatenate(r_deal)
    row_order = np.argsort(deal, kind="stable")  # rows were appended in time order within each deal
    deal = deal[row_order]
    h_time = np.concatenate(r_time)[row_order]
    h_stage = np.concatenate(r_stage).astype(np.int64)[row_order]
    h_amount = np.concatenate(r_amount)[row_order]
    h_close = np.concatenate(r_close)[row_order]
    del r_deal, r_time, r_stage, r_amount, r_close

    # ---- forecast category per row
    cat_index = {c_: i for i, c_ in enumerate(FORECAST_CATEGORIES)}
    default_cat = np.array(
        [cat_index[process.stage(nm).forecast_category] for nm in open_stages]
        + [cat_index["closed"], cat_index["omitted"]]
    )
    h_cat = default_cat[h_stage]
    row_q = np.searchsorted(q_starts, h_time, side="right")
    same_q = row_q == np.searchsorted(q_starts, h_close, side="right")
    h_cat = np.where(same_q & (h_stage == k - 1), np.maximum(h_cat, cat_index["commit"]), h_cat)
    late = (h_stage >= max(k - 3, 0)) & (h_stage < k - 1)
    h_cat = np.where(same_q & late, np.maximum(h_cat, cat_index["best_case"]), h_cat)

    # ---- tables
    stage_names = [*open_stages, process.won_stage, process.lost_stage]
    opp_ids = _ids("OPP-", n, 7)
    lead_ids = leads["lead_id"]
    last = np.concatenate([np.flatnonzero(np.diff(deal)), [len(deal) - 1]])
    f_stage = h_stage[last]
    team_of_owner = rep_team[owner]
    opportunities = pd.DataFrame(
        {
            "opportunity_id": opp_ids,
            "owner": _labels(owner, names),
            "team": _labels(team_of_owner, TEAMS),
            "region": _labels(team_of_owner, [REGIONS[tm] for tm in TEAMS]),
            "segment": _labels(segment, SEGMENTS),
            "account_id": _take(_ids("ACC-", n_accounts + n_lead_opps, 6), account),
            "lead_id": _take(lead_ids, lead_of, from_lead),
            "lead_source": _labels(src, (*LEAD_SOURCES, ACCOUNT_SOURCE)),
            "product": _labels(product, PRODUCTS),
            "created_at": _to_times(t0, origin),
            "stage": _labels(f_stage, stage_names),
            "amount": h_amount[last],
            "close_date": _to_dates(h_close[last], origin),
            "is_closed": f_stage >= k,
            "is_won": f_stage == won,
            "forecast_category": _labels(h_cat[last], FORECAST_CATEGORIES),
        }
    )
    stage_history = pd.DataFrame(
        {
            "opportunity_id": _take(opp_ids, deal),
            "changed_at": _to_times(h_time, origin),
            "stage": _labels(h_stage, stage_names),
            "amount": h_amount,
            "close_date": _to_dates(h_close, origin),
            "forecast_category": _labels(h_cat, FORECAST_CATEGORIES),
        }
    )
    activities = None
    activity_truth = pd.DataFrame()
    criteria_visits = pd.DataFrame()
    if params["activities"]:
        chain = _deviation_chain(p, p_short, win_p, init, dev_name, dev_delta) if dev_name else {}
        before, treated = chain.get("before", win_p), chain.get("treated", win_p)
        lead_end = np.where(converted, converted_at, np.minimum(lead_created + LEAD_WINDOW_DAYS, horizon))
        cols, activity_truth, cv = simulate_activities(
            seed=seed,
            open_stages=open_stages,
            deal=deal,
            h_time=h_time,
            h_stage=h_stage,
            deal_owner=owner,
            deal_segment=segment,
            deal_final=f_stage,
            mu=mu,
            sigma=sigma,
            win_before=before,
            win_treated=treated,
            deal_dev_time=dev_time,
            deal_dev_rho=dev_rho,
            dev_delta=dev_delta,
            win_p=win_p,
            horizon=horizon,
            n_reps=n_reps,
            lead_created=lead_created,
            lead_end=lead_end,
            lead_owner=lead_owner,
        )
        is_deal, is_lead = cols["deal"] >= 0, cols["lead"] >= 0
        activities = pd.DataFrame(
            {
                "activity_id": _ids("ACT-", len(cols["time"]), 7),
                "occurred_at": _to_times(cols["time"], origin),
                "type": _labels(cols["type"], ACTIVITY_TYPES),
                "owner": _labels(cols["owner"], names),
                "opportunity_id": _take(opp_ids, np.maximum(cols["deal"], 0), is_deal),
                "lead_id": _take(lead_ids, np.maximum(cols["lead"], 0), is_lead),
                "subject": _labels(cols["subject"], SUBJECTS),
                "outcome": _labels(np.maximum(cols["outcome"], 0), OUTCOMES, cols["outcome"] >= 0),
                "duration": cols["duration"],
            }
        )
        criteria_visits = pd.DataFrame(
            {
                "opportunity_id": _take(opp_ids, cv["deal"]),
                "stage": _labels(cv["stage"], open_stages),
                "entered_at": _to_times(cv["entry"], origin),
                "until": _to_times(cv["exit"], origin),
                "met": cv["met"],
            }
        )
        still_open = cv["exit"] >= horizon  # a visit open at as_of runs to it
        criteria_visits.loc[still_open, "until"] = np.datetime64(end_ts.to_datetime64(), "us")
    del deal, h_time, h_stage, h_amount, h_close, h_cat

    lead_opp = np.full(n_leads, -1)
    lead_opp[lead_of[from_lead]] = np.flatnonzero(from_lead)
    conv_times = _to_times(np.where(converted, converted_at, np.nan), origin)
    leads = pd.concat(
        [
            pd.DataFrame(
                {
                    "lead_id": lead_ids,
                    "created_at": _to_times(lead_created, origin),
                    "converted": converted,
                    "converted_at": conv_times,
                    "opportunity_id": _take(opp_ids, lead_opp, lead_opp >= 0),
                    "owner": _labels(lead_owner, names),
                }
            ),
            leads.drop(columns="lead_id"),
        ],
        axis=1,
    )

    # ---- expected bookings, submissions, quotas
    n_quarters = horizon / QUARTER_DAYS
    expected = np.bincount(owner, weights=amount0 * win_p[stage0], minlength=n_reps) / n_quarters
    bias = _rep_biases(rng, n_reps)
    cal = process.calendar
    periods = cal.periods_between(start_ts, end_ts - pd.Timedelta(microseconds=1), "quarter")
    won_mask = opportunities["is_won"].to_numpy()
    won_period = cal.period(opportunities["close_date"][won_mask], "quarter").to_numpy()
    won_q = pd.Index(periods).get_indexer(won_period)
    actual = np.zeros((n_reps, len(periods)))
    inside = won_q >= 0
    np.add.at(actual, (owner[won_mask][inside], won_q[inside]), opportunities["amount"].to_numpy()[won_mask][inside])
    subs = []
    first_monday = start_ts + pd.Timedelta(days=(7 - start_ts.day_of_week) % 7)
    for qi_, label in enumerate(periods):  # a loop over quarters
        qs, qe = cal.period_bounds(label)
        mondays = pd.date_range(
            max(qs, first_monday), min(qe, end_ts) - pd.Timedelta(microseconds=1), freq="W-MON"
        ).normalize()
        mondays = mondays[mondays >= max(qs, start_ts)]
        if len(mondays) == 0:
            continue
        lam = np.asarray((mondays - qs) / (qe - qs), dtype=float)
        base = (1.0 - lam)[None, :] * expected[:, None] + lam[None, :] * actual[:, qi_][:, None]
        eps = rng.standard_normal(base.shape)
        commit = bias[:, None] * base * np.exp(COMMIT_NOISE_SIGMA * eps - COMMIT_NOISE_SIGMA**2 / 2)
        best = commit * (1.1 + 0.4 * (1.0 - lam))[None, :]
        when = np.asarray(mondays + pd.Timedelta(hours=9), dtype="datetime64[us]")
        reps_ix = np.repeat(np.arange(n_reps), len(mondays))
        week_ix = np.tile(np.arange(len(mondays)), n_reps)
        for category, values in (("commit", commit), ("best_case", best)):
            subs.append(
                pd.DataFrame(
                    {
                        "submitted_at": when[week_ix],
                        "owner": _labels(reps_ix, names),
                        "team": _labels(rep_team[reps_ix], TEAMS),
                        "period": label,
                        "category": category,
                        "amount": np.round(values.ravel() / 100.0) * 100.0,
                    }
                )
            )
    submissions = pd.concat(subs, ignore_index=True) if subs else None
    if submissions is not None:
        submissions = submissions.sort_values(["submitted_at", "owner", "category"], kind="stable", ignore_index=True)
        submissions["period"] = submissions["period"].astype("str")
        submissions["category"] = submissions["category"].astype("str")
    quota_amount = np.round(1.1 * expected, -3)
    quotas = pd.DataFrame(
        {
            "owner": _labels(np.repeat(np.arange(n_reps), len(periods)), names),
            "period": _labels(np.tile(np.arange(len(periods)), n_reps), periods),
            "amount": np.repeat(quota_amount, len(periods)),
        }
    )

    # ---- the truth
    all_stages = process.stage_names

    def matrix(rows: np.ndarray) -> pd.DataFrame:
        df = pd.DataFrame(
            rows, index=pd.Index(open_stages, name="from_stage"), columns=pd.Index(stage_names, name="to_stage")
        )
        return df.reindex(columns=all_stages, fill_value=0.0)

    seg_names = list(SEGMENTS)
    durations = pd.DataFrame(
        {
            "stage": np.repeat(open_stages, 3),
            "segment": np.tile(seg_names, k),
            "mu": mu.ravel(),
            "sigma": np.repeat(sigma, 3),
        }
    )
    durations["median_days"] = np.exp(durations["mu"])
    durations["mean_days"] = np.exp(durations["mu"] + durations["sigma"] ** 2 / 2)
    durations["p80_days"] = np.exp(durations["mu"] + _Z_STALL * durations["sigma"])
    durations = durations.astype({"stage": "str", "segment": "str"})
    cap = np.linalg.matrix_power(p[:, :k], max_steps).sum(axis=1)
    truth = GroundTruth(
        transition_matrix=matrix(p),
        win_probability=pd.Series(win_p, index=pd.Index(open_stages, name="stage"), name="win_probability"),
        lead_probability=pd.Series(lead_prob, index=pd.Index(lead_ids, name="lead_id"), name="lead_probability"),
        lead_coefficients=coefficients,
        rep_bias=pd.Series(bias, index=pd.Index(names, name="owner", dtype="str"), name="rep_bias"),
        stage_duration=durations,
        params=params,
        initial_stage=pd.Series(init, index=pd.Index(open_stages, name="stage"), name="initial_stage"),
        stall_transition_matrix={"short": matrix(p_short), "long": matrix(p_long)},
        step_cap_probability=pd.Series(cap, index=pd.Index(open_stages, name="stage"), name="step_cap_probability"),
        expected_bookings=pd.Series(
            expected, index=pd.Index(names, name="owner", dtype="str"), name="expected_bookings"
        ),
        as_of=end_ts,
        activity_effect=activity_truth,
        criteria_visits=criteria_visits,
        deviation_effect=_deviation_truth(p, p_short, win_p, init, params.get("deviation_effect", {})),
    )
    tables = {
        "opportunities": opportunities,
        "stage_history": stage_history,
        "leads": leads,
        "forecast_submissions": submissions,
        "quotas": quotas,
    }
    if activities is not None:
        tables["activities"] = activities
    return tables, truth


def _flip_chance(w: np.ndarray, delta: float) -> np.ndarray:
    """Chance that a deviating deal's outcome flips (a win lost for ``delta < 0``, a loss won for ``delta > 0``).

    From a stage with win probability ``w``, the deal then wins with ``w + delta`` (clipped to [0, 1]).
    """
    w = np.asarray(w, dtype=float)
    if delta < 0:
        return np.minimum(1.0, -delta / w)
    return np.minimum(1.0, delta / (1.0 - w))


def _deviation_chain(
    p: np.ndarray, p_short: np.ndarray, win_p: np.ndarray, init: np.ndarray, name: str, delta: float
) -> dict[str, Any]:
    """The chain of one deviation with effect `delta`, per open stage (arrays of length k).

    ``before``: win probability on entering the stage without having deviated (a deviation may still come, with its
    effect); ``treated``: of the visit in which the deal first deviated (entered by a skip or a regression, or its
    first stalled visit); ``control``: of a visit to the stage that has not deviated (yet, and for a stall, not in it
    either); ``first``: expected number of first deviations in the stage, per deal created.
    """
    k = len(win_p)
    eye = np.eye(k)
    jump = DEVIATION_JUMPS[name]
    if jump is None:  # a stall: a long visit (probability 1 - STALL_QUANTILE), which takes the long row
        p_long = (p - STALL_QUANTILE * p_short) / (1.0 - STALL_QUANTILE)
        w_long = p_long[:, :k] @ win_p + p_long[:, k]
        flip = _flip_chance(w_long, delta) if delta else np.zeros(k)
        treated = w_long * (1.0 - flip) if delta < 0 else w_long + (1.0 - w_long) * flip
        q_rest = STALL_QUANTILE * p_short[:, :k]
        before = np.linalg.solve(eye - q_rest, STALL_QUANTILE * p_short[:, k] + (1.0 - STALL_QUANTILE) * treated)
        control = p_short[:, :k] @ before + p_short[:, k]
        visits = np.linalg.solve((eye - q_rest).T, init)
        return {"before": before, "treated": treated, "control": control, "first": visits * (1 - STALL_QUANTILE)}
    dev = np.zeros((k, k), dtype=bool)
    for i in range(k):  # a loop over stages
        if 0 <= i + jump < k:
            dev[i, i + jump] = True
    q = p[:, :k]
    q_dev, q_rest = np.where(dev, q, 0.0), np.where(dev, 0.0, q)
    flip = _flip_chance(win_p, delta) if delta else np.zeros(k)
    treated = win_p * (1.0 - flip) if delta < 0 else win_p + (1.0 - win_p) * flip
    before = np.linalg.solve(eye - q_rest, p[:, k] + q_dev @ treated)
    visits = np.linalg.solve((eye - q_rest).T, init)  # expected visits before any deviation
    return {"before": before, "treated": treated, "control": before, "first": visits @ q_dev}


def _deviation_truth(
    p: np.ndarray, p_short: np.ndarray, win_p: np.ndarray, init: np.ndarray, effects: Mapping[str, float]
) -> pd.DataFrame:
    """The truth of each deviation of `DEVIATION_JUMPS` (see "Deviation effects" in the module docstring).

    ``win_rate_diff``: the win probability of the visit in which a deal first deviated, minus that of a visit to
    the same stage that has not deviated (yet), averaged with the expected shares of first deviations per stage;
    ``effect``: the parameter (the per-deal effect).
    """
    rows = {}
    for name in DEVIATION_JUMPS:
        delta = float(effects.get(name, 0.0))
        c = _deviation_chain(p, p_short, win_p, init, name, delta)
        total = c["first"].sum()
        diff = float(np.sum(c["first"] * (c["treated"] - c["control"])) / total) if total > 0 else np.nan
        if not delta and any(effects.values()):  # another deviation's effect reaches it through the deals' pasts
            diff = np.nan
        rows[name] = {"win_rate_diff": round(diff, 12) + 0.0, "effect": delta}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.Index(list(out.index), name="deviation", dtype="str")
    return out


def _win_rate_factors(shift: float) -> tuple[float, float]:
    """Win-keeping probabilities (year one, later) of a relative win-rate change `shift` between years."""
    if shift < 0:
        return 1.0, 1.0 + shift
    return 1.0 / (1.0 + shift), 1.0


def _rep_biases(rng: np.random.Generator, n_reps: int) -> np.ndarray:
    """Rep biases: 20% sandbaggers (~0.75), 60% calibrated (~1.0), 20% optimists (~1.3), lognormal spread."""
    kind = _choice(rng, n_reps, (0.2, 0.6, 0.2))
    centre = np.array([0.75, 1.0, 1.3])[kind]
    return np.round(centre * np.exp(0.06 * rng.standard_normal(n_reps)), 4)
