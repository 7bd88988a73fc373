"""Roofline LLM inference with continuous batching on every server.

A server holds a fixed-size masked array of S sequences (status free / running /
queued) plus a count of background sequences (cloud traffic of others). One
decode step advances every running sequence by one token; it runs the weight
matmuls and then attention over the batch's KV cache, one operator after the
other (a per-operator roofline):

  t_step(b, C) = T_fixed + max(2 N b / F_eff, N bytes_w / BW_eff) + b c_ar + C kv_s

for b running sequences (ours + background) holding C context tokens in all: fixed per-layer
costs (and a tensor-parallel sync), the weight matmuls, tensor-parallel all-reduces per token
and attention per context token (:func:`jaxsim.params.server_terms` derives each term).
Each of our sequences' context grows by one token a step; background sequences
are a stationary population at ``bg_context`` tokens each. Within a slot the
remaining token counts are sorted; between two completions b is fixed and C
grows linearly, so each phase's time is a closed-form sum over its steps and
completion times follow as the batch shrinks (sort + cumsum, no loop over
sequences or tokens). Admission happens at slot boundaries, FIFO, while our
running sequences stay below min(b_max - background, S); the rest wait; newcomers
join the batch after the step in progress. A task
arriving at a server whose S entries are all taken is refused.

Prefill (first-token latency) of a prompt of L tokens: a fixed overhead per layer (and the
tensor-parallel sync and all-reduces) plus max(FLOPs / F_prefill, N bytes_w / BW_eff), FLOPs = 2 N L + 2 n_layer L^2
d_model (the attention term), with a prefill efficiency of its own.

Progress carries exactly across slots: remaining counts stay whole tokens, and the
decode step in progress at a slot's end is counted as taken, its remaining time
carried as the server's ``busy_s`` (so are prefills that outlast the slot, with
``prefill_stall``); the next slot's decode timeline starts after it, and a sequence
whose last token was in progress completes at ``busy_s``.

A task's delay is booked when it is decided, as the carried state will run it if
nothing else arrives and the background holds: a running task completes in the
closed-form schedule of its batch; while tasks wait, the servers are run on slot by
slot with the same advance and FIFO admission (:func:`book`) until none waits, and
the last schedule gives the rest. Later arrivals and background moves do change the
carried state; the booked delay does not see them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from . import prng, sorting
from .config import InferenceConfig
from .params import EnvParams, server_arrays

FREE, RUNNING, QUEUED = 0, 1, 2
REM_CAP = (1 << 23) - 1       # whole remaining tokens sort below this (task output tokens are validated <= 8e6)
PACKED_MAX_SEQS = 256         # REM_CAP * 256 + 255 = 2^31 - 1: the largest array whose keys pack into int32


@struct.dataclass
class ServerState:
    rem_tokens: jnp.ndarray   # [V, S] output tokens still to generate (whole tokens)
    ctx_tokens: jnp.ndarray   # [V, S] context length (prompt + generated), tokens
    status: jnp.ndarray       # [V, S] int32: FREE / RUNNING / QUEUED
    order: jnp.ndarray        # [V, S] int32 FIFO position of a queued sequence (0 = admitted next);
                              #   a server's queued entries always hold 0 .. n_queued - 1
    counter: jnp.ndarray      # [V] int32 tasks that have arrived (accepted or refused)
    bg_seqs: jnp.ndarray      # [V] int32 background sequences
    busy_s: jnp.ndarray       # [V] s the server is still busy at the slot's start before a new decode step can
                              #   start: the decode step in progress at the last slot's end (its token is already
                              #   counted in rem_tokens / ctx_tokens) and, with ``prefill_stall``, prefills left


def empty_servers(params: EnvParams, bg_seqs) -> ServerState:
    v, s = params.n_servers, params.max_seqs
    return ServerState(jnp.zeros((v, s)), jnp.zeros((v, s)), jnp.zeros((v, s), jnp.int32),
                       jnp.zeros((v, s), jnp.int32), jnp.zeros((v,), jnp.int32), bg_seqs.astype(jnp.int32),
                       jnp.zeros((v,)))


def _server_take(server):
    return (lambda x: x) if server is None else (lambda x: x[server])      # noqa: E731


def step_base_s(params: EnvParams, b, server=None):
    """The part of one decode step with b sequences that does not grow with context, s: the fixed cost per step
    (per-layer overhead, tensor-parallel synchronisation), the weight matmuls max(2 N b / F_eff, N bytes_w / BW_eff)
    and the all-reduces of b tokens' activations; on every server ([V], b broadcast against it) or on ``server``
    (an index array; b broadcast against it)."""
    take = _server_take(server)
    return (take(params.srv_step_fixed_s) + take(params.srv_tp_fixed_s)
            + jnp.maximum(2.0 * take(params.srv_n_params) * b / take(params.srv_flops),
                          take(params.srv_weight_bytes) / take(params.srv_bw))
            + b * take(params.srv_comm_s_per_token))


def kv_read_s_per_token(params: EnvParams, server=None):
    """Decode attention's time per context token of the batch (its KV read at attention's own efficiency), s."""
    return _server_take(server)(params.srv_kv_s_per_token)


def decode_step_s(params: EnvParams, b, ctx_mean, server=None):
    """Time of one decode step with b running sequences of mean context ctx_mean tokens, s: on every server
    ([V], b and ctx_mean broadcast against it), or on ``server`` (an index array; b, ctx_mean broadcast
    against its shape)."""
    return step_base_s(params, b, server) + b * ctx_mean * kv_read_s_per_token(params, server)


def steps_time_s(base_s, kv_s, ctx_total, grow, n_steps):
    """Time of ``n_steps`` decode steps from a step's weight-matmul time ``base_s`` and KV read per context token
    ``kv_s``, the batch's context starting at ``ctx_total`` tokens and growing by ``grow`` a step, s. Each step
    is charged at its mid-step context (the step writes the new token's KV): step k at ctx_total + grow (k + 1/2),
    summing to n base + kv (n C + grow n^2 / 2) exactly; a fractional count continues the same curve, so
    progress and time map one to one (:func:`steps_within_s` inverts it)."""
    n = n_steps
    return n * base_s + kv_s * (n * ctx_total + grow * n * n / 2.0)


def decode_steps_s(params: EnvParams, b, ctx_total, grow, n_steps, server=None):
    """:func:`steps_time_s` of b sequences on every server or on ``server``, s."""
    return steps_time_s(step_base_s(params, b, server), kv_read_s_per_token(params, server), ctx_total, grow, n_steps)


def steps_within_s(base_s, kv_s, ctx_total, grow, t_s):
    """Inverse of :func:`steps_time_s` in n: the steps that fit in ``t_s`` seconds (fractional), from the
    phase's weight-matmul step time ``base_s``, KV time per context token ``kv_s``, start context and growth:
    the root of (kv grow / 2) n^2 + (base + kv C) n - t = 0, in the form that stays exact as grow -> 0."""
    bb = base_s + kv_s * ctx_total
    return 2.0 * t_s / (bb + jnp.sqrt(bb * bb + 2.0 * kv_s * grow * t_s))


def prefill_s(params: EnvParams, server, prompt_tokens, n_prompts=1.0):
    """First-token time of ``n_prompts`` prompts of L tokens prefilled together on `server`, s: overhead +
    tensor-parallel synchronisation + max(n (2 N L + 2 n_layer L^2 d_model) / F_prefill, N bytes_w / BW_eff)
    + the all-reduces of the n L tokens' activations."""
    n, nl, dm = params.srv_n_params[server], params.srv_n_layers[server], params.srv_d_model[server]
    flops = n_prompts * (2.0 * n * prompt_tokens + params.prefill_attention * 2.0 * nl * prompt_tokens ** 2 * dm)
    return (params.srv_prefill_overhead_s[server] + params.srv_tp_fixed_s[server]
            + jnp.maximum(flops / params.srv_prefill_flops[server],
                          params.srv_weight_bytes[server] / params.srv_bw[server])
            + n_prompts * prompt_tokens * params.srv_comm_s_per_token[server])


@struct.dataclass
class ServingParams:
    """The fields of :class:`jaxsim.params.EnvParams` that the server formulas here read, for servers outside a
    scenario (validation against measured serving, calibration): every function of this module that takes
    ``params`` and no scenario field accepts either. One entry per server, efficiencies folded in."""
    n_servers: int = struct.field(pytree_node=False)
    max_seqs: int = struct.field(pytree_node=False)
    prefill_stall: bool = struct.field(pytree_node=False)
    srv_flops: jnp.ndarray
    srv_prefill_flops: jnp.ndarray
    srv_prefill_overhead_s: jnp.ndarray
    srv_bw: jnp.ndarray
    srv_n_params: jnp.ndarray
    srv_weight_bytes: jnp.ndarray
    srv_kv_s_per_token: jnp.ndarray
    srv_step_fixed_s: jnp.ndarray
    srv_tp_fixed_s: jnp.ndarray
    srv_comm_s_per_token: jnp.ndarray
    srv_n_layers: jnp.ndarray
    srv_d_model: jnp.ndarray
    bg_context: jnp.ndarray
    prefill_attention: jnp.ndarray


def serving_params(servers, inf: InferenceConfig, max_seqs: int = 1) -> ServingParams:
    """Servers outside a scenario: one per (hardware, model, n_gpus) of ``servers``, derived by
    :func:`jaxsim.params.server_arrays` exactly as a scenario's servers are; no background."""
    return ServingParams(n_servers=len(servers), max_seqs=max_seqs, prefill_stall=False,
                         bg_context=jnp.float32(0.0), prefill_attention=jnp.float32(1.0 if inf.prefill_attention else 0.0),
                         **server_arrays(servers, inf))


def bg_walk(key, params: EnvParams, bg_seqs):
    """Bounded random walk of the background load: +-bg_step per slot, clipped to [0, bg_max]."""
    u = prng.uniform(key, bg_seqs.shape)
    step = jnp.floor(u * (2 * params.srv_bg_step + 1)).astype(jnp.int32) - params.srv_bg_step
    return jnp.clip(bg_seqs + step, 0, params.srv_bg_max)


@struct.dataclass
class BatchSchedule:
    """Closed-form decode schedule of each server's running batch from the slot start.

    The decode timeline starts at ``stall_s``: the server's ``busy_s`` (the step in progress, carried prefills)
    plus this slot's prefills with ``prefill_stall``. Phase j runs while j of the sorted sequences are done:
    b = n - j + background sequences, from step sorted_rem[j - 1] to sorted_rem[j] (counted from the stall's
    end), total context phase_ctx0 at its start, growing by n - j tokens a step (:func:`decode_steps_s`),
    ending at phase_end_s[j]. A sequence with no token left (its last one in progress) completes at busy_s.
    """
    sorted_rem: jnp.ndarray  # [V, S] running sequences' remaining tokens, ascending (inf padding)
    sorted_done_s: jnp.ndarray  # [V, S] their completion times, s (inf padding)
    phase_end_s: jnp.ndarray  # [V, S] phase j's end on the decode timeline, s (inf padding)
    base_s: jnp.ndarray      # [V, S] phase j's weight-matmul step time, s
    phase_ctx0: jnp.ndarray  # [V, S] phase j's total context at its first step, tokens
    kv_s: jnp.ndarray        # [V] KV read per context token, s
    n_running: jnp.ndarray   # [V]
    stall_s: jnp.ndarray     # [V] the decode timeline's start, s


def completion_s(sched: BatchSchedule, server, rem_tokens):
    """Completion time of running sequences with `rem_tokens` left on `server` (same shapes), s.

    A sequence finishes at the end of phase c, c = running sequences on its server with fewer
    tokens left (sequences with equal counts finish together: the phases between them last 0 s).
    Binary search in the server's sorted counts: no [.., S] intermediate per sequence. inf where
    rem_tokens is inf (not running).
    """
    s = sched.sorted_rem.shape[-1]
    c = sorting.count_below_rows(sched.sorted_rem, server, rem_tokens)
    t = sched.sorted_done_s[server, jnp.minimum(c, s - 1)]
    return jnp.where(jnp.isfinite(rem_tokens), t, jnp.inf)


def prefill_stall_s(params: EnvParams, srv: ServerState, admitted):
    """With ``inference.prefill_stall``: the prompts admitted this slot (``admitted`` [V, S], their context still
    the prompt) are prefilled at the slot's start, one after the other, before the batch's next decode step;
    the sum of their prefill times, [V] s. None without the option (no stall)."""
    if not params.prefill_stall:
        return None
    server = jnp.broadcast_to(jnp.arange(params.n_servers)[:, None], admitted.shape)
    pre = prefill_s(params, server, srv.ctx_tokens)
    return jnp.sum(jnp.where(admitted, pre, 0.0), -1)


def batch_schedule(params: EnvParams, srv: ServerState, prefill_stall=None) -> BatchSchedule:
    """Sort + cumsum: completion times as the batch shrinks, no loop over sequences or tokens. Decoding
    starts after the server's ``busy_s`` and ``prefill_stall`` [V] s (the slot's prefills; default none).

    The sort is of int32 keys (:mod:`jaxsim.sorting`), XLA:CPU's fast sort (non-running entries sort
    last). Remaining counts are whole tokens (:func:`advance` carries whole steps and the step in progress as
    ``busy_s``), so with up to ``PACKED_MAX_SEQS`` entries a server's counts and entry indices pack into one
    int32 key and a single sort orders the counts and the contexts together; a reversed cumsum of the sorted
    contexts gives each phase's running context. Larger arrays rank each entry by binary search and scatter
    its context to its rank.
    """
    run = srv.status == RUNNING
    n = run.sum(-1)                                         # [V]
    v, s = params.n_servers, params.max_seqs
    j = jnp.arange(s)[None, :]
    valid = j < n[:, None]
    if s <= PACKED_MAX_SEQS:
        # whole remaining tokens (< 2^23) packed above the entry index: one int32 sort gives the order and the
        # permutation, so the contexts come along by a gather
        rem_i = jnp.where(run, jnp.round(srv.rem_tokens), REM_CAP).astype(jnp.int32)
        packed = sorting.sort_int32(rem_i * s + jnp.arange(s, dtype=jnp.int32)[None, :])
        r = jnp.where(valid, (packed // s).astype(jnp.float32), 0.0)
        own_ctx = jnp.where(valid, jnp.take_along_axis(srv.ctx_tokens, packed % s, -1), 0.0)
    else:
        key = sorting.int32_sort_key(jnp.where(run, srv.rem_tokens, jnp.float32(3e38)))   # others last
        r = jnp.where(valid, sorting.float32_from_sort_key(sorting.sort_int32(key)), 0.0)  # running rem, ascending
        # each running sequence's context added at its rank (ties share the first rank of their group, the
        # only phase of the group that lasts)
        rank = sorting.count_below_rows(jnp.where(valid, r, jnp.inf),
                                        jnp.broadcast_to(jnp.arange(v)[:, None], (v, s)),
                                        jnp.where(run, srv.rem_tokens, jnp.inf))
        own_ctx = jnp.zeros((v, s)).at[jnp.arange(v)[:, None], jnp.where(run, rank, s)].add(
            jnp.where(run, srv.ctx_tokens, 0.0), mode="drop")
    ctx_suffix = jnp.cumsum(own_ctx[:, ::-1], -1)[:, ::-1]                  # own context still running in phase j
    r_prev = jnp.concatenate([jnp.zeros_like(r[:, :1]), r[:, :-1]], -1)
    m = (n[:, None] - j).astype(jnp.float32)                                # own sequences running in phase j
    b = m + srv.bg_seqs[:, None]
    base = jax.vmap(lambda bb: step_base_s(params, bb), in_axes=1, out_axes=1)(b)   # [V, S]
    kv_s = kv_read_s_per_token(params)                                      # [V]
    ctx0 = ctx_suffix + m * r_prev + (srv.bg_seqs * params.bg_context)[:, None]
    steps = r - r_prev                                                      # phase lengths
    dt = jnp.where(valid, steps_time_s(base, kv_s[:, None], ctx0, m, steps), 0.0)
    stall = srv.busy_s if prefill_stall is None else srv.busy_s + prefill_stall
    t_end = jnp.where(valid, stall[:, None] + jnp.cumsum(dt, -1), jnp.inf)
    done = jnp.where(valid & (r == 0.0), srv.busy_s[:, None], t_end)       # last token in progress: done with it
    return BatchSchedule(jnp.where(valid, r, jnp.inf), done, t_end, base, ctx0, kv_s, n, stall)


def tokens_done_by(sched: BatchSchedule, t_s):
    """Decode steps every still-running sequence has taken by time t_s (scalar or [V]) on the decode timeline
    (fractional), [V]; 0 before the timeline starts and once every sequence is done."""
    t_s = jnp.broadcast_to(t_s, sched.stall_s.shape)[:, None]
    t_prev = jnp.concatenate([sched.stall_s[:, None], sched.phase_end_s[:, :-1]], -1)
    r = jnp.where(jnp.isfinite(sched.sorted_rem), sched.sorted_rem, 0.0)
    r_prev = jnp.concatenate([jnp.zeros_like(r[:, :1]), r[:, :-1]], -1)
    inside = (t_prev <= t_s) & (t_s < sched.phase_end_s)
    m = (sched.n_running[:, None] - jnp.arange(r.shape[-1])[None, :]).astype(jnp.float32)
    x = steps_within_s(sched.base_s, sched.kv_s[:, None], sched.phase_ctx0, m, jnp.where(inside, t_s - t_prev, 0.0))
    return jnp.sum(jnp.where(inside, r_prev + x, 0.0), -1)


def step_end_s(sched: BatchSchedule, n_steps):
    """When the running batch's ``n_steps``-th decode step (whole, counted on the decode timeline) ends, [V] s:
    the timeline's start for 0 steps; inf beyond the longest sequence."""
    s = sched.sorted_rem.shape[-1]
    j = jnp.sum(sched.sorted_rem < n_steps[:, None], -1)                  # phases wholly before the step
    jj = jnp.minimum(j, s - 1)[:, None]
    at = lambda x: jnp.take_along_axis(x, jj, -1)[:, 0]                  # noqa: E731
    prev = lambda x, first: jnp.where(j == 0, first, jnp.take_along_axis(  # noqa: E731
        x, jnp.maximum(j - 1, 0)[:, None], -1)[:, 0])
    start, r_prev = prev(sched.phase_end_s, sched.stall_s), prev(sched.sorted_rem, 0.0)
    m = (sched.n_running - j).astype(jnp.float32)
    t = start + steps_time_s(at(sched.base_s), sched.kv_s, at(sched.phase_ctx0), m, n_steps - r_prev)
    return jnp.where(n_steps <= 0, sched.stall_s, jnp.where(j < sched.n_running, t, jnp.inf))


@jax.named_scope("enqueue")
def enqueue(params: EnvParams, srv: ServerState, server, valid, out_tokens, prompt_tokens):
    """Put the slot's new tasks into their servers' queues (FIFO by user index).

    server, valid, out_tokens, prompt_tokens: [U]. Returns (state, entry [U] int, accepted [U]).
    A task is refused when its server has no free entry.
    """
    v, s = params.n_servers, params.max_seqs
    oh = jax.nn.one_hot(server, v, dtype=jnp.int32) * valid[:, None]
    u = jnp.arange(server.shape[0])
    same = (server[None, :] == server[:, None]) & valid[None, :] & (u[None, :] < u[:, None])   # [U, U]
    q = same.sum(-1, dtype=jnp.int32)                                              # rank on its server
    # the q-th free entry (0-based) of each task's server, found in the free entries' bit mask
    first_free, n_free = sorting.nth_true_rows(srv.status == FREE, server, q)
    n_queued = (srv.status == QUEUED).sum(-1)
    accepted = valid & (q < n_free[server])
    entry = jnp.where(accepted, first_free, s)                                     # s: dropped by scatter
    put = lambda a, x: a.at[server, entry].set(x, mode="drop")                     # noqa: E731
    srv = srv.replace(
        rem_tokens=put(srv.rem_tokens, out_tokens),
        ctx_tokens=put(srv.ctx_tokens, prompt_tokens),
        status=put(srv.status, jnp.full_like(server, QUEUED)),
        order=put(srv.order, n_queued[server] + q),                                # joins the queue's tail
        counter=srv.counter + oh.sum(0),
    )
    return srv, entry, accepted


def admit(params: EnvParams, srv: ServerState):
    """Admit queued sequences FIFO up to min(b_max - background, S) running. Returns (state, queue_pos).

    A running sequence with no token left (its last one in progress) finishes before any newcomer's first step
    and leaves its place to it. The queue's first `cap` positions start running; the others move up by as many.
    queue_pos [V, S]: 0-based position among those still waiting (meaningless elsewhere).
    """
    staying = (srv.status == RUNNING) & (srv.rem_tokens > 0.0)
    queued = srv.status == QUEUED
    cap = jnp.minimum(params.srv_b_max - srv.bg_seqs, params.max_seqs) - staying.sum(-1)    # [V]
    take = queued & (srv.order < cap[:, None])
    queue_pos = srv.order - jnp.maximum(cap, 0)[:, None]
    still = queued & ~take
    return (srv.replace(status=jnp.where(take, RUNNING, srv.status), order=jnp.where(still, queue_pos, srv.order)),
            queue_pos)


@jax.named_scope("schedule")
def admit_and_schedule(params: EnvParams, srv: ServerState):
    """:func:`admit`, then the slot's :func:`batch_schedule` (the admitted prompts' prefill stall with the
    option). Returns (state, schedule, queue_pos)."""
    queued = srv.status == QUEUED
    srv, queue_pos = admit(params, srv)
    sched = batch_schedule(params, srv, prefill_stall_s(params, srv, queued & (srv.status == RUNNING)))
    return srv, sched, queue_pos


def _where_server(mask, new, old):
    """Per server (the leading axis of every leaf): ``new`` where ``mask`` [V], else ``old``."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


@jax.named_scope("book")
def book(params: EnvParams, srv: ServerState, sched: BatchSchedule, server, entry, booked):
    """(wait_s, done_s) of the sequences at (server, entry) where ``booked`` (all [U]), from the slot's start: the
    slot boundary at which each is admitted (0 when running now) and its completion, as the carried state runs them
    when nothing else arrives and the background holds.

    With no sequence waiting, the slot's closed-form schedule is the whole future (the batch only shrinks).
    Otherwise each server with waiters runs on through the same :func:`advance` and :func:`admit` (FIFO into the
    places freed at a slot boundary), jumping straight to the first boundary at which a place frees: the one after
    the last step of its shortest staying sequence starts, since until then the batch is full and the closed form
    holds. Every jump admits at least one waiter, so the loop runs at most S times (none in a slot without
    waiters, and none is compiled for a config in which no server can hold waiters: ``params.may_queue``); only the
    servers of booked sequences run on. The last schedule then gives every remaining completion
    in closed form. Only the U looked-up entries are gathered at the end.
    """
    t_slot, v, s = params.slot_s, params.n_servers, params.max_seqs
    rows = jnp.broadcast_to(jnp.arange(v)[:, None], (v, s))
    needed = jnp.zeros((v,), bool).at[server].max(booked)                      # [V] servers of booked sequences

    def waiting(c):
        return jnp.any(needed[:, None] & (c[0].status == QUEUED))

    def jump(c):
        sim, sch, k, admitted_at, done_at = c
        run = sim.status == RUNNING
        waits = needed & (sim.status == QUEUED).any(-1)                       # [V]
        # the first place to free: the staying sequence with the fewest tokens left, once its last step starts
        r_min = jnp.min(jnp.where(run & (sim.rem_tokens > 0.0), sim.rem_tokens, jnp.inf), -1)
        last_starts = step_end_s(sch, jnp.where(jnp.isfinite(r_min), r_min - 1.0, 0.0))
        d = jnp.where(waits, jnp.maximum(jnp.floor(last_starts / t_slot) + 1.0, 1.0), 0.0)   # slots to jump, [V]
        comp = completion_s(sch, rows, jnp.where(run, sim.rem_tokens, jnp.inf))
        nxt, nsch, _ = admit_and_schedule(params, advance(params, sim, sch, d * t_slot))
        nxt, nsch = _where_server(waits, nxt, sim), _where_server(waits, nsch, sch)     # the others stay
        done_at = jnp.where(run & (nxt.status == FREE), k[:, None] * t_slot + comp, done_at)
        k = k + d                                     # slots as float32: an int32 count wraps past 2^31 slots
        admitted_at = jnp.where((sim.status == QUEUED) & (nxt.status == RUNNING), k[:, None], admitted_at)
        return nxt, nsch, k, admitted_at, done_at

    init = (srv, sched, jnp.zeros((v,), jnp.float32), jnp.zeros((v, s), jnp.float32), jnp.full((v, s), jnp.inf))
    # without a server that can hold waiters (a static property of the config), nothing ever waits
    sim, sch, k, admitted_at, done_at = jax.lax.while_loop(waiting, jump, init) if params.may_queue else init
    e = jnp.minimum(entry, s - 1)
    running = sim.status[server, e] == RUNNING
    later = k[server] * t_slot + completion_s(sch, server, jnp.where(running, sim.rem_tokens[server, e], jnp.inf))
    done = jnp.where(running, later, done_at[server, e])
    return admitted_at[server, e] * t_slot, done


@jax.named_scope("advance")
def advance(params: EnvParams, srv: ServerState, sched: BatchSchedule, t_s=None) -> ServerState:
    """Run the slot (or ``t_s`` [V] s on each server, with no admission meanwhile): finished sequences free their
    entries; the others carry over with the whole steps they took, the step in progress at the end counted as
    taken and its remaining time carried as ``busy_s`` (with the prefills left over, when the stall outlasts the
    slot), so progress keeps every fraction of a step."""
    t_end = jnp.broadcast_to(params.slot_s if t_s is None else t_s, (params.n_servers,))
    run = srv.status == RUNNING
    # completion times grow with the remaining count: the first m (those done by the end)
    # are the sequences with at most the m-th smallest count
    m = jnp.sum(sched.sorted_done_s <= t_end[:, None], -1)                  # [V]
    last_rem = jnp.take_along_axis(sched.sorted_rem, jnp.maximum(m - 1, 0)[:, None], -1)
    finished = run & (m[:, None] > 0) & (srv.rem_tokens <= last_rem)
    # the step in progress at the end: the first whose end is not before it
    n0 = jnp.floor(tokens_done_by(sched, t_end))
    end0 = step_end_s(sched, n0)
    n_c = jnp.where(end0 >= t_end, n0, n0 + 1.0)
    end_c = jnp.where(end0 >= t_end, end0, step_end_s(sched, n0 + 1.0))
    finished = finished | (run & (srv.rem_tokens <= n_c[:, None]) & (end_c <= t_end)[:, None])
    go_on = run & ~finished
    busy = jnp.where(go_on.any(-1), jnp.maximum(end_c - t_end, 0.0), 0.0)
    steps = n_c[:, None]
    return srv.replace(
        rem_tokens=jnp.where(go_on, jnp.maximum(srv.rem_tokens - steps, 0.0), jnp.where(finished, 0.0, srv.rem_tokens)),
        ctx_tokens=jnp.where(go_on, srv.ctx_tokens + steps, jnp.where(finished, 0.0, srv.ctx_tokens)),
        status=jnp.where(finished, FREE, srv.status),
        busy_s=busy,
    )


def server_load(srv: ServerState):
    """Sequences on each server: ours (running and queued) plus background, [V]."""
    return (srv.status != FREE).sum(-1) + srv.bg_seqs
