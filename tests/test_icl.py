"""The ICL policy, its experience pool and the kNN control (tiny random-weight LLM)."""


import jax
import numpy as np
import pytest

from icl.policy import ICLConfig, ICLPolicy, KNNPolicy
from icl.pool import STRATEGIES, ExperiencePool
from icl.prompt import PromptBuilder, task_features
from experiment.host import SimpleHostPolicy, rollout_host
from jaxsim import env
from jaxsim.params import make_params
from baselines import greedy_policy
from jaxsim.rollout import rollout

from conftest import tiny_config
from test_llm_model import tiny_lm


def _filled_pool(n=200, seed=0):
    rng = np.random.default_rng(seed)
    pool = ExperiencePool(9, capacity=128)
    pool.add(rng.normal(size=(n, 9)).astype(np.float32), rng.integers(0, 5, n), rng.integers(0, 3, n),
             rng.normal(size=n), np.zeros(n), np.arange(n))
    return pool, rng


def test_pool_is_bounded_and_recent_is_newest():
    pool, rng = _filled_pool()
    assert len(pool) == 128 and pool.n_added == 200
    sel = pool.select("recent", 5, np.zeros((1, 9), np.float32), np.zeros(1, int), rng)[0]
    assert list(pool.stamp[sel]) == [195, 196, 197, 198, 199]


def test_nearest_ranked_state_semantics():
    pool, rng = _filled_pool()
    q = pool.features[:3] + 0.0
    qt = pool.task_type[:3]
    near = pool.select("nearest", 4, q, qt, rng)
    d = pool.distances(q, qt)
    for i in range(3):
        assert near[i][-1] == np.argmin(d[i])                    # most similar last
        assert set(d[i][near[i]]) == set(np.sort(d[i])[:4])
    ranked = pool.select("ranked", 4, q, qt, rng, tau=0.0)      # tau 0: the best rewards
    assert set(pool.reward[ranked[0]]) == set(np.sort(pool.reward[:len(pool)])[-4:])
    state = pool.select("state", 4, q, qt, rng)
    for i in range(3):
        same = pool.reward[:len(pool)][pool.task_type[:len(pool)] == qt[i]]
        assert np.all(pool.task_type[state[i]] == qt[i])
        r = pool.reward[state[i]]
        assert r[0] == same.min() and r[-1] == same.max()       # worst first, best last
    with pytest.raises(ValueError, match="unknown; allowed: random, recent, nearest, ranked, state"):
        pool.select("best", 4, q, qt, rng)


def test_pool_save_restore(tmp_path):
    pool, _ = _filled_pool()
    pool.save(tmp_path / "pool")
    back = ExperiencePool.load(tmp_path / "pool")
    for k, v in pool.state_dict().items():
        np.testing.assert_array_equal(np.asarray(back.state_dict()[k]), np.asarray(v))


def test_config_errors():
    for kw, msg in ((dict(select="smart"), "icl.select = 'smart': unknown"), (dict(shots=-1), "icl.shots = -1"),
                    (dict(decide="score"), "icl.decide = 'score': unknown; allowed: value, action, generate"),
                    (dict(max_rows=0), "icl.max_rows = 0 is out of range: allowed an integer in [1, 256]"),
                    (dict(epsilon=1.5), "icl.epsilon = 1.5 is out of range: allowed [0, 1]")):
        with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            ICLConfig(**kw).validate()


def test_prompt_contains_parts_and_fits_budget(tiny):
    lm = tiny_lm()
    count = lambda s: len(lm.encode(s))  # noqa: E731
    pb = PromptBuilder(tiny, count, max_prompt_tokens=100_000)
    f = np.arange(9, dtype=np.float32) * 10
    demos = [pb.demo_line(f, 2, 1, 0.25)] * 5
    text = pb.build(demos, f, 3)
    for part in ("Reward = quality", "edge:", "cloud_large:", "Past decisions:", "-> cloud_small (+0.25)",
                 "Current task:\nmath p0 o10 b20 q30.00 sinr40 load 60/70/80 n50", "Answer with one option"):
        assert part in text
    full = count(text)
    small = PromptBuilder(tiny, count, max_prompt_tokens=full - 1)
    cut = small.build(demos, f, 3)
    assert count(cut) <= full - 1 and small.truncated == 1 and small.dropped >= 1
    with pytest.raises(ValueError, match="max_prompt_tokens = 20"):
        PromptBuilder(tiny, count, max_prompt_tokens=20)


