"""Kernel parameters: a pytree of arrays derived once from a validated SimConfig.

Shapes: A actions, T task types, M cells (one edge server each per edge
action), V servers (edge servers first, action-major, then one per cloud
action), U users (cell-major drop order), S tracked sequences per server.
Static fields (sizes, mode strings) are pytree metadata, so changing them
recompiles; every number is a traced leaf.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import struct

from .config import Hardware, InferenceConfig, LLMModel, SimConfig


@struct.dataclass
class EnvParams:
    # ---- static sizes and modes ----
    n_cells: int = struct.field(pytree_node=False)
    users_per_cell: int = struct.field(pytree_node=False)
    n_rb: int = struct.field(pytree_node=False)
    n_actions: int = struct.field(pytree_node=False)
    n_types: int = struct.field(pytree_node=False)
    n_servers: int = struct.field(pytree_node=False)
    max_seqs: int = struct.field(pytree_node=False)
    horizon: int = struct.field(pytree_node=False)
    allocator: str = struct.field(pytree_node=False)
    interference: str = struct.field(pytree_node=False)
    integer_rbs: bool = struct.field(pytree_node=False)
    oracle_exhaustive: int = struct.field(pytree_node=False)
    oracle_sweeps: int = struct.field(pytree_node=False)
    prefill_stall: bool = struct.field(pytree_node=False)   # a slot's admitted prompts stall their server's decode
    may_queue: bool = struct.field(pytree_node=False)       # some server admits fewer than max_seqs at its highest
                                                            #   background (tasks can wait); False skips the queue's
                                                            #   booking loop (True is always correct: it then runs
                                                            #   no step where nothing waits)
    # ---- time, topology ----
    slot_s: jnp.ndarray
    bs_xy_m: jnp.ndarray            # [M, 2]
    cell_radius_m: jnp.ndarray      # hexagon circumradius, m
    h_bs_m: jnp.ndarray
    h_ut_m: jnp.ndarray
    min_dist_m: jnp.ndarray
    # ---- radio ----
    carrier_ghz: jnp.ndarray
    rb_hz: jnp.ndarray
    bs_power_rb_w: jnp.ndarray      # W per RB
    ue_power_rb_w: jnp.ndarray
    noise_rb_ue_w: jnp.ndarray      # N0 W_rb NF_ue, W
    noise_rb_bs_w: jnp.ndarray
    shadow_los_db: jnp.ndarray
    shadow_nlos_db: jnp.ndarray
    gap_lin: jnp.ndarray
    max_se: jnp.ndarray
    # ---- traffic ----
    p_task: jnp.ndarray
    token_sigma: jnp.ndarray
    type_logits: jnp.ndarray        # [T]
    prompt_tokens: jnp.ndarray      # [T] mean
    output_tokens: jnp.ndarray      # [T] mean
    prompt_bits_per_token: jnp.ndarray
    bits_per_output_token: jnp.ndarray  # [T]
    budget_s: jnp.ndarray           # [T]
    min_quality: jnp.ndarray        # [T]
    # ---- actions and servers ----
    quality: jnp.ndarray            # [A, T]
    act_is_edge: jnp.ndarray        # [A] bool
    act_server_base: jnp.ndarray    # [A] int: server = base + is_edge * cell
    # the server terms of server_terms() below, [V] each
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
    srv_b_max: jnp.ndarray          # [V] int
    srv_bg_max: jnp.ndarray         # [V] int
    srv_bg_step: jnp.ndarray        # [V] int
    bg_context: jnp.ndarray
    prefill_attention: jnp.ndarray  # 0/1
    reject_factor: jnp.ndarray
    backhaul_latency_s: jnp.ndarray
    backhaul_bps: jnp.ndarray
    # ---- reward ----
    w_delay: jnp.ndarray
    w_miss: jnp.ndarray

    @property
    def n_users(self) -> int:
        return self.n_cells * self.users_per_cell


def server_terms(h: Hardware, m: LLMModel, n_gpus: int, inf: InferenceConfig) -> dict[str, float]:
    """The numbers the server formulas of :mod:`jaxsim.inference` read, for ``m`` on ``n_gpus`` x ``h``.

    Tensor parallelism (Megatron style) splits weights, KV cache and compute over the n GPUs, so rates and
    bandwidths add up; each layer of a pass (a decode step, a prefill) pays two all-reduces of its tokens'
    activations, as a ring: 2 (n-1)/n x tokens x d_model x bytes / link bandwidth, plus 2 (n-1) hops of link
    latency and a fixed synchronisation per layer. n = 1 has no communication at all. The hardware's own
    efficiencies stand in for ``[inference]``'s where it has them. ``h``, ``m`` and ``n_gpus`` may equally hold
    NumPy columns of many servers (``n_heads`` an attribute of ``m``, the efficiencies resolved).
    """
    eta_c = inf.eta_compute if h.eta_compute is None else h.eta_compute
    eta_m = inf.eta_memory if h.eta_memory is None else h.eta_memory
    eta_p = inf.eta_prefill if h.eta_prefill is None else h.eta_prefill
    eta_a = inf.eta_attention if h.eta_attention is None else h.eta_attention
    n, nl = 1.0 * n_gpus, 1.0 * m.n_layers          # plain arithmetic: numbers or NumPy columns alike
    heads = m.n_kv_heads if inf.attention_heads == "kv" else m.n_heads
    attn_bytes = 2.0 * nl * heads * m.head_dim * m.bytes_per_kv          # read per context token by decode attention
    ring = 2.0 * (n - 1.0) / n
    return dict(
        srv_flops=h.peak_flops * n * eta_c,                              # achieved decode FLOP/s
        srv_prefill_flops=h.peak_flops * n * eta_p,                      # achieved prefill FLOP/s
        srv_prefill_overhead_s=nl * inf.prefill_overhead_s_per_layer,    # fixed first-token cost, s
        srv_bw=h.mem_bw_bytes_s * n * eta_m,                             # achieved weight-read bytes/s
        srv_n_params=1.0 * m.n_params,
        srv_weight_bytes=m.n_params * m.bytes_per_weight,
        srv_kv_s_per_token=attn_bytes / (h.mem_bw_bytes_s * n * eta_a),   # attention, s per ctx token
        srv_step_fixed_s=nl * inf.step_overhead_s_per_layer,             # fixed cost of a decode step, s
        srv_tp_fixed_s=(n > 1.0) * nl * (inf.tp_sync_s_per_layer + 2.0 * 2.0 * (n - 1.0) * h.link_latency_s),
        srv_comm_s_per_token=nl * 2.0 * ring * m.d_model * m.bytes_per_activation / h.link_bw_bytes_s,
        srv_n_layers=nl, srv_d_model=1.0 * m.d_model)


def server_arrays(servers, inf: InferenceConfig) -> dict[str, jnp.ndarray]:
    """:func:`server_terms` of each (hardware, model, n_gpus[, its own inference config: its engine's costs in
    place]) of ``servers``, stacked into [V] float32 arrays; without the fourth, ``inf``."""
    terms = [server_terms(*s[:3], s[3] if len(s) > 3 else inf) for s in servers]
    return {k: jnp.asarray(np.array([d[k] for d in terms], np.float32)) for k in terms[0]}


def hex_sites(n: int, isd_m: float) -> np.ndarray:
    """The n hexagonal-lattice points (spacing isd_m) closest to the origin, [n, 2] in m."""
    pts = []
    r = int(math.ceil(math.sqrt(n))) + 2
    for i in range(-r, r + 1):
        for j in range(-r, r + 1):
            x = isd_m * (i + 0.5 * j)
            y = isd_m * (math.sqrt(3) / 2) * j
            pts.append((round(math.hypot(x, y), 6), round(math.atan2(y, x) % (2 * math.pi), 6), x, y))
    pts.sort()
    return np.array([[p[2], p[3]] for p in pts[:n]], dtype=np.float64)


def dbm_to_w(dbm: float) -> float:
    return 10 ** ((dbm - 30.0) / 10.0)


def make_params(cfg: SimConfig) -> EnvParams:
    """Validate ``cfg`` and derive the kernel's parameter pytree."""
    cfg.validate()
    top, rad, tr, inf = cfg.topology, cfg.radio, cfg.traffic, cfg.inference
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    rb_hz = rad.rb_bandwidth_hz
    n0_rb_w = dbm_to_w(rad.noise_psd_dbm_hz) * rb_hz
    tts = tr.task_types
    weights = np.array([t.weight for t in tts], np.float64)
    logits = np.where(weights > 0, np.log(np.maximum(weights, 1e-300)), -1e30)

    edge = [a for a in cfg.actions if a.site == "edge"]
    cloud = [a for a in cfg.actions if a.site == "cloud"]
    servers = [a for a in edge for _ in range(top.n_cells)] + cloud
    base, e_i, c_i = [], 0, 0
    for a in cfg.actions:
        if a.site == "edge":
            base.append(e_i * top.n_cells)
            e_i += 1
        else:
            base.append(len(edge) * top.n_cells + c_i)
            c_i += 1

    return EnvParams(
        n_cells=top.n_cells, users_per_cell=top.users_per_cell, n_rb=rad.resource_blocks,
        n_actions=len(cfg.actions), n_types=len(tts), n_servers=len(servers),
        max_seqs=inf.max_server_seqs, horizon=cfg.episode.horizon,
        allocator=rad.allocator, interference=rad.interference, integer_rbs=rad.integer_rbs,
        oracle_exhaustive=cfg.oracle.max_exhaustive_tasks, oracle_sweeps=cfg.oracle.sweeps,
        prefill_stall=bool(inf.prefill_stall),
        may_queue=any(min(cfg.b_max(a) - a.bg_max_seqs, inf.max_server_seqs) < inf.max_server_seqs for a in servers),
        slot_s=f32(cfg.episode.slot_s),
        bs_xy_m=f32(hex_sites(top.n_cells, top.isd_m)),
        cell_radius_m=f32(top.isd_m / math.sqrt(3)),
        h_bs_m=f32(top.h_bs_m), h_ut_m=f32(top.h_ut_m), min_dist_m=f32(top.min_dist_m),
        carrier_ghz=f32(rad.carrier_ghz), rb_hz=f32(rb_hz),
        bs_power_rb_w=f32(dbm_to_w(rad.bs_power_dbm) / rad.resource_blocks),
        ue_power_rb_w=f32(dbm_to_w(rad.ue_power_dbm) / rad.resource_blocks),
        noise_rb_ue_w=f32(n0_rb_w * 10 ** (rad.ue_nf_db / 10)),
        noise_rb_bs_w=f32(n0_rb_w * 10 ** (rad.bs_nf_db / 10)),
        shadow_los_db=f32(rad.shadow_los_db), shadow_nlos_db=f32(rad.shadow_nlos_db),
        gap_lin=f32(10 ** (rad.shannon_gap_db / 10)),
        max_se=f32(min(rad.max_se_bps_hz, 1e30)),
        p_task=f32(tr.p_task), token_sigma=f32(tr.token_sigma), type_logits=f32(logits),
        prompt_tokens=f32([t.prompt_tokens for t in tts]),
        output_tokens=f32([t.output_tokens for t in tts]),
        prompt_bits_per_token=f32(tr.prompt_bits_per_token),
        bits_per_output_token=f32([t.bits_per_output_token for t in tts]),
        budget_s=f32([t.budget_s for t in tts]),
        min_quality=f32([t.min_quality for t in tts]),
        quality=f32([[cfg.model(a.model).quality[t.name] for t in tts] for a in cfg.actions]),
        act_is_edge=jnp.asarray([a.site == "edge" for a in cfg.actions]),
        act_server_base=jnp.asarray(base, jnp.int32),
        **server_arrays([(cfg.hw(a.hardware), cfg.model(a.model), a.n_gpus, cfg.inference_for(a)) for a in servers],
                        inf),
        srv_b_max=jnp.asarray([cfg.b_max(a) for a in servers], jnp.int32),
        srv_bg_max=jnp.asarray([a.bg_max_seqs for a in servers], jnp.int32),
        srv_bg_step=jnp.asarray([a.bg_step_seqs for a in servers], jnp.int32),
        bg_context=f32(inf.bg_context_tokens),
        prefill_attention=f32(1.0 if inf.prefill_attention else 0.0),
        reject_factor=f32(inf.reject_delay_factor),
        backhaul_latency_s=f32(cfg.backhaul.latency_s), backhaul_bps=f32(cfg.backhaul.rate_bps),
        w_delay=f32(cfg.reward.w_delay), w_miss=f32(cfg.reward.w_miss),
    )
