"""The value formulation of the ICL policy, its per-action kNN twin, branch scoring, the cached prefix, the
compile count and the decision bench (tiny random-weight LLM)."""

import json

import jax
import numpy as np
import pytest

from icl.policy import ICLConfig, ICLPolicy, KNNValuePolicy, value_estimates, value_from_records
from icl.pool import ExperiencePool
from icl.prompt import BASE_FEATURES, N_GRADES, ValuePrompts, grade_reward, reward_grade
from experiment.host import auto_batch_episodes, rollout_host
from jaxsim.compilation import compile_counts, count_compiles
from experiment.files import save_config
from jaxsim.params import make_params

from conftest import tiny_config
from test_llm_model import np_forward, tiny_lm

N_FEAT = len(BASE_FEATURES) + 3


@pytest.fixture(scope="module")
def lm():
    return tiny_lm()


def test_branch_logprobs_equal_a_full_forward_of_prompt_and_branch(lm):
    prompts = ["hello there the", "x", "the cat sat on the mat and then the"]
    branches = [[" he", " tell", " the hello"], [" a", " bb", " c"], [" he", " x", " hello there"]]
    targets = [3, 5, 7, 11]
    pre = "hell the\n"
    got = lm.branch_logprobs(prompts, branches, targets, prefix=pre, max_rows=2)
    for i, p in enumerate(prompts):
        for c, b in enumerate(branches[i]):
            ids = lm.encode(pre + p) + lm.encode(b, special=False)
            want = np_forward(lm.cfg, lm.params, np.array(ids))[-1][targets]
            np.testing.assert_allclose(got[i, c], want, atol=2e-4)
    # the cached prefix gives the scores of recomputing it inside every prompt
    again = lm.branch_logprobs([pre + p for p in prompts], branches, targets, prefix="", max_rows=4)
    np.testing.assert_allclose(got, again, atol=2e-4)
    fine = tiny_lm(shapes="fine").branch_logprobs(prompts, branches, targets, prefix=pre, max_rows=2)
    np.testing.assert_allclose(got, fine, atol=2e-4)                    # the same scores at other paddings
    with pytest.raises(ValueError, match="max_rows = 0"):
        lm.branch_logprobs(prompts, branches, targets, max_rows=0)


def test_prefix_cache_is_computed_once_and_reused(lm):
    prompts = ["the same long header the cat " + w for w in ("sat", "ran", "hello there")]
    cands = [" he", " the"]
    lm.__dict__.pop("_prefixes", None)
    a = lm.score(prompts, cands, min_prefix=4)
    (key,) = lm._prefixes
    kv = lm._prefixes[key]
    b = lm.score(prompts[::-1], cands, min_prefix=4)
    assert list(lm._prefixes) == [key] and lm._prefixes[key] is kv             # reused, not recomputed
    np.testing.assert_allclose(a[::-1], b, atol=1e-5)
    np.testing.assert_allclose(a, lm.score(prompts, cands, prefix_reuse=False), atol=2e-4)


def test_repeated_calls_of_the_same_shapes_compile_nothing(lm):
    count_compiles()
    prompts, branches = ["hello there", "the cat"], [[" a", " bb"], [" c", " he"]]
    lm.branch_logprobs(prompts, branches, [3, 4], prefix="x\n")
    c0 = compile_counts()["compiles"]
    lm.branch_logprobs(["the hel", "cat sat"], [[" b", " aa"], [" he", " c"]], [3, 4], prefix="x\n")
    assert compile_counts()["compiles"] == c0


def test_grades_round_trip():
    r = np.array([-3.0, -1.0, -0.01, 0.0, 0.35, 0.79, 0.8, 2.0])
    g = reward_grade(r)
    assert g.tolist() == [0, 0, 4, 5, 6, 8, 9, 9]
    assert np.all(np.abs(grade_reward(g[1:7]) - r[1:7]) <= 0.1 + 1e-9)


class ShiftedLM:
    """A model whose grade log-probabilities are another model's plus a shift (its outcome-word prior moved)."""

    def __init__(self, lm, shift):
        self.lm, self.shift = lm, np.asarray(shift, np.float64)

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def branch_logprobs(self, *a, **kw):
        return self.lm.branch_logprobs(*a, **kw) + self.shift


