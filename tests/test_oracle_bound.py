"""The oracle bounds every shipped device policy slot by slot, on both presets (issue 24).

On states that a trajectory of greedy (episode 0) or greedy_sequential (episode 1) visits, so the servers carry
load, ``env.evaluate``'s summed slot reward of each policy's assignment is at most the oracle's. The heuristics
(random drawn with the key the rollout would give it, every single site, greedy, greedy_sequential) are among the
oracle's starts, so this holds by construction; an untrained PPO actor (freshly initialised 8-unit network, its
normaliser primed on the checked slots) is bounded only because the search beats it, not by construction.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import greedy_policy, greedy_sequential_policy, oracle_policy, random_policy, single_site
from baselines.ppo import PPOPolicyParams, ppo_policy
from baselines.ppo_networks import Actor, Normalizer, global_features, n_global_features, n_task_features, task_features
from jaxsim import env
from jaxsim.config import load_config, scenario_path
from jaxsim.params import make_params
from jaxsim.rollout import episode_keys, split_episode_key, split_slot_key

EPISODES = 2
SLOTS = (1, 4, 7)          # the slots checked (0 is an empty-server start); the trajectory runs up to the last
TOL = 1e-4                 # float rounding of evaluations batched differently inside the oracle's search
HIDDEN = (8,)              # the untrained PPO actor's layer widths


def _untrained_ppo(p, obs):
    """PPO policy params: a freshly initialised actor, its normaliser primed on ``obs`` (batched [N, ...])."""
    u = p.n_users
    actor = Actor(HIDDEN, p.n_actions).init(jax.random.PRNGKey(3), jnp.zeros((u, n_task_features(p))),
                                            jnp.ones((u,), bool), jnp.zeros((n_global_features(p),)))
    x = jax.vmap(task_features, in_axes=(0, None))(obs, p)
    g = jax.vmap(global_features, in_axes=(0, None))(obs, p)
    return PPOPolicyParams(actor, Normalizer.create(p).update(x, obs.mask, g), p, HIDDEN)


def _device_policies(p):
    """(name, policy, True where it takes the PPO params) of every shipped device policy."""
    return [("random", random_policy, False),
            *[(f"single_site_{a}", single_site(a), False) for a in range(p.n_actions)],
            ("greedy", greedy_policy, False), ("greedy_sequential", greedy_sequential_policy, False),
            ("ppo", ppo_policy, True)]


def _check(preset):
    p = make_params(load_config(scenario_path(preset)))
    pols = _device_policies(p)

    def episode(key, traj):
        k_reset, slot_keys = split_episode_key(key, p.horizon)
        _, state = env.reset(k_reset, p)

        def body(state, k):
            k_pol, k_step = split_slot_key(k)
            obs = env.get_obs(p, state)
            action = jnp.where(traj == 0, greedy_policy(k_pol, obs, p), greedy_sequential_policy(k_pol, obs, p))
            _, nxt, _, _, _ = env.step(k_step, state, action, p)
            return nxt, (state, k_pol)

        states, k_pols = jax.lax.scan(body, state, slot_keys[:max(SLOTS) + 1])[1]
        pick = jnp.asarray(SLOTS)
        return jax.tree.map(lambda x: x[pick], states), k_pols[pick]

    def rewards(state, k_pol, ppo):
        obs = env.get_obs(p, state)
        acts = jnp.stack([oracle_policy(k_pol, obs, p)] + [pol(k_pol, obs, ppo if is_ppo else p)
                                                           for _, pol, is_ppo in pols])
        return jax.vmap(lambda a: env.evaluate(p, state, a)[1]["reward"].sum())(acts)

    @jax.jit
    def run(keys):
        states, k_pols = jax.vmap(episode)(keys, jnp.arange(keys.shape[0]) % 2)
        flat = lambda x: x.reshape(-1, *x.shape[2:])          # noqa: E731  [E x slots, ...]
        states, k_pols = jax.tree.map(flat, states), flat(k_pols)
        ppo = _untrained_ppo(p, jax.vmap(env.get_obs, in_axes=(None, 0))(p, states))
        return jax.vmap(rewards, in_axes=(0, 0, None))(states, k_pols, ppo), states.active.sum(-1)

    r, n_tasks = map(np.asarray, run(episode_keys(jax.random.PRNGKey(0), 0, EPISODES)))
    assert np.all(n_tasks > 0)
    excess = r[:, 1:] - r[:, :1]                              # [checked slots, policies]: policy minus oracle
    worst = excess.max(0)
    bad = {name: f"{w:.4g} in {int((e > TOL).sum())} of {len(e)} slots"
           for (name, _, _), w, e in zip(pols, worst, excess.T) if w > TOL}
    assert not bad, f"{preset}: policies above the oracle's summed slot reward: {bad}"


@pytest.mark.parametrize("preset", ["default", "loaded"])
def test_oracle_bounds_every_shipped_device_policy(preset):
    _check(preset)
