"""Per-slot exhaustive-search oracle (a myopic upper reference).

It reads the full state (``obs.state``) and evaluates assignments exactly with
the environment's own deterministic slot evaluation. Search:

1. start from the best of greedy and every single-site assignment;
2. exhaustive search over all K^n assignments of the first n = min(#tasks,
   ``oracle.max_exhaustive_tasks``) tasks of the slot (others held), evaluated
   in vectorised chunks;
3. ``oracle.sweeps`` rounds of coordinate ascent over every task (each task
   tries all K actions with the others fixed).

With at most ``max_exhaustive_tasks`` tasks in a slot the result is the exact
optimum of the slot's summed reward; above it, the exhaustive block plus the
sweeps give a local optimum no worse than any of the starting assignments.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsim import env
from jaxsim.env import Observation
from jaxsim.params import EnvParams

from .heuristics import greedy_policy

EVAL_CHUNK = 243  # assignments evaluated at once (bounds memory)


def oracle_policy(key, obs: Observation, params: EnvParams):
    state = obs.state
    radio = env.radio_delays(params, state)
    k, u = params.n_actions, params.n_users

    def value(action):
        _, info = env.evaluate(params, state, action, radio)
        return info["reward"].sum()

    starts = jnp.concatenate([greedy_policy(key, obs, params)[None],
                              jnp.broadcast_to(jnp.arange(k)[:, None], (k, u))]).astype(jnp.int32)
    best = starts[jnp.argmax(jax.vmap(value)(starts))]

    n_ex = min(params.oracle_exhaustive, u)
    if n_ex > 0:
        combos = jnp.asarray(np.array(list(itertools.product(range(k), repeat=n_ex)), np.int32))
        pos = jnp.argsort(~state.active, stable=True)[:n_ex]          # first n_ex tasks
        cands = jnp.broadcast_to(best, (combos.shape[0], u)).at[:, pos].set(combos)
        vals = jax.lax.map(value, cands, batch_size=EVAL_CHUNK)
        best = cands[jnp.argmax(vals)]

    def sweep_user(i, a):
        trial = jnp.broadcast_to(a, (k, u)).at[:, i].set(jnp.arange(k, dtype=jnp.int32))
        vals = jax.vmap(value)(trial)
        better = state.active[i] & (vals.max() > vals[a[i]])
        return jnp.where(better, trial[jnp.argmax(vals)], a)

    for _ in range(params.oracle_sweeps):
        best = jax.lax.fori_loop(0, u, sweep_user, best)
    return best
