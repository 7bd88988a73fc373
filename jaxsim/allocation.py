"""Radio resource allocation per cell among the slot's transfers.

Given bits to send b_u and the per-RB rate r_u of each active user, each cell's
n_rb RBs are shared:
  equal         n_u ∝ 1
  proportional  n_u ∝ b_u / r_u          (equal transfer times)
  min_delay     n_u ∝ sqrt(b_u / r_u)    (minimises sum_u b_u / (n_u r_u) s.t. sum n_u = n_rb)
Continuous shares are exact; ``integer_rbs`` gives every transfer one RB and the
rest by largest remainder (a cell with more transfers than RBs time-shares).
"""

from __future__ import annotations

import jax.numpy as jnp

from . import sorting
from .params import EnvParams


def share_weights(allocator: str, bits, rate_bps):
    if allocator == "equal":
        return jnp.ones_like(bits)
    ratio = bits / jnp.maximum(rate_bps, 1e-9)
    if allocator == "proportional":
        return ratio
    if allocator == "min_delay":
        return jnp.sqrt(ratio)
    raise ValueError(f"radio.allocator = {allocator!r}: unknown; allowed: equal, proportional, min_delay")


def allocate_rbs(params: EnvParams, assoc, active, bits, rate_bps):
    """RBs per user, [U] float (0 for inactive users); each cell's active users share n_rb."""
    w = jnp.where(active, share_weights(params.allocator, bits, rate_bps), 0.0)
    w = jnp.where(active, jnp.maximum(w, 1e-30), 0.0)
    own = (assoc[:, None] == jnp.arange(params.n_cells)[None, :]).astype(w.dtype)   # [U, M]
    w_cell = own.T @ w                                           # [M]
    share = w / jnp.maximum(w_cell[assoc], 1e-30)
    n_rb = params.n_rb * share
    if not params.integer_rbs:
        return n_rb
    n_act_cell = own.T @ active.astype(w.dtype)                  # [M]
    spare = jnp.maximum(params.n_rb - n_act_cell, 0.0)           # RBs beyond one per transfer
    x = spare[assoc] * share
    base = jnp.floor(x)
    rem = x - base
    left = spare - own.T @ jnp.where(active, base, 0.0)           # [M] RBs still to hand out
    # rank of each active user's remainder inside its cell (largest first) by one stable argsort
    key = assoc.astype(w.dtype) + jnp.where(active, 0.5 * (1.0 - rem), 0.9)
    order = sorting.stable_argsort(key)
    pos = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))
    count = own.sum(0)
    start = jnp.cumsum(count) - count                            # first sorted position of each cell
    rank = pos - start[assoc].astype(pos.dtype)
    extra = (rank < left[assoc]) & active
    n_int = 1.0 + base + extra.astype(w.dtype)
    crowded = n_act_cell[assoc] > params.n_rb
    return jnp.where(active, jnp.where(crowded, n_rb, n_int), 0.0)


def transfer_time_s(bits, n_rb, rate_per_rb_bps):
    """Time to send `bits` over n_rb RBs of the given per-RB rate, s (0 bits -> 0 s)."""
    return jnp.where(bits > 0, bits / jnp.maximum(n_rb * rate_per_rb_bps, 1e-9), 0.0)
