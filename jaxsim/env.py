"""Functional (gymnax-style) edge-cloud generation-task environment.

    obs, state = reset(key, params)
    obs, state, reward, done, info = step(key, state, action, params)

One step is one slot. ``action`` [U] int32 holds a server choice (an index into
the config's actions) for every user's task slot; entries of users without a
task are ignored. ``info`` carries per-task [U] arrays: delay and its parts
(uplink, backhaul, wait, prefill, decode, downlink, refusal, all s;
they sum to the delay), quality, success,
reward, refused, mask, and the task's server and entry there (-1 when
refused). ``reward`` is the mean task reward of the slot (0 if the
slot has no task). Episodes have a fixed horizon; ``done`` is set on the last
slot and nothing auto-resets.

The slot's evaluation (``evaluate``) is a deterministic function of the state
and the action; ``step``'s key only draws the next slot (tasks, fading,
background load). This is what lets the oracle search assignments exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from . import allocation, channel, inference, prng
from .inference import ServerState
from .params import EnvParams

# a served task's delay is the sum of the first six; a refused task's is refusal_s alone (reject_factor x budget)
DELAY_PARTS = ("uplink_s", "backhaul_s", "wait_s", "prefill_s", "decode_s", "downlink_s", "refusal_s")


@struct.dataclass
class EnvState:
    ue_xy_m: jnp.ndarray       # [U, 2]
    gain: jnp.ndarray          # [U, M] long-term gain (path loss and shadowing), linear
    assoc: jnp.ndarray         # [U] serving cell
    active: jnp.ndarray        # [U] bool: user has a task this slot
    task_type: jnp.ndarray     # [U] int32
    prompt_tokens: jnp.ndarray  # [U]
    output_tokens: jnp.ndarray  # [U]
    dl_rate_rb_bps: jnp.ndarray  # [U] mean downlink Shannon rate per RB this slot
    ul_rate_rb_bps: jnp.ndarray  # [U] mean uplink rate per RB this slot
    servers: ServerState
    t: jnp.ndarray             # slot index


@struct.dataclass
class Observation:
    """What every policy sees, per task slot [U] (masked where ``mask`` is False).

    ``state`` is the full environment state, for privileged policies only (the oracle).
    """
    mask: jnp.ndarray          # [U] bool
    task_type: jnp.ndarray     # [U] int32
    prompt_tokens: jnp.ndarray  # [U] tokens
    output_tokens: jnp.ndarray  # [U] tokens
    budget_s: jnp.ndarray      # [U] s
    min_quality: jnp.ndarray   # [U]
    sinr_db: jnp.ndarray       # [U] downlink effective SINR, dB
    load_seqs: jnp.ndarray     # [U, A] sequences on the server each action would use (ours + background)
    free_seqs: jnp.ndarray     # [U, A] free entries on that server: a task arriving beyond them is refused
    n_tasks: jnp.ndarray       # [U] tasks in the slot (network)
    n_cell_tasks: jnp.ndarray  # [U] tasks in the slot in the user's cell
    cell: jnp.ndarray          # [U] serving cell
    slot: jnp.ndarray          # [] slot index
    state: EnvState


@jax.named_scope("tasks")
def draw_tasks(key, params: EnvParams):
    """Bernoulli arrivals, task types and log-normal token counts (mean preserved), from one draw."""
    u = params.n_users
    r = prng.uniform(key, (4, u), 1e-7, 1.0 - 1e-7)
    active = r[0] < params.p_task
    cdf = jnp.cumsum(jax.nn.softmax(params.type_logits))
    ttype = jnp.minimum(jnp.searchsorted(cdf, r[1] * cdf[-1], side="right"), params.n_types - 1).astype(jnp.int32)
    sig = params.token_sigma

    def tokens(x, mean):
        x = mean * jnp.exp(sig * jax.scipy.special.ndtri(x) - 0.5 * sig ** 2)
        return jnp.round(jnp.clip(x, 1.0, 8.0 * mean))      # whole tokens (the servers sort whole counts)

    return active, ttype, tokens(r[2], params.prompt_tokens[ttype]), tokens(r[3], params.output_tokens[ttype])


@jax.named_scope("rates")
def slot_rates(params: EnvParams, gain, assoc, active, fading):
    """Mean per-RB downlink and uplink rates of every user in this slot, bit/s ([U], [U])."""
    busy = (jax.nn.one_hot(assoc, params.n_cells) * active[:, None]).sum(0) > 0
    dl, ul = channel.sinr_per_rb(params, gain, assoc, fading, busy)
    rate = channel.rate_per_rb_bps(params, jnp.stack([dl, ul])).mean(-1)   # one fused pass for both links
    return rate[0], rate[1]


@jax.named_scope("new_slot")
def _new_slot(key, params: EnvParams, state: EnvState) -> EnvState:
    k_task, k_fade = prng.split(key)
    active, ttype, pt, ot = draw_tasks(k_task, params)
    fading = channel.rayleigh_fading(k_fade, params)
    dl, ul = slot_rates(params, state.gain, state.assoc, active, fading)
    return state.replace(active=active, task_type=ttype, prompt_tokens=pt, output_tokens=ot,
                         dl_rate_rb_bps=dl, ul_rate_rb_bps=ul)


def reset(key, params: EnvParams):
    k_drop, k_ls, k_bg, k_slot = prng.split(key, 4)
    xy = channel.drop_users(k_drop, params)
    gain, assoc, _ = channel.large_scale(k_ls, params, xy)
    bg = jnp.floor(prng.uniform(k_bg, (params.n_servers,)) * (params.srv_bg_max + 1)).astype(jnp.int32)
    u = params.n_users
    zf, zi = jnp.zeros((u,)), jnp.zeros((u,), jnp.int32)
    state = EnvState(xy, gain, assoc, zi.astype(bool), zi, zf, zf, zf, zf,
                     inference.empty_servers(params, bg), jnp.int32(0))
    state = _new_slot(k_slot, params, state)
    return get_obs(params, state), state


def task_server(params: EnvParams, assoc, action):
    """Server index of each user's task under `action`, [U]."""
    return params.act_server_base[action] + params.act_is_edge[action] * assoc


