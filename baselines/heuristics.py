"""Decision makers that need no learning.

Every policy has the signature ``policy(key, obs, params) -> action [U] int32``
(``params`` is the environment's :class:`~jaxsim.params.EnvParams`); they are
pure JAX and run inside the jitted rollout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsim import allocation, channel, env, inference
from jaxsim.env import Observation, task_reward
from jaxsim.params import EnvParams


def random_policy(key, obs: Observation, params: EnvParams):
    """Uniformly random action for every task."""
    return jax.random.randint(key, obs.mask.shape, 0, params.n_actions).astype(jnp.int32)


def single_site(action_index: int):
    """The policy that sends every task to action `action_index` (edge-only, cloud-only, ...)."""
    def policy(key, obs: Observation, params: EnvParams):
        del key, params
        return jnp.full(obs.mask.shape, action_index, jnp.int32)
    policy.__name__ = f"single_site_{action_index}"
    return policy


def estimate_rewards(obs: Observation, params: EnvParams, extra_load=0.0, refusals: bool = False):
    """Each task's reward under each action, estimated from the observation alone, [U, A].

    Transfers: an equal RB share of the user's cell at the observed downlink SINR (both ways).
    Decode: output tokens x the roofline step time with one more sequence than the server's
    observed load (plus ``extra_load`` [U, A], e.g. the slot's tasks already assigned there), at the
    background context length. Waiting is ignored; so are refusals unless ``refusals``: then a task whose
    server has no free entry left after ``extra_load`` gets the refused task's reward (quality 0, delay the
    reject factor x budget).
    """
    a = jnp.arange(params.n_actions)
    srv = params.act_server_base[a]                                   # [A] a representative server
    rate = channel.rate_per_rb_bps(params, 10.0 ** (obs.sinr_db / 10.0))
    n_rb = params.n_rb / jnp.maximum(obs.n_cell_tasks, 1.0)
    ul_bits = obs.prompt_tokens * params.prompt_bits_per_token
    dl_bits = obs.output_tokens * params.bits_per_output_token[obs.task_type]
    radio = allocation.transfer_time_s(ul_bits + dl_bits, n_rb, rate)  # [U]
    backhaul = env.backhaul_s(params, ~params.act_is_edge[None, :], (ul_bits + dl_bits)[:, None])   # [U, A]
    prefill = jax.vmap(lambda s: inference.prefill_s(params, s, obs.prompt_tokens), out_axes=1)(srv)
    step = inference.decode_step_s(params, obs.load_seqs + extra_load + 1.0, params.bg_context, srv)            # [U, A]
    delay = radio[:, None] + backhaul + prefill + obs.output_tokens[:, None] * step
    quality = params.quality[:, obs.task_type].T                       # [U, A]
    if refusals:
        refused = obs.free_seqs <= extra_load
        quality = jnp.where(refused, 0.0, quality)
        delay = jnp.where(refused, params.reject_factor * obs.budget_s[:, None], delay)
    r, _ = task_reward(params, quality, delay, obs.budget_s[:, None], obs.min_quality[:, None])
    return r


def greedy_policy(key, obs: Observation, params: EnvParams):
    """Each task's best estimated reward on its own, given the observed backlogs."""
    del key
    return jnp.argmax(estimate_rewards(obs, params), axis=-1).astype(jnp.int32)


def greedy_sequential_policy(key, obs: Observation, params: EnvParams):
    """The slot's tasks assigned one by one (in user order), each with greedy's estimate at the load that the
    earlier ones added to their servers, and refused where they took the server's last free entries: it sees the
    competition greedy ignores. A scan over the users."""
    del key
    server = params.act_server_base[None, :] + params.act_is_edge[None, :] * obs.cell[:, None]    # [U, A]

    def assign(added, u):                                   # added [V]: this slot's tasks per server so far
        r = estimate_rewards(obs, params, added[server], refusals=True)[u]
        act = jnp.argmax(r).astype(jnp.int32)
        return added.at[server[u, act]].add(obs.mask[u].astype(added.dtype)), act

    _, actions = jax.lax.scan(assign, jnp.zeros(params.n_servers), jnp.arange(params.n_users))
    return actions
