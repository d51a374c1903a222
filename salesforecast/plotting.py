"""Every chart of the suite. matplotlib is imported here and nowhere else in the package.

Each function takes the table another module computed, draws on ``ax`` (a new figure when None), sets its
labels with ``ax.set(...)`` and returns the `~matplotlib.axes.Axes`; none calls ``plt.show()``. Text that
comes from a CRM (stage, rep, team names) goes through `_text`, which escapes ``$`` so that matplotlib never
reads a name as mathtext.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, PercentFormatter

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
]

_BLUE, _GREY, _GREEN, _RED, _ORANGE = "#2f6690", "#9aa5b1", "#3a7d44", "#b23a48", "#e09f3e"


def _text(value: object) -> str:
    """A CRM name as plain chart text: ``$`` escaped so it is never parsed as mathtext."""
    return str(value).replace("$", r"\$")


def _axes(ax: Axes | None, size: tuple[float, float] = (8, 4.5)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def _money(x: float, _pos: int | None = None) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:,.1f}{suffix}"
    return f"{x:,.0f}"


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
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    ax.set(xlabel="deals", title="Funnel: deals entering each stage and moving on")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_transition_heatmap(matrix: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Stage-to-stage transition probabilities: row = from (open stages), column = to (all stages).

    Parameters
    ----------
    matrix : DataFrame
        ``StageConversionModel.transition_matrix_``; rows sum to 1.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (9, 6))
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(1e-9, float(np.nanmax(values))), aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if v >= 0.005:
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    ax.set_xticks(range(values.shape[1]), [_text(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [_text(r) for r in matrix.index])
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
    ax.errorbar(x, learned, yerr=[lower, upper], fmt="o", color=_BLUE, capsize=3, label="learned (with interval)")
    ax.plot(x, summary["crm_probability"].to_numpy(dtype=float), "s", color=_ORANGE, label="CRM default")
    ax.set_xticks(x, [_text(s) for s in summary["stage"]], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(ylim=(0, 1), ylabel="probability of winning", title="Win probability by stage: learned vs CRM default")
    ax.legend(fontsize=8)
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
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_segment_win_probability(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Win probability by stage for each segment (one line per segment).

    Parameters
    ----------
    table : DataFrame
        Segments as rows, open stages as columns (``StageConversionModel.segment_win_probability_``).
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    x = np.arange(table.shape[1])
    for segment, row in table.iterrows():
        ax.plot(x, row.to_numpy(dtype=float), marker="o", label=_text(segment))
    ax.set_xticks(x, [_text(s) for s in table.columns], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(ylim=(0, 1), ylabel="probability of winning", title="Win probability by stage and segment")
    ax.legend(fontsize=8, title="segment")
    return ax


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
    for (name, t), color in zip(tables.items(), (_BLUE, _ORANGE, _GREEN, _RED), strict=False):
        x = t["mean_predicted"].to_numpy(dtype=float)
        y = t["observed_rate"].to_numpy(dtype=float)
        err = np.clip([y - t["ci_lower"].to_numpy(dtype=float), t["ci_upper"].to_numpy(dtype=float) - y], 0, None)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=2, color=color, label=_text(name))
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="predicted probability",
        ylabel="observed rate",
        title="Reliability: predicted against observed",
    )
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_waterfall(waterfall: pd.DataFrame, value: str = "amount", ax: Axes | None = None) -> Axes:
    """Pipeline movement as a waterfall: opening level, inflows up, outflows down, closing level.

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
    for v, d in zip(values, direction, strict=True):
        if d in ("start", "end"):
            bottoms.append(0.0)
            heights.append(v)
            colors.append(_BLUE)
            level = v
        elif d == "in":
            bottoms.append(level)
            heights.append(v)
            colors.append(_GREEN)
            level += v
        else:
            level -= v
            bottoms.append(level)
            heights.append(v)
            colors.append(_RED)
    x = np.arange(len(steps))
    ax.bar(x, heights, bottom=bottoms, color=colors)
    fmt = _money if value == "amount" else (lambda v, _p=None: f"{v:,.0f}")
    for xi, b, h in zip(x, bottoms, heights, strict=True):
        ax.text(xi, b + h, fmt(h), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [_text(s) for s in steps], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set(ylabel=value, title=f"Pipeline movement ({value})")
    return ax


def plot_adherence_by(table: pd.DataFrame, columns: Mapping[str, str], ax: Axes | None = None) -> Axes:
    """Share of deals with each deviation per rep or team (grouped horizontal bars).

    Parameters
    ----------
    table : DataFrame
        `salesforecast.adherence.adherence_by`: one row per group (its index or first column names it).
    columns : mapping
        Share columns to draw and their legend labels, e.g. ``{"share_skipped": "skipped a stage"}``.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    groups = [_text(g) for g in table.index]
    ax = _axes(ax, (8, max(3.0, 0.35 * len(groups) * max(1, len(columns)) / 2 + 1.5)))
    y = np.arange(len(groups))
    height = 0.8 / max(1, len(columns))
    for k, ((col, label), color) in enumerate(
        zip(columns.items(), (_BLUE, _ORANGE, _RED, _GREEN, _GREY), strict=False)
    ):
        ax.barh(y + k * height, table[col].to_numpy(dtype=float), height=height, color=color, label=_text(label))
    ax.set_yticks(y + height * (len(columns) - 1) / 2, groups)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(xlabel="share of deals", title="Process deviations by group")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_table_counts(counts: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Rows read per table, split into accepted and quarantined (stacked horizontal bars, log scale).

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
        ax.text(a + q, yi, f"  {a + q:,.0f} read" + (f", {q:,.0f} quarantined" if q else ""), va="center", fontsize=8)
    ax.set_yticks(y, [_text(t) for t in counts["table"]])
    ax.invert_yaxis()
    if (accepted + quarantined).max(initial=0) > 0:
        ax.set_xscale("symlog", linthresh=1)
    ax.set(xlabel="rows (log scale)", title="Rows read per table: accepted and quarantined")
    ax.legend(fontsize=8, loc="lower right")
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
    for (name, g), color in zip(gains.items(), (_BLUE, _ORANGE, _GREEN, _RED), strict=False):
        ax.plot(g["fraction_contacted"], g["fraction_positives"], color=color, label=_text(name))
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="share of leads contacted (best scores first)",
        ylabel="share of conversions reached",
        title="Cumulative gains",
    )
    ax.legend(fontsize=8, loc="lower right")
    return ax