@jax.named_scope("observe")
def get_obs(params: EnvParams, state: EnvState) -> Observation:
    load = inference.server_load(state.servers)                                  # [V]
    acts = jnp.arange(params.n_actions)
    srv_ua = task_server(params, state.assoc[:, None], acts[None, :])             # [U, A]
    own = jax.nn.one_hot(state.assoc, params.n_cells) * state.active[:, None]
    n_cell = own.sum(0)[state.assoc]
    tt = state.task_type
    return Observation(
        mask=state.active, task_type=tt, prompt_tokens=state.prompt_tokens, output_tokens=state.output_tokens,
        budget_s=params.budget_s[tt], min_quality=params.min_quality[tt],
        sinr_db=channel.effective_sinr_db(params, state.dl_rate_rb_bps),
        load_seqs=load[srv_ua].astype(jnp.float32),
        free_seqs=(state.servers.status == inference.FREE).sum(-1)[srv_ua].astype(jnp.float32),
        n_tasks=jnp.full((params.n_users,), state.active.sum(), jnp.float32),
        n_cell_tasks=n_cell, cell=state.assoc, slot=state.t, state=state)


@struct.dataclass
class RadioDelays:
    uplink_s: jnp.ndarray           # [U]
    downlink_s: jnp.ndarray         # [U]
    uplink_rate_bps: jnp.ndarray    # [U] the task's uplink rate: its RBs x the per-RB rate
    downlink_rate_bps: jnp.ndarray  # [U]


@jax.named_scope("radio")
def radio_delays(params: EnvParams, state: EnvState) -> RadioDelays:
    """Uplink (prompt) and downlink (content) transfer times; independent of the action."""
    tt = state.task_type
    ul_bits = state.prompt_tokens * params.prompt_bits_per_token
    dl_bits = state.output_tokens * params.bits_per_output_token[tt]
    n_ul = allocation.allocate_rbs(params, state.assoc, state.active, ul_bits, state.ul_rate_rb_bps)
    n_dl = allocation.allocate_rbs(params, state.assoc, state.active, dl_bits, state.dl_rate_rb_bps)
    return RadioDelays(allocation.transfer_time_s(ul_bits, n_ul, state.ul_rate_rb_bps),
                       allocation.transfer_time_s(dl_bits, n_dl, state.dl_rate_rb_bps),
                       n_ul * state.ul_rate_rb_bps, n_dl * state.dl_rate_rb_bps)


def task_reward(params: EnvParams, quality, delay_s, budget_s, min_quality):
    """r = quality - w_delay delay/budget - w_miss [delay > budget or quality < min]; and success."""
    ok = (delay_s <= budget_s) & (quality >= min_quality)
    return quality - params.w_delay * delay_s / budget_s - params.w_miss * (~ok), ok


