"""Roofline LLM inference with continuous batching on every server.

A server holds a fixed-size masked array of S sequences (status free / running /
queued) plus a count of background sequences (cloud traffic of others). One
decode step advances every running sequence by one token and takes

  t_step(b) = max(2 N b / F_eff, (N bytes_w + b c kv_bytes) / BW_eff)

for b running sequences (ours + background) of mean context c (held at its
slot-start value within a slot). Within a slot the remaining token counts are
sorted and completion times follow in closed form as b shrinks (sort + cumsum).
Admission happens at slot boundaries, FIFO, while our running sequences stay
below min(b_max - background, S); the rest wait. A task arriving at a server
whose S entries are all taken is refused.

A task's delay is booked when it is decided: its decode completion is the
closed-form completion of the batch it joins with no later arrivals and the
background held (later arrivals do slow it in the carried state; the booked
delay does not see them). A waiting task's start is the slot boundary after the
k-th completion of the running batch; it then decodes in a full batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from .params import EnvParams

FREE, RUNNING, QUEUED = 0, 1, 2


@struct.dataclass
class ServerState:
    rem_tokens: jnp.ndarray   # [V, S] output tokens still to generate
    ctx_tokens: jnp.ndarray   # [V, S] context length (prompt + generated), tokens
    status: jnp.ndarray       # [V, S] int32: FREE / RUNNING / QUEUED
    order: jnp.ndarray        # [V, S] int32 FIFO arrival number
    counter: jnp.ndarray      # [V] int32 next arrival number
    bg_seqs: jnp.ndarray      # [V] int32 background sequences


def empty_servers(params: EnvParams, bg_seqs) -> ServerState:
    v, s = params.n_servers, params.max_seqs
    return ServerState(jnp.zeros((v, s)), jnp.zeros((v, s)), jnp.zeros((v, s), jnp.int32),
                       jnp.zeros((v, s), jnp.int32), jnp.zeros((v,), jnp.int32), bg_seqs.astype(jnp.int32))


def decode_step_s(params: EnvParams, b, ctx_mean):
    """Time of one decode step on every server, [V] (b, ctx_mean broadcast against [V])."""
    compute = 2.0 * params.srv_n_params * b / params.srv_flops
    memory = (params.srv_weight_bytes + b * ctx_mean * params.srv_kv_bytes) / params.srv_bw
    return jnp.maximum(compute, memory)


def prefill_s(params: EnvParams, server, prompt_tokens):
    """Prefill time of a prompt of L tokens on `server`: (2 N L + 2 n_layer L^2 d_model) / F_eff, s."""
    n, nl, dm = params.srv_n_params[server], params.srv_n_layers[server], params.srv_d_model[server]
    flops = 2.0 * n * prompt_tokens + params.prefill_attention * 2.0 * nl * prompt_tokens ** 2 * dm
    return flops / params.srv_flops[server]


def bg_walk(key, params: EnvParams, bg_seqs):
    """Bounded random walk of the background load: +-bg_step per slot, clipped to [0, bg_max]."""
    u = jax.random.uniform(key, bg_seqs.shape)
    step = jnp.floor(u * (2 * params.srv_bg_step + 1)).astype(jnp.int32) - params.srv_bg_step
    return jnp.clip(bg_seqs + step, 0, params.srv_bg_max)


def ctx_mean_tokens(params: EnvParams, srv: ServerState):
    """Mean context of the running batch (ours and background), [V] tokens."""
    run = srv.status == RUNNING
    n = run.sum(-1)
    tot = jnp.sum(jnp.where(run, srv.ctx_tokens, 0.0), -1) + srv.bg_seqs * params.bg_context
    return tot / jnp.maximum(n + srv.bg_seqs, 1)


@struct.dataclass
class BatchSchedule:
    """Closed-form decode schedule of each server's running batch from the slot start."""
    done_s: jnp.ndarray      # [V, S] completion time of each running sequence (inf otherwise)
    sorted_rem: jnp.ndarray  # [V, S] running sequences' remaining tokens, ascending (padded)
    sorted_done_s: jnp.ndarray  # [V, S] their completion times (inf padding)
    step_s: jnp.ndarray      # [V, S] step time in phase j (j sequences already done)
    n_running: jnp.ndarray   # [V]


def batch_schedule(params: EnvParams, srv: ServerState) -> BatchSchedule:
    """Sort + cumsum: completion times as the batch shrinks, no loop over sequences."""
    run = srv.status == RUNNING
    n = run.sum(-1)                                         # [V]
    s = params.max_seqs
    big = jnp.float32(3e38)
    order = jnp.argsort(jnp.where(run, srv.rem_tokens, big), axis=-1)
    r = jnp.take_along_axis(jnp.where(run, srv.rem_tokens, 0.0), order, -1)
    j = jnp.arange(s)[None, :]
    valid = j < n[:, None]
    b = (n[:, None] - j + srv.bg_seqs[:, None]).astype(jnp.float32)
    ctx = ctx_mean_tokens(params, srv)
    step = jax.vmap(lambda bb: decode_step_s(params, bb, ctx), in_axes=1, out_axes=1)(b)   # [V, S]
    r_prev = jnp.concatenate([jnp.zeros_like(r[:, :1]), r[:, :-1]], -1)
    dt = jnp.where(valid, (r - r_prev) * step, 0.0)
    t_sorted = jnp.where(valid, jnp.cumsum(dt, -1), jnp.inf)
    done = jnp.full_like(t_sorted, jnp.inf)
    done = jax.vmap(lambda d, o, t: d.at[o].set(t))(done, order, t_sorted)
    return BatchSchedule(done, jnp.where(valid, r, jnp.inf), t_sorted, step, n)


