"""Small random canonical tables for tests (independent of salesforecast.datasets)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from salesforecast.process import SalesProcess


def random_crm(
    n: int = 40, seed: int = 0, process: SalesProcess | None = None, same_time_ties: bool = True
) -> dict[str, pd.DataFrame]:
    """Valid raw canonical tables (typed) with random histories, including skips, regressions and ties."""
    process = process or SalesProcess.default()
    rng = np.random.default_rng(seed)
    open_stages = process.open_stages
    base = pd.Timestamp("2024-01-01")
    opp_rows, hist_rows = [], []
    for i in range(n):
        oid = f"O{i:04d}"
        created = base + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 120)))
        k = int(rng.integers(1, 7))
        t = created
        stage_i = int(rng.integers(0, 3))
        amount = float(rng.integers(1, 100) * 1000)
        close = (created + pd.Timedelta(days=int(rng.integers(10, 120)))).normalize()
        final = None
        for j in range(k):
            if j > 0:
                gap = 0 if (same_time_ties and rng.random() < 0.1) else int(rng.integers(1, 60 * 24 * 20))
                t = t + pd.Timedelta(minutes=gap)
                stage_i = int(np.clip(stage_i + rng.choice([-1, 1, 1, 2]), 0, len(open_stages) - 1))
            stage = open_stages[stage_i]
            if j == k - 1 and rng.random() < 0.5:
                stage = process.won_stage if rng.random() < 0.5 else process.lost_stage
                final = stage
            if rng.random() < 0.3:
                amount = float(rng.integers(1, 100) * 1000)
            if rng.random() < 0.3:
                close = close + pd.Timedelta(days=int(rng.integers(1, 40)))
            hist_rows.append(
                {
                    "opportunity_id": oid,
                    "changed_at": t,
                    "stage": stage,
                    "amount": amount if rng.random() < 0.8 else np.nan,
                    "close_date": close if rng.random() < 0.8 else pd.NaT,
                }
            )
        cur_stage = final or open_stages[stage_i]
        if final:
            close = t.normalize()
        opp_rows.append(
            {
                "opportunity_id": oid,
                "owner": f"rep{i % 5}",
                "team": f"team{i % 2}",
                "created_at": created,
                "stage": cur_stage,
                "amount": amount,
                "close_date": close,
                "is_closed": final is not None,
                "is_won": final == process.won_stage,
            }
        )
    opps = pd.DataFrame(opp_rows)
    hist = pd.DataFrame(hist_rows)
    hist["changed_at"] = hist["changed_at"].astype("datetime64[us]")
    opps["created_at"] = opps["created_at"].astype("datetime64[us]")
    return {"opportunities": opps, "stage_history": hist}


def as_text(df: pd.DataFrame) -> pd.DataFrame:
    """The frame as a CSV reader returns it: every value text, missing as missing."""
    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[c] = s.dt.strftime("%Y-%m-%d %H:%M:%S").astype("str")
        elif pd.api.types.is_bool_dtype(s):
            out[c] = s.map({True: "1", False: "0"}).astype("str")
        else:
            out[c] = s.astype("str").where(s.notna())
    return pd.DataFrame(out)


def deal_tables(deals: dict, owner=lambda i, oid: ["ann", "bo"][i % 2]) -> dict[str, pd.DataFrame]:
    """Hand-made deals -> raw canonical tables.

    ``deals``: id -> (created, [(changed_at, stage, amount, close_date), ...]); the current state is the last
    change; ``owner(i, oid)`` names each deal's owner; every deal is in team "east".
    """
    opps, hist = [], []
    for i, (oid, (created, rows)) in enumerate(deals.items()):
        for when, stage, amount, close in rows:
            hist.append(
                {"opportunity_id": oid, "changed_at": when, "stage": stage, "amount": amount, "close_date": close}
            )
        last = rows[-1]
        opps.append(
            {
                "opportunity_id": oid,
                "owner": owner(i, oid),
                "team": "east",
                "created_at": created,
                "stage": last[1],
                "amount": last[2],
                "close_date": last[3],
                "is_closed": last[1].startswith("Closed"),
                "is_won": last[1] == "Closed Won",
            }
        )
    opps_df, hist_df = pd.DataFrame(opps), pd.DataFrame(hist)
    for df, c in ((opps_df, "created_at"), (opps_df, "close_date"), (hist_df, "changed_at"), (hist_df, "close_date")):
        df[c] = pd.to_datetime(df[c].astype(str), format="ISO8601").astype("datetime64[us]")
    return {"opportunities": opps_df, "stage_history": hist_df}


def complete_history_crm(n: int = 30, seed: int = 0) -> dict[str, pd.DataFrame]:
    """`random_crm` where every history row records the amount and the close date (no current values fill in)."""
    tables = random_crm(n, seed=seed)
    h = tables["stage_history"]
    for c in ("amount", "close_date"):
        h[c] = h.groupby("opportunity_id")[c].ffill().fillna(h.groupby("opportunity_id")[c].bfill())
    tables["stage_history"] = h
    return tables


def render_report(tmp_path, notebook: str, source, **params) -> str:
    """Render one report of reports.yml on `source` (a folder, mapping or export) and return its HTML.

    The run must exit 0 (the report rendered); its output goes to ``tmp_path / "out"``.
    """
    from salesforecast.reports import DEFAULT_CONFIG, run_reports

    result = run_reports(
        DEFAULT_CONFIG, tmp_path / "out", only=[notebook], params={"source": str(source), **params}, jobs=1
    )
    assert result.exit_code == 0, [r.error for r in result.results if r.error]
    (page,) = (tmp_path / "out" / "latest").glob(f"{notebook}*.html")
    return page.read_text(encoding="utf-8")
