"""Data-quality measures of loaded CRM data: counts, quarantine, date coverage, stage conformance, history.

Every function takes a `CRMData` (as returned by `salesforecast.io.load`) and returns a small DataFrame
with plain columns, ready to display; the data-quality report (``notebooks/01_data_quality.ipynb``) shows
them one per section. Percentages are in percent (0-100), not fractions.

Examples
--------
>>> import pandas as pd
>>> from salesforecast.schema import validate
>>> data = validate({"opportunities": pd.DataFrame({
...     "opportunity_id": ["A", "B"], "owner": ["ann", "bo"], "created_at": ["2024-01-02", "2024-01-05"],
...     "stage": ["Prospecting", "Nowhere"], "amount": ["100", "50"],
...     "close_date": ["2024-03-01", "2024-03-01"], "is_closed": ["0", "0"], "is_won": ["0", "0"]})})
>>> table_counts(data).values.tolist()[0]
['opportunities', 2, 1, 1, 50.0]
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from salesforecast.schema import REASON_DEFINITIONS, REASONS, TABLES, CRMData

__all__ = [
    "NOT_IN_MAP",
    "REASON_DEFINITIONS",
    "date_coverage",
    "history_coverage",
    "import_notes",
    "open_deal_close_dates",
    "quarantine_by_reason",
    "quarantine_examples",
    "report_as_of",
    "stage_conformance",
    "stage_map_share",
    "table_counts",
]


#: The ``canonical_stage`` of a stage name that is neither a stage of the process map nor an alias.
NOT_IN_MAP = "not in process map"

_STAGE_TABLES = ("opportunities", "stage_history")


def _percent(part: pd.Series, whole: pd.Series) -> pd.Series:
    """``100 * part / whole`` as float64, missing where `whole` is zero."""
    whole = whole.astype("float64")
    return (100.0 * part.astype("float64") / whole.where(whole > 0)).astype("float64")


def table_counts(data: CRMData) -> pd.DataFrame:
    """Rows read, accepted and quarantined per canonical table.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    pandas.DataFrame
        One row per canonical table, in `salesforecast.schema.TABLES` order: ``table``, ``read``,
        ``accepted``, ``quarantined`` (int64; ``read == accepted + quarantined``) and ``pct_quarantined``
        (percent of the rows read; missing when the table had no rows).

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "A"], "owner": ["ann", "ann"], "created_at": ["2024-01-02"] * 2,
    ...     "stage": ["Prospecting"] * 2, "amount": ["100"] * 2, "close_date": ["2024-03-01"] * 2,
    ...     "is_closed": ["0"] * 2, "is_won": ["0"] * 2})})
    >>> table_counts(data).set_index("table").loc["opportunities"].tolist()
    [2.0, 1.0, 1.0, 50.0]
    """
    counts = data.counts.reindex(list(TABLES), fill_value=0)
    out = pd.DataFrame(
        {
            "table": pd.array(list(TABLES), dtype="str"),
            "read": counts["read"].to_numpy(dtype="int64"),
            "accepted": counts["accepted"].to_numpy(dtype="int64"),
            "quarantined": counts["quarantined"].to_numpy(dtype="int64"),
        }
    )
    out["pct_quarantined"] = _percent(out["quarantined"], out["read"])
    return out


def _ordered_reasons(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort rows by table order, then by row count (largest first), then by reason rank."""
    table_rank = {t: i for i, t in enumerate(TABLES)}
    reason_rank = {r: i for i, r in enumerate(REASONS)}
    keys = pd.DataFrame(
        {
            "t": frame["table"].map(table_rank).fillna(len(TABLES)),
            "n": -frame["rows"],
            "r": frame["reason"].map(reason_rank).fillna(len(REASONS)),
        }
    )
    order = keys.sort_values(["t", "n", "r"], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def quarantine_by_reason(data: CRMData) -> pd.DataFrame:
    """Quarantined rows counted by table and reason, with each reason's definition.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    pandas.DataFrame
        ``table``, ``reason``, ``rows`` (quarantined rows; each row counts once, under the first reason
        that applies), ``pct_of_table`` (percent of the table's rows read) and ``definition``. Ordered by
        table, then by rows (largest first). Empty when nothing was quarantined.

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B"], "owner": ["ann", "bo"], "created_at": ["2024-01-02", "2024-01-05"],
    ...     "stage": ["Prospecting", "Nowhere"], "amount": ["100", "50"],
    ...     "close_date": ["2024-03-01", "2024-03-01"], "is_closed": ["0", "0"], "is_won": ["0", "0"]})})
    >>> quarantine_by_reason(data)[["table", "reason", "rows", "pct_of_table"]].values.tolist()
    [['opportunities', 'unknown stage', 1, 50.0]]
    """
    summary = data.quarantine_summary()
    out = pd.DataFrame(
        {
            "table": summary["table"].astype("str"),
            "reason": summary["reason"].astype("str"),
            "rows": summary["rows"].astype("int64"),
        }
    )
    read = out["table"].map(data.counts["read"]).astype("float64")
    out["pct_of_table"] = _percent(out["rows"], read)
    out["definition"] = out["reason"].map(REASON_DEFINITIONS).astype("str")
    return _ordered_reasons(out)


def _original_text(original: str) -> str:
    """A quarantined row's original values (JSON) as ``column=value; ...`` text."""
    try:
        values = json.loads(original)
    except (TypeError, ValueError):
        return str(original)
    return "; ".join(f"{k}={'' if v is None else v}" for k, v in values.items())


def quarantine_examples(data: CRMData, n: int = 5) -> pd.DataFrame:
    """The first `n` quarantined rows of each table and reason, with their original values.

    Parameters
    ----------
    data : CRMData
    n : int, default 5
        Rows shown per table and reason (the first ones in file order).

    Returns
    -------
    pandas.DataFrame
        ``table``, ``reason``, ``row`` (1-based data row in the source file, header excluded), ``column``
        (the column or columns the check looked at), ``value`` (their values as read) and ``original``
        (the whole row as read, ``column=value; ...``; empty values are shown as ``column=``). Ordered
        like `quarantine_by_reason`, then by row.

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B"], "owner": ["ann", "bo"], "created_at": ["2024-01-02", "2024-01-05"],
    ...     "stage": ["Prospecting", "Nowhere"], "amount": ["100", "50"],
    ...     "close_date": ["2024-03-01", "2024-03-01"], "is_closed": ["0", "0"], "is_won": ["0", "0"]})})
    >>> quarantine_examples(data)[["row", "column", "value"]].values.tolist()
    [[2, 'stage', 'Nowhere']]
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of rows, got {n!r}")
    q = data.quarantine
    columns = ["table", "reason", "row", "column", "value", "original"]
    if q.empty:
        return pd.DataFrame({c: pd.Series([], dtype="int64" if c == "row" else "str") for c in columns})
    order = _ordered_reasons(data.quarantine_summary())[["table", "reason"]]
    first = q.sort_values("row", kind="stable").groupby(["table", "reason"], sort=False).head(n)
    out = order.merge(first, on=["table", "reason"], how="inner", sort=False)
    out = out.assign(
        row=out["row"].astype("int64"),
        original=out["original"].map(_original_text).astype("str"),
    )
    return out[columns].reset_index(drop=True)


def report_as_of(data: CRMData, as_of: str = "latest") -> pd.Timestamp:
    """The as-of date of a report: the data's latest time, or a given date.

    Parameters
    ----------
    data : CRMData
    as_of : str, default "latest"
        ``"latest"`` for `CRMData.as_of` (the last event in any table: a deal created, changed or closed, a
        lead created or converted, a forecast submitted), or a date or timestamp in ISO form (``"2024-06-30"``).

    Returns
    -------
    pandas.Timestamp

    Raises
    ------
    ValueError
        When `as_of` is neither ``"latest"`` nor an ISO date, or when the data holds no dates at all.

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A"], "owner": ["ann"], "created_at": ["2024-01-02"], "stage": ["Prospecting"],
    ...     "amount": ["100"], "close_date": ["2024-03-01"], "is_closed": ["0"], "is_won": ["0"]})})
    >>> report_as_of(data)
    Timestamp('2024-01-02 00:00:00')
    >>> report_as_of(data, "2024-06-30")
    Timestamp('2024-06-30 00:00:00')
    """
    text = str(as_of).strip()
    if text.casefold() == "latest":
        latest = data.as_of
        if pd.notna(latest):
            return latest
        raise ValueError("as_of='latest': the data holds no accepted row with a date, so it has no latest date")
    try:
        stamp = pd.Timestamp(pd.to_datetime(text, format="ISO8601"))
    except (ValueError, TypeError):
        raise ValueError(f"as_of must be 'latest' or an ISO date like '2024-06-30', got {as_of!r}") from None
    if stamp.tzinfo is not None:  # canonical times are naive UTC
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def date_coverage(data: CRMData, as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """First and last value of each date column of the accepted rows, and how many rows have one.

    Parameters
    ----------
    data : CRMData
    as_of : timestamp, str or None
        The report's as-of date (see `report_as_of`); None uses the data's own (`CRMData.as_of`).

    Returns
    -------
    pandas.DataFrame
        One row per table that was read and per canonical date column: ``table``, ``column``, ``first``,
        ``last`` (datetime64; missing when no row has a value), ``with_value``, ``missing`` (accepted rows
        with and without a value), ``pct_missing`` (percent of accepted rows) and ``after_as_of`` (values
        on a later day than the as-of date; expected for the close dates of open deals, suspicious for
        creation and change times).

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B"], "owner": ["ann", "bo"], "created_at": ["2024-01-02", "2024-01-05"],
    ...     "stage": ["Prospecting"] * 2, "amount": ["100", "50"], "close_date": ["2024-03-01", "2024-01-31"],
    ...     "is_closed": ["0", "0"], "is_won": ["0", "0"]})})
    >>> date_coverage(data)[["column", "with_value", "after_as_of"]].values.tolist()
    [['created_at', 2, 0], ['close_date', 2, 2]]
    """
    if as_of is None:
        as_of = report_as_of(data)
    as_of_day = pd.Timestamp(as_of).normalize()
    rows: list[dict] = []
    for name, spec in TABLES.items():
        if int(data.counts.loc[name, "read"]) == 0:
            continue
        table = data.tables[name]
        for col in spec.columns:
            if col.kind != "datetime" or col.name not in table.columns:
                continue
            values = pd.to_datetime(table[col.name])
            with_value = int(values.notna().sum())
            rows.append(
                {
                    "table": name,
                    "column": col.name,
                    "first": values.min(),
                    "last": values.max(),
                    "with_value": with_value,
                    "missing": len(values) - with_value,
                    "after_as_of": int((values.dt.normalize() > as_of_day).sum()),
                }
            )
    out = pd.DataFrame(rows, columns=["table", "column", "first", "last", "with_value", "missing", "after_as_of"])
    out = out.astype(
        {
            "table": "str",
            "column": "str",
            "first": "datetime64[us]",
            "last": "datetime64[us]",
            "with_value": "int64",
            "missing": "int64",
            "after_as_of": "int64",
        }
    )
    out.insert(6, "pct_missing", _percent(out["missing"], out["with_value"] + out["missing"]))
    return out


_OPEN_CLOSE_DATE_DEFINITIONS = {
    "open deals": "accepted opportunities not closed (the base of the percentages)",
    "without a close date": "open deals whose close_date is empty: the CRM holds no expected close date for them,"
    " so a forecast cannot place them in a period by that date (methods that forecast by time to close still"
    " can; a method weighting deals by their expected close date leaves them out)",
    "close date passed": "open deals whose expected close date is before the report's as-of day: overdue, or a"
    " close date nobody updated",
}


def open_deal_close_dates(data: CRMData, as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """How many open deals have an expected close date, and how many of those have passed.

    A closed deal needs its close date (`validate` quarantines one without it as ``closed without close date``);
    an open deal may have none, as in CRMs that keep no expected close date.

    Parameters
    ----------
    data : CRMData
    as_of : timestamp, str or None
        The report's as-of date (see `report_as_of`); None uses the data's own (`CRMData.as_of`).

    Returns
    -------
    pandas.DataFrame
        One row per measure (see ``definition``): ``measure`` (open deals; without a close date; close date
        passed), ``deals`` (int64), ``pct_of_open`` (percent of the open deals; missing when there are none)
        and ``definition``.

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B", "C"], "owner": ["ann"] * 3, "created_at": ["2024-01-02"] * 3,
    ...     "stage": ["Prospecting", "Prospecting", "Closed Won"], "amount": ["100", "50", "10"],
    ...     "close_date": ["", "2024-03-01", "2024-02-01"], "is_closed": ["0", "0", "1"], "is_won": ["0", "0", "1"]})})
    >>> open_deal_close_dates(data, "2024-06-30")[["measure", "deals", "pct_of_open"]].values.tolist()
    [['open deals', 2, 100.0], ['without a close date', 1, 50.0], ['close date passed', 1, 50.0]]
    """
    opps = data.opportunities
    open_deals = opps[~opps["is_closed"].astype(bool)]
    if as_of is None:
        as_of = data.as_of
    close = pd.to_datetime(open_deals["close_date"])
    passed = int((close.dt.normalize() < pd.Timestamp(as_of).normalize()).sum()) if pd.notna(as_of) else 0
    counts = {
        "open deals": len(open_deals),
        "without a close date": int(close.isna().sum()),
        "close date passed": passed,
    }
    out = pd.DataFrame(
        {
            "measure": pd.array(list(counts), dtype="str"),
            "deals": np.array(list(counts.values()), dtype="int64"),
        }
    )
    out["pct_of_open"] = _percent(out["deals"], pd.Series(len(open_deals), index=out.index))
    out["definition"] = out["measure"].map(_OPEN_CLOSE_DATE_DEFINITIONS).astype("str")
    return out


def _stage_rows(data: CRMData) -> pd.DataFrame:
    """Every row read that names a stage: ``table`` and ``stage``.

    Accepted rows carry canonical names already; quarantined rows (whatever their reason) contribute the
    stage they were read with, mapped to its canonical name when it is a stage or alias of the map and
    kept as written (trimmed) when it is not.
    """
    parts = []
    for name in _STAGE_TABLES:
        accepted = data.tables[name]["stage"].dropna().astype("str")
        parts.append(pd.DataFrame({"table": name, "stage": accepted.to_numpy()}))
        q = data.quarantine[data.quarantine["table"] == name]
        raw = [json.loads(o).get("stage") for o in q["original"]]
        raw = [str(s).strip() for s in raw if s is not None and str(s).strip()]
        written = [data.process.canonical_stage(s) or s for s in raw]
        parts.append(pd.DataFrame({"table": name, "stage": written}))
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"table": "str", "stage": "str"})


def stage_conformance(data: CRMData) -> pd.DataFrame:
    """Stage names found in the data against the process map.

    Counts every row read in ``opportunities`` (its current stage) and ``stage_history`` (the stage of the
    change), accepted or quarantined. A name that is a stage or an alias of the map is counted under the
    map's stage name; any other name is shown as written.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    pandas.DataFrame
        ``stage`` (the map's name, or the name as written), ``canonical_stage`` (the map's stage, or
        ``"not in process map"``), ``kind`` (open/won/lost; missing for names not in the map),
        ``probability`` (the map's default probability; missing likewise), ``opportunities`` and
        ``stage_history`` (rows per table), ``rows`` (both tables) and ``pct_of_rows`` (percent of all rows
        that name a stage). Every stage of the map is listed, in process order, also those no row uses;
        names not in the map follow, most rows first.

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B"], "owner": ["ann", "bo"], "created_at": ["2024-01-02", "2024-01-05"],
    ...     "stage": ["Prospecting", "Nowhere"], "amount": ["100", "50"],
    ...     "close_date": ["2024-03-01", "2024-03-01"], "is_closed": ["0", "0"], "is_won": ["0", "0"]})})
    >>> sc = stage_conformance(data)
    >>> sc.loc[sc["rows"] > 0, ["stage", "canonical_stage", "rows"]].values.tolist()
    [['Prospecting', 'Prospecting', 1], ['Nowhere', 'not in process map', 1]]
    """
    rows = _stage_rows(data)
    counts = pd.crosstab(rows["stage"], rows["table"]).reindex(columns=list(_STAGE_TABLES), fill_value=0)
    process = data.process
    known = process.stage_names
    unknown = counts.index.difference(pd.Index(known))
    if len(unknown):
        totals = counts.loc[unknown].sum(axis=1)
        keys = pd.DataFrame({"total": -totals.to_numpy(), "name": unknown.astype("str")}, index=unknown)
        unknown = keys.sort_values(["total", "name"], kind="stable").index
    order = list(known) + [str(u) for u in unknown]
    counts = counts.reindex(order, fill_value=0)
    kinds = {s.name: s.kind for s in process.stages}
    out = pd.DataFrame(
        {
            "stage": pd.array(order, dtype="str"),
            "canonical_stage": pd.array([s if s in kinds else NOT_IN_MAP for s in order], dtype="str"),
            "kind": pd.array([kinds.get(s) for s in order], dtype="str"),
            "probability": pd.Series(order).map(process.probability).astype("float64").to_numpy(),
            "opportunities": counts["opportunities"].to_numpy(dtype="int64"),
            "stage_history": counts["stage_history"].to_numpy(dtype="int64"),
        }
    )
    out["rows"] = out["opportunities"] + out["stage_history"]
    out["pct_of_rows"] = _percent(out["rows"], pd.Series(int(out["rows"].sum()), index=out.index))
    return out


def stage_map_share(data: CRMData) -> pd.DataFrame:
    """Share of the rows naming a stage whose stage is in the process map, per table.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    pandas.DataFrame
        One row for ``opportunities`` and one for ``stage_history``: ``table``, ``rows`` (rows read that
        name a stage, accepted or quarantined), ``in_map`` (named a stage or alias of the map),
        ``not_in_map`` and ``pct_in_map`` (percent of ``rows``; missing when the table had none).

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({"opportunities": pd.DataFrame({
    ...     "opportunity_id": ["A", "B"], "owner": ["ann", "bo"], "created_at": ["2024-01-02", "2024-01-05"],
    ...     "stage": ["Prospecting", "Nowhere"], "amount": ["100", "50"],
    ...     "close_date": ["2024-03-01", "2024-03-01"], "is_closed": ["0", "0"], "is_won": ["0", "0"]})})
    >>> stage_map_share(data).values.tolist()[0]
    ['opportunities', 2, 1, 1, 50.0]
    """
    rows = _stage_rows(data)
    in_map = rows["stage"].isin(data.process.stage_names)
    total = rows.groupby("table").size().reindex(list(_STAGE_TABLES), fill_value=0)
    inside = in_map.groupby(rows["table"]).sum().reindex(list(_STAGE_TABLES), fill_value=0)
    out = pd.DataFrame(
        {
            "table": pd.array(list(_STAGE_TABLES), dtype="str"),
            "rows": total.to_numpy(dtype="int64"),
            "in_map": inside.to_numpy(dtype="int64"),
        }
    )
    out["not_in_map"] = out["rows"] - out["in_map"]
    out["pct_in_map"] = _percent(out["in_map"], out["rows"])
    return out


_HISTORY_DEFINITIONS = {
    "opportunities": "accepted opportunities (the base of the percentages)",
    "with stage history": "at least one accepted stage_history row",
    "without stage history": "no accepted stage_history row: the deal's path through the stages is unknown",
    "one change only": "exactly one stage_history row",
    "single-timestamp history": "two or more changes, all at the same moment (typical of a backfilled "
    "history: the order of the stages and the time in each are unknown)",
    "last change differs from current stage": "the stage of the last change (by changed_at; ties in file "
    "order) is not the opportunity's current stage",
}


def history_coverage(data: CRMData) -> pd.DataFrame:
    """How well stage_history covers the opportunities.

    Parameters
    ----------
    data : CRMData

    Returns
    -------
    pandas.DataFrame
        One row per measure (see ``definition``): ``measure``, ``opportunities`` (count of accepted
        opportunities), ``pct_of_opportunities`` (percent of accepted opportunities) and ``definition``.
        The measures are: opportunities; with / without stage history; one change only; single-timestamp
        history (two or more changes, all at the same moment); last change differs from current stage.

    Examples
    --------
    >>> import pandas as pd
    >>> from salesforecast.schema import validate
    >>> data = validate({
    ...     "opportunities": pd.DataFrame({
    ...         "opportunity_id": ["A", "B"], "owner": ["ann", "bo"],
    ...         "created_at": ["2024-01-02", "2024-01-05"], "stage": ["Prospecting", "Qualification"],
    ...         "amount": ["100", "50"], "close_date": ["2024-03-01", "2024-03-01"],
    ...         "is_closed": ["0", "0"], "is_won": ["0", "0"]}),
    ...     "stage_history": pd.DataFrame({"opportunity_id": ["A", "A"], "changed_at": ["2024-01-02"] * 2,
    ...         "stage": ["Prospecting", "Qualification"]})})
    >>> history_coverage(data).set_index("measure")["opportunities"].tolist()
    [2, 1, 1, 0, 1, 1]
    """
    opps = data.opportunities
    hist = data.stage_history
    ids = opps["opportunity_id"]
    hist = hist[hist["opportunity_id"].isin(ids)]
    per_opp = hist.groupby("opportunity_id").agg(changes=("changed_at", "size"), moments=("changed_at", "nunique"))
    last = (
        hist.sort_values("changed_at", kind="stable")
        .drop_duplicates("opportunity_id", keep="last")
        .set_index("opportunity_id")["stage"]
    )
    current = opps.set_index("opportunity_id")["stage"]
    last_differs = (last != current.reindex(last.index)).fillna(True)
    n = len(ids)
    with_history = int(ids.isin(per_opp.index).sum())
    counts = {
        "opportunities": n,
        "with stage history": with_history,
        "without stage history": n - with_history,
        "one change only": int((per_opp["changes"] == 1).sum()),
        "single-timestamp history": int(((per_opp["changes"] >= 2) & (per_opp["moments"] == 1)).sum()),
        "last change differs from current stage": int(last_differs.sum()),
    }
    out = pd.DataFrame(
        {
            "measure": pd.array(list(counts), dtype="str"),
            "opportunities": np.array(list(counts.values()), dtype="int64"),
        }
    )
    out["pct_of_opportunities"] = _percent(out["opportunities"], pd.Series(n, index=out.index))
    out["definition"] = out["measure"].map(_HISTORY_DEFINITIONS).astype("str")
    return out


def import_notes(data: CRMData) -> pd.DataFrame:
    """What the importer had to tell the reader: problems it could not fix and the analyses they limit.

    Returns
    -------
    pandas.DataFrame
        One row per note of `CRMData.notes` (column ``note``); a single row saying so when there are none.

    Examples
    --------
    >>> from salesforecast.datasets import load_sample
    >>> import_notes(load_sample())["note"].tolist()
    ['none: the source needed no explanation beyond the counts and the quarantine below']
    """
    notes = list(data.notes) or ["none: the source needed no explanation beyond the counts and the quarantine below"]
    return pd.DataFrame({"note": notes}, dtype="str")
