"""The intervals of every summary: Student-t half-widths for the episode count, and paired differences."""

import math

import numpy as np
import pytest

from jaxsim import metrics
from jaxsim.metrics import mean_ci


def test_three_episode_interval_is_the_student_t_half_width():
    x = [0.2, 0.5, 0.9]
    s = mean_ci(x)
    sd = np.std(x, ddof=1)
    assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(x))
    assert s["ci95"] == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-6)   # not 1.96 x the standard error
    assert s["t95"] == pytest.approx(4.302653, abs=1e-6)               # t(0.975, 2 degrees of freedom)


def test_critical_values_fall_to_the_normal_one_with_more_episodes():
    assert metrics.t95(2) == pytest.approx(12.7062, abs=1e-4)
    assert metrics.t95(20) == pytest.approx(2.0930, abs=1e-4)
    assert metrics.t95(10**6) == pytest.approx(1.95996, abs=1e-4)
    assert math.isnan(metrics.t95(1))
    one = mean_ci([0.3])
    assert one["mean"] == 0.3 and math.isnan(one["ci95"]) and math.isnan(one["t95"])
    assert mean_ci([math.nan])["n"] == 0


def test_paired_difference_cancels_the_episode_spread():
    rng = np.random.default_rng(0)
    episode = rng.normal(0, 1, 8)                       # the episodes' own difficulty, shared by both policies
    a, b = episode + 0.1 + rng.normal(0, 0.01, 8), episode
    d = metrics.paired_ci(a, b)
    assert d["n"] == 8 and d["mean"] == pytest.approx(np.mean(a - b))
    assert d["ci95"] == pytest.approx(metrics.t95(8) * np.std(a - b, ddof=1) / math.sqrt(8))
    assert d["mean"] > d["ci95"]                                        # shown paired ...
    assert d["mean"] < mean_ci(a)["ci95"] + mean_ci(b)["ci95"]          # ... within the unpaired noise
    assert metrics.paired_ci([1.0, math.nan, 3.0], [0.0, 1.0, 1.0])["n"] == 2   # an episode without a value drops out
    with pytest.raises(ValueError, match="same episodes"):
        metrics.paired_ci([1.0, 2.0], [1.0])
