"""Speed of LeadScoringModel on synthetic leads: fit on 1M rows x 30 features, score 1M rows.

Run from the repository root: ``.venv/bin/python benchmarks/lead_scoring_speed.py [--rows N]``. Writes
``benchmarks/results/lead_scoring_speed.json`` and the table between the ``speed`` markers of
``benchmarks/README.md``. Targets: fit within a minute on 2 cores, score within 10 s. The default model learns from a
stratified sample of ``max_rows`` (250,000) of the rows; "all rows" learns from every one, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from _common import update_readme

from salesforecast.metrics import score_table
from salesforecast.models import LeadScoringModel

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "lead_scoring_speed.json"


def synthetic_leads(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """20 numeric features (5 with 10% missing) and 10 text features (4 to 58 levels); a fixed logistic truth.

    The level effects are the same for every `seed` (drawn from their own generator); `seed` draws the leads.
    """
    truth = np.random.default_rng(2024)
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    eta = np.full(n, -2.0)
    for i in range(20):
        v = rng.normal(size=n) if i % 2 else rng.lognormal(0.0, 1.0, size=n)
        beta = 0.3 / (1 + i // 4)
        eta += beta * (np.log1p(v) if i % 2 == 0 else v)
        if i < 5:
            v = np.where(rng.random(n) < 0.1, np.nan, v)
        cols[f"num_{i:02d}"] = v
    for i in range(10):
        k = 4 + 6 * i
        codes = rng.integers(0, k, size=n)
        eta += truth.normal(0.0, 0.4, size=k)[codes]
        labels = np.array([f"level_{c:02d}" for c in range(k)], dtype=object)
        cols[f"cat_{i}"] = pd.Series(labels[codes], dtype="str")
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-eta))
    return pd.DataFrame(cols), y


CONFIGS: dict[str, dict] = {
    "default": {},  # learns from a stratified sample of max_rows (250,000) of the 1M rows
    "all rows": {"max_rows": None},  # learns from every row (lr 0.3 from 500,000 rows on), for comparison
    "lr0.1": {"estimator_params": {"learning_rate": 0.1}, "max_rows": None},  # the small-data rate on every row
}


def run(name: str, X: pd.DataFrame, y: np.ndarray, Xs: pd.DataFrame, ys: np.ndarray) -> dict:
    model = LeadScoringModel(**CONFIGS[name])
    t0 = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = model.predict_proba(Xs).to_numpy()
    score_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.explain(Xs.iloc[:10_000])
    explain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.summary  # noqa: B018 (computed on first use)
    summary_s = time.perf_counter() - t0
    test = score_table(ys, p).iloc[0]
    return {
        "settings": CONFIGS[name],
        "fit_seconds": round(fit_s, 1),
        "score_seconds": round(score_s, 1),
        "explain_10k_rows_seconds": round(explain_s, 1),
        "summary_seconds": round(summary_s, 1),
        "trees": model.best_iter_ if model.refitted_ else model.n_iter_,
        "rows_learnt_from": model.n_rows_fit_,
        "refitted": model.refitted_,
        "calibration": model.calibration_,
        "test_roc_auc": round(float(test["roc_auc"]), 4),
        "test_log_loss": round(float(test["log_loss"]), 4),
        "test_brier": round(float(test["brier"]), 4),
    }


def markdown(result: dict) -> str:
    setup = result["setup"]
    lines = [
        f"{setup['rows']:,} rows x {setup['features']} features; {setup['machine']}; Python {setup['python']}, "
        f"numpy {setup['numpy']}, pandas {setup['pandas']}, scikit-learn {setup['scikit-learn']}. Test figures on a "
        "second sample of 1M leads from the same truth.",
        "",
        "| settings | rows learnt from | trees | fit | score 1M | explain 10k | summary (first use) | test ROC AUC "
        "| test log loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in CONFIGS:
        if name in result:
            r = result[name]
            lines.append(
                f"| {name} | {r.get('rows_learnt_from', setup['rows']):,} | {r['trees']} | {r['fit_seconds']:.0f} s | "
                f"{r['score_seconds']:.0f} s | "
                f"{r['explain_10k_rows_seconds']:.0f} s | {r['summary_seconds']:.0f} s | {r['test_roc_auc']:.3f} | "
                f"{r['test_log_loss']:.4f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--table-only", action="store_true", help="rewrite the README table from the saved results")
    args = parser.parse_args()
    if args.table_only:
        update_readme(markdown(json.loads(OUT.read_text(encoding="utf-8"))), "speed")
        return
    X, y = synthetic_leads(args.rows)
    Xs, ys = synthetic_leads(args.rows, seed=1)  # a second sample: scored, and the test set
    result = {
        "setup": {
            "rows": args.rows,
            "features": X.shape[1],
            "numeric": 20,
            "text": 10,
            "data": "synthetic_leads() in this script: logistic truth, 20 numeric (5 with 10% missing), 10 text "
            "columns with 4 to 58 levels",
            "machine": f"{os.cpu_count()} cores, shared with other jobs while measured",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    for name in args.configs:
        result[name] = run(name, X, y, Xs, ys)
        print(name, json.dumps(result[name]), flush=True)
    print(json.dumps(result, indent=2))
    if args.rows == 1_000_000:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        update_readme(markdown(result), "speed")


if __name__ == "__main__":
    main()