@jax.named_scope("serve")
def evaluate(params: EnvParams, state: EnvState, action, radio: RadioDelays | None = None):
    """Serve the slot's tasks under `action`: (servers after the slot, info dict of [U] arrays)."""
    radio = radio_delays(params, state) if radio is None else radio
    action = jnp.clip(action.astype(jnp.int32), 0, params.n_actions - 1)
    tt, valid = state.task_type, state.active
    server = task_server(params, state.assoc, action)
    load_before = inference.server_load(state.servers)[server]
    srv, entry, accepted = inference.enqueue(params, state.servers, server, valid,
                                             state.output_tokens, state.prompt_tokens)
    queue_position = jnp.where(accepted, srv.order[server, jnp.minimum(entry, params.max_seqs - 1)], -1)
    queued_before = srv.status == inference.QUEUED
    srv, sched, _ = inference.admit_and_schedule(params, srv)
    wait, done = inference.book(params, srv, sched, server, entry, accepted)
    prefill = inference.prefill_s(params, server, state.prompt_tokens)
    # decode from admission to completion; with the stall, a task's own prefill (booked as prefill) is among the
    # prefills its server runs before decoding on
    decode = done - wait - (prefill if params.prefill_stall else 0.0)
    refused = valid & ~accepted
    wait, decode = jnp.where(accepted, wait, 0.0), jnp.where(accepted, decode, 0.0)
    cloud = ~params.act_is_edge[action]
    dl_bits = state.output_tokens * params.bits_per_output_token[tt]
    ul_bits = state.prompt_tokens * params.prompt_bits_per_token
    budget, qmin = params.budget_s[tt], params.min_quality[tt]
    # a refused task is charged reject_factor x budget as its one delay part (it is not transferred nor served)
    served = lambda x: jnp.where(refused, 0.0, x)  # noqa: E731
    parts = {"uplink_s": served(radio.uplink_s), "backhaul_s": served(backhaul_s(params, cloud, ul_bits + dl_bits)),
             "wait_s": wait, "prefill_s": served(prefill), "decode_s": decode,
             "downlink_s": served(radio.downlink_s), "refusal_s": jnp.where(refused, params.reject_factor * budget, 0.0)}
    delay = sum(parts[k] for k in DELAY_PARTS)
    quality = jnp.where(refused, 0.0, params.quality[action, tt])
    reward, ok = task_reward(params, quality, delay, budget, qmin)
    z = lambda x: jnp.where(valid, x, 0.0)  # noqa: E731
    info = {"delay_s": z(delay), **{k: z(parts[k]) for k in DELAY_PARTS},
            "quality": z(quality), "success": valid & ok, "reward": z(reward), "refused": refused,
            "mask": valid, "action": action, "task_type": tt,
            "server": server, "entry": jnp.where(accepted, entry, -1),
            # what the task met at decision time (the per-task outputs' columns)
            "cell": state.assoc, "prompt_tokens": z(state.prompt_tokens), "output_tokens": z(state.output_tokens),
            "budget_s": z(budget), "min_quality": z(qmin),
            "uplink_sinr_db": z(channel.effective_sinr_db(params, state.ul_rate_rb_bps)),
            "downlink_sinr_db": z(channel.effective_sinr_db(params, state.dl_rate_rb_bps)),
            "uplink_rate_bps": z(radio.uplink_rate_bps), "downlink_rate_bps": z(radio.downlink_rate_bps),
            "server_load_seqs": jnp.where(valid, load_before, 0), "queue_position": jnp.where(valid, queue_position, -1),
            **server_slot_info(params, srv, queued_before, server, refused)}
    return inference.advance(params, srv, sched), info


SERVER_FIELDS = ("srv_running", "srv_queued", "srv_admitted", "srv_refused", "srv_bg_seqs", "srv_mean_context_tokens")


def server_slot_info(params: EnvParams, srv, queued_before, server, refused) -> dict:
    """Each server's state in the slot after admission, [V] each: own running and queued sequences, those
    admitted this slot, the slot's tasks refused, background sequences, mean context of its own running ones."""
    running = srv.status == inference.RUNNING
    n_run = running.sum(-1)
    ctx = jnp.where(running, srv.ctx_tokens, 0.0).sum(-1) / jnp.maximum(n_run, 1)
    refused_v = jax.ops.segment_sum(refused.astype(jnp.int32), server, num_segments=params.n_servers)
    return {"srv_running": n_run, "srv_queued": (srv.status == inference.QUEUED).sum(-1),
            "srv_admitted": (queued_before & running).sum(-1), "srv_refused": refused_v, "srv_bg_seqs": srv.bg_seqs,
            "srv_mean_context_tokens": ctx}


def slot_reward(info):
    """Mean reward over the slot's tasks (0 for an empty slot)."""
    n = info["mask"].sum()
    return jnp.where(n > 0, info["reward"].sum() / jnp.maximum(n, 1), 0.0)


def backhaul_s(params: EnvParams, is_cloud, bits):
    """Edge-cloud backhaul delay of a task served in the cloud, s: the round trip plus its prompt and
    output (``bits`` both ways together) at the backhaul rate; 0 at the edge."""
    return is_cloud * (2.0 * params.backhaul_latency_s + bits / params.backhaul_bps)


def step(key, state: EnvState, action, params: EnvParams):
    servers, info = evaluate(params, state, action)
    k_bg, k_slot = prng.split(key)
    with jax.named_scope("background"):
        servers = servers.replace(bg_seqs=inference.bg_walk(k_bg, params, servers.bg_seqs))
    state = _new_slot(k_slot, params, state.replace(servers=servers, t=state.t + 1))
    done = state.t >= params.horizon
    return get_obs(params, state), state, slot_reward(info), done, info
