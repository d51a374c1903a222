"""What a reader sees for each name of the code: one registry of column, value and parameter labels and units.

The forecast methods carry their own label and colour (`salesforecast.forecast.METHODS`) and the accuracy metrics
theirs (`salesforecast.metrics.METRICS`); this module holds the rest (the columns of the package's tables, code
values such as ``crm_default``, the notebooks' parameters) and answers, for any name, the label a reader sees
(`label`) and how its values are written (`kind_of`). `salesforecast.reports.format_table` reads it, so a table
shows ``forecast P50 (EUR)`` for ``p50``, ``submitted commit`` for ``submitted_commit`` and ``+5.7 pp`` for a
difference of two rates without a notebook restating it.

Kinds of values:

- ``amount``: money, with thousands separators and no cents from 1,000 (``1,234``, ``12.50``); the header names the
  currency when the process map sets one (``forecast (EUR)``).
- ``count``: a whole number (``242``).
- ``percent``: a number already in percent (``12.5`` -> ``12.5%``).
- ``fraction``: a share or probability in [0, 1] (``0.125`` -> ``12.5%``).
- ``signed_fraction``: an over- (+) or under-forecast (-) as a share of the actual (``-0.139`` -> ``-13.9%``).
- ``points``: a difference of two rates, in percentage points (``-0.13`` -> ``-13.0 pp``).
- ``days``: whole days (``6.9`` -> ``7``); ``signed_days`` a difference of days (``+32``).
- ``signed_amount``: a change of an amount, with its sign (``+12,000``, ``-3,500``, ``0``).
- ``shortfall``: an amount still missing, ``met`` when there is none (``-21,340`` -> ``met``).
- ``multiple``: a coverage, times the amount it covers (``0.47`` -> ``0.47×``).
- ``bool``: ``yes`` / ``no``.
- ``ratio``, ``number``: a plain number with the table's precision (``0.82``); a ``ratio`` is a known score.
- ``date``: ``2024-06-30`` (with the time of day when there is one).
- ``code``: a name of the code shown under its label (``stage_conversion`` -> ``stage conversion``).
- ``text``: as given (escaped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from salesforecast.models.activity_features import FEATURES, feature_label  # noqa: F401  (re-exported)

__all__ = [
    "COLUMNS",
    "KINDS",
    "PARAMETERS",
    "VALUES",
    "Column",
    "Figure",
    "code_names",
    "format_amount",
    "format_value",
    "kind_of",
    "label",
    "parameter_label",
    "value_label",
]

Kind = Literal[
    "amount",
    "signed_amount",
    "count",
    "percent",
    "fraction",
    "signed_fraction",
    "points",
    "days",
    "signed_days",
    "shortfall",
    "multiple",
    "bool",
    "ratio",
    "number",
    "date",
    "code",
    "text",
]

#: Every kind of value `format_value` writes.
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Column:
    """A column of the package's tables as a reader sees it.

    Attributes
    ----------
    label : str
        The header (without the currency, which `label` adds to amounts).
    kind : str
        How its values are written: one of `KINDS`.
    """

    label: str
    kind: Kind = "text"


#: The columns of the package's report tables: header and kind of values. A column not here is shown with spaces
#: for underscores (and ``%`` for a ``pct_`` prefix), its values by dtype.
COLUMNS: dict[str, Column] = {
    # money
    "amount": Column("amount", "amount"),
    "actual": Column("actual", "amount"),
    "forecast": Column("forecast", "amount"),
    "p10": Column("P10", "amount"),
    "p50": Column("P50", "amount"),
    "p90": Column("P90", "amount"),
    "run_rate": Column("opening call", "amount"),
    "late_submitted": Column("late call", "amount"),
    "quota": Column("quota", "amount"),
    "closed_won": Column("closed won", "amount"),
    "open_pipeline": Column("open pipeline", "amount"),
    "pipeline": Column("pipeline", "amount"),
    "weighted_pipeline": Column("weighted pipeline", "amount"),
    "remaining_quota": Column("left to quota", "shortfall"),
    "undated_pipeline": Column("pipeline without close date", "amount"),
    "undated_deals": Column("deals without close date", "count"),
    "won_deals": Column("won deals", "count"),
    "open_deals": Column("open deals", "count"),
    "closed_deals": Column("closed deals", "count"),
    "coverage": Column("coverage", "multiple"),
    "weighted_coverage": Column("weighted coverage", "multiple"),
    "mean_pushes": Column("mean pushes", "ratio"),
    "median_cycle_days": Column("median cycle (days)", "days"),
    "share_pushed_3plus": Column("share pushed 3+ times", "fraction"),
    "skipped_stages": Column("stages skipped", "count"),
    "stalled": Column("stalled", "bool"),
    "gap": Column("gap to quota", "amount"),
    "amount_at_risk": Column("amount at risk", "amount"),
    "amount_this_period": Column("amount closing in the period", "amount"),
    "commit": Column("commit", "amount"),
    "best_case": Column("best case", "amount"),
    "avg_deal_size": Column("average deal", "amount"),
    "pinball": Column("pinball loss", "amount"),
    # the forecast call (salesforecast.call): our Monte Carlo forecast beside the reps' calls, and a week's changes
    "forecast_p10": Column("our P10", "amount"),
    "forecast_p50": Column("our forecast P50", "amount"),
    "forecast_p90": Column("our P90", "amount"),
    "projected_attainment": Column("projected attainment (P50 / quota)", "fraction"),
    "commit_vs_range": Column("commit vs our range", "text"),
    "commit_change": Column("commit, change in a week", "signed_amount"),
    "forecast_change": Column("our P50, change in a week", "signed_amount"),
    "pipeline_change": Column("open pipeline, change in a week", "signed_amount"),
    "winkler": Column("Winkler score", "amount"),
    # counts
    "n": Column("scored", "count"),
    "rows": Column("rows", "count"),
    "read": Column("read", "count"),
    "accepted": Column("accepted", "count"),
    "quarantined": Column("quarantined", "count"),
    "deals": Column("deals", "count"),
    "leads": Column("leads", "count"),
    "conversions": Column("conversions", "count"),
    "entered": Column("entered", "count"),
    "converted": Column("converted", "count"),
    "periods": Column("periods", "count"),
    "submissions": Column("calls", "count"),
    "opportunities": Column("opportunities", "count"),
    "stage_history": Column("stage history", "count"),
    "with_value": Column("with value", "count"),
    "missing": Column("missing", "count"),
    "after_as_of": Column("after the report date", "count"),
    "in_map": Column("in map", "count"),
    "not_in_map": Column("not in map", "count"),
    "n_with": Column("deals with it", "count"),
    "n_without": Column("comparable deals", "count"),
    "n_deals": Column("deals", "count"),
    "reps": Column("reps", "count"),
    "n_open": Column("open deals", "count"),
    "n_won": Column("deals won", "count"),
    "close_date_pushes": Column("close date pushed", "count"),
    "row": Column("row", "count"),
    "deals_this_period": Column("deals closing in the period", "count"),
    "pushes_this_period": Column("pushes this period", "count"),
    # shares and probabilities
    "conversion_rate": Column("conversion rate", "fraction"),
    "observed_win_rate": Column("observed win rate", "fraction"),
    "crm_probability": Column("CRM probability", "fraction"),
    "win_probability": Column("learned win probability", "fraction"),
    "probability": Column("probability", "fraction"),
    "lower": Column("low (90% interval)", "fraction"),
    "upper": Column("high (90% interval)", "fraction"),
    "mean_predicted": Column("mean predicted", "fraction"),
    "observed_rate": Column("observed rate", "fraction"),
    "base_rate": Column("base rate", "fraction"),
    "share_of_leads": Column("share of leads", "fraction"),
    "share_of_conversions": Column("share of conversions", "fraction"),
    "win_rate": Column("win rate", "fraction"),
    "win_rate_with": Column("win rate with it", "fraction"),
    "win_rate_comparable": Column("win rate of comparable deals", "fraction"),
    "attainment": Column("attainment", "fraction"),
    "coverage_ratio": Column("coverage", "ratio"),
    "call_ratio": Column("call ratio (call / booked)", "fraction"),
    "late_ratio": Column("late call ratio", "fraction"),
    "wape_low": Column("WAPE low (90% interval)", "fraction"),
    "wape_high": Column("WAPE high (90% interval)", "fraction"),
    "tie": Column("tie", "bool"),
    # differences of rates: percentage points
    "difference": Column("learned - CRM", "points"),
    "win_rate_diff": Column("win rate difference", "points"),
    "win_rate_diff_low": Column("difference low (90% interval)", "points"),
    "win_rate_diff_high": Column("difference high (90% interval)", "points"),
    # errors: one meaning of bias, the signed over-/under-forecast
    "bias": Column("over/under-forecast", "signed_fraction"),
    # days
    "median_days": Column("median days", "days"),
    "p90_days": Column("P90 days", "days"),
    "days_in_stage": Column("days in stage", "days"),
    "age_days": Column("age (days)", "days"),
    "days_overdue": Column("days overdue", "days"),
    "stall_limit_days": Column("stall limit (days)", "days"),
    "median_cycle_diff": Column("median cycle difference (days)", "signed_days"),
    # dates
    "first": Column("first", "date"),
    "last": Column("last", "date"),
    "close_date": Column("close date", "date"),
    "created_at": Column("created", "date"),
    "close_date_at_start": Column("close date when the period began", "date"),
    # names of the code
    "method": Column("method", "code"),
    "best": Column("most accurate", "code"),
    "runner_up": Column("runner-up", "code"),
    "name": Column("name", "code"),
    "learned_from": Column("learned from", "code"),
    "kind": Column("kind", "code"),
    # other numbers
    "roc_auc": Column("ROC AUC", "ratio"),
    "pr_auc": Column("PR AUC", "ratio"),
    "brier": Column("Brier score", "ratio"),
    "log_loss": Column("log loss", "ratio"),
    "top_decile_lift": Column("top-decile lift", "ratio"),
    "alift": Column("area under lift", "ratio"),
    "ks": Column("KS", "ratio"),
    "reliability": Column("reliability", "ratio"),
    "importance": Column("importance", "ratio"),
    "importance_std": Column("importance (std)", "ratio"),
    "log_loss_increase": Column("log-loss increase", "ratio"),
    "mean_abs_effect": Column("mean effect on log-odds", "ratio"),
    "single_feature_auc": Column("AUC on its own", "ratio"),
    "reference": Column("reference value", "text"),
    "resolution": Column("resolution", "ratio"),
    "uncertainty": Column("uncertainty", "ratio"),
    "lead_id": Column("lead", "text"),
    "opportunity_id": Column("deal", "text"),
    "owner": Column("owner", "text"),
    "team": Column("team", "text"),
    "stage": Column("stage", "text"),
    "slip": Column("what moved", "text"),
    "other_flags": Column("also flagged", "text"),
    "list": Column("list", "text"),
    "rep": Column("rep", "text"),
    # what was done at each step (salesforecast.activities): exit criteria, activity gaps, first response
    "visits": Column("completed visits", "count"),
    "visits_met": Column("met the criteria", "count"),
    "share_met": Column("share met", "fraction"),
    "open_visits": Column("visits in progress", "count"),
    "criteria": Column("exit criteria", "text"),
    "deals_met": Column("deals that met them", "count"),
    "deals_not_met": Column("deals that did not", "count"),
    "win_rate_met": Column("win rate, met", "fraction"),
    "win_rate_not_met": Column("win rate, not met", "fraction"),
    "n_matched": Column("met, matched", "count"),
    "n_comparable": Column("comparable deals that did not", "count"),
    "deals_compared": Column("deals compared", "count"),
    "win_rate_matched": Column("win rate, met and matched", "fraction"),
    "ci_low": Column("difference low (90% interval)", "points"),
    "ci_high": Column("difference high (90% interval)", "points"),
    "cycle_days_diff": Column("cycle difference (days)", "signed_days"),
    "cycle_ci_low": Column("cycle difference low (90% interval)", "signed_days"),
    "cycle_ci_high": Column("cycle difference high (90% interval)", "signed_days"),
    "win_rate_interval": Column("90% interval", "text"),
    "cycle_interval": Column("90% interval (days)", "text"),
    "n_criteria": Column("criteria", "count"),
    "n_met": Column("criteria met", "count"),
    "met": Column("all criteria met", "bool"),
    "unmet": Column("criteria not met", "text"),
    "completed": Column("left the stage", "bool"),
    "entered_at": Column("entered", "date"),
    "left_at": Column("left", "date"),
    "amount_band": Column("amount band", "text"),
    "age_band": Column("age at entry", "text"),
    "activities": Column("activities", "count"),
    "last_activity_at": Column("last activity", "date"),
    "days_since_activity": Column("days since last activity", "days"),
    "over_limit": Column("no activity for too long", "bool"),
    "first_activity_at": Column("first activity", "date"),
    "hours_to_first_activity": Column("hours to first activity", "number"),
}

#: Values of the code a table may hold, under their labels (the methods' come from `forecast.METHODS`).
VALUES: dict[str, str] = {
    "crm_default": "CRM default probability",
    "learned": "learned from history",
    "history": "history",
    "pooled": "pooled over stages",
    "best_case": "best case",
    "most_likely": "most likely",
}

#: The notebooks' parameters as a reader sees them.
PARAMETERS: dict[str, str] = {
    "source": "data",
    "process": "process map",
    "as_of": "report date",
    "seed": "random seed",
    "team": "team",
    "owner": "owner",
    "segment": "segmented by",
    "holdout_months": "holdout (months)",
    "maturity_days": "lead maturity (days)",
    "estimator": "model",
    "top": "leads listed",
    "examples": "examples per reason",
    "history": "periods replayed",
    "frequency": "period",
    "n_sims": "simulations",
    "group": "grouped by",
    "min_history_days": "minimum history (days)",
    "period": "period",
}


def _methods() -> Mapping[str, Any]:
    from salesforecast.forecast import METHODS

    return METHODS


def _metrics() -> Mapping[str, Any]:
    from salesforecast.metrics import METRICS

    return METRICS


def kind_of(column: Any) -> str | None:
    """The kind of values of a column the registry knows (a metric in percent is a ``fraction``), else None.

    Examples
    --------
    >>> kind_of("p50"), kind_of("wape"), kind_of("bias"), kind_of("no_such_column")
    ('amount', 'fraction', 'signed_fraction', None)
    """
    name = str(column)
    if name in COLUMNS:
        return COLUMNS[name].kind
    metric = _metrics().get(name)
    if metric is not None:
        return {"percent": "fraction", "amount": "amount"}.get(metric.units, "ratio")
    return None


def label(name: Any, currency: str | None = None) -> str:
    """The label a reader sees for a column, method, metric or value name of the code (parameters: `parameter_label`).

    Parameters
    ----------
    name : object
        ``"p50"``, ``"stage_conversion"``, ``"wape"``, ``"crm_default"``...
    currency : str, optional
        An ISO 4217 code: an amount column's label names it (``P50 (EUR)``).

    Returns
    -------
    str
        The registry's label; else the name with spaces for underscores (``%`` for a ``pct_`` prefix).

    Examples
    --------
    >>> label("stage_conversion"), label("wape"), label("p50", "EUR"), label("pct_missing")
    ('stage conversion', 'WAPE', 'P50 (EUR)', '% missing')
    """
    text = str(name)
    if text in COLUMNS:
        shown = COLUMNS[text].label
    elif text in _methods():
        shown = _methods()[text].label
    elif text in _metrics():
        shown = _metrics()[text].label
    elif text in VALUES:
        shown = VALUES[text]
    else:
        shown = ("% " + text[4:] if text.startswith("pct_") else text).replace("_", " ")
    if currency and kind_of(text) in ("amount", "signed_amount"):
        shown = f"{shown} ({currency})"
    return shown


def parameter_label(name: Any) -> str:
    """A notebook parameter as a reader sees it (the report header's parameter box).

    Examples
    --------
    >>> parameter_label("holdout_months"), parameter_label("as_of"), parameter_label("new_one")
    ('holdout (months)', 'report date', 'new one')
    """
    text = str(name)
    return PARAMETERS.get(text, text.replace("_", " "))


#: The features the models derive from the activities (`salesforecast.models.activity_features`), in words.
def readable_features(table: Any) -> Any:
    """A table of model features (``feature``, ``source`` columns) with the derived features in words.

    An activity feature's ``source`` is the ``activities`` table it was read from; the data's own columns stay as
    they are.

    Examples
    --------
    >>> import pandas as pd
    >>> names = ["days_since_activity", "industry"]
    >>> t = pd.DataFrame({"feature": names, "source": names})
    >>> readable_features(t).values.tolist()
    [['days since the last activity', 'activities'], ['industry', 'industry']]
    """
    derived = table["feature"].map(lambda f: feature_label(f) != f)
    out = table.assign(feature=table["feature"].map(feature_label))
    if "source" in out.columns:
        out["source"] = out["source"].where(~derived.to_numpy(dtype=bool), "activities")
    return out


def value_label(value: Any) -> Any:
    """A cell of a ``code`` column: a method's, metric's, known value's or column's label, others as given.

    Examples
    --------
    >>> value_label("monte_carlo"), value_label("crm_default"), value_label("Acme")
    ('Monte Carlo', 'CRM default probability', 'Acme')
    """
    if isinstance(value, str):
        if value in _methods():
            return _methods()[value].label
        if value in VALUES:
            return VALUES[value]
        if value in _metrics():
            return _metrics()[value].label
        if value in COLUMNS:
            return COLUMNS[value].label
    return value


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_value(value: Any, kind: str, precision: int = 2) -> str:
    """One cell written for a reader; a missing value is ``–``.

    Parameters
    ----------
    value : object
    kind : str
        One of `KINDS` (see the module's docstring).
    precision : int, default 2
        Decimals of a ``number``.

    Returns
    -------
    str
        Not HTML-escaped.

    Examples
    --------
    >>> format_value(335975.0, "amount"), format_value(12.5, "amount"), format_value(242.0, "count")
    ('335,975', '12.50', '242')
    >>> format_value(-0.13, "points"), format_value(-0.139, "signed_fraction"), format_value(0.125, "fraction")
    ('-13.0 pp', '-13.9%', '12.5%')
    >>> format_value(6.9, "days"), format_value(True, "bool"), format_value(float("nan"), "amount")
    ('7', 'yes', '–')
    """
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if _missing(value):
        return "–"
    if kind == "bool":
        return "yes" if bool(value) else "no"
    if kind == "code":
        return str(value_label(value))
    if kind == "text":
        return str(value)
    if kind == "date":
        import pandas as pd

        from salesforecast._utils import when_text

        try:
            return when_text(pd.Timestamp(value))
        except (ValueError, TypeError):
            return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if kind == "amount":
        if abs(x) >= 1000 or float(x).is_integer():
            return f"{round(x):,}"
        return f"{x:,.2f}"
    if kind == "signed_amount":
        return f"{round(x):+,}" if round(x) else "0"
    if kind in ("count", "days"):
        return f"{round(x):,}"
    if kind == "signed_days":
        return f"{round(x):+,}" if round(x) else "0"
    if kind == "shortfall":
        return f"{round(x):,}" if x > 0 else "met"
    if kind == "multiple":
        return f"{x:,.2f}×"
    if kind == "percent":
        return f"{x:,.1f}%"
    if kind == "fraction":
        return f"{x:,.1%}"
    if kind == "signed_fraction":
        return f"{x:+,.1%}" if round(x * 1000) else "0.0%"
    if kind == "points":
        return f"{x * 100:+,.1f} pp" if round(x * 1000) else "0.0 pp"
    return f"{x:,.{precision}f}"


def format_amount(value: Any, currency: str | None = None, short: bool = False) -> str:
    """An amount in a sentence or a headline figure, with its currency: ``€1,234,568``, ``1.41M CHF``.

    Parameters
    ----------
    value : float
    currency : str, optional
        ISO 4217 code (the process map's ``currency``): a symbol before the number for the codes of
        `salesforecast.process.CURRENCY_SYMBOLS`, else the code after it; none, the number alone.
    short : bool, default False
        Thousands and millions as ``k`` and ``M`` with three significant digits (``1.41M``, ``956k``, ``12.5k``).

    Returns
    -------
    str
        ``–`` for a missing value.

    Examples
    --------
    >>> format_amount(1234567.8, "EUR"), format_amount(1410000, "EUR", short=True), format_amount(956000, short=True)
    ('€1,234,568', '€1.41M', '956k')
    >>> format_amount(-21340, "CHF"), format_amount(12.5, "USD"), format_amount(None, "USD")
    ('-21,340 CHF', '$12.50', '–')
    """
    from salesforecast.process import CURRENCY_SYMBOLS

    if _missing(value):
        return "–"
    x = float(value)
    if short and abs(x) >= 1000:
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(x) >= size * 0.9995:  # 999,999 -> 1.00M, not 1000k
                number = f"{x / size:.3g}{suffix}"
                break
    else:
        number = format_value(x, "amount")
    if not currency:
        return number
    symbol = CURRENCY_SYMBOLS.get(currency)
    if symbol is None:
        return f"{number} {currency}"
    return f"-{symbol}{number[1:]}" if number.startswith("-") else f"{symbol}{number}"


def code_names() -> set[str]:
    """Every snake_case name of the code this registry labels: methods, metrics, columns, values, parameters.

    A rendered page shows none of them (tests read it to check).

    Examples
    --------
    >>> {"stage_conversion", "holdout_months", "crm_default"} <= code_names()
    True
    """
    names = {*_methods(), *_metrics(), *COLUMNS, *VALUES, *PARAMETERS}
    return {n for n in names if "_" in n}


@dataclass(frozen=True)
class Figure:
    """One figure of a report's headline (`salesforecast.reports.headline`; `reports.Figure` is this class).

    Parameters
    ----------
    label : str
        What the figure is, in words (``"Forecast P50"``).
    value : str
        The figure, formatted for a reader (``"€1.41M"``, ``"72%"``): `salesforecast.labels.format_amount`.
    detail : str
        One short line under it (``"P10-P90 €1.20M-€1.63M"``, ``"past error 16%"``), or "".
    tone : {"good", "bad", "warn"} or None
        Colours the value (green, red, amber); None, black.
    """

    label: str
    value: str
    detail: str = ""
    tone: Literal["good", "bad", "warn"] | None = None
