"""Episode rollouts: ``lax.scan`` over slots, ``vmap`` over episodes, episodes
sharded over all local devices (``jax.sharding``), chunked on the host to bound
memory.

Episode i always uses ``fold_in(key, i)``, so results do not depend on the
chunk size, the number of devices, or how many episodes are run alongside it.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import env
from .params import EnvParams

Policy = Callable[[jax.Array, env.Observation, Any], jax.Array]
TASK_FIELDS = ("mask", "task_type", "action", "delay_s", *env.DELAY_PARTS, "quality", "success", "reward", "refused")


def run_episode(key, params: EnvParams, policy: Policy, policy_params, collect_tasks: bool = True):
    """One episode: slot rewards [H] and (optionally) per-task info {field: [H, U]}.

    The policy receives the environment params when ``policy_params`` is None.
    """
    pp = params if policy_params is None else policy_params
    k_reset, k_run = jax.random.split(key)
    _, state = env.reset(k_reset, params)

    def body(state, k):
        k_pol, k_step = jax.random.split(k)
        action = policy(k_pol, env.get_obs(params, state), pp)
        _, state, reward, _, info = env.step(k_step, state, action, params)
        out = {f: info[f] for f in TASK_FIELDS} if collect_tasks else {}
        return state, (reward, out)

    _, (rewards, tasks) = jax.lax.scan(body, state, jax.random.split(k_run, params.horizon))
    return rewards, tasks


@partial(jax.jit, static_argnames=("policy", "collect_tasks"))
def _run_batch(keys, params, policy, policy_params, collect_tasks):
    return jax.vmap(lambda k: run_episode(k, params, policy, policy_params, collect_tasks))(keys)


def episode_keys(key, start: int, n: int):
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(start, start + n))


def rollout(key, params: EnvParams, policy: Policy, policy_params=None, n_episodes: int = 1,
            chunk: int = 1024, collect_tasks: bool = True, progress: Callable[[int], None] | None = None,
            first_episode: int = 0):
    """Run episodes first_episode .. first_episode + n_episodes - 1.

    Returns numpy {"slot_reward": [E, H], field: [E, H, U], ...}. On a cluster each process
    (after ``jax.distributed.initialize()``) runs its own ``first_episode`` range.

    Each chunk of episodes is sharded over the local devices (padded to a multiple of the
    device count); ``progress(n_done)`` is called after each chunk.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes = {n_episodes}: allowed >= 1")
    devices = jax.local_devices()
    mesh = Mesh(np.array(devices), ("episodes",))
    sharding = NamedSharding(mesh, PartitionSpec("episodes"))
    nd = len(devices)
    chunk = max(nd, (min(chunk, n_episodes) + nd - 1) // nd * nd)
    outs = []
    for start in range(0, n_episodes, chunk):
        n = min(chunk, n_episodes - start)
        keys = episode_keys(key, first_episode + start, chunk)          # full chunk: one compiled shape
        keys = jax.device_put(keys, sharding)
        rewards, tasks = _run_batch(keys, params, policy, policy_params, collect_tasks)
        outs.append(jax.tree.map(lambda x: np.asarray(x)[:n], {"slot_reward": rewards, **tasks}))
        if progress is not None:
            progress(n)
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
