import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from salesforecast import adherence as A
from salesforecast.adherence import (
    DEVIATIONS,
    OneOutcomeWarning,
    _bootstrap_medians,
    adherence_by,
    deal_adherence,
    deviation_outcomes,
    stall_limits,
)
from salesforecast.datasets import generate
from salesforecast.process import SalesProcess, Stage
from salesforecast.schema import CRMData, validate
from salesforecast.snapshots import stage_intervals
from tests.factories import deal_tables
from tests.test_movement import crm_tables, fast_crm, random_tables

DEFAULT = SalesProcess.default()
OPEN = DEFAULT.open_stages
P, Q, N, V = OPEN[:4]  # Prospecting, Qualification, Needs Analysis, Value Proposition


def _tables(deals: dict, process: SalesProcess | None = None) -> CRMData:
    """deals: id -> (created, [(changed_at, stage, amount, close_date), ...]) -> validated CRMData."""
    data = validate(deal_tables(deals), process=process)
    assert data.quarantine.empty, data.quarantine.to_string()
    return data


CD = "2024-03-01"
HAND = {
    "SKIP": (
        "2024-01-01",
        [("2024-01-01", P, 100, CD), ("2024-01-05", N, 100, CD), ("2024-01-11 12:00", "Closed Won", 100, "2024-01-11")],
    ),
    "REG": (
        "2024-01-01",
        [
            ("2024-01-01", P, 100, CD),
            ("2024-01-02", Q, 100, CD),
            ("2024-01-03", N, 100, CD),
            ("2024-01-04", V, 100, CD),
            ("2024-01-05", Q, 100, CD),
            ("2024-01-06", "Closed Lost", 100, "2024-01-06"),
        ],
    ),
    "BOTH": ("2024-01-01", [("2024-01-01", P, 100, CD), ("2024-01-02", V, 100, CD), ("2024-01-03", Q, 100, CD)]),
    "DATES": (
        "2024-01-01",
        [
            ("2024-01-01", P, 100, "2024-03-01"),
            ("2024-01-02", P, 100, "2024-03-20"),
            ("2024-01-03", P, 100, "2024-03-10"),
            ("2024-01-04", Q, 100, "2024-04-01"),
            ("2024-01-05", "Closed Lost", 100, "2024-01-05"),
        ],
    ),
    "AMOUNT": (
        "2024-01-01",
        [
            ("2024-01-01", P, 100, CD),
            ("2024-01-02", P, 80, CD),
            ("2024-01-03", Q, 120, CD),
            ("2024-01-04", "Closed Won", 100, "2024-01-04"),
        ],
    ),
    "REOPEN": (
        "2024-01-01",
        [("2024-01-01", P, 100, CD), ("2024-01-02", "Closed Lost", 100, "2024-01-02"), ("2024-01-03", Q, 100, CD)],
    ),
}


