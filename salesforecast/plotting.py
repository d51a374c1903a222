"""Every chart of the suite. matplotlib is imported here and nowhere else in the package.

Each function takes the table another module computed, draws on ``ax`` (a new figure when None), sets its
labels with ``ax.set(...)`` and returns the `~matplotlib.axes.Axes`; none calls ``plt.show()``. Text that
comes from a CRM (stage, rep, team names) goes through `_text`, which escapes ``$`` so that matplotlib never
reads a name as mathtext.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import Formatter, FuncFormatter, MaxNLocator, PercentFormatter

from salesforecast.forecast import METHODS, featured_methods, method_label, recommend
from salesforecast.labels import label as column_label
from salesforecast.metrics import METRICS
from salesforecast.rollup import distance_from_target

__all__ = [
    "plot_adherence_by",
    "plot_gains",
    "plot_table_counts",
    "plot_funnel",
    "plot_reliability",
    "plot_segment_win_probability",
    "plot_time_in_stage",
    "plot_transition_heatmap",
    "plot_waterfall",
    "plot_win_probability",
    "METHOD_COLOURS",
    "plot_bookings_distribution",
    "plot_forecast_trend",
    "plot_interval_coverage",
    "plot_leaderboard",
    "plot_rep_bias",
    "plot_method_intervals",
    "plot_outcome",
    "MoneyFormatter",
    "OUTCOME_COLOURS",
    "SERIES_MAX",
    "SHOW_ALL",
]

_BLUE, _GREY, _GREEN, _RED, _ORANGE = "#2f6690", "#9aa5b1", "#3a7d44", "#b23a48", "#e09f3e"


def _text(value: object) -> str:
    """A CRM name as plain chart text: ``$`` escaped so it is never parsed as mathtext."""
    return str(value).replace("$", r"\$")


def _axes(ax: Axes | None, size: tuple[float, float] = (8, 4.5)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def _count(x: float, _pos: int | None = None) -> str:
    """A count tick: a whole number with thousands separators (``13,823``)."""
    return f"{x:,.0f}"


def _money(x: float, _pos: int | None = None) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:,.1f}{suffix}"
    return f"{x:,.0f}"


#: Most series (lines, bar groups) a chart draws by default: the methods `featured_methods` picks plus the actual.
SERIES_MAX = 5

#: Colour of each outcome, the same in every chart: won green, lost red.
OUTCOME_COLOURS = {"won": _GREEN, "lost": _RED}

_UNITS = ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1.0, ""))


class MoneyFormatter(Formatter):
    """Amount ticks in one format per axis: the unit of the largest tick, as few decimals as the ticks need.

    ``0, 500k, 1.0M, 1.5M`` reads as two formats; this formatter writes ``0, 0.5M, 1.0M, 1.5M`` (or ``0, 1M, 2M``,
    or ``0, 250k, 500k``): every tick in the same unit (B, M, k or none) with the same number of decimals, the
    fewest (0 to 2) that write each tick exactly. A value formatted alone (e.g. by a cursor) uses one decimal.

    Examples
    --------
    >>> MoneyFormatter().format_ticks([0, 5e5, 1e6, 1.5e6])
    ['0', '0.5M', '1.0M', '1.5M']
    >>> MoneyFormatter().format_ticks([0, 250e3, 500e3, 750e3])
    ['0', '250k', '500k', '750k']
    """

    def __init__(self) -> None:
        self._unit: tuple[float, str] | None = None
        self._decimals = 1

    def set_locs(self, locs: Sequence[float]) -> None:  # noqa: D102 - matplotlib's hook
        values = np.abs(np.asarray(locs, dtype=float))
        values = values[np.isfinite(values)]
        top = float(values.max()) if values.size else 0.0
        self._unit = next(((d, u) for d, u in _UNITS if top >= d), (1.0, ""))
        scaled = values / self._unit[0]
        self._decimals = next((d for d in range(3) if np.allclose(np.round(scaled, d), scaled, rtol=0, atol=1e-6)), 2)

    def __call__(self, x: float, pos: int | None = None) -> str:  # noqa: D102 - matplotlib's hook
        if self._unit is None:
            return _money(x)
        if abs(x) < 1e-9:
            return "0"
        div, suffix = self._unit
        return f"{x / div:,.{self._decimals}f}{suffix}"


def plot_funnel(summary: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Deals that entered each stage, in process order, with the share that converted to a later stage.

    Parameters
    ----------
    summary : DataFrame
        ``StageConversionModel.summary``: columns ``stage``, ``entered``, ``converted`` (deals that moved on to
        a later stage).
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    stages = [_text(s) for s in summary["stage"]]
    entered = summary["entered"].to_numpy(dtype=float)
    converted = summary["converted"].to_numpy(dtype=float)
    y = np.arange(len(stages))
    ax.barh(y, entered, color=_GREY, label="entered the stage")
    ax.barh(y, converted, color=_BLUE, label="moved on to a later stage")
    for yi, e, c in zip(y, entered, converted, strict=True):
        rate = c / e if e else np.nan
        ax.text(e, yi, f"  {rate:.0%}" if np.isfinite(rate) else "", va="center", fontsize=8)
    ax.set_yticks(y, stages)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(FuncFormatter(_count))
    ax.set(xlabel="deals", title="Funnel: deals entering each stage and moving on")
    _legend_outside(ax)
    return ax


#: Font size (points) of a heatmap's cell shares; its tick labels are a point larger. At the reports' 100 dpi a
#: point is 1.4 px: 9 pt is 12.5 px.
HEATMAP_FONTSIZE = 9
_MANY_LABELS = 12  # a heatmap with more rows or columns shows fewer shares and vertical column labels


def plot_transition_heatmap(matrix: pd.DataFrame, ax: Axes | None = None, counts: pd.DataFrame | None = None) -> Axes:
    """Stage-to-stage transition probabilities: row = from (open stages), column = to (all stages).

    Parameters
    ----------
    matrix : DataFrame
        ``StageConversionModel.transition_matrix_``; rows sum to 1.
    ax : Axes, optional
    counts : DataFrame, optional
        ``StageConversionModel.transition_counts_``: the departures observed. A row without any (no deal left that
        stage, so the model's row is the CRM default, not learned) shows no shares, only "no deal left it: CRM
        default".

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (9, 6))
    values = matrix.to_numpy(dtype=float)
    many = max(values.shape) > _MANY_LABELS  # smaller cells: shares of 10% and more only, ticks sideways
    unseen = np.zeros(len(values), dtype=bool)
    if counts is not None:
        unseen = counts.reindex(index=matrix.index).fillna(0).to_numpy(dtype=float).sum(axis=1) <= 0
        values = np.where(unseen[:, None], np.nan, values)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(1e-9, top), aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if v >= (0.1 if many else 0.005):
            ax.text(
                j,
                i,
                f"{v:.0%}",
                ha="center",
                va="center",
                fontsize=HEATMAP_FONTSIZE,
                color="white" if v > 0.5 else "black",
            )
    for i in np.flatnonzero(unseen):
        ax.text(
            (values.shape[1] - 1) / 2,
            i,
            "no deal left it: CRM default",
            ha="center",
            va="center",
            fontsize=HEATMAP_FONTSIZE,
        )
    ax.set_xticks(
        range(values.shape[1]),
        [_text(c) for c in matrix.columns],
        rotation=90 if many else 45,
        ha="center" if many else "right",
        fontsize=HEATMAP_FONTSIZE + 1,
    )
    ax.set_yticks(range(values.shape[0]), [_text(r) for r in matrix.index], fontsize=HEATMAP_FONTSIZE + 1)
    ax.figure.colorbar(image, ax=ax, format=PercentFormatter(1.0), shrink=0.8)
    ax.set(xlabel="to stage", ylabel="from stage", title="Where deals go next from each stage")
    return ax


