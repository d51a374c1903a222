"""The gallery's tests, run per shape by `tests/test_gallery_reports_a.py` and `_b.py` (each defines the
module-scoped ``shape_run`` fixture over its shapes): one set of tests, two files, so that ``--dist loadfile``
spreads the shapes over two workers. The checks themselves are in `tests/test_gallery_common.py`.
"""

import pytest

from tests.test_gallery_common import (
    NOTEBOOKS,
    check_data_quality_counts,
    check_forecast_accuracy_numbers,
    check_pipeline_review_numbers,
    check_readme_row,
    check_stage_conversion_counts,
    outcome_problems,
)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_report_is_honest_or_says_what_it_needs(shape_run, notebook):
    assert outcome_problems(shape_run, notebook) == []


def test_data_quality_counts_are_the_files_row_counts(shape_run):
    check_data_quality_counts(shape_run)


def test_stage_conversion_entered_and_won_per_stage_match_pandas(shape_run):
    check_stage_conversion_counts(shape_run)


def test_forecast_accuracy_commit_and_seasonal_naive_match_pandas(shape_run):
    check_forecast_accuracy_numbers(shape_run)


def test_pipeline_review_closed_won_and_open_pipeline_match_pandas(shape_run):
    check_pipeline_review_numbers(shape_run)


def test_the_readme_says_what_each_report_does_on_the_shape(shape_run):
    check_readme_row(shape_run)
