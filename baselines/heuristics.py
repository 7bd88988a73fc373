"""Decision makers that need no learning.

Every policy has the signature ``policy(key, obs, params) -> action [U] int32``
(``params`` is the environment's :class:`~jaxsim.params.EnvParams`); they are
pure JAX and run inside the jitted rollout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

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


def type_table_policy(key, obs: Observation, table):
    """The policy of a fixed task-type -> action table ``table`` [T] int32, its policy data: every task of type t to
    action ``table[t]``. One compiled program serves every table; the single site a is the table of a alone (the
    same actions as ``single_site(a)``, and the same rollouts bit for bit)."""
    del key
    return table[obs.task_type]


def _fixed_delay_s(obs: Observation, params: EnvParams):
    """The load-independent part of each task's estimated delay under each action, [U, A], s: transfers at an
    equal RB share of the user's cell at the observed downlink SINR (both ways), backhaul, prefill."""
    srv = params.act_server_base                                       # [A] a representative server
    rate = channel.rate_per_rb_bps(params, 10.0 ** (obs.sinr_db / 10.0))
    n_rb = params.n_rb / jnp.maximum(obs.n_cell_tasks, 1.0)
    ul_bits = obs.prompt_tokens * params.prompt_bits_per_token
    dl_bits = obs.output_tokens * params.bits_per_output_token[obs.task_type]
    radio = allocation.transfer_time_s(ul_bits + dl_bits, n_rb, rate)  # [U]
    backhaul = env.backhaul_s(params, ~params.act_is_edge[None, :], (ul_bits + dl_bits)[:, None])   # [U, A]
    prefill = jax.vmap(lambda s: inference.prefill_s(params, s, obs.prompt_tokens), out_axes=1)(srv)
    return radio[..., None] + backhaul + prefill


def _reward_at_load(params: EnvParams, fixed_s, output_tokens, load_seqs, task_type, budget_s, min_quality,
                    refused=None):
    """Estimated rewards from the fixed delay, the decode of ``output_tokens`` at ``load_seqs`` + 1 sequences
    (background context), and (where ``refused``) the refused task's reward; broadcasts over tasks [..., A]."""
    step = inference.decode_step_s(params, load_seqs + 1.0, params.bg_context, params.act_server_base)
    delay = fixed_s + output_tokens[..., None] * step
    quality = params.quality[:, task_type].T                           # [..., A]
    if refused is not None:
        quality = jnp.where(refused, 0.0, quality)
        delay = jnp.where(refused, params.reject_factor * budget_s[..., None], delay)
    r, _ = task_reward(params, quality, delay, budget_s[..., None], min_quality[..., None])
    return r


def estimate_rewards(obs: Observation, params: EnvParams):
    """Each task's reward under each action, estimated from the observation alone, [U, A].

    Transfers: an equal RB share of the user's cell at the observed downlink SINR (both ways).
    Decode: output tokens x the roofline step time with one more sequence than the server's
    observed load, at the background context length. Waiting and refusals are ignored.
    """
    return _reward_at_load(params, _fixed_delay_s(obs, params), obs.output_tokens, obs.load_seqs, obs.task_type,
                           obs.budget_s, obs.min_quality)


def greedy_policy(key, obs: Observation, params: EnvParams):
    """Each task's best estimated reward on its own, given the observed backlogs."""
    del key
    return jnp.argmax(estimate_rewards(obs, params), axis=-1).astype(jnp.int32)


def greedy_sequential_policy(key, obs: Observation, params: EnvParams):
    """The slot's tasks assigned one by one (in user order), each with greedy's estimate at the load that the
    earlier ones added to their servers, and refused where they took the server's last free entries: it sees the
    competition greedy ignores. A scan over the users; the load-independent terms are computed once."""
    del key
    server = params.act_server_base[None, :] + params.act_is_edge[None, :] * obs.cell[:, None]    # [U, A]
    fixed = _fixed_delay_s(obs, params)

    def assign(added, u):                                   # added [V]: this slot's tasks per server so far
        extra = added[server[u]]                            # [A]
        r = _reward_at_load(params, fixed[u], obs.output_tokens[u], obs.load_seqs[u] + extra, obs.task_type[u],
                            obs.budget_s[u], obs.min_quality[u], refused=obs.free_seqs[u] <= extra)
        act = jnp.argmax(r).astype(jnp.int32)
        return added.at[server[u, act]].add(obs.mask[u].astype(added.dtype)), act

    _, actions = jax.lax.scan(assign, jnp.zeros(params.n_servers), jnp.arange(params.n_users))
    return actions


# the heuristics ``heuristic_policy`` switches between, by name (``table``: ``type_table_policy``)
HEURISTICS = ("random", "greedy", "greedy_sequential", "table")


@struct.dataclass
class HeuristicChoice:
    """Policy data of :func:`heuristic_policy`: which heuristic (an index into ``HEURISTICS``), the task-type table
    the table policy reads, and the environment params the others read."""
    which: jnp.ndarray      # [] int32
    table: jnp.ndarray      # [T] int32 actions
    env: EnvParams


def heuristic_choice(name: str, params: EnvParams, table=None) -> HeuristicChoice:
    """The policy data of heuristic ``name`` (one of ``HEURISTICS``; ``table``: the task-type table, [T]). ``params``
    are the ones the heuristic reads: those of the scenario the rollout runs."""
    if name not in HEURISTICS:
        raise ValueError(f"heuristic {name!r}: allowed {', '.join(HEURISTICS)}")
    t = jnp.zeros(params.n_types, jnp.int32) if table is None else jnp.asarray(table, jnp.int32)
    return HeuristicChoice(jnp.int32(HEURISTICS.index(name)), t, params)


def heuristic_policy(key, obs: Observation, choice: HeuristicChoice):
    """Every heuristic of ``HEURISTICS`` in one program: the one ``choice.which`` names, a traced index (a
    ``lax.switch``), so the heuristics of a scenario compile once however many a run compares. The rollouts equal
    those of each heuristic's own function bit for bit (tests/test_baselines.py)."""
    e = choice.env
    branches = (lambda k, o: random_policy(k, o, e), lambda k, o: greedy_policy(k, o, e),
                lambda k, o: greedy_sequential_policy(k, o, e), lambda k, o: type_table_policy(k, o, choice.table))
    return jax.lax.switch(choice.which, branches, key, obs)
