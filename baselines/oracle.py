"""Per-slot exhaustive-search oracle (a myopic upper reference).

It reads the full state (``obs.state``) and evaluates assignments exactly with
the environment's own deterministic slot evaluation. Search:

1. start from the best of every shipped heuristic's assignment for the slot:
   greedy, greedy_sequential, the random policy's (drawn with the oracle's own
   key, as the random policy would draw it in its place) and every single-site
   assignment;
2. exhaustive search over all K^n assignments of the first n = min(#tasks,
   ``oracle.max_exhaustive_tasks``) tasks of the slot (others held);
3. coordinate ascent over the slot's tasks in user order (each task tries all
   K actions with the others fixed), repeated until a sweep moves no task, at
   most ``oracle.sweeps`` sweeps.

Every step replaces the incumbent only by a strictly better assignment (ties
keep it), so the result's summed slot reward is at least that of every start:
no shipped heuristic beats the oracle on any slot (up to the float rounding of
one assignment's evaluation in different batches). With at most
``max_exhaustive_tasks`` tasks in a slot the result is the exact optimum of
the slot's summed reward; above it, a local optimum no worse than any start.
A learned policy (PPO) is not among the starts: it is bounded only where the
search finds better.

All of it is one ``lax.while_loop`` whose body evaluates K assignments (one
``env.evaluate`` site in the compiled program, which halves the oracle's
compile time against one site per phase): the starts in groups of K, the
exhaustive block K at a time, then one task of a sweep per iteration.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim import env
from jaxsim.env import Observation
from jaxsim.params import EnvParams

from .heuristics import greedy_policy, greedy_sequential_policy, random_policy

_START, _EXHAUSTIVE, _SWEEP = 0, 1, 2


def start_assignments(key, obs: Observation, params: EnvParams):
    """The search's starts [3 + K, U] int32: greedy, greedy_sequential, random (drawn with ``key``), then one
    single-site assignment per action: every shipped device heuristic's assignment for the slot."""
    k, u = params.n_actions, params.n_users
    heur = [pol(key, obs, params).astype(jnp.int32) for pol in (greedy_policy, greedy_sequential_policy, random_policy)]
    return jnp.concatenate([jnp.stack(heur), jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None], (k, u))])


def oracle_search(key, obs: Observation, params: EnvParams):
    """(assignment [U] int32, coordinate sweeps run [] int32): the oracle's search (module docstring)."""
    state = obs.state
    radio = env.radio_delays(params, state)
    k, u = params.n_actions, params.n_users

    def values(cands):                                        # [K, U] -> [K] summed slot rewards
        return jax.vmap(lambda a: env.evaluate(params, state, a, radio)[1]["reward"].sum())(cands)

    starts = start_assignments(key, obs, params)
    n_st = -(-starts.shape[0] // k)                           # groups of K (the last padded with the first start)
    pad = jnp.broadcast_to(starts[:1], (n_st * k - starts.shape[0], u))
    starts = jnp.concatenate([starts, pad]).reshape(n_st, k, u)
    order = jnp.argsort(~state.active, stable=True).astype(jnp.int32)    # the slot's tasks first, in user order
    n_ex = min(params.oracle_exhaustive, u)
    m = max(n_ex, 1)
    combos = jnp.asarray(np.array(list(itertools.product(range(k), repeat=m)), np.int32).reshape(-1, k, m))
    t_ex = n_st                                               # first iteration of the exhaustive block
    t_sw = n_st + (combos.shape[0] if n_ex > 0 else 0)        # first iteration of the sweeps
    n_tasks = state.active.sum().astype(jnp.int32)
    acts = jnp.arange(k, dtype=jnp.int32)

    def body(carry):
        t, best, best_v, moved, n_sweeps, _ = carry
        phase = jnp.where(t < t_ex, _START, jnp.where(t < t_sw, _EXHAUSTIVE, _SWEEP))
        q = jnp.maximum(t - t_sw, 0) % jnp.maximum(n_tasks, 1)             # the sweep's task (position in order)
        i = order[q]
        exh = jnp.broadcast_to(best, (k, u)).at[:, order[:m]].set(combos[jnp.clip(t - t_ex, 0, combos.shape[0] - 1)])
        swp = jnp.broadcast_to(best, (k, u)).at[:, i].set(acts)
        cands = jnp.where(phase == _START, starts[jnp.minimum(t, n_st - 1)], jnp.where(phase == _EXHAUSTIVE, exh, swp))
        vals = values(cands)
        j = jnp.argmax(vals)
        # a sweep compares with the incumbent's value in the same batch (swp[best[i]] is the incumbent)
        ref = jnp.where(phase == _SWEEP, vals[best[i]], best_v)
        take = vals[j] > ref                                  # strictly better, else the incumbent stays
        best = jnp.where(take, cands[j], best)
        best_v = jnp.where(take, vals[j], ref)
        moved = moved | (take & (phase == _SWEEP))
        end = (phase == _SWEEP) & (q == n_tasks - 1)          # the last task of a sweep
        return t + 1, best, best_v, moved & ~end, n_sweeps + end, end & ~moved

    def more(carry):
        t, _, _, _, n_sweeps, converged = carry
        return (t < t_sw) | ((n_tasks > 0) & ~converged & (n_sweeps < params.oracle_sweeps))

    init = (jnp.int32(0), starts[0, 0], jnp.asarray(-jnp.inf, jnp.result_type(float)), jnp.bool_(False), jnp.int32(0), jnp.bool_(False))
    _, best, _, _, n_sweeps, _ = jax.lax.while_loop(more, body, init)
    return best, n_sweeps


def oracle_policy(key, obs: Observation, params: EnvParams):
    """The oracle's assignment [U] int32 (module docstring)."""
    return oracle_search(key, obs, params)[0]