def tokens_done_by(sched: BatchSchedule, t_s):
    """Decode steps every still-running sequence has taken by time t_s, [V]."""
    t_prev = jnp.concatenate([jnp.zeros_like(sched.sorted_done_s[:, :1]), sched.sorted_done_s[:, :-1]], -1)
    r = jnp.where(jnp.isfinite(sched.sorted_rem), sched.sorted_rem, 0.0)
    r_prev = jnp.concatenate([jnp.zeros_like(r[:, :1]), r[:, :-1]], -1)
    inside = (t_prev < t_s) & (t_s < sched.sorted_done_s)
    return jnp.sum(jnp.where(inside, r_prev + (t_s - t_prev) / sched.step_s, 0.0), -1)


def enqueue(params: EnvParams, srv: ServerState, server, valid, out_tokens, prompt_tokens):
    """Put the slot's new tasks into their servers' queues (FIFO by user index).

    server, valid, out_tokens, prompt_tokens: [U]. Returns (state, entry [U] int, accepted [U]).
    A task is refused when its server has no free entry.
    """
    v, s = params.n_servers, params.max_seqs
    oh = jax.nn.one_hot(server, v, dtype=jnp.int32) * valid[:, None]
    q = jnp.take_along_axis(jnp.cumsum(oh, 0) - oh, server[:, None], 1)[:, 0]     # rank on its server
    free = srv.status == FREE
    free_rank = jnp.cumsum(free, -1) - 1                                          # [V, S]
    n_free = free.sum(-1)
    accepted = valid & (q < n_free[server])
    hit = free[server] & (free_rank[server] == q[:, None])                        # [U, S]: q-th free entry
    entry = jnp.where(accepted, jnp.argmax(hit, -1), s)                            # s: dropped by scatter
    put = lambda a, x: a.at[server, entry].set(x, mode="drop")                     # noqa: E731
    srv = srv.replace(
        rem_tokens=put(srv.rem_tokens, out_tokens),
        ctx_tokens=put(srv.ctx_tokens, prompt_tokens),
        status=put(srv.status, jnp.full_like(server, QUEUED)),
        order=put(srv.order, srv.counter[server] + q),
        counter=srv.counter + oh.sum(0),
    )
    return srv, entry, accepted


def admit(params: EnvParams, srv: ServerState):
    """Admit queued sequences FIFO up to min(b_max - background, S) running. Returns (state, queue_pos).

    queue_pos [V, S]: 0-based position among those still waiting (meaningless elsewhere).
    """
    run = srv.status == RUNNING
    queued = srv.status == QUEUED
    cap = jnp.minimum(params.srv_b_max - srv.bg_seqs, params.max_seqs) - run.sum(-1)    # [V]
    key = jnp.where(queued, srv.order, jnp.iinfo(jnp.int32).max)
    order = jnp.argsort(key, axis=-1)
    rank = jax.vmap(lambda o: jnp.zeros_like(o).at[o].set(jnp.arange(o.shape[0])))(order)
    take = queued & (rank < cap[:, None])
    return srv.replace(status=jnp.where(take, RUNNING, srv.status)), rank - jnp.maximum(cap, 0)[:, None]


def waiting_schedule(params: EnvParams, srv: ServerState, sched: BatchSchedule, queue_pos):
    """Projected (wait_s, decode_s) of still-queued sequences, [V, S].

    The k-th waiter starts at the slot boundary after the k-th completion of the running
    batch (cycling through the batch when k exceeds it) and decodes in a full batch.
    """
    n = jnp.maximum(sched.n_running, 1)[:, None]
    k = queue_pos                                                 # 0-based
    t_k = jnp.take_along_axis(sched.sorted_done_s, jnp.minimum(k % n, params.max_seqs - 1), -1)
    t_last = jnp.take_along_axis(sched.sorted_done_s, n - 1, -1)
    ceil_slot = lambda t: jnp.ceil(t / params.slot_s) * params.slot_s   # noqa: E731
    wait = ceil_slot(t_k) + (k // n) * ceil_slot(t_last)
    b_full = (sched.n_running + srv.bg_seqs).astype(jnp.float32)
    step_full = decode_step_s(params, b_full, ctx_mean_tokens(params, srv))
    return wait, srv.rem_tokens * step_full[:, None]


def advance(params: EnvParams, srv: ServerState, sched: BatchSchedule) -> ServerState:
    """Run the slot: finished sequences free their entries, the others carry over."""
    run = srv.status == RUNNING
    finished = run & (sched.done_s <= params.slot_s)
    steps = tokens_done_by(sched, params.slot_s)[:, None]
    go_on = run & ~finished
    return srv.replace(
        rem_tokens=jnp.where(go_on, jnp.maximum(srv.rem_tokens - steps, 0.0), jnp.where(finished, 0.0, srv.rem_tokens)),
        ctx_tokens=jnp.where(go_on, srv.ctx_tokens + steps, jnp.where(finished, 0.0, srv.ctx_tokens)),
        status=jnp.where(finished, FREE, srv.status),
    )


def server_load(srv: ServerState):
    """Sequences on each server: ours (running and queued) plus background, [V]."""
    return (srv.status != FREE).sum(-1) + srv.bg_seqs