def _decide(lm, rule, cfg, pool, feats, types):
    pol = ICLPolicy(cfg, ICLConfig(value_rule=rule, shots=6, epsilon=0.0), lm=lm, pool=pool)
    return pol.choose(feats, types, pol.select(feats, types), None)


def test_value_decisions_do_not_depend_on_the_outcome_words_prior(lm, tiny):
    rng = np.random.default_rng(0)
    pool = ExperiencePool(N_FEAT, 256)
    n = 120
    pool.add(rng.uniform(0, 50, (n, N_FEAT)).astype(np.float32), rng.integers(0, 5, n), rng.integers(0, 3, n),
             rng.uniform(-1, 1, n), np.zeros(n), np.arange(n))
    feats, types = rng.uniform(0, 50, (24, N_FEAT)).astype(np.float32), rng.integers(0, 5, 24)
    base = {rule: _decide(lm, rule, tiny, pool, feats, types) for rule in ("expected", "contrast")}
    # expected grade: the same constant added to every grade's log-probability cancels
    np.testing.assert_array_equal(_decide(ShiftedLM(lm, 3.7), "expected", tiny, pool, feats, types), base["expected"])
    # contrast: any per-grade prior shared by the actions cancels exactly
    prior = rng.normal(0, 3, N_GRADES)
    np.testing.assert_array_equal(_decide(ShiftedLM(lm, prior), "contrast", tiny, pool, feats, types),
                                  base["contrast"])
    # and the shift does reach the expected-grade rule (the test could fail)
    lp = rng.normal(size=(50, 3, N_GRADES))
    assert np.any(value_estimates(lp, "expected").argmax(-1) != value_estimates(lp + prior, "expected").argmax(-1))


def test_value_estimates_follow_the_grade_distribution():
    lp = np.full((1, 3, N_GRADES), -50.0)
    lp[0, 0, 2], lp[0, 1, 8], lp[0, 2, 5] = 0.0, 0.0, 0.0           # certain grades 2, 8, 5
    v = value_estimates(lp)
    np.testing.assert_allclose(v[0], grade_reward([2, 8, 5]), atol=1e-9)
    assert v.argmax(-1)[0] == 1
    with pytest.raises(ValueError, match="icl.value_rule = 'best'"):
        value_estimates(lp, "best")


def test_per_action_selection_and_the_knn_twin(tiny):
    pool = ExperiencePool(N_FEAT, 64)
    f = np.zeros((6, N_FEAT), np.float32)
    f[:, len(BASE_FEATURES):] = [[1, 100, 500]] * 6
    f[3:, len(BASE_FEATURES) + 1] = 900                 # cloud_small records under heavy load
    pool.add(f, np.zeros(6, int), np.array([0, 1, 2, 0, 1, 2]), np.array([0.1, 0.7, -0.5, 0.2, -0.9, -0.35]),
             np.zeros(6), np.arange(6))
    q = f[:1].copy()
    sel = pool.select_per_action("nearest", 1, q, np.zeros(1, int), 3, len(BASE_FEATURES), np.random.default_rng(0))
    assert [pool.action[s].tolist() for s in sel[0]] == [[0], [1], [2]]
    assert sel[0][1].tolist() == [1]                       # nearest in cloud_small's own load: 100, not 900
    twin = KNNValuePolicy(tiny, ICLConfig(shots=3, epsilon=0.0), pool=pool)
    assert twin.choose(q, np.zeros(1, int), sel, None).tolist() == [1]
    both = pool.select_per_action("nearest", 2, q, np.zeros(1, int), 3, len(BASE_FEATURES), np.random.default_rng(0))
    v = value_from_records(pool, both[0])
    np.testing.assert_allclose(v, grade_reward([(5 + 6) / 2, (8 + 0) / 2, (2 + 3) / 2]))
    # an action without records: unknown, worth min(grade 5, the best known)
    v = value_from_records(pool, [both[0][0], np.zeros(0, np.int64), both[0][2]])
    assert v[1] == min(grade_reward(5), max(v[0], v[2]))


