"""Summary of the latest benchmark run: every figure against its target, in one results file and a README table.

Run from the repository root after the other scripts (``make bench`` does)::

    .venv/bin/python benchmarks/summary.py [--no-save]

Reads the latest results of ``scale.py`` (``results/scale-<date>.json``), ``lead_scoring_speed.py``,
``report_suite.py`` (the sample's suite, and at 1M every report's time and peak memory, the suite's time and the
ratios 1M / 100k, each target shown at its worst report) and ``uci_bank_marketing.py``, and writes
``results/<date>.json`` (the machine, the versions, and per figure: its value, its target and whether it is met)
and the short table between the ``bench`` markers of the top-level ``README.md``. Exit status 1 when a results
file is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
MARKER = "bench"
SIZE = "1000000"
SMALL = "100000"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def latest_scale() -> tuple[str, dict[str, Any]] | None:
    """The newest ``scale-<date>.json`` (dates sort as text)."""
    files = sorted(RESULTS.glob("scale-*.json"))
    if not files:
        return None
    return files[-1].name, json.loads(files[-1].read_text(encoding="utf-8"))


def _row(figure: str, value: float | None, unit: str, target: float | None, source: str, note: str = "") -> dict:
    met = None if value is None or target is None else bool(value <= target)
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "target": target,
        "met": met,
        "source": source,
        "note": note,
    }


def figures(
    scale: dict[str, Any] | None,
    scale_file: str,
    lead: dict | None,
    suite: dict | None,
    dask: dict | None = None,
) -> list[dict]:
    """One row per figure with a target (and the reference ratios), in the order of the table."""
    rows: list[dict] = []
    if scale is not None:
        big = scale["sizes"].get(SIZE, {}).get("steps", {})
        small = scale["sizes"].get(SMALL, {}).get("steps", {})
        ratios = scale["sizes"].get(SIZE, {}).get("ratios", {})

        def sec(step: str) -> float | None:
            return big.get(step, {}).get("seconds")

        rows.append(_row("load + validate at 1M (s)", sec("load"), "s", 20.0, scale_file))
        rows.append(_row("snapshots at 1M, 156 dates (s)", sec("snapshots"), "s", None, scale_file))
        rows.append(_row("snapshots: ours / DuckDB at 1M", ratios.get("snapshots_vs_duckdb"), "ratio", 1.0, scale_file))
        rows.append(
            _row(
                "snapshots: ours / pandas loop at 1M", ratios.get("snapshots_vs_pandas_loop"), "ratio", None, scale_file
            )
        )
        rows.append(_row("stage-conversion fit at 1M (s)", sec("fit"), "s", 10.0, scale_file))
        measured = scale.get("settings", {}).get("backtest", {}).get("methods")
        which = "the pipeline methods" if measured in (None, "PIPELINE_METHODS") else "every default method"
        rows.append(_row(f"backtest of {which} at 1M, 12 quarters (s)", sec("backtest"), "s", 60.0, scale_file))
        peaks = [f["peak_rss_gb"] for f in big.values() if "peak_rss_gb" in f]
        rows.append(_row("peak RSS at 1M, largest step (GB)", max(peaks) if peaks else None, "GB", 6.0, scale_file))
        worst, worst_step = None, ""
        for step, fig in big.items():
            a, b = small.get(step, {}).get("seconds"), fig.get("seconds")
            if a and b and (worst is None or b / a > worst):
                worst, worst_step = b / a, step
        worst_cpu, worst_cpu_step = None, ""
        for step, fig in big.items():
            a, b = small.get(step, {}).get("user_seconds"), fig.get("user_seconds")
            if a and b and (worst_cpu is None or b / a > worst_cpu):
                worst_cpu, worst_cpu_step = b / a, step
        rows.append(
            _row(
                "time 1M / 100k, worst step",
                None if worst is None else round(worst, 2),
                "ratio",
                12.0,
                scale_file,
                worst_step,
            )
        )
        rows.append(
            _row(
                "user CPU time 1M / 100k, worst step (the process's own CPU; kernel time left out)",
                None if worst_cpu is None else round(worst_cpu, 2),
                "ratio",
                None,
                scale_file,
                worst_cpu_step,
            )
        )
        checks = [f for f in big.values() if "check" in f]
        differing = sum(
            f["check"]["all"]["mismatches"] + f["check"]["all"]["only_ours"] + f["check"]["all"]["only_other"]
            for f in checks
        )
        rows.append(
            _row(
                "rows differing from DuckDB and the pandas loop at 1M",
                differing if checks else None,
                "rows",
                0,
                scale_file,
            )
        )
        part = big.get("partitions", {})
        if "snapshots_equal" in part:
            rows.append(
                _row(
                    "4 partitions vs the whole at 1M: rows differing",
                    0
                    if part["snapshots_equal"] and part["crm_weighted_equal"]
                    else part.get("crm_weighted_mismatches", 1),
                    "rows",
                    0,
                    scale_file,
                )
            )
    if lead is not None:
        d = lead.get("default", {})
        rows.append(
            _row(
                "LeadScoringModel fit, 1M leads x 30 features (s)",
                d.get("fit_seconds"),
                "s",
                60.0,
                "lead_scoring_speed.json",
            )
        )
        rows.append(
            _row(
                "LeadScoringModel scoring of 1M leads (s)", d.get("score_seconds"), "s", 10.0, "lead_scoring_speed.json"
            )
        )
    if suite is not None:
        rows.append(
            _row(
                "report suite on the sample, wall (s)",
                suite.get("wall_seconds"),
                "s",
                suite.get("target_seconds", 60.0),
                "report_suite.json",
            )
        )
        rows += suite_rows(suite)
    if dask is not None:
        rows += dask_rows(dask)
    return rows


def dask_rows(dask: dict[str, Any]) -> list[dict]:
    """The partitioned backtest (``dask_scale.py``): against one process at 1M, and its growth at a fixed partition
    size (the issue's 10M / 1M <= 11: time proportional to the data, within 10%; a worker's peak flat, within 10%)."""
    src = "dask_scale.json"
    rows: list[dict] = []
    one = next((r for r in dask.get("runs", []) if r.get("opportunities") == int(SIZE)), None)
    if one is not None:
        rows.append(
            _row(
                "backtest of the pipeline methods at 1M on a 2-worker cluster (s)",
                one["cluster_backtest_seconds"],
                "s",
                None,
                src,
                f"one process: {one['backtest_seconds']} s",
            )
        )
        rows.append(
            _row(
                "cluster backtest vs one process at 1M: sums' largest relative difference",
                one["sums_max_relative_difference"],
                "",
                1e-9,
                src,
            )
        )
        if "cluster_score_seconds" in one:  # the opportunity score over partitions (its fit and its scores)
            rows.append(
                _row(
                    "backtest of the opportunity score at 1M on a 2-worker cluster (s)",
                    one["cluster_score_seconds"],
                    "s",
                    None,
                    src,
                    f"one process: {one['score_seconds']} s, {one['score_peak_gb']} GB; the cluster's client "
                    f"{one['score_client_peak_gb']} GB, workers {max(one['score_worker_peak_gb'])} GB",
                )
            )
            rows.append(
                _row(
                    "cluster opportunity score vs one process at 1M: largest relative difference",
                    one["score_max_relative_difference"],
                    "",
                    1e-9,
                    src,
                    "the same rows and leakage flags" if one["score_rows_equal"] else "rows differ",
                )
            )
    generated = sorted(dask.get("generated", []), key=lambda r: r["opportunities"])
    if len(generated) >= 2:
        a, b = generated[0], generated[-1]
        size = b["opportunities"] / a["opportunities"]
        label = f"{b['opportunities'] / 1e6:g}M / {a['opportunities'] / 1e6:g}M"
        rows.append(
            _row(
                f"cluster backtest time {label} (same partition size)",
                round(b["cluster_backtest_seconds"] / a["cluster_backtest_seconds"], 2),
                "",
                round(1.1 * size, 2),  # the 10M / 1M <= 11: proportional to the data, within 10%
                src,
                f"{b['cluster_backtest_seconds']} s / {a['cluster_backtest_seconds']} s",
            )
        )
        rows.append(
            _row(
                f"cluster backtest, a worker's peak {label} (same partition size)",
                round(max(b["backtest_worker_peak_gb"]) / max(a["backtest_worker_peak_gb"]), 2),
                "",
                1.1,  # flat: within 10%, as the time's proportionality
                src,
                f"{max(b['backtest_worker_peak_gb'])} GB / {max(a['backtest_worker_peak_gb'])} GB",
            )
        )
    return rows


def suite_rows(suite: dict[str, Any]) -> list[dict]:
    """The report suite at 1M (``salesforecast report --jobs 1 -p source=FOLDER``): each target at its worst report.

    The targets are ``report_suite.py``'s (`targets` of its results): every report's wall time and kernel peak RSS,
    the whole suite's wall time, every report's time 1M / 100k. A target's row shows the report that comes closest
    to it (or misses it by most); a report that failed counts as missed.
    """
    targets, sizes = suite.get("targets") or {}, suite.get("sizes") or {}
    if not targets or not sizes:
        return []
    big = sizes.get(SIZE)
    checks = (suite.get("assessment") or {}).get("checks", [])
    src = f"report_suite.json ({big['date']})" if big else "report_suite.json"

    def row(figure: str, label: str, unit: str, target: float | None) -> dict:
        found = [c for c in checks if c["figure"] == figure]
        failed = [c["report"] or "the suite" for c in found if c.get("failed")]
        unmeasured = [c["report"] or "the suite" for c in found if c["value"] is None and not c.get("failed")]
        if not found or unmeasured:
            return _row(label, None, unit, target, src, f"not measured: {', '.join(unmeasured)}" if found else "")
        top = max((c for c in found if c["value"] is not None), key=lambda c: c["value"], default=None)
        note = "" if top is None or top["report"] is None else top["report"]
        if failed:
            note = (note + "; " if note else "") + "failed: " + ", ".join(failed)
        out = _row(label, None if top is None else top["value"], unit, target, src, note)
        if failed:
            out["met"] = False
        return out

    return [
        row("seconds", "report at 1M, slowest, 1 at a time (s)", "s", targets.get("report_seconds")),
        row("peak_rss_gb", "report at 1M, largest kernel peak RSS (GB)", "GB", targets.get("report_peak_gb")),
        row("suite_seconds", "report suite at 1M, 1 report at a time, wall (s)", "s", targets.get("suite_seconds")),
        row("ratio", "report time 1M / 100k, worst report", "ratio", targets.get("ratio")),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "GB":
        return f"{value:.2f} GB"
    if unit == "rows":
        return f"{int(value):,}"
    if value and abs(value) < 0.01:
        return f"{value:.0e}"
    return f"{value:.2f}"


def markdown(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    lines = [
        f"Latest `make bench` ({summary['date']}) on {m.get('cores')} cores, {m.get('memory_gb', '?')} GB "
        f"({m.get('platform', '?')}), Python {summary['versions'].get('python', '?')}; full figures in "
        f"`benchmarks/results/{summary['file']}`, details in `benchmarks/README.md`.",
        "",
        "| figure | latest | target | met |",
        "|---|---|---|---|",
    ]
    for r in summary["figures"]:
        target = "-" if r["target"] is None else f"<= {_fmt(r['target'], r['unit'])}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| {r['figure']} | {_fmt(r['value'], r['unit'])}{note} | {target} | {met} |")
    return "\n".join(lines)


def update_readme(table: str) -> None:
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- {MARKER}:start -->", f"<!-- {MARKER}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{README}: no '{start}' ... '{end}' markers to put the table between")
    block = f"{start}\n{table}\n{end}"
    README.write_text(
        re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S), encoding="utf-8"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    found = latest_scale()
    scale_file, scale = found if found else ("", None)
    lead, suite, dask = _load("lead_scoring_speed.json"), _load("report_suite.json"), _load("dask_scale.json")
    missing = [
        n
        for n, v in (("scale-*.json", scale), ("lead_scoring_speed.json", lead), ("report_suite.json", suite))
        if v is None
    ]
    base = scale or suite or {}
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    summary = {
        "date": date,
        "file": f"{date}.json",
        "machine": base.get("machine", {}),
        "versions": base.get("versions", {"python": base.get("machine", {}).get("python", "?")}),
        "sources": {
            "scale": scale_file,
            "lead_scoring": "lead_scoring_speed.json",
            "report_suite": "report_suite.json",
        },
        "figures": figures(scale, scale_file, lead, suite, dask),
        "missing": missing,
    }
    table = markdown(summary)
    print(table)
    if not args.no_save:
        (RESULTS / summary["file"]).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        update_readme(table)
        print(f"wrote benchmarks/results/{summary['file']} and the '{MARKER}' table of README.md")
    if missing:
        print(f"missing results: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