def test_skips_regressions_pushes_and_amounts_on_hand_made_histories():
    deals = deal_adherence(_tables(HAND), as_of="2024-02-01").set_index("opportunity_id")
    skip = deals.loc["SKIP"]
    # Prospecting -> Needs Analysis is one skip of Qualification; winning from Needs Analysis skips the 5 stages after
    assert skip[["skipped_stages", "skipped_stage_names", "regressions", "stages_skipped_at_win"]].tolist() == [
        1,
        "Qualification",
        0,
        5,
    ]
    assert skip[["path", "visits", "stage_changes", "skipped_stage_visit", "outcome"]].tolist() == [
        "Prospecting > Needs Analysis",
        2,
        2,
        2,
        "won",
    ]
    assert skip["cycle_days"] == 10.5 and skip["closed_at"] == pd.Timestamp("2024-01-11 12:00")
    reg = deals.loc["REG"]
    # Value Proposition -> Qualification is one regression
    assert reg[["skipped_stages", "regressions", "regression_visit", "visits", "outcome"]].tolist() == [
        0,
        1,
        5,
        5,
        "lost",
    ]
    both = deals.loc["BOTH"]
    assert both[["skipped_stages", "skipped_stage_names", "regressions", "outcome"]].tolist() == [
        2,
        "Qualification; Needs Analysis",
        1,
        "open",
    ]
    assert np.isnan(both["cycle_days"]) and pd.isna(both["closed_at"])
    dates = deals.loc["DATES"]
    # close-date-only rows are no stage change; the close date written at closing is not a push or pull-in
    assert dates[["visits", "stage_changes", "path"]].tolist() == [2, 2, "Prospecting > Qualification"]
    assert dates[["close_date_pushes", "days_pushed", "close_date_pull_ins", "days_pulled_in"]].tolist() == [
        2,
        19 + 22,
        1,
        10,
    ]
    assert dates[["pushed_visit", "pushed_3plus_visit"]].tolist() == [1, 0]
    amount = deals.loc["AMOUNT"]
    # the discount written with the win is not an amount change while open
    assert amount[["amount_changes", "amount_decreases", "amount_initial", "amount_last_open"]].tolist() == [
        2,
        1,
        100,
        120,
    ]
    assert amount[["amount_net_change", "amount_pct_change", "amount_final", "amount_decreased_visit"]].tolist() == [
        20,
        0.2,
        100,
        1,
    ]
    reopen = deals.loc["REOPEN"]
    assert reopen[["reopened", "regressions", "stage_changes", "outcome", "path"]].tolist() == [
        1,
        0,
        2,
        "open",
        "Prospecting > Qualification",
    ]
    assert (deals["entry_stage"] == P).all()


def test_as_of_uses_only_what_was_known():
    data = _tables(HAND)
    early = deal_adherence(data, as_of="2024-01-02 12:00").set_index("opportunity_id")
    assert early.loc["SKIP", "outcome"] == "open" and early.loc["SKIP", "skipped_stages"] == 0
    assert early.loc["REG", "regressions"] == 0 and early.loc["REG", "visits"] == 2
    assert early.loc["REOPEN", "reopened"] == 0 and early.loc["REOPEN", "outcome"] == "lost"
    assert len(deal_adherence(data, as_of="2023-12-31")) == 0


# ---------------------------------------------------------------------------------------------- stalls
def _stall_process() -> SalesProcess:
    base = SalesProcess.default()
    stages = tuple(
        Stage(s.name, s.kind, s.probability, s.forecast_category, s.aliases, 10.0 if s.name == P else None)
        for s in base.stages
    )
    return SalesProcess(stages, name="with a stall limit")


def _stall_data() -> CRMData:
    d0 = pd.Timestamp("2024-01-01")

    def at(days: float) -> pd.Timestamp:
        return d0 + pd.Timedelta(days=days)

    deals = {
        # Prospecting 12 days (map limit 10: stalled), Qualification 3 days (stall_days 5: fine)
        "S1": (at(0), [(at(0), P, 1, CD), (at(12), Q, 1, CD), (at(15), "Closed Lost", 1, "2024-01-16")]),
        # Prospecting 5 days (fine), Qualification 6 days (stalled)
        "S2": (at(0), [(at(0), P, 1, CD), (at(5), Q, 1, CD), (at(11), "Closed Lost", 1, "2024-01-12")]),
        # an open deal sitting in Value Proposition since day 20
        "CUR": (at(20), [(at(20), V, 1, CD)]),
    }
    # completed Needs Analysis visits of 1..10 days and Value Proposition visits of 4 and 6 days
    for d in range(1, 11):
        deals[f"N{d:02d}"] = (at(0), [(at(0), N, 1, CD), (at(d), "Closed Lost", 1, f"2024-01-{1 + d:02d}")])
    for d in (4, 6):
        deals[f"V{d}"] = (at(0), [(at(0), V, 1, CD), (at(d), "Closed Lost", 1, f"2024-01-{1 + d:02d}")])
    return _tables(deals, process=_stall_process())


