"""PPO actor-critic: learning, checkpoints, resume, masking, config validation (CPU, tiny scenario)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import random_policy
from baselines.ppo import (PPOConfig, Transition, gae, load_ppo_policy, loss_fn, policy_params_from,
                           ppo_policy, restore_checkpoint, train)
from baselines.ppo_networks import Actor, Critic, global_features, task_features
from jaxsim import env
from jaxsim.config import EpisodeConfig, SimConfig, TopologyConfig
from jaxsim.fields import ConfigError
from jaxsim.params import make_params
from jaxsim.rollout import rollout

TINY = SimConfig(episode=EpisodeConfig(horizon=10), topology=TopologyConfig(n_cells=1, users_per_cell=4))
CFG = PPOConfig(n_envs=16, n_updates=8, checkpoint_every=4, n_minibatches=4, lr=1e-3, hidden=(32, 32))


def slot_rewards(out):
    return out["slot_reward"] if "slot_reward" in out else out["reward"]


def leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def env_params():
    return make_params(TINY)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, env_params):
    ckpt = tmp_path_factory.mktemp("ppo_full") / "ckpt"
    return train(jax.random.PRNGKey(0), CFG, env_params, ckpt_dir=ckpt, sim_config=TINY), ckpt


def test_ppo_beats_random(full_run, env_params):
    result, _ = full_run
    key = jax.random.PRNGKey(12345)
    pp = policy_params_from(result.runner, CFG, env_params)
    r_ppo = slot_rewards(rollout(key, env_params, ppo_policy, pp, 32)).mean()
    r_rand = slot_rewards(rollout(key, env_params, random_policy, None, 32)).mean()
    assert r_ppo > r_rand + 0.1, (r_ppo, r_rand)
    curve = result.metrics["episode_reward"]
    assert len(curve) == CFG.n_updates and np.all(np.isfinite(curve))


def test_checkpoint_round_trip(full_run, env_params):
    result, ckpt = full_run
    runner, cfg, meta = restore_checkpoint(ckpt, env_params)
    assert cfg == CFG and meta["update"] == CFG.n_updates == int(runner.update)
    assert leaves_equal(runner, result.runner)          # params, optimiser state, normaliser, RNG, count
    assert meta["metrics"]["episode_reward"] == result.metrics["episode_reward"]
    # the loaded policy has the common signature and acts exactly like the in-memory one
    policy, pp = load_ppo_policy(ckpt)
    key = jax.random.PRNGKey(7)
    a = rollout(key, env_params, policy, pp, 32)
    b = rollout(key, env_params, ppo_policy, policy_params_from(result.runner, CFG, env_params), 32)
    np.testing.assert_array_equal(a["action"], b["action"])


def test_resume_equals_uninterrupted(full_run, env_params, tmp_path):
    result, _ = full_run
    ckpt = tmp_path / "ckpt"
    part = train(jax.random.PRNGKey(0), CFG, env_params, ckpt_dir=ckpt, sim_config=TINY, stop_after=4)
    assert int(part.runner.update) == 4
    resumed = train(jax.random.PRNGKey(0), CFG, env_params, ckpt_dir=ckpt, sim_config=TINY)
    assert resumed.resumed_from == 4 and int(resumed.runner.update) == CFG.n_updates
    assert leaves_equal(resumed.runner.params, result.runner.params)
    assert leaves_equal(resumed.runner, result.runner)
    assert resumed.metrics == result.metrics


def _one_slot_batch(env_params, n_envs=8):
    @jax.jit
    def first_slot(keys, env_params):
        obs, _ = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)
        return (obs, jax.vmap(task_features, in_axes=(0, None))(obs, env_params),
                jax.vmap(global_features, in_axes=(0, None))(obs, env_params))

    obs, x, g = first_slot(jax.random.split(jax.random.PRNGKey(3), n_envs), env_params)
    # make masked rows carry non-trivial values, so a leak would show
    x = jnp.where(obs.mask[..., None], x, 3.0)
    assert bool((~obs.mask).any()) and bool(obs.mask.any())
    return obs, x, g


def test_masked_tasks_get_no_gradient(env_params):
    obs, x, g = _one_slot_batch(env_params)
    actor, critic = Actor(CFG.hidden, env_params.n_actions), Critic(CFG.hidden)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"actor": actor.init(k1, x[0], obs.mask[0], g[0]), "critic": critic.init(k2, x[0], obs.mask[0], g[0])}
    mask = obs.mask
    e, u = mask.shape
    action = jax.random.randint(k3, (e, u), 0, env_params.n_actions)
    r_task = jax.random.normal(k3, (e, u))

    def loss_of_x(x):
        logits = actor.apply(params["actor"], x, mask, g)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], -1)[..., 0] - 0.1
        b, value = critic.apply(params["critic"], x, mask, g)
        batch = Transition(x, g, mask, action, jnp.where(mask, logp, 0.0), b, value, r_task,
                           r_task.mean(-1), jnp.zeros((e,), bool), mask)
        return loss_fn(params, batch, r_task, r_task + 1.0, value + 1.0, CFG, env_params)[0]

    grad = jax.jit(jax.grad(loss_of_x))(x)
    assert np.all(np.asarray(grad)[~np.asarray(mask)] == 0.0)
    assert np.any(np.asarray(grad)[np.asarray(mask)] != 0.0)
    # the policy's outputs for present tasks do not depend on absent tasks' features either
    logits = actor.apply(params["actor"], x, mask, g)
    logits2 = actor.apply(params["actor"], jnp.where(mask[..., None], x, -7.0), mask, g)
    np.testing.assert_array_equal(np.asarray(logits)[np.asarray(mask)], np.asarray(logits2)[np.asarray(mask)])


def test_gae_slot_advantage_is_mean_of_task_advantages():
    h, e, u = 6, 3, 4
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    mask = jax.random.uniform(k[0], (h, e, u)) < 0.6
    r_task = jnp.where(mask, jax.random.normal(k[1], (h, e, u)), 0.0)
    b = jnp.where(mask, jax.random.normal(k[2], (h, e, u)), 0.0)
    s = jax.random.normal(k[3], (h, e))
    n = mask.sum(-1)
    value = s + b.sum(-1) / jnp.maximum(n, 1)
    b = jnp.where(mask, b + s[..., None], 0.0)
    r_slot = jnp.where(n > 0, r_task.sum(-1) / jnp.maximum(n, 1), 0.0)
    done = jnp.zeros((h, e), bool).at[-1].set(True)
    z = jnp.zeros((h, e, u))
    traj = Transition(z, jnp.zeros((h, e, 1)), mask, z.astype(jnp.int32), z, b, value, r_task, r_slot, done, mask)
    a_task, _, ret_slot = gae(traj, 0.9, 0.8)
    a_slot = ret_slot - value
    mean_task = jnp.where(mask, a_task, 0.0).sum(-1) / jnp.maximum(n, 1)
    np.testing.assert_allclose(np.asarray(mean_task)[np.asarray(n > 0)], np.asarray(a_slot)[np.asarray(n > 0)],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("field,value,needle", [
    ("lr", -1.0, "ppo.lr = -1.0 is out of range: allowed (0, 1]"),
    ("gamma", 1.5, "ppo.gamma = 1.5 is out of range: allowed [0, 1]"),
    ("n_envs", 0, "ppo.n_envs = 0 is out of range"),
    ("update_epochs", 2.5, "ppo.update_epochs = 2.5: must be an integer"),
    ("hidden", (64, 0), "ppo.hidden[1] = 0 is out of range: allowed an integer in [1, 4096]"),
    ("anneal_lr", "yes", "ppo.anneal_lr = 'yes'"),
])
def test_config_validation(field, value, needle):
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(PPOConfig(), **{field: value}).validate()
    assert needle in str(err.value)


def test_config_validation_against_scenario_before_compute(env_params):
    bad = dataclasses.replace(CFG, n_minibatches=7)      # 16 envs x 10 slots = 160 slots
    with pytest.raises(ConfigError, match="n_minibatches = 7 must divide n_envs x horizon = 16 x 10 = 160"):
        train(jax.random.PRNGKey(0), bad, env_params)
    with pytest.raises(ConfigError, match="unknown field"):
        PPOConfig.from_dict({"learning_rate": 0.1})


def test_registry_checks_the_checkpoint_against_the_scenario_it_runs_on(full_run, tmp_path, capsys):
    """jaxsim-montecarlo --policies ppo: a checkpoint of another scenario is refused before any rollout (exit 2)
    unless --allow-other-scenario; then one with another number of actions is still refused (the field and the
    trained value named) while one with other users runs; the training scenario runs."""
    from experiment.files import save_config
    from scripts.studies import montecarlo
    _, ckpt = full_run
    two = TINY.replace(actions=TINY.actions[:2])
    save_config(two, tmp_path / "two.toml")
    base = ["--config", str(tmp_path / "two.toml"), "--policies", "ppo", "--checkpoint", str(ckpt), "--episodes", "1"]
    rc = montecarlo.main([*base, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "trained on another scenario" in err and "--allow-other-scenario" in err, err
    rc = montecarlo.main([*base, "--allow-other-scenario", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "the scenario has n_actions = 2 but the policy was trained with n_actions = 3" in err, err
    assert not (tmp_path / "run").exists()
    save_config(TINY, tmp_path / "tiny.toml")
    other_users = ["--config", str(tmp_path / "tiny.toml"), "--set", "topology.users_per_cell=2", "--policies", "ppo",
                   "--checkpoint", str(ckpt), "--episodes", "1", "--out", str(tmp_path / "users")]
    assert montecarlo.main(other_users) == 2
    assert montecarlo.main([*other_users, "--allow-other-scenario"]) == 0
    save_config(TINY, tmp_path / "tiny.toml")
    assert montecarlo.main(["--config", str(tmp_path / "tiny.toml"), "--policies", "ppo", "--checkpoint", str(ckpt),
                            "--episodes", "1", "--out", str(tmp_path / "ok")]) == 0
