"""Every report on the last six shapes of the gallery (`salesforecast.datasets.gallery.SHAPES`): an honest report or a
"what this report needs" page, never a traceback or a missing value shown as a number; headline numbers against
pandas; the README's table of outcomes. The checks are in `tests/test_gallery_common.py`; the shapes are split over
two files so that ``--dist loadfile`` spreads them over two workers.
"""

import pytest

from tests.gallery_suite import (  # noqa: F401 (collected by pytest here, with this module's shape_run)
    test_data_quality_counts_are_the_files_row_counts,
    test_every_report_is_honest_or_says_what_it_needs,
    test_forecast_accuracy_commit_and_seasonal_naive_match_pandas,
    test_pipeline_review_closed_won_and_open_pipeline_match_pandas,
    test_stage_conversion_entered_and_won_per_stage_match_pandas,
    test_the_readme_says_what_each_report_does_on_the_shape,
)
from tests.test_gallery_common import shared_shape_run

SHAPE_NAMES = [
    "no_submissions",
    "no_quotas",
    "leads_only",
    "monthly_periods",
    "ends_on_period_last_day",
    "win_rate_shift",
]


@pytest.fixture(scope="module", params=SHAPE_NAMES)
def shape_run(request, tmp_path_factory):
    """Every report of reports.yml run on one shape (once per shape)."""
    return shared_shape_run(request.param, tmp_path_factory)
