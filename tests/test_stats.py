import math

import pytest

from f1lib.stats import mean_ci


def test_t_interval_by_hand():
    # mean 2, sd 1, n 3: half-width t_{0.975, 2} / sqrt(3) = 4.302653 / 1.732051
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean - low == pytest.approx(high - mean)


def test_degenerate_inputs():
    assert mean_ci([0.5])[0] == 0.5 and math.isnan(mean_ci([0.5])[1])
    assert math.isnan(mean_ci([1.0, float("nan")])[0])
    with pytest.raises(ValueError):
        mean_ci([])


def test_format_ci_writes_mean_and_interval():
    from f1lib.stats import format_ci

    assert format_ci(0.8375, 0.8266, 0.8484) == "0.8375 [0.8266, 0.8484]"
    assert format_ci(-0.0003, -0.0011, 0.0004, digits=2, scale=100, signed=True) == \
        "-0.03 [-0.11, +0.04]"
    assert format_ci(0.5, float("nan"), float("nan"), digits=1) == "0.5"
