"""The report suite read at 400 reps: page heights against about ten screens, the headline, reader problems.

Generates a CRM of 400 reps (`salesforecast.datasets.generate`; the page height depends on the reps, not on the
opportunities, so 6,000 opportunities give every rep a few deals: 3 to 31, 15 on average), renders every report of
``reports.yml`` on it as ``salesforecast report`` does, and reads each page in Chromium at 1400x900 as
``salesforecast screenshots`` does (`salesforecast.pages.take_screenshots`): its height, where its
``<section id="headline">`` starts (the first screen ends at 900 px), and the reader problems of its visible text
with every ``<details>`` opened (NaN, None, names of the code, Python reprs); for the per-rep reports (04, 05) also
the height of each section (from one ``<h2>`` to the next). Writes ``benchmarks/results/report_heights.json`` and
the table in ``benchmarks/README.md``. Needs Debian's ``chromium`` and the ``playwright`` package (never
``playwright install``).

    .venv/bin/python benchmarks/report_heights.py                 # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/report_heights.py --reps 100 --no-save
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import update_readme

from salesforecast.datasets import generate
from salesforecast.pages import take_screenshots
from salesforecast.reports import DEFAULT_CONFIG, run_reports

RESULTS = Path(__file__).resolve().parent / "results" / "report_heights.json"
SCREEN = 900  # px: a 1400x900 viewport
TARGET_SCREENS = 10
REPORTS = ("04_forecast_accuracy", "05_pipeline_review")
#: Measured the same way on the code before the per-rep fold (main at 25f85b6, 2026-12-03), for the README.
BEFORE = {"04_forecast_accuracy": 31056, "05_pipeline_review": 47802}

_MEASURE = """() => {
  const top = (e) => e.getBoundingClientRect().top + window.scrollY;
  const hs = Array.from(document.querySelectorAll('h2'));
  const height = document.body.scrollHeight;
  return {height, sections: hs.map((h, i) => [h.textContent.replace('¶', '').trim(),
                                              Math.round((i + 1 < hs.length ? top(hs[i + 1]) : height) - top(h))])};
}"""


def measure(pages: dict[str, Path]) -> dict[str, dict]:
    """Each page's height and its sections' heights in Chromium at 1400x900."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": SCREEN})
        for name, path in pages.items():
            page.goto(path.as_uri())
            page.wait_for_timeout(300)
            found = page.evaluate(_MEASURE)
            out[name] = {"height": found["height"], "sections": dict(found["sections"])}
        browser.close()
    return out


def _at(top: int | None) -> str:
    return "no headline" if top is None else f"{top:,} px"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--opportunities", type=int, default=6000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-save", action="store_true", help="print the figures only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "crm"
        data, _ = generate(n_opportunities=args.opportunities, n_reps=args.reps, seed=0)
        data.to_folder(folder)
        deals = data.opportunities.groupby("owner").size()
        start = time.perf_counter()
        result = run_reports(DEFAULT_CONFIG, Path(tmp) / "out", params={"source": str(folder)}, jobs=args.jobs)
        seconds = time.perf_counter() - start
        if result.exit_code != 0:
            raise SystemExit(f"the reports failed: {[r.error for r in result.results if r.error]}")
        latest = Path(tmp) / "out" / "latest"
        pages = {name: next(latest.glob(f"{name}*.html")) for name in REPORTS}
        heights = measure(pages)
        read = {
            shot.page.removesuffix(".html"): {
                "height": shot.height,
                "screens": round(shot.screens, 1),
                "headline_top": None if shot.headline_top is None else round(shot.headline_top),
                "reader_problems": [f"{p.what}: {p.text}" for p in shot.problems],
            }
            for shot in take_screenshots(latest, Path(tmp) / "shots")
            if shot.page != "index.html"
        }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "commit": commit.stdout.strip(),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "reps": int(deals.size),
        "opportunities": args.opportunities,
        "deals_per_rep": {"min": int(deals.min()), "mean": round(float(deals.mean()), 1), "max": int(deals.max())},
        "viewport": [1400, SCREEN],
        "target_px": TARGET_SCREENS * SCREEN,
        "render_seconds": round(seconds, 1),
        "pages": heights,
        "suite": read,
        "before": BEFORE if args.reps == 400 and args.opportunities == 6000 else None,
    }
    print(json.dumps(figures, indent=2))
    if args.no_save:
        return
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    rows = []
    for name, h in heights.items():
        before = BEFORE.get(name) if figures["before"] else None
        was = f"{before:,} px ({before / SCREEN:.1f})" if before else "–"
        tallest = max(h["sections"].items(), key=lambda kv: kv[1]) if h["sections"] else ("–", 0)
        rows.append(
            f"| `{name}` | {was} | **{h['height']:,} px ({h['height'] / SCREEN:.1f})** | "
            f"{tallest[0]}: {tallest[1]:,} px |"
        )
    table = (
        f"Measured {figures['date']} (commit {figures['commit']}) on a generated CRM of {figures['reps']} reps and "
        f"{args.opportunities:,} opportunities ({figures['deals_per_rep']['min']}-{figures['deals_per_rep']['max']} "
        f"deals a rep), Chromium at 1400x900; target: {TARGET_SCREENS} screens ({TARGET_SCREENS * SCREEN:,} px).\n\n"
        "| report | before the fold (screens) | now (screens) | tallest section now |\n|---|---|---|---|\n"
        + "\n".join(rows)
    )
    table += (
        "\n\nEvery report of the run, read as `salesforecast screenshots` reads it (the headline's top in px: the "
        "first screen ends at 900; reader problems: NaN, None, names of the code, Python reprs in the visible text, "
        "every fold opened):\n\n| page | screens | headline at | reader problems |\n|---|---|---|---|\n"
        + "\n".join(
            f"| `{name}` | {r['screens']} | {_at(r['headline_top'])} | {len(r['reader_problems'])} |"
            for name, r in read.items()
        )
    )
    update_readme(table, "report-heights")


if __name__ == "__main__":
    main()