def test_value_prompt_lines(tiny):
    vp = ValuePrompts(tiny)
    f = np.array([310, 520, 12, 0.7, 14.2, 11, 5, 180, 530], np.float32)
    assert vp.demo_line(f, 2, 1, 0.45) == "code in3 out5 sinr14 n11 load180 -> cloud_small:7\n"
    assert vp.prompt(["a\n"], f, 2) + vp.branch(f, 2) == "a\ncode in3 out5 sinr14 n11 load530 -> cloud_large:"
    assert ValuePrompts(tiny, describe=True).prefix.endswith(vp.prefix) and len(vp.prefix) < 100


@pytest.mark.parametrize("kind", ["icl", "knn_value"])
def test_value_policies_run_in_a_rollout(kind, tiny, lm):
    p = make_params(tiny)
    icfg = ICLConfig(shots=3, epsilon=0.2)
    pol = ICLPolicy(tiny, icfg, lm=lm) if kind == "icl" else KNNValuePolicy(tiny, icfg)
    out = rollout_host(jax.random.PRNGKey(0), p, pol, 2, batch_episodes=2)
    n = int(out["mask"].sum())
    assert len(pol.pool) == n and pol.stats["decisions"] == n and 0 < pol.stats["explored"] < n
    if kind == "icl":
        s = pol.summary()
        assert s["llm_calls"] > 0 and s["mean_prompt_tokens"] > 0


def test_auto_batch_episodes():
    assert auto_batch_episodes(24, 0.5, 16, 20) == 3
    assert auto_batch_episodes(6, 0.5, 16, 4) == 4 and auto_batch_episodes(6, 0.5, 16, 40) == 11
    assert auto_batch_episodes(1000, 0.5, 16, 20) == 1


def test_bench_metrics_on_a_tiny_model(tmp_path, capsys, lm):
    from scripts.bench import icl as bench_icl
    cfg = tiny_config()
    save_config(cfg, tmp_path / "tiny.toml")
    res = bench_icl.main(["--config", str(tmp_path / "tiny.toml"), "--queries", "10", "--query-episodes", "2",
                          "--pool-episodes", "1", "--rollout-episodes", "1", "--rollout-horizon", "2",
                          "--designs", "value,value-expected", "--shots", "3"], lm=lm)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("mean_reward", "knn_mean_reward", "knn_value_mean_reward", "best_single_site_reward", "greedy_reward",
              "decisions_per_s", "rollout_decisions_per_s", "own_pool_mean_reward"):
        assert np.isfinite(line[k]), k
    rows = res["results"]["random"]
    best, rnd = rows["best action"], rows["random"]
    assert best["regret"] == 0 and best["accuracy"] == 1
    for name, m in rows.items():                                       # every method between the extremes
        assert m["mean_reward"] <= best["mean_reward"] + 1e-6 and abs(m["mean_reward"] + m["regret"]
                                                                      - best["mean_reward"]) < 1e-5, name
    assert line["best_single_site_reward"] == max(rows[f"{a}_only"]["mean_reward"] for a in cfg.action_names)
    assert line["mean_reward"] == rows["icl value"]["mean_reward"] and rnd["accuracy"] <= 1


def test_bench_metrics_by_hand():
    from scripts.bench.icl import Queries, metrics
    q = Queries(np.zeros((3, N_FEAT)), np.zeros(3, int), np.array([[0.1, 0.5, 0.2], [0.3, 0.3, -1.0],
                                                                    [0.0, -0.2, 0.4]]), np.array([1, 0, 0]))
    m = metrics(q, np.array([1, 1, 0]), ("a", "b", "c"))
    assert m["mean_reward"] == pytest.approx((0.5 + 0.3 + 0.0) / 3)
    assert m["regret"] == pytest.approx(0.4 / 3) and m["accuracy"] == pytest.approx(2 / 3)
    assert m["share"] == {"a": pytest.approx(1 / 3), "b": pytest.approx(2 / 3), "c": 0.0}
