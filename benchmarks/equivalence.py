"""Outputs of every model and analysis on fixed inputs, saved so that a refactoring can be checked to change none.

Usage::

    python benchmarks/equivalence.py save OUT.pkl [--sizes sample 100000]
    python benchmarks/equivalence.py compare BEFORE.pkl AFTER.pkl

``save`` computes, on the bundled sample and on generated CRMs (``generate(n, seed=5)``), the snapshots, the stage
intervals, the adherence tables, the stage-conversion model (plain and per segment: summary, visits, win
probabilities, probabilities of winning by a date), the opportunity features, targets and scores, the backtest of
every method (with the Monte Carlo samples) and its leaderboard, and the current-period forecast, through public
names only. ``compare`` reports, per output, whether it is identical (bit for bit) and otherwise the largest
absolute difference; it exits 1 when an output differs or is missing.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesforecast.adherence import deal_adherence, deviation_outcomes, stall_limits
from salesforecast.datasets import generate, load_sample
from salesforecast.forecast import backtest, forecast_period, leaderboard, recommend
from salesforecast.models import OpportunityScoringModel, StageConversionModel, stage_visits
from salesforecast.models.opportunity_scoring import opportunity_features, opportunity_targets
from salesforecast.snapshots import pipeline_snapshots, stage_intervals


def _proba(p: Any) -> np.ndarray:
    """Positive-class probabilities as one array, whatever container the model returns."""
    a = np.asarray(p, dtype="float64")
    return a[:, 1] if a.ndim == 2 else a


def outputs(data: Any, label: str, full: bool) -> dict[str, Any]:
    """Every output compared, for one data set (`full`: the slow extras too)."""
    out: dict[str, Any] = {}
    end = pd.Timestamp(data.as_of)
    mid = (
        pd.Timestamp(data.opportunities["created_at"].min()) + (end - data.opportunities["created_at"].min()) * 0.6
    ).normalize()
    weekly = pd.date_range(end - pd.Timedelta(days=7 * 52 * 2), end, freq="7D")

    def timed(key: str, fn: Any) -> None:
        t0 = time.perf_counter()
        out[key] = fn()
        print(f"  {label} {key}: {time.perf_counter() - t0:.1f} s", flush=True)

    timed("stage_intervals", lambda: stage_intervals(data))
    timed("snapshots", lambda: pipeline_snapshots(data, weekly))
    timed("deal_adherence", lambda: deal_adherence(data))
    timed("deal_adherence_mid", lambda: deal_adherence(data, as_of=mid))
    timed("stall_limits", lambda: stall_limits(data, as_of=mid))
    if full:
        timed("deviation_outcomes", lambda: deviation_outcomes(out["deal_adherence"], n_boot=500))
    timed("stage_visits", lambda: stage_visits(data))
    timed("stage_visits_mid", lambda: stage_visits(data, as_of=mid))
    snap = pipeline_snapshots(data, mid, columns=["segment"])
    q_end = data.process.calendar.period_bounds(
        str(data.process.calendar.period(pd.DatetimeIndex([mid]), "quarter").iloc[0])
    )[1]
    for name, kw in (
        ("sc", {}),
        ("sc_segment", {"segment": "segment"}),
        ("sc_window", {"window_months": 12, "half_life_days": 180}),
    ):

        def fit_sc(kw: dict = kw) -> dict[str, Any]:
            m = StageConversionModel(n_bootstrap=40 if full else 0, **kw).fit(data, as_of=mid)
            return {
                "summary": m.summary,
                "proba": _proba(m.predict_proba(snap)),
                "within": _proba(m.predict_close_within(snap, q_end)),
                "time_in_stage": getattr(m, "time_in_stage_", None),
            }

        timed(name, fit_sc)
    dates = list(pd.date_range(mid - pd.Timedelta(days=28), mid, freq="7D"))
    timed("opp_features", lambda: opportunity_features(data, dates))
    timed("opp_targets", lambda: opportunity_targets(data, out["opp_features"], horizon="period"))

    def opp_score() -> dict[str, Any]:
        m = OpportunityScoringModel(target="period").fit(data, as_of=mid)
        return {"summary": m.summary, "scores": m.score_pipeline(data, as_of=mid)}

    timed("opp_score", opp_score)
    periods = None if full else 4
    timed(
        "backtest",
        lambda: backtest(data, periods=periods, return_samples=True),
    )
    board = leaderboard(out["backtest"][0])
    out["leaderboard"] = board
    out["recommend"] = recommend(board)
    if full:

        def current() -> dict[str, Any]:
            pf = forecast_period(data, as_of=mid, groups=("total", "team"))
            return {k: v for k, v in vars(pf).items() if not k.startswith("_")}

        timed("forecast_period", current)
    return out


def save(path: Path, sizes: list[str]) -> None:
    result: dict[str, Any] = {}
    for size in sizes:
        if size == "sample":
            data, full = load_sample(), True
        else:
            data, full = generate(n_opportunities=int(size), seed=5)[0], False
        result[size] = outputs(data, size, full)
    with open(path, "wb") as f:
        pickle.dump(result, f)
    print(f"saved {path}")


def _diff(a: Any, b: Any) -> tuple[bool, str]:
    """(identical, what differs)."""
    if type(a) is not type(b) and not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False, f"type {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        if set(a) != set(b):
            return False, f"keys {sorted(set(a) ^ set(b))}"
        bad = [(k, msg) for k in a for same, msg in [_diff(a[k], b[k])] if not same]
        return (not bad), "; ".join(f"{k}: {m}" for k, m in bad)
    if isinstance(a, tuple | list):
        if len(a) != len(b):
            return False, "length"
        bad = [(i, msg) for i, (x, y) in enumerate(zip(a, b, strict=True)) for same, msg in [_diff(x, y)] if not same]
        return (not bad), "; ".join(f"[{i}]: {m}" for i, m in bad)
    if isinstance(a, pd.DataFrame | pd.Series):
        try:
            if isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b, check_exact=True)
            else:
                pd.testing.assert_series_equal(a, b, check_exact=True)
            return True, ""
        except AssertionError as e:
            msg = str(e).splitlines()[0]
            if isinstance(a, pd.DataFrame) and a.shape == b.shape:
                num = a.select_dtypes("number").columns.intersection(b.columns)
                if len(num):
                    d = np.nanmax(np.abs(a[num].to_numpy("float64") - b[num].to_numpy("float64")))
                    msg += f" (max abs diff of numeric columns {d:.3g})"
            return False, msg
    if isinstance(a, np.ndarray):
        if a.shape != b.shape:
            return False, f"shape {a.shape} != {b.shape}"
        if np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            return True, ""
        return False, f"max abs diff {np.nanmax(np.abs(a.astype('float64') - b.astype('float64'))):.3g}"
    try:
        same = bool(a == b) or (isinstance(a, float) and np.isnan(a) and np.isnan(b))
    except (TypeError, ValueError):
        same = repr(a) == repr(b)
    return same, "" if same else f"{a!r} != {b!r}"


def compare(before: Path, after: Path) -> int:
    a = pickle.loads(before.read_bytes())
    b = pickle.loads(after.read_bytes())
    failed = 0
    for size in a:
        for key in a[size]:
            if size not in b or key not in b[size]:
                print(f"MISSING  {size} {key}")
                failed += 1
                continue
            x, y = a[size][key], b[size][key]
            note = ""
            if isinstance(x, tuple) and isinstance(x[0], pd.DataFrame):  # the backtest with its samples
                same, msg = _diff(x[1], y[1])
                print(f"{'same' if same else 'DIFFERS':8} {size} {key} samples {msg[:300]}")
                failed += not same
                x, y = x[0], y[0]
            if isinstance(x, pd.DataFrame) and "method" in x.columns and isinstance(y, pd.DataFrame):
                added = sorted(set(y["method"]) - set(x["method"]))
                if added:  # methods added since: compare the rows of the methods both have
                    y = y.loc[y["method"].isin(set(x["method"]))].reset_index(drop=True)
                    note = f" (rows of the added methods {added} left out)"
            same, msg = _diff(x, y)
            msg += note
            print(f"{'same' if same else 'DIFFERS':8} {size} {key} {msg[:300]}")
            failed += not same
    print(f"{failed} outputs differ or are missing")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("out", type=Path)
    s.add_argument("--sizes", nargs="+", default=["sample", "100000"])
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "save":
        save(args.out, args.sizes)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
