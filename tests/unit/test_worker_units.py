"""Unit tests of the worker loop's arithmetic: chunk sizing by time, and the smoothed rate."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operations.worker import ChunkSizer, smoothed_rate


def test_chunk_size_moves_half_way_towards_the_target_duration():
    sizer = ChunkSizer(target=0.05, initial=1_000)
    sizer.observe(1_000, 0.2)  # four times too slow: ideal 250
    assert sizer.size == 625
    sizer.observe(625, 0.05)  # on target: stays
    assert sizer.size == 625


def test_chunk_size_at_most_doubles_and_stays_within_bounds():
    sizer = ChunkSizer(target=0.05, initial=100, minimum=20, maximum=1_000)
    sizer.observe(100, 0.0001)  # ideal 50,000
    assert sizer.size == 200
    for _ in range(10):
        sizer.observe(sizer.size, 0.0001)
    assert sizer.size == 1_000
    for _ in range(20):
        sizer.observe(sizer.size, 10.0)
    assert sizer.size == 20


def test_a_short_chunk_says_nothing_about_the_speed():
    sizer = ChunkSizer(target=0.05, initial=500)
    sizer.observe(3, 1.0)  # the end of the file
    sizer.observe(500, 0.0)  # no measurable time
    assert sizer.size == 500


@given(
    durations=st.lists(st.floats(min_value=1e-5, max_value=5.0), min_size=1, max_size=50),
    initial=st.integers(min_value=20, max_value=200_000),
)
def test_chunk_size_always_stays_within_its_bounds(durations, initial):
    sizer = ChunkSizer(target=0.05, initial=initial)
    for seconds in durations:
        sizer.observe(sizer.size, seconds)
        assert sizer.minimum <= sizer.size <= sizer.maximum


def test_rate_is_smoothed_over_chunks():
    assert smoothed_rate(None, 1_000, 0.5) == 2_000.0
    assert smoothed_rate(2_000.0, 1_000, 0.25) == pytest.approx(0.7 * 2_000 + 0.3 * 4_000)
    assert smoothed_rate(0.0, 10, 0.0) == 10_000_000.0  # no division by zero
