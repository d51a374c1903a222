import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from salesforecast import plotting


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _summary():
    return pd.DataFrame(
        {
            "stage": ["A", "B$x$", "C"],
            "entered": [100, 60, 30],
            "converted": [60, 30, 20],
            "win_probability": [0.2, 0.4, 0.7],
            "lower": [0.15, 0.3, 0.6],
            "upper": [0.25, 0.5, 0.8],
            "crm_probability": [0.1, 0.5, 0.9],
            "median_days": [5, 10, 20],
            "p90_days": [15, 30, 60],
        }
    )


def test_funnel_bars_and_labels():
    ax = plotting.plot_funnel(_summary())
    widths = [p.get_width() for p in ax.patches]
    assert widths == [100, 60, 30, 60, 30, 20]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", r"B\$x\$", "C"]  # $ never becomes mathtext
    assert "60%" in [t.get_text().strip() for t in ax.texts]


def test_heatmap_values():
    m = pd.DataFrame([[0.0, 0.7, 0.3], [0.2, 0.0, 0.8]], index=["A", "B"], columns=["A", "B", "Won"])
    ax = plotting.plot_transition_heatmap(m)
    assert np.allclose(ax.images[0].get_array(), m.to_numpy())
    assert {t.get_text() for t in ax.texts} == {"70%", "30%", "20%", "80%"}


def test_heatmap_shows_no_shares_for_a_stage_no_deal_left():
    """A stage without departures has the CRM default as its row: no shares, a note that it is the default."""
    m = pd.DataFrame([[0.0, 0.7, 0.3], [0.0, 0.0, 0.2]], index=["A", "B"], columns=["A", "B", "Won"])
    counts = pd.DataFrame([[0, 7, 3], [0, 0, 0]], index=["A", "B"], columns=["A", "B", "Won"])
    ax = plotting.plot_transition_heatmap(m, counts=counts)
    shown = ax.images[0].get_array()
    assert np.allclose(shown[0], [0.0, 0.7, 0.3]) and np.isnan(np.ma.filled(shown[1], np.nan)).all()
    texts = [t.get_text() for t in ax.texts]
    assert "20%" not in texts and "no deal left it: CRM default" in texts


def test_win_probability_and_time_in_stage_use_given_axes():
    fig, (a, b) = plt.subplots(1, 2)
    assert plotting.plot_win_probability(_summary(), ax=a) is a
    assert np.allclose(a.lines[-1].get_ydata(), [0.1, 0.5, 0.9])
    assert plotting.plot_time_in_stage(_summary(), ax=b) is b
    assert [p.get_width() for p in b.patches] == [15, 30, 60, 5, 10, 20]


def test_segment_and_reliability():
    table = pd.DataFrame([[0.2, 0.5], [0.3, 0.6]], index=["SMB", "Enterprise"], columns=["A", "B"])
    ax = plotting.plot_segment_win_probability(table)
    assert len(ax.lines) == 2 and [t.get_text() for t in ax.get_legend().get_texts()] == ["SMB", "Enterprise"]
    cal = pd.DataFrame(
        {
            "mean_predicted": [0.1, 0.5],
            "observed_rate": [0.2, 0.4],
            "ci_lower": [0.1, 0.3],
            "ci_upper": [0.3, 0.5],
            "count": [10, 10],
        }
    )
    ax = plotting.plot_reliability({"CRM default": cal, "learned": cal})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["perfectly calibrated", "CRM default", "learned"]


def test_waterfall_reconciles_visually():
    wf = pd.DataFrame(
        {
            "step": ["opening pipeline", "created", "won", "lost", "closing pipeline"],
            "direction": ["start", "in", "out", "out", "end"],
            "amount": [100.0, 50.0, 30.0, 20.0, 100.0],
            "count": [10, 5, 3, 2, 10],
        }
    )
    ax = plotting.plot_waterfall(wf, value="amount")
    bars = ax.patches
    tops = [b.get_y() + b.get_height() for b in bars]
    bottoms = [b.get_y() for b in bars]
    assert tops[1] == 150 and bottoms[2] == 120 and bottoms[3] == 100 and tops[4] == 100
    assert plotting.plot_waterfall(wf, value="count").patches[1].get_height() == 5


def test_adherence_by_groups():
    t = pd.DataFrame({"share_skipped": [0.1, 0.5], "share_stalled": [0.2, 0.0]}, index=["ann", "<b>bo</b>"])
    ax = plotting.plot_adherence_by(t, {"share_skipped": "skipped a stage", "share_stalled": "stalled"})
    assert [p.get_width() for p in ax.patches] == [0.1, 0.5, 0.2, 0.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ann", "<b>bo</b>"]


def test_table_counts_stacks_accepted_and_quarantined():
    counts = pd.DataFrame({"table": ["opportunities", "quotas"], "accepted": [90, 0], "quarantined": [10, 0]})
    ax = plotting.plot_table_counts(counts)
    widths = [p.get_width() for p in ax.patches]
    lefts = [p.get_x() for p in ax.patches]
    assert widths == [90, 0, 10, 0] and lefts[2] == 90
    assert "100 read, 10 quarantined" in ax.texts[0].get_text()


def test_gains_lines():
    g = pd.DataFrame({"fraction_contacted": [0, 0.5, 1.0], "fraction_positives": [0, 0.8, 1.0]})
    ax = plotting.plot_gains({"model": g})
    assert np.allclose(ax.lines[1].get_ydata(), [0, 0.8, 1.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random order", "model"]