def test_stall_limit_precedence_map_then_stall_days_then_data_p90():
    data = _stall_data()
    given = {"Prospecting": 100, "qualification": 5}  # the map's max_days wins over stall_days; names are matched
    limits = stall_limits(data, stall_days=given, as_of="2024-02-01").set_index("stage")
    assert limits.loc[P, ["limit_days", "source"]].tolist() == [10.0, "process map max_days"]
    assert limits.loc[Q, ["limit_days", "source"]].tolist() == [5.0, "stall_days"]
    p90 = float(np.quantile(np.arange(1, 11), 0.9))
    assert limits.loc[N, ["limit_days", "source"]].tolist() == [pytest.approx(p90), "data p90"]
    assert limits.loc[V, "limit_days"] == pytest.approx(np.quantile([4, 6], 0.9))
    assert limits.loc["Negotiation/Review", "source"] == "none (no completed visit)"
    assert limits.loc[N, "completed_visits"] == 10

    deals = deal_adherence(data, stall_days=given, as_of="2024-02-01").set_index("opportunity_id")
    assert deals.loc["S1", ["stalls", "max_stall_excess_days", "stalled_visit"]].tolist() == [1, 2.0, 1]
    assert deals.loc["S2", ["stalls", "max_stall_excess_days", "stalled_visit"]].tolist() == [1, 1.0, 2]
    assert deals.loc["N10", "stalls"] == 1 and deals.loc["N09", "stalls"] == 0  # p90 of 1..10 is 9.1 days
    # the current visit of an open deal counts once it already exceeds the limit at as_of (5.8 days)
    cur = deals.loc["CUR"]
    assert cur[["stalls", "stalled_now", "outcome"]].tolist() == [1, True, "open"]
    assert cur["max_stall_excess_days"] == pytest.approx(11 - 5.8)  # in stage from day 20 to day 31
    before = deal_adherence(data, stall_days=given, as_of="2024-01-24").set_index("opportunity_id")
    assert before.loc["CUR", ["stalls", "stalled_now"]].tolist() == [0, False]
    assert deals.attrs["stall_limit_source"][Q] == "stall_days"

    # without stall_days, Qualification falls back to the p90 of its completed visits (3 and 6 days)
    plain = stall_limits(data, as_of="2024-02-01").set_index("stage")
    assert plain.loc[Q, ["limit_days", "source"]].tolist() == [pytest.approx(np.quantile([3, 6], 0.9)), "data p90"]


def test_stall_days_from_a_fitted_model_and_bad_input():
    data = _stall_data()
    table = pd.DataFrame({"visits": [2, 2], "p90_days": [100.0, 5.0]}, index=pd.Index([P, Q], name="stage"))
    model = SimpleNamespace(time_in_stage_=table)  # what StageConversionModel exposes
    from_model = stall_limits(data, stall_days=model, as_of="2024-02-01")
    from_dict = stall_limits(data, stall_days={P: 100, Q: 5}, as_of="2024-02-01")
    pd.testing.assert_frame_equal(from_model, from_dict)
    with pytest.raises(ValueError, match="'Demo' is not an open stage"):
        stall_limits(data, stall_days={"Demo": 3})
    with pytest.raises(ValueError, match="positive number of days"):
        stall_limits(data, stall_days={Q: 0})
    with pytest.raises(ValueError, match="p90"):
        stall_limits(data, stall_days=pd.DataFrame({"median_days": [1.0]}, index=[Q]))


