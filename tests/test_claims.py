"""Each claim's verdict against the numbers it is given: a stand-in study returns chosen rewards."""

import pytest

from jaxsim.config import SimConfig
from scripts.figures import claims


def s(mean, ci=0.01):
    return {"reward": {"mean": mean, "ci95": ci}}


class FakeStudy:
    """Returns s(value) for each (method, varied ICL field) from ``table``; quick sweep points."""
    model = "tiny"
    quick, tiny = True, False

    def __init__(self, table):
        self.table = table

    def points(self, quick, full):
        return quick

    def run(self, method, cfg, icl=None, ppo_updates=None):
        icl = icl or {}
        for key in (("shots", icl.get("shots")), ("epsilon", icl.get("epsilon")), ("model", icl.get("model"))):
            if (method, *key) in self.table:
                return self.table[(method, *key)]
        return self.table[method]


CFG = SimConfig().validate()


def test_compare_uses_the_paired_difference_of_the_same_episodes():
    """Two methods on the same three episodes: one is better by 0.1 on every episode while the episodes spread by
    0.3. The paired difference's t interval shows it; the two separate intervals overlap."""
    def run(rewards):
        from jaxsim.metrics import mean_ci
        return {"reward": mean_ci(rewards), "episode_rewards": rewards}
    worse = run([0.1, 0.4, 0.7])
    better = run([0.2, 0.51, 0.79])
    assert better["reward"]["mean"] - worse["reward"]["mean"] < better["reward"]["ci95"] + worse["reward"]["ci95"]
    assert claims.compare(better, worse) == "shown"
    assert claims.compare(worse, better) == "not supported"
    assert claims._vs(better, worse).startswith("shown (+0.100 ± ") and claims._vs(better, worse).endswith(" paired)")
    noisy = run([0.3, 0.35, 0.75])                     # +0.2, -0.05, +0.05: the right way on average, within the noise
    assert claims.compare(noisy, worse) == "direction only"
    # without per-episode rewards: the sum of the two half-widths
    assert claims.compare({"reward": better["reward"]}, {"reward": worse["reward"]}) == "direction only"


def test_compare_uses_the_sum_of_half_widths():
    assert claims.compare(s(0.5, 0.05), s(0.3, 0.05)) == "shown"           # 0.2 > 0.1
    assert claims.compare(s(0.5, 0.15), s(0.3, 0.1)) == "direction only"   # 0.2 < 0.25
    assert claims.compare(s(0.3), s(0.5)) == "not supported"
    assert claims.verdict(["shown", "shown"]) == "**supported**"
    assert claims.verdict(["shown", "direction only"]).startswith("**direction only**")
    assert claims.verdict(["shown", "not supported"]) == "**mixed**"
    assert claims.verdict(["not supported"]) == "**not supported**"


@pytest.mark.parametrize("singles,methods,expected", [
    ((0.0, 0.2, 0.3), (0.6, 0.6, 0.6), "**supported**"),
    ((0.0, 0.2, 0.3), (0.6, 0.6, 0.1), "**mixed**"),
    ((0.0, 0.2, 0.7), (0.6, 0.5, 0.1), "**not supported**"),
    ((0.0, 0.2, 0.3), (0.6, 0.31, 0.305), "**direction only** (within the noise of these runs)"),
])
def test_edge_cloud_verdict(singles, methods, expected):
    table = {f"{a}_only": s(v) for a, v in zip(CFG.action_names, singles)}
    table.update(oracle=s(methods[0]), ppo=s(methods[1]), icl=s(methods[2]))
    verdict, text = claims.claim_edge_cloud(FakeStudy(table), CFG)
    assert verdict == expected, text
    assert f"best single site ({CFG.action_names[2]}_only)" in text


@pytest.mark.parametrize("rewards,expected", [
    ((0.1, 0.4, 0.45), "**supported**"),                                          # big first step, small last
    ((0.1, 0.15, 0.45), "**mixed** (more demonstrations help; the returns do not diminish)"),
    ((0.4, 0.3, 0.2), "**not supported**"),
])
def test_more_shots_verdict(rewards, expected):
    table = {("icl", "shots", k): s(r) for k, r in zip([0, 6, 12], rewards)}
    verdict, text = claims.claim_more_shots(FakeStudy(table), CFG)
    assert verdict == expected, text


@pytest.mark.parametrize("icl,expected", [(0.58, "**supported**"), (0.45, "**not supported**")])
def test_icl_close_to_drl_within_ten_percent_of_the_range(icl, expected):
    # random 0.1, oracle 0.6: the range is 0.5; PPO 0.6; ICL 0.58 trails by 4%, 0.45 by 30%
    table = {"icl": s(icl), "ppo": {**s(0.6), "train_s": 5.0}, "knn": s(0.5), "knn_value": s(0.5),
             "oracle": s(0.6), "random": s(0.1)}
    verdict, text = claims.claim_icl_vs_drl(FakeStudy(table), CFG)
    assert verdict == expected, text
    assert f"{(0.6 - icl) / 0.5:.0%} of the random-to-oracle range" in text


def test_exploration_verdict_takes_the_best_rate_against_none():
    table = {("icl", "epsilon", 0.0): s(0.3), ("icl", "epsilon", 0.1): s(0.5), ("icl", "epsilon", 0.3): s(0.2)}
    table.update({("icl", "epsilon", e): s(0.2) for e in (0.05, 0.2, 0.5, 1.0)})
    verdict, text = claims.claim_exploration(FakeStudy(table), CFG)
    assert verdict == "**supported**" and "Best with exploration (0.1) vs none: shown" in text, text
