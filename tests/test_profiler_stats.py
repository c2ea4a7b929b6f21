import math

import pytest

from lfm2_nas.profiler.stats import Stats, summarize


def test_summary_of_one_to_eleven_is_exact():
    s = summarize([float(v) for v in range(1, 12)])  # 1..11
    assert s.count == 11
    assert s.mean == 6.0
    assert s.median == 6.0
    assert s.p90 == pytest.approx(10.0)
    assert s.p99 == pytest.approx(10.9)
    assert s.std == pytest.approx(math.sqrt(11.0))  # sample variance of 1..n is n(n+1)/12 = 11
    assert (s.min, s.max) == (1.0, 11.0)
    assert s.iqr == pytest.approx(5.0)  # p75 = 8.5, p25 = 3.5
    assert s.iqr_over_median == pytest.approx(5.0 / 6.0)
    assert s.unstable
    assert s.samples == tuple(float(v) for v in range(1, 12))


def test_tight_samples_are_stable_and_the_flag_sits_at_ten_percent():
    assert not summarize([10.0, 10.1, 9.9, 10.0]).unstable
    # median 10, p25 = 9.5, p75 = 10.5: IQR/median = 0.10 exactly is not above the threshold
    edge = summarize([9.0, 9.5, 10.0, 10.5, 11.0])
    assert edge.iqr_over_median == 0.1 and not edge.unstable
    assert summarize([8.0, 9.0, 10.0, 11.0, 12.0]).iqr_over_median == pytest.approx(0.2)
    assert summarize([8.0, 9.0, 10.0, 11.0, 12.0]).unstable


def test_even_count_median_interpolates_and_single_sample_has_zero_std():
    assert summarize([4.0, 1.0, 3.0, 2.0]).median == 2.5
    one = summarize([7.0])
    assert (one.count, one.std, one.median, one.p99) == (1, 0.0, 7.0, 7.0)
    with pytest.raises(ValueError):
        summarize([])


def test_flat_columns_round_trip_through_the_raw_samples():
    s = summarize([3.0, 1.0, 2.0])
    row = s.to_flat("decode_ms")
    assert row["decode_ms_median"] == 2.0 and row["decode_ms_samples"] == [3.0, 1.0, 2.0]
    assert Stats.from_flat(row, "decode_ms") == s
    assert Stats.from_flat({}, "decode_ms") is None