def plot_win_probability(summary: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Learned probability of winning from each stage with its interval, against the CRM's default.

    Parameters
    ----------
    summary : DataFrame
        ``StageConversionModel.summary``: columns ``stage``, ``win_probability`` (learned), ``lower``, ``upper``
        (its interval), ``crm_probability``.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    x = np.arange(len(summary))
    learned = summary["win_probability"].to_numpy(dtype=float)
    # an interval need not contain its point estimate (e.g. a percentile bootstrap): draw the part that does
    lower = np.clip(learned - summary["lower"].to_numpy(dtype=float), 0, None)
    upper = np.clip(summary["upper"].to_numpy(dtype=float) - learned, 0, None)
    ax.errorbar(
        x,
        learned,
        yerr=[lower, upper],
        fmt="o",
        color=_SERIES["learned"][1],
        capsize=3,
        label="learned (with interval)",
    )
    crm_label, crm_colour = _SERIES["crm_default"]
    ax.plot(x, summary["crm_probability"].to_numpy(dtype=float), "s", color=crm_colour, label=crm_label)
    ax.set_xticks(x, [_text(s) for s in summary["stage"]], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(ylim=(0, 1), ylabel="probability of winning", title="Win probability by stage: learned vs CRM default")
    _legend_outside(ax)
    return ax


def plot_time_in_stage(summary: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Median and 90th-percentile days in each stage.

    Parameters
    ----------
    summary : DataFrame
        Columns ``stage``, ``median_days``, ``p90_days``.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    y = np.arange(len(summary))
    ax.barh(y, summary["p90_days"].to_numpy(dtype=float), color=_GREY, label="90th percentile")
    ax.barh(y, summary["median_days"].to_numpy(dtype=float), color=_BLUE, label="median")
    ax.set_yticks(y, [_text(s) for s in summary["stage"]])
    ax.invert_yaxis()
    ax.set(xlabel="days in stage (completed visits)", title="Time in stage")
    _legend_outside(ax)
    return ax


def plot_segment_win_probability(
    table: pd.DataFrame, ax: Axes | None = None, segments: Sequence[str] | str | None = None
) -> Axes:
    """Win probability by stage for each segment (one line per segment, at most `SERIES_MAX` by default).

    Parameters
    ----------
    table : DataFrame
        Segments as rows, open stages as columns (``StageConversionModel.segment_win_probability_``).
    ax : Axes, optional
    segments : sequence of str or "all", optional
        Segments to draw. None: the first `SERIES_MAX` rows, the legend saying how many more there are.

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    x = np.arange(table.shape[1])
    if isinstance(segments, str) and segments == "all":
        rows = table
    elif segments is not None:
        wanted = [segments] if isinstance(segments, str) else list(segments)
        missing = [s for s in wanted if s not in table.index]
        if missing:
            raise ValueError(f"plot_segment_win_probability: no segment {missing}; the table holds {list(table.index)}")
        rows = table.loc[wanted]
    else:
        rows = table.iloc[:SERIES_MAX]
    for segment, row in rows.iterrows():
        ax.plot(x, row.to_numpy(dtype=float), marker="o", label=_text(segment))
    ax.set_xticks(x, [_text(s) for s in table.columns], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(ylim=(0, 1), ylabel="probability of winning", title="Win probability by stage and segment")
    more = len(table) - len(rows)
    _legend_outside(ax, title=f"segment ({more} more: segments='all')" if more > 0 else "segment")
    return ax


#: The label and colour of the probability series the stage and lead charts compare, the same in every chart (the
#: learned model blue, the CRM's default orange); other names get the next free colour.
_SERIES = {
    "learned": ("learned", _BLUE),
    "model": ("model", _BLUE),
    "crm_default": ("CRM default", _ORANGE),
}
_SERIES_SPARE = (_GREEN, _RED, "#17becf", "#9467bd")


def _series(tables: Mapping[str, pd.DataFrame]) -> list[tuple[str, pd.DataFrame, str, str]]:
    """(name, table, label, colour) of each series: `_SERIES`'s label and colour, else the name and a spare colour."""
    out, spare = [], iter(_SERIES_SPARE)
    for name, table in tables.items():
        label, colour = _SERIES.get(str(name), (None, None))
        out.append((str(name), table, _text(label or name), colour or next(spare, _GREY)))
    return out


def plot_reliability(tables: Mapping[str, pd.DataFrame], ax: Axes | None = None) -> Axes:
    """Reliability diagram: observed win rate against predicted probability, one line per forecaster.

    Parameters
    ----------
    tables : mapping of name to DataFrame
        Calibration tables (`salesforecast.metrics.calibration_table`): ``mean_predicted``,
        ``observed_rate``, ``ci_lower``, ``ci_upper``, ``count``.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (5.5, 5))
    ax.plot([0, 1], [0, 1], color=_GREY, linestyle="--", linewidth=1, label="perfectly calibrated")
    for _name, t, label, color in _series(tables):
        x = t["mean_predicted"].to_numpy(dtype=float)
        y = t["observed_rate"].to_numpy(dtype=float)
        err = np.clip([y - t["ci_lower"].to_numpy(dtype=float), t["ci_upper"].to_numpy(dtype=float) - y], 0, None)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=2, color=color, label=label)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="predicted probability",
        ylabel="observed rate",
        title="Reliability: predicted against observed",
    )
    _legend_outside(ax)
    return ax


_WATERFALL_IN, _WATERFALL_OUT = "#7fa7c9", _ORANGE  # added to the pipeline; left it other than won or lost


def plot_waterfall(waterfall: pd.DataFrame, value: str = "amount", ax: Axes | None = None) -> Axes:
    """Pipeline movement as a waterfall: opening level, inflows up, outflows down, closing level.

    Levels are blue, inflows light blue; of the outflows, "won" is green and "lost" red (`OUTCOME_COLOURS`), the
    others (pushed out, amount decreased...) orange.

    Parameters
    ----------
    waterfall : DataFrame
        `salesforecast.movement.pipeline_waterfall`: columns ``step``, ``direction`` (``start``, ``in``,
        ``out``, ``end``) and `value`.
    value : {"amount", "count"}
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (10, 4.5))
    steps = waterfall["step"].tolist()
    values = waterfall[value].to_numpy(dtype=float)
    direction = waterfall["direction"].tolist()
    bottoms, heights, colors = [], [], []
    level = 0.0
    for step, v, d in zip(steps, values, direction, strict=True):
        if d in ("start", "end"):
            bottoms.append(0.0)
            heights.append(v)
            colors.append(_BLUE)
            level = v
        elif d == "in":
            bottoms.append(level)
            heights.append(v)
            colors.append(_WATERFALL_IN)
            level += v
        else:
            level -= v
            bottoms.append(level)
            heights.append(v)
            colors.append(OUTCOME_COLOURS.get(str(step), _WATERFALL_OUT))
    x = np.arange(len(steps))
    ax.bar(x, heights, bottom=bottoms, color=colors)
    fmt = _amount if value == "amount" else _count
    for xi, b, h in zip(x, bottoms, heights, strict=True):
        ax.text(xi, b + h, fmt(h), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [_text(s) for s in steps], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(MoneyFormatter() if value == "amount" else FuncFormatter(_count))
    handles = [
        Patch(color=_BLUE, label="pipeline level"),
        Patch(color=_WATERFALL_IN, label="added"),
        Patch(color=OUTCOME_COLOURS["won"], label="won"),
        Patch(color=OUTCOME_COLOURS["lost"], label="lost"),
        Patch(color=_WATERFALL_OUT, label="moved out or shrank"),
    ]
    ax.set(ylabel="amount" if value == "amount" else "deals", title=f"Pipeline movement ({value})")
    _legend_outside(ax, handles=handles)
    return ax


def plot_adherence_by(
    table: pd.DataFrame,
    columns: Mapping[str, str],
    ax: Axes | None = None,
    top: int | None = None,
    rollup: pd.DataFrame | None = None,
) -> Axes:
    """Share of deals with each deviation per rep or team (grouped horizontal bars).

    With more than `SHOW_ALL` groups and a `top`, the chart holds at any number of reps: it draws the `rollup`
    groups (e.g. the teams, above a line) and the `top` groups that deviate most (the largest sum of the drawn
    shares), and its title says of how many.

    Parameters
    ----------
    table : DataFrame
        `salesforecast.adherence.adherence_by`: one row per group (its index or first column names it).
    columns : mapping
        Share columns to draw and their legend labels, e.g. ``{"share_skipped": "skipped a stage"}``.
    ax : Axes, optional
    top : int, optional
        Draw only the `top` groups that deviate most when there are more than `SHOW_ALL` (default: every group).
    rollup : DataFrame, optional
        Roll-ups with the same share columns (e.g. ``adherence_by(deals, "team")``), drawn first when the groups
        are cut to `top`.

    Returns
    -------
    Axes
    """
    n_groups = len(table)
    cut = top is not None and n_groups > max(top, SHOW_ALL)
    n_rolled = 0
    if cut:
        deviating = table[list(columns)].astype(float).sum(axis=1, min_count=1).fillna(-1.0)
        table = table.loc[deviating.sort_values(ascending=False, kind="stable").index[:top]]
        if rollup is not None and not rollup.empty:
            n_rolled = len(rollup)
            table = pd.concat([rollup[list(columns)], table[list(columns)]])
    groups = [_text(g) for g in table.index]
    ax = _axes(ax, (8, max(3.0, 0.35 * len(groups) * max(1, len(columns)) / 2 + 1.5)))
    y = np.arange(len(groups))
    height = 0.8 / max(1, len(columns))
    for k, ((col, label), color) in enumerate(
        zip(columns.items(), (_BLUE, _ORANGE, _RED, _GREEN, _GREY), strict=False)
    ):
        ax.barh(y + k * height, table[col].to_numpy(dtype=float), height=height, color=color, label=_text(label))
    ax.set_yticks(y + height * (len(columns) - 1) / 2, groups)
    if n_rolled:
        ax.axhline(n_rolled - 0.5 + height * (len(columns) - 1) / 2, color="#444444", linewidth=1)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    title = "Process deviations by group"
    if cut:
        title = f"the {len(table) - n_rolled} of {n_groups} that deviate most"
        title = f"Process deviations: {'the roll-ups, and ' if n_rolled else ''}{title}"
    ax.set(xlabel="share of deals", title=title)
    _legend_outside(ax)
    return ax


def plot_table_counts(counts: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Rows read per table, split into accepted and quarantined (stacked horizontal bars on a linear axis).

    Each bar is labelled with its counts: a linear axis keeps 288 rows looking 2% of 13,823, as they are.

    Parameters
    ----------
    counts : DataFrame
        `salesforecast.quality.table_counts`: columns ``table``, ``accepted``, ``quarantined``.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (8, 3))
    y = np.arange(len(counts))
    accepted = counts["accepted"].to_numpy(dtype=float)
    quarantined = counts["quarantined"].to_numpy(dtype=float)
    ax.barh(y, accepted, color=_BLUE, label="accepted")
    ax.barh(y, quarantined, left=accepted, color=_RED, label="quarantined")
    for yi, a, q in zip(y, accepted, quarantined, strict=True):
        ax.text(a + q, yi, f"  {a + q:,.0f} read" + (f", {q:,.0f} quarantined" if q else ""), va="center", fontsize=9)
    ax.set_yticks(y, [_text(t) for t in counts["table"]])
    ax.invert_yaxis()
    top = float((accepted + quarantined).max(initial=0))
    ax.set_xlim(0, max(top, 1.0) * 1.3)  # room for the labels right of the longest bar
    ax.xaxis.set_major_formatter(FuncFormatter(_count))
    ax.set(xlabel="rows", title="Rows read per table: accepted and quarantined")
    _legend_outside(ax)
    return ax


def plot_gains(gains: Mapping[str, pd.DataFrame], ax: Axes | None = None) -> Axes:
    """Cumulative gains: share of all conversions reached against share of leads contacted, best-scored first.

    Parameters
    ----------
    gains : mapping of name to DataFrame
        `salesforecast.metrics.cumulative_gains` tables (``fraction_contacted``, ``fraction_positives``), one
        line each.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (5.5, 5))
    ax.plot([0, 1], [0, 1], color=_GREY, linestyle="--", linewidth=1, label="random order")
    for _name, g, label, color in _series(gains):
        ax.plot(g["fraction_contacted"], g["fraction_positives"], color=color, label=label)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="share of leads contacted (best scores first)",
        ylabel="share of conversions reached",
        title="Cumulative gains",
    )
    _legend_outside(ax)
    return ax


# --- forecast backtest charts -------------------------------------------------------------------------------


#: Colour of each known forecast method, the same in every chart: built from `salesforecast.forecast.METHODS` at
#: import (the charts read `METHODS` itself, so a method registered later has its colour there too).
#: Other names get a colour from `_FALLBACK_COLOURS` chosen from a hash of the name (see `_method_colours`).
METHOD_COLOURS: dict[str, str] = {name: m.colour for name, m in METHODS.items()}
_FALLBACK_COLOURS = (_RED, "#17becf", "#e377c2", "#6b8e23", "#9467bd", "#5c5c8a")

# Rep bias bands on forecast / actual: "good" inside _GOOD_BAND, "watch" inside _WATCH_BAND, "off" outside.
_GOOD_BAND, _WATCH_BAND = (0.85, 1.15), (0.70, 1.30)
_RATIO_AXIS_CAP = 3.0  # ratios above 300% are drawn to the edge and labelled with their value
#: Per-rep charts given a ``top`` draw every rep up to this many (a bar each); above it, the roll-ups and the top.
SHOW_ALL = 20


def _require(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the table has {list(table.columns)}")


def _floats(values: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for missing values (also for nullable dtypes and text)."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _method_order(methods: Iterable[object]) -> list[str]:
    """Methods of the registry (`salesforecast.forecast.METHODS`) in its order, then the others as they appear."""
    names = list(dict.fromkeys(str(m) for m in methods))
    return [m for m in METHODS if m in names] + [m for m in names if m not in METHODS]


def _method_colours(methods: Iterable[str]) -> dict[str, str]:
    """Colour per method: its registry colour (`METHOD_COLOURS`), else a fallback picked by a stable hash.

    Fallbacks are distinct within a chart: unknown names are served in sorted order, so the same set of methods
    gets the same colours in every chart whatever the row order; a name whose hashed colour is taken gets the next
    free one.
    """
    methods = sorted(set(methods))
    colours: dict[str, str] = {}
    used: set[str] = set()
    for m in methods:
        if m in METHODS:
            colours[m] = METHODS[m].colour
            used.add(colours[m])
    n = len(_FALLBACK_COLOURS)
    for m in methods:
        if m in colours:
            continue
        start = zlib.crc32(m.encode("utf-8")) % n
        candidates = [_FALLBACK_COLOURS[(start + k) % n] for k in range(n)]
        colours[m] = next((c for c in candidates if c not in used), candidates[0])
        used.add(colours[m])
    return colours


def _method_text(name: object) -> str:
    """A method as a chart names it: its `METHODS` label (never the snake_case name), ``$`` escaped."""
    return _text(method_label(name))


#: Methods drawn when neither `methods` nor a leaderboard says which: the first of these the table holds.
_FALLBACK_FEATURED = (
    "monte_carlo",
    "stage_conversion",
    "submitted_commit",
    "opportunity_score",
    "bias_corrected_commit",
    "run_rate",
    "crm_weighted",
    "ets",
    "seasonal_naive",
    "submitted_best_case",
)


def _chosen_methods(
    present: list[str],
    methods: Sequence[str] | str | None,
    what: str,
    board: pd.DataFrame | None = None,
    untrusted: Iterable[str] = (),
    limit: int = SERIES_MAX - 1,
) -> list[str]:
    """The methods a chart draws, in registry order.

    ``"all"``: every method present. A name or a list: those (each must be present). None: the default of at most
    `limit` methods (one series is kept for the actual or the reference line): `featured_methods` of `board` when
    given, else the first present of `_FALLBACK_FEATURED` that is not `untrusted` and not the oracle.
    """
    if isinstance(methods, str) and methods == "all":
        return present
    if methods is not None:
        chosen = [methods] if isinstance(methods, str) else [str(m) for m in methods]
        missing = [m for m in chosen if m not in present]
        if missing:
            raise ValueError(f"{what}: no rows for method(s) {missing}; the table holds {present}")
        return [m for m in present if m in chosen]
    if board is not None and "method" in board.columns:
        picked = set(featured_methods(board, n=limit))
        return [m for m in present if m in picked]
    skip = set(untrusted) | {"oracle"}
    order = [m for m in _FALLBACK_FEATURED if m in present and m not in skip]
    order += [m for m in present if m not in order and m not in skip]
    picked = set(order[:limit])
    return [m for m in present if m in picked]


def _legend_outside(ax: Axes, **kwargs: object) -> None:
    """Legend to the right of the data (nothing when no artist has a label)."""
    if ax.get_legend_handles_labels()[0] or kwargs.get("handles"):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=9, **kwargs)


def _amount(x: float) -> str:
    """An amount for a legend or label: three significant digits, e.g. ``1.05M``, ``985k`` (finer than `_money`)."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div * 0.9995:
            return f"{x / div:.3g}{suffix}"
    return f"{x:,.0f}"


def _no_data(ax: Axes, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color=_GREY)


def _names(values: Iterable[object], limit: int = 10) -> str:
    names = [str(v) for v in values]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def plot_forecast_trend(
    results: pd.DataFrame,
    ax: Axes | None = None,
    methods: Sequence[str] | str | None = None,
    interval_method: str | None = "monte_carlo",
    board: pd.DataFrame | None = None,
) -> Axes:
    """How each method's forecast of one period moved as the period went on, against the actual.

    One line per method (colour and label from `salesforecast.forecast.METHODS`) of the forecast at each cutoff
    date, the P10-P90 band of `interval_method` shaded (when that method is drawn), and the actual as a dashed
    horizontal line. By default at most `SERIES_MAX` lines: four methods and the actual. The bottom axis shows cutoff
    dates; the top axis the weeks left to the period end (from ``days_before_period_end``).

    Parameters
    ----------
    results : DataFrame
        Backtest results for ONE period and ONE group: columns ``period``, ``cutoff``, ``group_value``,
        ``method``, ``forecast``, ``actual``; optionally ``group``, ``days_before_period_end``, ``p10``,
        ``p90``. Filter the long backtest table first.
    ax : Axes, optional
    methods : sequence of str or "all", optional
        Methods to draw (``"all"``: every one). None: the trusted methods `featured_methods` picks from `board`
        (at most four), else the first four of the pipeline and call methods the table holds (none flagged in
        its ``leakage`` column). Methods whose forecasts are all missing are left out.
    interval_method : str or None
        Method whose P10-P90 band is shaded (when it has quantiles and is drawn); None for no band.
    board : DataFrame, optional
        A `salesforecast.forecast.leaderboard` of the backtest: it says which methods are trusted and best.

    Returns
    -------
    Axes

    Raises
    ------
    ValueError
        When the table holds several periods or groups (they are named), is empty, misses a column, names a
        method twice for one cutoff, holds different actuals, or `methods` names a method it does not hold.
    """
    _require(results, ("period", "cutoff", "group_value", "method", "forecast", "actual"), "plot_forecast_trend")
    if results.empty:
        raise ValueError("plot_forecast_trend: the results table is empty")
    periods = pd.unique(results["period"])
    if len(periods) != 1:
        raise ValueError(
            f"plot_forecast_trend draws one period, but results holds {len(periods)}: {_names(periods)}; "
            f"filter it first, e.g. results[results['period'] == {str(periods[0])!r}]"
        )
    key = [c for c in ("group", "group_value") if c in results.columns]
    groups = results[key].drop_duplicates()
    if len(groups) != 1:
        raise ValueError(
            f"plot_forecast_trend draws one group, but results holds {len(groups)}: "
            f"{_names('='.join(map(str, row)) for row in groups.itertuples(index=False))}; "
            "filter it on group and group_value first"
        )
    present = _method_order(results["method"])
    untrusted: set[str] = set()
    if "leakage" in results.columns:
        untrusted = set(results.loc[results["leakage"].fillna("").astype("str") != "", "method"].astype("str"))
    chosen = _chosen_methods(present, methods, "plot_forecast_trend", board=board, untrusted=untrusted)
    data = results.assign(method=results["method"].astype(str), cutoff=pd.to_datetime(results["cutoff"]))
    if data.duplicated(["method", "cutoff"]).any():
        raise ValueError("plot_forecast_trend expects one row per method and cutoff")
    data = data.sort_values("cutoff", kind="stable")
    colours = _method_colours(present)

    ax = _axes(ax, (9, 4.5))
    drawn = False
    if interval_method is not None and str(interval_method) in chosen and {"p10", "p90"} <= set(data.columns):
        band = data[data["method"] == str(interval_method)]
        x = band["cutoff"].to_numpy()
        lo, hi = _floats(band["p10"]), _floats(band["p90"])
        ok = np.isfinite(lo) & np.isfinite(hi)
        colour = colours.get(str(interval_method), _GREY)
        label = f"{_method_text(interval_method)} P10–P90 range"
        if ok.sum() > 1:
            ax.fill_between(x, lo, hi, where=ok, color=colour, alpha=0.18, linewidth=0, label=label)
            drawn = True
        elif ok.sum() == 1:
            ax.vlines(x[ok], lo[ok], hi[ok], color=colour, alpha=0.3, linewidth=8, label=label)
            drawn = True
    for m in chosen:
        t = data[data["method"] == m]
        y = _floats(t["forecast"])
        if not np.isfinite(y).any():
            continue
        ax.plot(
            t["cutoff"].to_numpy(),
            y,
            marker="o",
            markersize=3,
            color=colours[m],
            linestyle=METHODS[m].linestyle if m in METHODS else "-",
            label=_method_text(m),
            gid=m,
        )
        drawn = True

    actuals = _floats(data["actual"])
    actuals = actuals[np.isfinite(actuals)]
    if actuals.size:
        if np.ptp(actuals) > 1e-9 * max(1.0, float(np.abs(actuals).max())):
            raise ValueError("plot_forecast_trend: the actual differs between rows of one period and group")
        actual = float(actuals[0])
        ax.axhline(actual, color="black", linestyle="--", linewidth=1.2, label="actual")
        ax.annotate(
            f"actual {_amount(actual)}",
            xy=(1.0, actual),
            xycoords=("axes fraction", "data"),
            xytext=(-3, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
        )
        drawn = True
    if not drawn:
        _no_data(ax, "no forecasts for this period")

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if "days_before_period_end" in data.columns:
        ends = data["cutoff"] + pd.to_timedelta(_floats(data["days_before_period_end"]), unit="D")
        ends = ends.dropna()
        if not ends.empty:
            end = float(mdates.date2num(ends.max()))
            top = ax.secondary_xaxis("top", functions=(lambda d: (end - d) / 7.0, lambda w: end - 7.0 * w))
            top.xaxis.set_major_locator(MaxNLocator(integer=True))
            top.set_xlabel("weeks before period end", fontsize=9)
    ax.yaxis.set_major_formatter(MoneyFormatter())
    if drawn and ax.get_ylim()[0] > 0:
        ax.set_ylim(bottom=0)
    group = str(groups.iloc[0, 0]) if "group" in groups.columns else ""
    group_value = groups["group_value"].iloc[0]
    title = f"{_text(periods[0])}: forecast vs actual"
    if group and group != "total":
        title += f" ({_text(group)} {_text(group_value)})"
    ax.set(xlabel="cutoff date (when the forecast was made)", ylabel="bookings (amount)", title=title)
    _legend_outside(ax, title="forecast")
    return ax


def _lines_by_horizon(
    ax: Axes, table: pd.DataFrame, value: str, what: str, methods: Sequence[str] | str | None = None
) -> int:
    """One line per method of `value` by ``weeks_before_end``, time flowing toward the period end.

    `methods` as `plot_forecast_trend`'s; the default reads the table itself as the leaderboard (its ``trust``
    column and its ranking). With ``{value}_low`` / ``{value}_high`` columns, each line gets its interval, shaded.
    """
    _require(table, ("method", "weeks_before_end", value), what)
    data = table.assign(method=table["method"].astype(str))
    if data.duplicated(["method", "weeks_before_end"]).any():
        raise ValueError(f"{what} expects one row per method and weeks_before_end (aggregate over groups first)")
    present = _method_order(data["method"])
    chosen = _chosen_methods(present, methods, what, board=data)
    colours = _method_colours(present)
    low, high = f"{value}_low", f"{value}_high"
    drawn = 0
    for m in chosen:
        t = data[data["method"] == m].sort_values("weeks_before_end")
        y = _floats(t[value])
        if not np.isfinite(y).any():
            continue  # e.g. coverage of a method without quantiles
        ax.plot(
            _floats(t["weeks_before_end"]),
            y,
            marker="o",
            markersize=3,
            color=colours[m],
            linestyle=METHODS[m].linestyle if m in METHODS else "-",
            label=_method_text(m),
            gid=m,
        )
        if {low, high} <= set(t.columns):
            lo, hi = _floats(t[low]), _floats(t[high])
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(
                    _floats(t["weeks_before_end"]), lo, hi, where=ok, color=colours[m], alpha=0.1, linewidth=0
                )
        drawn += 1
    if not drawn:
        _no_data(ax)
    ax.xaxis.set_inverted(True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("weeks before period end")
    return drawn


_METRIC_LABELS = {
    "wape": ("WAPE: absolute error, % of actual", "Forecast error (WAPE) by weeks before period end"),
    "bias": ("bias: (forecast − actual) / actual", "Forecast bias by weeks before period end"),
    "coverage": ("actuals inside the P10–P90 range (%)", "Interval coverage by weeks before period end"),
    "hit_rate": ("hit rate: forecasts within tolerance of actual", "Hit rate by weeks before period end"),
}


def plot_leaderboard(
    board: pd.DataFrame, metric: str = "wape", ax: Axes | None = None, methods: Sequence[str] | str | None = None
) -> Axes:
    """One accuracy metric of each method by horizon, time flowing left to right toward the period end.

    Parameters
    ----------
    board : DataFrame
        One row per ``method`` and ``weeks_before_end`` (int), with metric columns as fractions (e.g.
        ``wape``, ``bias``, ``coverage``).
    metric : str
        Column to draw, in its units (`salesforecast.metrics.METRICS`: most are percentages; MASE a ratio, pinball
        and Winkler amounts). ``"bias"`` adds a zero line (positive = over-forecast), ``"coverage"`` the nominal
        80% of a P10-P90 range. With ``{metric}_low`` / ``{metric}_high`` columns (``leaderboard(..., ci=0.9)``),
        each line's interval is shaded.
    ax : Axes, optional
    methods : sequence of str or "all", optional
        Methods to draw (``"all"``: every one). None: at most four, the trusted ones
        `salesforecast.forecast.featured_methods` picks from the board (its ``trust`` column and ranking).

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (9, 4.5))
    _lines_by_horizon(ax, board, metric, f"plot_leaderboard(metric={metric!r})", methods)
    info = METRICS.get(metric)
    percent = info is None or info.units == "percent"
    name = _text(info.label if info is not None else metric)
    ylabel, title = _METRIC_LABELS.get(
        metric, (f"{name} (%)" if percent else name, f"{name} by weeks before period end")
    )
    if not percent:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.3g}"))
    if metric == "bias":
        ax.axhline(0.0, color="black", linewidth=1, label="no bias (above: over-forecast)")
    elif metric == "coverage":
        ax.axhline(0.8, color="black", linestyle="--", linewidth=1, label="nominal 80%")
    elif metric == "wape" and ax.get_ylim()[0] > 0:
        ax.set_ylim(bottom=0)
    ax.set(ylabel=ylabel, title=title)
    _legend_outside(ax, title="method")
    return ax


def plot_interval_coverage(
    table: pd.DataFrame, nominal: float = 0.8, ax: Axes | None = None, methods: Sequence[str] | str | None = None
) -> Axes:
    """Share of actuals inside each method's interval by horizon, against the nominal level.

    Parameters
    ----------
    table : DataFrame
        Columns ``method``, ``weeks_before_end`` (int), ``coverage`` (fraction); one row per method and horizon.
    nominal : float
        Nominal coverage of the interval (0.8 for P10-P90); the band nominal ± 10 points is shaded as acceptable.
    ax : Axes, optional
    methods : sequence of str or "all", optional
        As `plot_leaderboard`'s: by default at most four methods.

    Returns
    -------
    Axes
    """
    if not 0.0 < nominal < 1.0:
        raise ValueError(f"nominal must be in (0, 1), got {nominal}")
    ax = _axes(ax, (9, 4.5))
    _lines_by_horizon(ax, table, "coverage", "plot_interval_coverage", methods)
    ax.axhline(nominal, color="black", linestyle="--", linewidth=1, label=f"nominal {nominal:.0%}")
    lo, hi = max(0.0, nominal - 0.1), min(1.0, nominal + 0.1)
    ax.axhspan(lo, hi, color=_GREEN, alpha=0.12, linewidth=0, zorder=0, label=f"acceptable ({lo:.0%}–{hi:.0%})")
    ax.set_ylim(-0.02, 1.02)
    ax.set(ylabel="actuals inside the interval (%)", title=f"Interval coverage (nominal {nominal:.0%})")
    _legend_outside(ax, title="method")
    return ax


def _ratio_band(ratio: float) -> str:
    if np.isnan(ratio):
        return "no data"
    if _GOOD_BAND[0] <= ratio <= _GOOD_BAND[1]:
        return "good"
    if _WATCH_BAND[0] <= ratio <= _WATCH_BAND[1]:
        return "watch"
    return "off"


_BAND_COLOURS = {"good": _GREEN, "watch": _ORANGE, "off": _RED, "no data": _GREY}


def plot_rep_bias(
    table: pd.DataFrame, ax: Axes | None = None, top: int | None = None, rollup: pd.DataFrame | None = None
) -> Axes:
    """Each rep's call ratio, their call as a share of what they booked (horizontal bars, sorted), over bands.

    Bands: 85-115% good (green), 70-85% and 115-130% watch (orange), outside off (red). Bars take the colour
    of their band; a missing ratio is a grey "no data" label. Ratios above 300% are drawn to the edge.

    With more than `SHOW_ALL` reps and a `top`, the chart holds at any number of reps: it draws the `rollup` rows
    (e.g. one per team, hatched, above a line) and the `top` reps furthest from on target (200% as far as 50%),
    and its title says of how many.

    Parameters
    ----------
    table : DataFrame
        Columns ``owner`` and ``ratio`` (the call ratio, call / booked: 1.0 = on target, NaN when unknown); optionally
        ``team`` (shown after the owner's name).
    ax : Axes, optional
    top : int, optional
        Draw only the `top` reps furthest from on target when there are more than `SHOW_ALL` (default: every rep).
    rollup : DataFrame, optional
        Columns ``name`` and ``ratio``: roll-ups drawn above the reps when they are cut to `top` (e.g. the teams
        and the company).

    Returns
    -------
    Axes
    """
    _require(table, ("owner", "ratio"), "plot_rep_bias")
    data = table.assign(_ratio=_floats(table["ratio"]))
    n_reps = len(data)
    cut = top is not None and n_reps > max(top, SHOW_ALL)
    if cut:
        far = distance_from_target(data["_ratio"].to_numpy())
        data = data.iloc[np.argsort(-far, kind="stable")[:top]]
    data = data.sort_values("_ratio", kind="stable", na_position="last")
    ratios = data["_ratio"].to_numpy()
    labels = [_text(o) for o in data["owner"]]
    if "team" in data.columns:
        labels = [f"{o} ({_text(t)})" if pd.notna(t) else o for o, t in zip(labels, data["team"], strict=True)]
    n_rolled = 0
    if cut and rollup is not None and not rollup.empty:
        _require(rollup, ("name", "ratio"), "plot_rep_bias rollup")
        n_rolled = len(rollup)
        labels = [_text(n) for n in rollup["name"]] + labels
        ratios = np.concatenate([_floats(rollup["ratio"]), ratios])
    ax = _axes(ax, (9, max(3.0, 0.32 * len(labels) + 1.4)))

    finite = ratios[np.isfinite(ratios)]
    xmax = min(max(1.45, float(finite.max()) if finite.size else 0.0) * 1.12, _RATIO_AXIS_CAP)
    (good_lo, good_hi), (watch_lo, watch_hi) = _GOOD_BAND, _WATCH_BAND
    spans = (
        (0.0, watch_lo, _RED),
        (watch_lo, good_lo, _ORANGE),
        (good_lo, good_hi, _GREEN),
        (good_hi, watch_hi, _ORANGE),
        (watch_hi, xmax, _RED),
    )
    for left, right, colour in spans:
        ax.axvspan(left, right, color=colour, alpha=0.1, linewidth=0, zorder=0)

    bands = [_ratio_band(r) for r in ratios]
    widths = np.where(np.isnan(ratios), 0.0, np.minimum(ratios, xmax))
    y = np.arange(len(labels))
    bars = ax.barh(y, widths, height=0.7, color=[_BAND_COLOURS[b] for b in bands], zorder=2)
    for bar in bars[:n_rolled]:  # roll-ups: hatched, above a line
        bar.set_hatch("//")
        bar.set_edgecolor("white")
    if n_rolled:
        ax.axhline(n_rolled - 0.5, color="#444444", linewidth=1, zorder=3)
    for yi, r, w in zip(y, ratios, widths, strict=True):
        if np.isnan(r):
            ax.text(0.0, yi, "  no data", va="center", fontsize=8, color="#555555", zorder=3)
        elif r > xmax:
            text = "no actual " if np.isinf(r) else f"{r:.0%} "
            ax.text(w, yi, text, va="center", ha="right", fontsize=8, color="white", fontweight="bold", zorder=3)
        else:
            ax.text(w, yi, f" {r:.0%}", va="center", fontsize=8, zorder=3)
    if not labels:
        _no_data(ax, "no reps")
    on_target = ax.axvline(1.0, color="black", linewidth=1, zorder=2, label="on target (100%)")

    ax.set_yticks(y, labels)
    ax.set_ylim(max(len(labels), 1) - 0.5, -0.5)  # lowest ratio at the top
    ax.set_xlim(0.0, xmax)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    handles = [
        Patch(color=_GREEN, label="good: 85–115%"),
        Patch(color=_ORANGE, label="watch: 70–85% or 115–130%"),
        Patch(color=_RED, label="off: under 70% or over 130%"),
    ]
    if "no data" in bands:
        handles.append(Patch(color=_GREY, label="no data"))
    if n_rolled:
        handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="//", label="roll-up (above the line)"))
    handles.append(on_target)
    # the rep's call over what they booked is the call ratio (100% = on target), not the signed "bias" of the methods
    ratio = column_label("call_ratio")
    title = "How each rep's calls compare with what they booked"
    if cut:
        title = f"the {len(data)} of {n_reps} reps furthest from on target"
        title = f"Call ratios: {'the roll-ups, and ' if n_rolled else ''}{title}"
    ax.set(xlabel=f"{ratio}, 100% = on target", title=title)
    _legend_outside(ax, handles=handles, title="band")
    return ax


def plot_bookings_distribution(
    samples: Sequence[float] | np.ndarray,
    ax: Axes | None = None,
    commit: float | None = None,
    best_case: float | None = None,
    actual: float | None = None,
    won_to_date: float | None = None,
    forecasts: Mapping[str, float] | None = None,
    title: str | None = None,
    finished: bool | None = None,
) -> Axes:
    """Histogram of simulated period bookings with its P10 / P50 / P90 and the reference amounts.

    A finished period has nothing left to simulate: (nearly) every draw is the same amount, P10 = P50 = P90. The
    chart then shows the outcome against the forecasts instead (`plot_outcome`): one bar per forecast of
    `forecasts` (else per submitted call), each labelled with its amount and its error against the outcome, and the
    outcome as a line.

    Parameters
    ----------
    samples : array-like, 1-D
        Simulated bookings of one period (e.g. Monte Carlo draws); NaN values are dropped.
    ax : Axes, optional
    commit, best_case, actual, won_to_date : float, optional
        Submitted commit, submitted best case, the actual bookings and the amount closed-won to date; each is
        drawn as a vertical line labelled with its value when given (None or NaN: not drawn).
    forecasts : mapping of method name to amount, optional
        For a finished period: the forecasts to set against the outcome, all made at one time (e.g. six weeks
        before the end: `salesforecast.forecast.forecasts_at`); a name of `salesforecast.forecast.METHODS` is
        shown under its label and colour. Without them, the submitted calls `commit` and `best_case` are shown.
    title : str, optional
        The chart's title (default "Simulated bookings", or "The outcome against the forecasts").
    finished : bool, optional
        Whether the period has ended (its outcome is `actual`, else the simulations' median). None: when the
        simulations' P10 and P90 are equal (a decided period).

    Returns
    -------
    Axes
    """
    values = np.asarray(samples, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {values.shape}")
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("samples holds no finite value")
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    if finished is None:
        finished = bool(p90 - p10 <= 1e-9 * max(1.0, abs(p50)))  # decided: the simulations agree
    if finished:
        outcome = float(actual) if actual is not None and np.isfinite(float(actual)) else float(p50)
        calls = {"submitted_commit": commit, "submitted_best_case": best_case}  # as of now: only without forecasts
        shown = dict(forecasts) if forecasts else {k: v for k, v in calls.items() if v is not None}
        return plot_outcome(outcome, shown, ax=ax, title=title)
    ax = _axes(ax, (9, 4.5))
    edges = np.histogram_bin_edges(values, bins="auto")
    if len(edges) > 81:
        edges = np.histogram_bin_edges(values, bins=80)
    ax.hist(
        values,
        bins=edges,
        weights=np.full(values.size, 1.0 / values.size),
        color=METHODS["monte_carlo"].colour,  # the simulations are the Monte Carlo method's
        alpha=0.35,
        label=f"{values.size:,} simulations",
    )
    for name, v, style in (("P10", p10, ":"), ("P50", p50, "-"), ("P90", p90, ":")):
        ax.axvline(
            v, color=METHODS["monte_carlo"].colour, linestyle=style, linewidth=1.6, label=f"{name}: {_amount(v)}"
        )
    references = (
        ("closed-won to date", won_to_date, _GREEN, "-"),
        ("submitted commit", commit, METHODS["submitted_commit"].colour, "--"),
        ("best case", best_case, METHODS["submitted_best_case"].colour, "--"),
        ("actual", actual, "black", "-"),
    )
    for name, v, colour, style in references:
        if v is None or not np.isfinite(float(v)):
            continue
        ax.axvline(float(v), color=colour, linestyle=style, linewidth=2, label=f"{name}: {_amount(float(v))}")
    ax.xaxis.set_major_formatter(MoneyFormatter())
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(xlabel="period bookings (amount)", ylabel="share of simulations", title=title or "Simulated bookings")
    _legend_outside(ax)
    return ax


def plot_outcome(
    outcome: float, forecasts: Mapping[str, float], ax: Axes | None = None, title: str | None = None
) -> Axes:
    """A finished period: the outcome against the forecasts, one labelled bar each.

    Parameters
    ----------
    outcome : float
        The period's bookings (drawn as a black line across the bars).
    forecasts : mapping of name to amount
        Forecasts and calls, in the order given; a `salesforecast.forecast.METHODS` name is shown under its label
        and colour. Missing values (None, NaN) are left out.
    ax : Axes, optional
    title : str, optional

    Returns
    -------
    Axes
    """
    if not np.isfinite(outcome):
        raise ValueError(f"plot_outcome: the outcome must be a number, got {outcome!r}")
    items = [(str(k), float(v)) for k, v in forecasts.items() if v is not None and np.isfinite(float(v))]
    ax = _axes(ax, (9, max(2.6, 0.45 * len(items) + 1.6)))
    colours = _method_colours([k for k, _ in items])
    y = np.arange(len(items))
    ax.barh(y, [v for _, v in items], height=0.6, color=[colours[k] for k, _ in items], zorder=2)
    for yi, (_, v) in zip(y, items, strict=True):
        error = f"{(v - outcome) / abs(outcome):+.0%} vs outcome" if outcome else ""
        ax.text(
            v,
            yi,
            f" {_amount(v)}  {error}",
            va="center",
            fontsize=9,
            zorder=4,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
        )
    ax.axvline(outcome, color="black", linewidth=2, zorder=3, label=f"outcome: {_amount(outcome)}")
    if not items:
        _no_data(ax, "no forecast to compare")
    ax.set_yticks(y, [_method_text(k) for k, _ in items])
    ax.set_ylim(max(len(items), 1) - 0.5, -0.5)
    top = max([outcome, *(v for _, v in items)])
    ax.set_xlim(0, top * 1.35 if top > 0 else 1.0)
    ax.xaxis.set_major_formatter(MoneyFormatter())
    ax.set(xlabel="period bookings (amount)", title=title or "The outcome against the forecasts")
    _legend_outside(ax)
    return ax


def plot_method_intervals(
    board: pd.DataFrame,
    metric: str = "wape",
    ax: Axes | None = None,
    methods: Sequence[str] | str | None = None,
) -> Axes:
    """The leaderboard with an interval for each error: a dot and whisker per method, grouped by horizon.

    Each horizon's verdict is written beside its group, in `salesforecast.forecast.recommend`'s words: the best
    method, or "a tie within the intervals" when the data cannot tell the best from the runner-up (then no winner
    is named).

    Parameters
    ----------
    board : DataFrame
        `salesforecast.forecast.leaderboard` by ``"band"`` (or ``"method"``) with ``ci=``: columns ``method``,
        `metric`, ``{metric}_low``, ``{metric}_high``; optionally ``horizon`` and ``trust``.
    metric : str
    ax : Axes, optional
    methods : sequence of str or "all", optional
        As `plot_leaderboard`'s: by default the four methods `salesforecast.forecast.featured_methods` picks.

    Returns
    -------
    Axes
    """
    low, high = f"{metric}_low", f"{metric}_high"
    _require(board, ("method", metric, low, high), "plot_method_intervals")
    horizon = "horizon" if "horizon" in board.columns else None
    data = board.assign(method=board["method"].astype(str))
    present = _method_order(data["method"])
    chosen = _chosen_methods(present, methods, "plot_method_intervals", board=data)
    colours = _method_colours(present)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report says elsewhere how many periods the ranking rests on
        verdicts = recommend(data, metric=metric)
    groups = list(data.groupby(horizon, sort=False, observed=True)) if horizon else [("", data)]
    rows = sum(int(part["method"].isin(chosen).sum()) for _, part in groups)
    ax = _axes(ax, (9, max(3.0, 0.32 * rows + 0.55 * len(groups) + 1.0)))
    fmt = METRICS[metric].format if metric in METRICS else (lambda v: f"{v:,.3g}")
    y, ticks, labels = 0.0, [], []
    for h, part in groups:
        part = part[part["method"].isin(chosen)].sort_values(metric, key=lambda v: METRICS[metric].rank_key(v))
        if part.empty:
            continue
        if horizon:
            verdict = verdicts.loc[verdicts[horizon] == h] if horizon in verdicts.columns else verdicts.iloc[:0]
            said = ""
            if len(verdict):
                v = verdict.iloc[0]
                said = "a tie within the intervals" if v["tie"] else f"best: {_method_text(v['best'])}"
            ax.text(
                0.0,
                y - 0.55,
                f"{_text(h)}: {said}",
                transform=ax.get_yaxis_transform(),
                fontsize=10,
                fontweight="bold",
                va="bottom",
            )
            y += 0.5
        for _, r in part.iterrows():
            point, lo, hi = float(r[metric]), float(r[low]), float(r[high])
            err = np.array([[max(point - lo, 0.0)], [max(hi - point, 0.0)]]) if np.isfinite([lo, hi]).all() else None
            ax.errorbar(
                point, y, xerr=err, fmt="o", color=colours[r["method"]], capsize=4, markersize=6, gid=r["method"]
            )
            ax.text(
                hi if np.isfinite(hi) else point, y, f"  {fmt(point)} ({fmt(lo)}–{fmt(hi)})", va="center", fontsize=9
            )
            ticks.append(y)
            labels.append(_method_text(r["method"]))
            y += 1.0
        y += 0.6
    ax.set_yticks(ticks, labels)
    ax.set_ylim(y - 0.5, -1.2)
    left, right = ax.get_xlim()
    ax.set_xlim(0.0 if metric in METRICS and METRICS[metric].direction == "lower" else left, right * 1.3)
    if metric in METRICS and METRICS[metric].units == "percent":
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    level = board.attrs.get("ci")
    name = METRICS[metric].label if metric in METRICS else metric
    ax.set(
        xlabel=f"{_text(name)} with its {level:.0%} interval (bootstrap over periods)" if level else _text(name),
        title=f"{_text(name)} of each method, with the uncertainty of the periods replayed",
    )
    return ax