@pytest.mark.parametrize("kind,select", [("icl", "recent"), ("icl", "nearest")] + [("knn", s) for s in STRATEGIES])
def test_icl_and_knn_run_batched_and_learn_pool(kind, select):
    """The action form (the paper's) and the kNN vote; the value form is tested in test_icl_value."""
    cfg = tiny_config()
    p = make_params(cfg)
    icfg = ICLConfig(select=select, shots=3, epsilon=0.2, max_prompt_tokens=100_000, decide="action")
    for pol in ([ICLPolicy(cfg, icfg, lm=tiny_lm())] if kind == "icl" else [KNNPolicy(cfg, icfg)]):
        logs = []
        out = rollout_host(jax.random.PRNGKey(0), p, pol, 3, batch_episodes=2, log=logs.append)
        assert out["slot_reward"].shape == (3, p.horizon)
        n_tasks = int(out["mask"].sum())
        assert len(pol.pool) == n_tasks and pol.stats["decisions"] == n_tasks
        assert 0 < pol.stats["explored"] < n_tasks
        assert [r["episode"] for r in logs] == [0, 1, 2]
        acts = out["action"][out["mask"]]
        assert acts.min() >= 0 and acts.max() < p.n_actions


def test_host_rollout_sees_the_same_episodes_as_jitted_rollout(tiny):
    """Paired comparisons: a host policy that plays edge-only reproduces the jitted edge-only rollout
    (same episodes and tasks exactly; floats to float32 rounding: the host steps slot by slot, the jitted
    rollout scans, and XLA fuses the two programs differently)."""
    p = make_params(tiny)

    class EdgeOnly(SimpleHostPolicy):
        def decide(self, obs, episodes, fallback):
            return np.zeros(obs.mask.shape, np.int32)

    with pytest.raises(TypeError, match="is not a HostPolicy"):
        rollout_host(jax.random.PRNGKey(4), p, object(), 3)
    host = rollout_host(jax.random.PRNGKey(4), p, EdgeOnly(), 3, batch_episodes=2)
    jit = rollout(jax.random.PRNGKey(4), p, lambda k, o, pp: jax.numpy.zeros(o.mask.shape, jax.numpy.int32), None, 3)
    for k in ("mask", "task_type", "action", "refused"):
        np.testing.assert_array_equal(host[k], jit[k])
    for k in ("slot_reward", "delay_s", "quality"):
        np.testing.assert_allclose(host[k], jit[k], rtol=1e-6, atol=1e-7)


def test_task_features_shape(tiny):
    p = make_params(tiny)
    obs, _ = jax.jit(env.reset)(jax.random.PRNGKey(0), p)
    f, t, m = task_features(obs)
    assert f.shape == (p.n_users, 6 + p.n_actions) and t.shape == m.shape == (p.n_users,)


def test_free_text_answers_parse_or_fall_back_to_greedy(tiny):
    p = make_params(tiny)
    icfg = ICLConfig(select="recent", shots=2, epsilon=0.0, decide="generate", max_new_tokens=3,
                     max_prompt_tokens=100_000)
    pol = ICLPolicy(tiny, icfg, lm=tiny_lm())
    assert pol.parse_answer("I pick cloud_large.") == 2 and pol.parse_answer("edge then cloud_small") == 0
    assert pol.parse_answer("cloud_small") == 1 and pol.parse_answer("no idea") is None
    out = rollout_host(jax.random.PRNGKey(0), p, pol, 1, batch_episodes=1)
    s = pol.summary()
    assert s["fallbacks"] > 0 and 0 < s["fallback_share"] <= 1       # a random tiny model rarely names an action
    greedy = rollout(jax.random.PRNGKey(0), p, greedy_policy, None, 1)
    if s["fallbacks"] == s["decisions"]:                               # every answer fell back: greedy's episode
        np.testing.assert_array_equal(out["action"][out["mask"]], greedy["action"][greedy["mask"]])


def test_content_free_calibration_removes_the_answer_prior(tiny):
    """With calibration, a prompt that carries no information scores every action 0 (its prior removed)."""
    lm = tiny_lm()
    pol = ICLPolicy(tiny, ICLConfig(calibrate=True, max_prompt_tokens=100_000, decide="action"), lm=lm)
    raw = ICLPolicy(tiny, ICLConfig(calibrate=False, max_prompt_tokens=100_000, decide="action"), lm=lm)
    assert np.any(pol.bias != 0) and np.all(raw.bias == 0)
    cf = pol.prompts.wrap(pol.prompts.description + "Current task:\nN/A\nAnswer with one option: "
                          + ", ".join(tiny.action_names) + ".")
    np.testing.assert_allclose(lm.score([cf], pol.candidates)[0] - pol.bias, 0.0, atol=1e-6)
