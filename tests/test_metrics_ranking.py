"""Ranking and probability metrics: naive references (pairwise, loops, permutations, sklearn, scipy), properties."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn import metrics as skm

from salesforecast.metrics import (
    alift,
    brier_score,
    cumulative_gains,
    ks_statistic,
    lift_table,
    log_loss,
    pr_auc,
    roc_auc,
    score_table,
    top_decile_lift,
)

RANKING = {"roc_auc": roc_auc, "pr_auc": pr_auc, "ks": ks_statistic, "alift": alift, "tdl": top_decile_lift}


def _grid_forecasts(min_size: int = 2, max_size: int = 60, levels: int = 1000):
    """(y, p) with p on a grid k / levels: many ties, and strictly monotone maps keep distinct values distinct."""
    return st.lists(st.tuples(st.integers(0, 1), st.integers(0, levels)), min_size=min_size, max_size=max_size).map(
        lambda rows: (np.array([r[0] for r in rows]), np.array([r[1] / levels for r in rows]))
    )


def _both_classes(y) -> bool:
    return 0 < int(np.sum(y)) < len(y)


# ------------------------------------------------------------------------------------------------ naive references
def _naive_auc(y, p) -> float:
    pos = [pi for yi, pi in zip(y, p, strict=True) if yi == 1]
    neg = [pi for yi, pi in zip(y, p, strict=True) if yi == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _naive_gains(y, p) -> list[float]:
    """Expected positives among the first c contacts, c = 0..N, contacting tied scores in random order (loop)."""
    order = sorted(range(len(y)), key=lambda i: -p[i])
    out, total = [0.0], 0.0
    for i in order:
        tied = [j for j in range(len(y)) if p[j] == p[i]]
        total += sum(y[j] for j in tied) / len(tied)  # each contact of a tied block reaches its rate on average
        out.append(total)
    return out


def _permutation_gains(y, p) -> list[float]:
    """The same, by brute force: average the strict-order curves over every ordering consistent with the scores."""
    n = len(y)
    sums = [0.0] * (n + 1)
    count = 0
    for perm in itertools.permutations(range(n)):
        if any(p[perm[k]] < p[perm[k + 1]] for k in range(n - 1)):
            continue
        count += 1
        reached = 0
        for c, i in enumerate(perm, start=1):
            reached += y[i]
            sums[c] += reached
    return [s / count for s in sums]


def _naive_alift(y, p) -> float:
    g = [v / sum(y) for v in _naive_gains(y, p)]
    n = len(y)
    return sum((g[c - 1] + g[c]) / 2 / n for c in range(1, n + 1))


def _naive_ks(y, p) -> float:
    pos = [pi for yi, pi in zip(y, p, strict=True) if yi == 1]
    neg = [pi for yi, pi in zip(y, p, strict=True) if yi == 0]
    return max(abs(sum(v <= t for v in pos) / len(pos) - sum(v <= t for v in neg) / len(neg)) for t in list(p) + [-1.0])


def _scipy_ks(y, p) -> float:
    with warnings.catch_warnings():  # only the statistic is used; its p-value may warn on tiny samples
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ks_2samp(p[y == 1], p[y == 0]).statistic)


def _naive_average_precision(y, p) -> float:
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(p), reverse=True):
        sel = [yi for yi, pi in zip(y, p, strict=True) if pi >= t]
        recall = sum(sel) / sum(y)
        ap += (recall - prev_recall) * sum(sel) / len(sel)
        prev_recall = recall
    return ap


@settings(max_examples=150, deadline=None)
@given(_grid_forecasts(levels=12))
def test_auc_ks_ap_equal_naive_references_and_libraries(data):
    y, p = data
    assume(_both_classes(y))
    assert roc_auc(y, p) == pytest.approx(_naive_auc(y, p), abs=1e-12)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert ks_statistic(y, p) == pytest.approx(_naive_ks(y, p), abs=1e-12)
    assert ks_statistic(y, p) == pytest.approx(_scipy_ks(y, p), abs=1e-12)
    assert pr_auc(y, p) == pytest.approx(_naive_average_precision(y, p), abs=1e-12)
    assert pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(_grid_forecasts(min_size=1, levels=8))
def test_gains_alift_and_lift_equal_loops(data):
    y, p = data
    assume(y.sum() > 0)
    naive = _naive_gains(list(y), list(p))
    g = cumulative_gains(y, p)
    n, n_pos = len(y), y.sum()
    at_c = np.interp(np.arange(n + 1), g["contacted"], g["positives"])
    np.testing.assert_allclose(at_c, naive, atol=1e-9)
    assert alift(y, p) == pytest.approx(_naive_alift(list(y), list(p)), abs=1e-12)
    tdl_contacts = 0.1 * n  # the curve is linear between whole contacts
    lo = math.floor(tdl_contacts)
    expected_reached = naive[lo] + (tdl_contacts - lo) * ((naive[lo + 1] if lo < n else naive[lo]) - naive[lo])
    assert top_decile_lift(y, p) == pytest.approx(expected_reached / n_pos / 0.1, abs=1e-9)
    for n_bins in {1, min(3, n), min(10, n)}:
        t = lift_table(y, p, n_bins=n_bins)
        cuts = [k * n // n_bins for k in range(n_bins + 1)]
        for k, row in enumerate(t.itertuples()):
            size = cuts[k + 1] - cuts[k]
            pos = naive[cuts[k + 1]] - naive[cuts[k]]
            assert row.decile == k + 1 and row.n == size
            assert row.positives == pytest.approx(pos, abs=1e-9)
            assert row.lift == pytest.approx(pos / size / (n_pos / n), abs=1e-9)
            assert row.cumulative_gain == pytest.approx(naive[cuts[k + 1]] / n_pos, abs=1e-9)
            assert row.cumulative_lift == pytest.approx(naive[cuts[k + 1]] / cuts[k + 1] / (n_pos / n), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(_grid_forecasts(min_size=1, max_size=6, levels=3))
def test_gains_are_the_average_over_tie_orderings(data):
    y, p = data
    assume(y.sum() > 0)
    g = cumulative_gains(y, p)
    at_c = np.interp(np.arange(len(y) + 1), g["contacted"], g["positives"])
    np.testing.assert_allclose(at_c, _permutation_gains(list(y), list(p)), atol=1e-12)


def test_log_loss_equals_formula_and_sklearn():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.01, 0.99, 300)
    y = (rng.random(300) < p).astype(int)
    naive = -sum(math.log(pi) if yi else math.log(1 - pi) for yi, pi in zip(y, p, strict=True)) / len(y)
    assert log_loss(y, p) == pytest.approx(naive, rel=1e-12)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-15))
    assert log_loss([1, 0], [0.0, 1.0], eps=0) == math.inf
    assert log_loss([1, 0], [1.0, 0.0], eps=0) == 0.0


def test_against_sklearn_on_larger_data_with_ties():
    rng = np.random.default_rng(11)
    p = np.round(rng.beta(2, 5, 5_000), 2)  # heavy ties
    y = (rng.random(5_000) < p).astype(int)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert ks_statistic(y, p) == pytest.approx(_scipy_ks(y, p), abs=1e-12)
    o = y.mean()
    assert alift(y, p) == pytest.approx(o / 2 + (1 - o) * roc_auc(y, p), abs=1e-12)


# ------------------------------------------------------------------------------------------------ properties
@settings(max_examples=200, deadline=None)
@given(_grid_forecasts())
def test_auc_bounds_and_symmetry(data):
    y, p = data
    assume(_both_classes(y))
    auc = roc_auc(y, p)
    assert 0.0 <= auc <= 1.0
    assert roc_auc(y, 1 - p) == pytest.approx(1 - auc, abs=1e-12)
    assert roc_auc(1 - y, p) == pytest.approx(1 - auc, abs=1e-12)
    assert 0.0 <= ks_statistic(y, p) <= 1.0
    assert ks_statistic(y, 1 - p) == pytest.approx(ks_statistic(y, p), abs=1e-12)
    assert ks_statistic(y, p) >= abs(2 * auc - 1) / 2 - 1e-12  # the ROC curve lies within KS of the diagonal


@settings(max_examples=200, deadline=None)
@given(_grid_forecasts(), st.sampled_from(["square", "sqrt", "exp", "half"]))
def test_ranking_metrics_invariant_to_monotone_transforms_and_scale(data, transform):
    y, p = data
    assume(y.sum() > 0)
    f = {
        "square": lambda x: x**2,
        "sqrt": np.sqrt,
        "exp": lambda x: np.expm1(x) / np.expm1(1.0),
        "half": lambda x: 0.5 * x,  # scale invariance: c * p for 0 < c <= 1 stays a probability
    }[transform]
    q = np.clip(f(p), 0.0, 1.0)
    assert len(np.unique(q)) == len(np.unique(p))  # the transform kept every distinct value distinct
    names = ["pr_auc", "alift", "tdl"] + (["roc_auc", "ks"] if _both_classes(y) else [])
    for name in names:
        assert RANKING[name](y, q) == pytest.approx(RANKING[name](y, p), abs=1e-12), name


@settings(max_examples=200, deadline=None)
@given(_grid_forecasts(min_size=1))
def test_gains_curve_shape_and_alift_bounds(data):
    y, p = data
    assume(y.sum() > 0)
    g = cumulative_gains(y, p)
    x, gain = g["fraction_contacted"].to_numpy(), g["fraction_positives"].to_numpy()
    assert (x[0], gain[0]) == (0.0, 0.0) and x[-1] == pytest.approx(1.0) and gain[-1] == pytest.approx(1.0)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(gain) >= 0)
    assert g["score"].iloc[1:].is_monotonic_decreasing
    o = y.mean()
    best, worst = np.minimum(x / o, 1.0), np.maximum(0.0, (x - (1 - o)) / o)
    assert np.all(gain <= best + 1e-12) and np.all(gain >= worst - 1e-12)
    a = alift(y, p)
    assert o / 2 - 1e-12 <= a <= 1 - o / 2 + 1e-12
    assert alift(y, y.astype(float)) == pytest.approx(1 - o / 2, abs=1e-12)  # perfect ranking: the maximum
    assert alift(y, np.full(len(y), 0.3)) == pytest.approx(0.5, abs=1e-12)  # constant: the diagonal
    if _both_classes(y):
        assert a == pytest.approx(o / 2 + (1 - o) * roc_auc(y, p), abs=1e-12)
    assert 0.0 <= top_decile_lift(y, p) <= min(10.0, 1.0 / o) + 1e-9
    assert top_decile_lift(y, y.astype(float)) == pytest.approx(min(10.0, 1.0 / o))
    assert 0.0 <= pr_auc(y, p) <= 1.0 and pr_auc(y, y.astype(float)) == 1.0
    assert pr_auc(y, np.full(len(y), 0.3)) == pytest.approx(o)


@settings(max_examples=150, deadline=None)
@given(_grid_forecasts(min_size=1), st.integers(1, 12))
def test_lift_table_adds_up(data, n_bins):
    y, p = data
    assume(y.sum() > 0 and n_bins <= len(y))
    t = lift_table(y, p, n_bins=n_bins)
    assert len(t) == n_bins and t["n"].sum() == len(y) and t["n"].max() - t["n"].min() <= 1
    assert t["positives"].sum() == pytest.approx(y.sum())
    assert t["cumulative_gain"].iloc[-1] == pytest.approx(1.0) and t["cumulative_lift"].iloc[-1] == pytest.approx(1.0)
    assert np.average(t["lift"], weights=t["n"]) == pytest.approx(1.0)
    assert (t["min_score"] <= t["max_score"]).all() and (
        t["max_score"].iloc[1:].to_numpy() <= t["min_score"].iloc[:-1].to_numpy()
    ).all()
    if len(y) % 10 == 0 and n_bins == 10:
        assert t["lift"].iloc[0] == pytest.approx(top_decile_lift(y, p))


@settings(max_examples=100, deadline=None)
@given(_grid_forecasts(min_size=1))
def test_score_table_collects_the_metrics(data):
    y, p = data
    t = score_table(y, p)
    assert t.shape == (1, 9) and list(t.columns) == [
        "n",
        "base_rate",
        "roc_auc",
        "pr_auc",
        "brier",
        "log_loss",
        "top_decile_lift",
        "alift",
        "ks",
    ]
    row = t.iloc[0]
    assert row["n"] == len(y) and row["brier"] == brier_score(y, p) and row["log_loss"] == log_loss(y, p)
    if _both_classes(y):
        assert row["roc_auc"] == roc_auc(y, p) and row["ks"] == ks_statistic(y, p)
    else:
        assert np.isnan(row["roc_auc"]) and np.isnan(row["ks"])
    if y.sum() > 0:
        assert row["alift"] == alift(y, p) and row["pr_auc"] == pr_auc(y, p)
    else:
        assert np.isnan(row["alift"]) and np.isnan(row["pr_auc"]) and np.isnan(row["top_decile_lift"])


def test_log_loss_properties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    assert log_loss(y, y.astype(float)) == pytest.approx(0.0, abs=1e-12)
    o = 0.3
    yy = np.array([1] * 3 + [0] * 7)
    assert log_loss(yy, np.full(10, o)) == pytest.approx(-(o * math.log(o) + (1 - o) * math.log(1 - o)))


# ------------------------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize("metric", [roc_auc, ks_statistic])
def test_single_class_is_an_error_naming_the_problem(metric):
    with pytest.raises(ValueError, match="no negative outcome"):
        metric([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="no positive outcome"):
        metric([0, 0], [0.2, 0.5])


@pytest.mark.parametrize("metric", [pr_auc, alift, top_decile_lift, cumulative_gains, lift_table])
def test_no_positive_is_an_error(metric):
    with pytest.raises(ValueError, match="undefined when y_true holds no positive"):
        metric([0] * 12, np.linspace(0, 1, 12))


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.2], "same length"),
        ([0, 2], [0.2, 0.3], r"y_true\[1\] = 2"),
        ([0, 1], [0.2, 1.3], r"p\[1\] = 1.3"),
        ([0, 1], [0.2, np.nan], r"p\[1\] = nan"),
        ([], [], "empty"),
    ],
)
@pytest.mark.parametrize("metric", [roc_auc, pr_auc, log_loss, ks_statistic, alift, top_decile_lift, score_table])
def test_bad_inputs_are_errors(metric, y, p, message):
    with pytest.raises(ValueError, match=message):
        metric(y, p)


def test_bad_settings_are_errors():
    y, p = [0, 1, 1], [0.1, 0.2, 0.3]
    for n_bins in (0, 4, 2.5, True):
        with pytest.raises(ValueError, match="n_bins must be an integer from 1 to the number of forecasts"):
            lift_table(y, p, n_bins=n_bins)
    with pytest.raises(ValueError, match="eps"):
        log_loss(y, p, eps=0.6)


def test_outputs_are_plain_types():
    y, p = [0, 1, 1, 0], [0.1, 0.7, 0.4, 0.4]
    for f in (roc_auc, pr_auc, log_loss, ks_statistic, alift, top_decile_lift):
        assert type(f(y, p)) is float
    assert isinstance(cumulative_gains(y, p), pd.DataFrame) and cumulative_gains(y, p)["contacted"].dtype == np.int64
    assert pd.api.types.is_integer_dtype(lift_table(y, p, n_bins=2)["n"])