# ---------------------------------------------------------------------------------------------- naive reference
def _naive(data: CRMData, limit: float, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per deal, by plain loops over its history intervals (the rules of the module docstring)."""
    iv = stage_intervals(data)
    order = {s: i for i, s in enumerate(OPEN)}
    out = []
    for oid, g in iv.groupby("opportunity_id", sort=True):
        rows = g[g["start"] <= as_of].to_dict("records")
        if not rows:
            continue
        for i, r in enumerate(rows):  # its place: two rows can be equal (changes at one instant), so not .index()
            r["_i"] = i
        runs: list[dict] = []
        for r in rows:
            stage = r["stage"] if isinstance(r["stage"], str) else None
            if runs and runs[-1]["stage"] == stage:
                runs[-1]["rows"].append(r)
            else:
                runs.append({"stage": stage, "rows": [r]})
        rec = dict.fromkeys(
            ["skipped_stages", "regressions", "reopened", "stalls", "stage_changes", "close_date_pushes"], 0
        )
        rec |= dict.fromkeys(["close_date_pull_ins", "amount_changes", "amount_decreases"], 0)
        rec |= {"days_pushed": 0.0, "days_pulled_in": 0.0}
        first = {f"{d.name}_visit": 0 for d in DEVIATIONS}
        pushes = 0
        path, visit = [], 0
        for k, run in enumerate(runs):
            is_open = run["stage"] in order
            if is_open:
                visit += 1
                path.append(run["stage"])
            if k:
                rec["stage_changes"] += 1
                a, b = runs[k - 1]["stage"], run["stage"]
                if a in order and b in order and order[b] > order[a] + 1:
                    rec["skipped_stages"] += order[b] - order[a] - 1
                    first["skipped_stage_visit"] = first["skipped_stage_visit"] or visit
                if a in order and b in order and order[b] < order[a]:
                    rec["regressions"] += 1
                    first["regression_visit"] = first["regression_visit"] or visit
                if a in DEFAULT.closed_stages and b in order:
                    rec["reopened"] += 1
            if is_open:
                start = run["rows"][0]["start"]
                end = runs[k + 1]["rows"][0]["start"] if k + 1 < len(runs) else as_of
                if (end - start) / pd.Timedelta(days=1) > limit:
                    rec["stalls"] += 1
                    first["stalled_visit"] = first["stalled_visit"] or visit
            for r in run["rows"]:
                i = r["_i"]
                if i == 0 or not rows[i - 1]["is_open"] or not is_open:
                    continue
                prev = rows[i - 1]
                if pd.notna(r["close_date"]) and pd.notna(prev["close_date"]):
                    days = (r["close_date"] - prev["close_date"]) / pd.Timedelta(days=1)
                    if days > 0:
                        rec["close_date_pushes"] += 1
                        rec["days_pushed"] += days
                        pushes += 1
                        first["pushed_visit"] = first["pushed_visit"] or visit
                        if pushes == 3:
                            first["pushed_3plus_visit"] = visit
                    elif days < 0:
                        rec["close_date_pull_ins"] += 1
                        rec["days_pulled_in"] -= days
                if pd.notna(r["amount"]) and pd.notna(prev["amount"]) and r["amount"] != prev["amount"]:
                    rec["amount_changes"] += 1
                    if r["amount"] < prev["amount"]:
                        rec["amount_decreases"] += 1
                        first["amount_decreased_visit"] = first["amount_decreased_visit"] or visit
        last = runs[-1]["stage"]
        outcome = "won" if last in DEFAULT.won_stages else "lost" if last in DEFAULT.lost_stages else "open"
        out.append({"opportunity_id": oid, "outcome": outcome, "path": " > ".join(path), "visits": visit} | rec | first)
    return pd.DataFrame(out)


@settings(max_examples=25, deadline=None)
@given(crm_tables(), st.integers(0, 400))
def test_equals_naive_reference_on_random_histories(tables, offset):
    data = fast_crm(tables)
    as_of = pd.Timestamp("2024-01-01") + pd.Timedelta(days=offset)
    limit = 7.0
    got = deal_adherence(data, stall_days=dict.fromkeys(OPEN, limit), as_of=as_of)
    want = _naive(data, limit, as_of)
    assert len(got) == len(want)
    if not len(want):
        return
    cols = list(want.columns)
    pd.testing.assert_frame_equal(
        got[cols].reset_index(drop=True), want[cols].astype(got[cols].dtypes.to_dict()), check_exact=False
    )


def test_data_p90_equals_the_quantile_of_completed_visits():
    data = fast_crm(random_tables(60, seed=3))
    as_of = pd.Timestamp("2024-06-01")
    iv = stage_intervals(data)
    durations: dict[str, list[float]] = {s: [] for s in OPEN}
    for _, g in iv.groupby("opportunity_id"):
        g = g[g["start"] <= as_of]
        stages = g["stage"].tolist()
        starts = g["start"].tolist()
        k = 0
        while k < len(stages):
            j = k
            while j + 1 < len(stages) and stages[j + 1] == stages[k]:
                j += 1
            if stages[k] in durations and j + 1 < len(stages):  # completed: a next stage is known at as_of
                durations[stages[k]].append((starts[j + 1] - starts[k]) / pd.Timedelta(days=1))
            k = j + 1
    limits = stall_limits(data, as_of=as_of).set_index("stage")
    for stage, values in durations.items():
        if values:
            assert limits.loc[stage, "limit_days"] == pytest.approx(np.quantile(values, 0.9))
            assert limits.loc[stage, "completed_visits"] == len(values)


# ---------------------------------------------------------------------------------------------- roll-ups
def test_adherence_by_owner_counts_and_shares():
    deals = deal_adherence(_tables(HAND), as_of="2024-02-01")
    by = adherence_by(deals, "owner")
    # ann: SKIP (won), BOTH (open), AMOUNT (won); bo: REG (lost), DATES (lost), REOPEN (open)
    assert by.loc["ann", ["deals", "open_deals", "closed_deals", "won_deals"]].tolist() == [3, 1, 2, 2]
    assert by.loc["ann", "share_skipped_stage"] == pytest.approx(2 / 3)
    assert by.loc["bo", "share_regression"] == pytest.approx(1 / 3)
    assert by.loc["bo", "win_rate"] == 0.0 and by.loc["ann", "win_rate"] == 1.0
    assert by.loc["bo", "mean_pushes"] == pytest.approx(2 / 3)
    assert by.loc["ann", "share_followed_map"] == pytest.approx(1 / 3)
    assert by.loc["ann", "median_cycle_days"] == pytest.approx(np.median([10.5, 3.0]))
    assert adherence_by(deals, ["team", "owner"]).index.nlevels == 2
    with pytest.raises(KeyError, match="region"):
        adherence_by(deals, "region")


# ---------------------------------------------------------------------------------------------- outcomes
def _deals_frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """Synthetic deal_adherence-like rows: (outcome, path, stalled_visit, cycle_days)."""
    df = pd.DataFrame(rows, columns=["outcome", "path", "stalled_visit", "cycle_days"])
    for d in DEVIATIONS:
        if d.name != "stalled":
            df[f"{d.name}_visit"] = 0
        df[d.column] = 0
    df["stalls"] = (df["stalled_visit"] > 0).astype(int)
    return df


def test_deviation_outcomes_known_difference_and_verdict():
    # in Prospecting: 100 stalled deals win 20%, 300 others win 50%; the stall costs exactly 30 points
    rows = [("won" if i < 20 else "lost", P, 1, 40.0 + (i * 0.73) % 7) for i in range(100)]
    rows += [("won" if i < 150 else "lost", P, 0, 20.0 + (i * 0.37) % 5) for i in range(300)]
    deals = _deals_frame(rows)
    out = deviation_outcomes(deals, ci=0.9)
    row = out.loc["stalled"]
    assert row[["n_with", "n_without", "wins_with", "wins_without"]].tolist() == [100, 300, 20, 150]
    assert row["win_rate_diff"] == pytest.approx(-0.3) and row["raw_diff"] == pytest.approx(-0.3)
    assert row["win_rate_diff_high"] < 0
    assert row["verdict"].startswith("Deals that stalled in a stage won 30.0 points less often (90% CI ")
    # Wilson and Newcombe intervals agree with statsmodels
    lo, hi = proportion_confint(20, 100, alpha=0.1, method="wilson")
    assert (row["win_rate_with_low"], row["win_rate_with_high"]) == (pytest.approx(lo), pytest.approx(hi))
    d_lo, d_hi = confint_proportions_2indep(20, 100, 150, 300, method="newcomb", compare="diff", alpha=0.1)
    assert (row["raw_diff_low"], row["raw_diff_high"]) == (pytest.approx(d_lo), pytest.approx(d_hi))
    cycle = deals["cycle_days"].to_numpy()
    m1, m2 = np.median(cycle[:100]), np.median(cycle[100:])
    assert (row["median_cycle_with"], row["median_cycle_without"]) == (m1, m2)
    assert row["median_cycle_with_low"] < m1 < row["median_cycle_with_high"]
    assert row["median_cycle_diff_low"] < m1 - m2 < row["median_cycle_diff_high"]
    assert out.loc["skipped_stage", "verdict"] == "No closed deal skipped a stage; nothing to compare."
    # open deals are excluded: adding open deals with the deviation changes nothing
    more = pd.concat([deals, _deals_frame([("open", P, 1, np.nan)] * 50)], ignore_index=True)
    pd.testing.assert_frame_equal(deviation_outcomes(more), out)
    # seeded: the same call gives the same bootstrap intervals; another seed other ones
    pd.testing.assert_frame_equal(deviation_outcomes(deals), out)
    assert not deviation_outcomes(deals, seed=1)["median_cycle_with_low"].equals(out["median_cycle_with_low"])
    with pytest.raises(ValueError, match="confidence level"):
        deviation_outcomes(deals, ci=90)


def test_stage_matching_compares_deals_in_the_same_stage():
    # Stalling happens only in Negotiation, where deals win 80% (stalled: 60%); early deals never stall and win 10%.
    # The raw comparison says stalling pays; matched on the stage, it costs 20 points.
    late = "Prospecting > Negotiation/Review"
    rows = [("won" if i < 60 else "lost", late, 2, 50.0) for i in range(100)]
    rows += [("won" if i < 80 else "lost", late, 0, 30.0) for i in range(100)]
    rows += [("won" if i < 30 else "lost", P, 0, 5.0) for i in range(300)]
    out = deviation_outcomes(_deals_frame(rows)).loc["stalled"]
    assert out["raw_diff"] == pytest.approx(0.6 - 110 / 400)
    assert out["win_rate_comparable"] == pytest.approx(0.8)
    assert out["win_rate_diff"] == pytest.approx(-0.2) and out["n_matched"] == 100
    assert out["win_rate_diff_high"] < 0


def test_bootstrap_medians_match_naive_resampling():
    rng = np.random.default_rng(0)
    for n in (7, 8):
        x = rng.gamma(2.0, 10.0, size=n)
        fast = _bootstrap_medians(x, 40_000, np.random.default_rng(1))
        naive = np.median(x[np.random.default_rng(2).integers(0, n, size=(40_000, n))], axis=1)
        qs = [0.05, 0.25, 0.5, 0.75, 0.95]
        np.testing.assert_allclose(np.quantile(fast, qs), np.quantile(naive, qs), rtol=0.05)
        assert abs(fast.mean() - naive.mean()) < 0.02 * naive.mean()
    assert np.isnan(_bootstrap_medians(np.array([]), 5, rng)).all()
    assert (_bootstrap_medians(np.array([3.0]), 5, rng) == 3.0).all()


def test_stalled_deals_win_less_on_generated_data():
    # generate(): a visit longer than its stage's p80 loses twice as often at its next jump
    data, _ = generate(20_000, seed=11)
    deals = deal_adherence(data)
    out = deviation_outcomes(deals, ci=0.9)
    stalled = out.loc["stalled"]
    assert stalled["n_with"] > 1000
    assert stalled["win_rate_diff"] < 0 and stalled["win_rate_diff_high"] < 0
    # the raw gap has the wrong sign: deals that live longer have more chances to stall (exposure bias)
    assert stalled["raw_diff"] > 0
    # the chain is Markov: how a deal entered a stage does not change its future, so skipping and going back
    # make no difference once matched on the stage (while their raw gaps are large)
    for name in ("skipped_stage", "regression", "amount_decreased"):
        assert abs(out.loc[name, "win_rate_diff"]) < 0.03, out.loc[name, ["raw_diff", "win_rate_diff"]]
        assert out.loc[name, "raw_diff"] > 0.05
    assert stalled["median_cycle_with"] > stalled["median_cycle_without"]


def test_equals_naive_reference_on_a_larger_random_crm():
    data = fast_crm(random_tables(150, seed=5))
    for as_of in (pd.Timestamp("2024-05-01"), pd.Timestamp("2025-03-01")):
        got = deal_adherence(data, stall_days=dict.fromkeys(OPEN, 7.0), as_of=as_of)
        want = _naive(data, 7.0, as_of)
        cols = list(want.columns)
        assert (got[["skipped_stages", "regressions", "reopened", "close_date_pull_ins"]] > 0).any().all()
        pd.testing.assert_frame_equal(
            got[cols].reset_index(drop=True), want[cols].astype(got[cols].dtypes.to_dict()), check_exact=False
        )


def test_deviation_outcomes_when_every_closed_deal_was_won():
    """An export of won deals only: every win rate is 100%, so a "0.0 points less often" verdict with an
    interval misled; now the win-rate differences are NaN, each verdict says only cycle times compare, and a
    warning says why."""
    rows = [("won", P, 1, 40.0 + i % 7) for i in range(30)] + [("won", P, 0, 20.0 + i % 5) for i in range(60)]
    deals = _deals_frame(rows + [("open", P, 1, np.nan)] * 5)
    with pytest.warns(OneOutcomeWarning) as caught:
        out = deviation_outcomes(deals)
    (message,) = {str(w.message) for w in caught}
    assert message.startswith("Every one of the 90 closed deals was won (no lost deal), so the win rates cannot show")
    row = out.loc["stalled"]
    for c in ("raw_diff", "raw_diff_low", "raw_diff_high", "win_rate_diff", "win_rate_diff_low", "win_rate_diff_high"):
        assert np.isnan(row[c]), c
    assert row["verdict"] == (
        "Every closed deal was won, so win rates cannot tell whether deals that stalled in a stage do better; "
        "only the cycle times compare."
    )
    assert row["win_rate_with"] == 1.0 and row["n_with"] == 30  # the facts stay
    assert row["median_cycle_diff"] == np.median([40.0 + i % 7 for i in range(30)]) - np.median(
        [20.0 + i % 5 for i in range(60)]
    )
    assert out.loc["skipped_stage", "verdict"] == "No closed deal skipped a stage; nothing to compare."
    # all lost says so too; one deal of the other outcome is a comparison again, without the warning
    lost = _deals_frame([("lost", P, 1, 10.0)] * 4 + [("lost", P, 0, 12.0)] * 4)
    with pytest.warns(OneOutcomeWarning, match=r"Every one of the 8 closed deals was lost \(no won deal\)"):
        assert deviation_outcomes(lost)["win_rate_diff"].isna().all()
    mixed = _deals_frame(rows + [("lost", P, 0, 22.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", OneOutcomeWarning)
        assert deviation_outcomes(mixed).loc["stalled", "win_rate_diff"] > 0


def test_paths_from_integer_codes_equal_the_paths_joined_visit_by_visit():
    # each deal's path as one integer (its visits' stages as digits) gives the same text as joining the visits in
    # order, whatever the order of the visits given; a path too long for an integer is joined visit by visit
    rng = np.random.default_rng(0)
    names = ["Qualification", "Discovery", "Proposal", "Negotiation", "Closing"]
    n_visits = rng.integers(0, 9, size=3000)
    deal = np.repeat(np.arange(3000), n_visits)
    visit = np.concatenate([np.arange(1, n + 1) for n in n_visits])
    stage = rng.integers(0, len(names), size=len(deal))
    order = rng.permutation(len(deal))
    got = A._paths(deal[order], visit[order], stage[order], 3000, names)
    assert got.tolist() == A._paths_joined(deal, visit, stage, 3000, names).tolist()
    assert got.iloc[np.flatnonzero(n_visits == 0)].eq("").all() and str(got.dtype) == "str"
    first = np.flatnonzero(n_visits == 3)[0]
    assert got.iloc[first] == A.PATH_SEPARATOR.join(names[s] for s in stage[deal == first])
    long = A._paths(np.zeros(40, dtype=np.int64), np.arange(1, 41), np.arange(40) % 5, 1, names)
    assert long.iloc[0].split(A.PATH_SEPARATOR) == [names[i % 5] for i in range(40)]
