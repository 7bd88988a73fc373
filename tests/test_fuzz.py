"""Random valid configs (every field drawn within its declared range) run a few slots with no NaN or inf."""

import dataclasses

import numpy as np
import pytest

from jaxsim.fields import Choice, Flag, Range
from scripts.tools import fuzz_configs


@pytest.mark.long
def test_three_hundred_random_configs_stay_finite():
    res = fuzz_configs.fuzz(n=300, seed=1, batch=100)
    assert res["n"] == 300 and res["tasks"] > 1000
    assert res["nan"] == 0 and res["non_finite"] == 0, res.get("first_non_finite")


def test_draws_respect_the_declared_ranges():
    rng = np.random.default_rng(0)
    for group in fuzz_configs.GROUPS:
        cfgs, _ = fuzz_configs.valid_configs(rng, group, 20)
        for cfg in cfgs:
            for section in (cfg.episode, cfg.topology, cfg.radio, cfg.inference, cfg.backhaul, cfg.reward,
                            *cfg.hardware, *cfg.models, *cfg.actions, *cfg.traffic.task_types):
                for f in dataclasses.fields(section):
                    spec = f.metadata.get("range")
                    if spec is not None:
                        spec.check(f.name, getattr(section, f.name))     # raises outside the range
            assert cfg.topology.n_cells == group["topology"]["n_cells"]
    # the draws are spread: not the defaults, and different from each other
    assert len({c.backhaul.rate_bps for c in cfgs}) == len(cfgs)


def test_range_sampling_and_checking_agree():
    rng = np.random.default_rng(0)
    for spec in (Range(0.0, 1.0, lo_open=True), Range(1, 4096, integer=True), Range(1e6, 1e13),
                 Range(0.0, None, lo_open=True, allow_inf=True), Range(-200.0, -100.0), Choice(("a", "b")), Flag()):
        for _ in range(200):
            spec.check("x", spec.sample(rng))
    with pytest.raises(ValueError, match=r"x = 0.0 is out of range: allowed \(0, 1\]"):
        Range(0.0, 1.0, lo_open=True).check("x", 0.0)
