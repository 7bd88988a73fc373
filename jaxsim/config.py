"""Typed, validated scenario configuration with the defaults of DESIGN.md.

Every number of the system model is a field here; the kernel reads only what
:func:`jaxsim.params.make_params` derives from a validated :class:`SimConfig`.
Configs load from TOML (``load_config``) and write back to it (``config_toml``).
Validation runs before any compute and raises :class:`ConfigError` naming the
field, the value and the allowed range.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

import tomli_w

from .fields import ConfigError, Range, bounded, check_fields, check_name, check_unique, flag, one_of

# --------------------------------------------------------------------------
# sections: every field's allowed range is declared beside its default (jaxsim.fields)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class EpisodeConfig:
    slot_s: float = bounded(1.0, 1e-3, 3600.0)                  # slot length, s (1 ms: an NR subframe)
    horizon: int = bounded(50, 1, 100_000, integer=True)        # slots per episode

    def validate(self, p: str) -> None:
        check_fields(self, p)


@dataclass(frozen=True)
class TopologyConfig:
    n_cells: int = bounded(3, 1, 37, integer=True)              # base stations on a hexagonal grid, one edge server each
    isd_m: float = bounded(200.0, 0.0, 10_000.0, lo_open=True)  # inter-site distance, m (3GPP UMi)
    h_bs_m: float = bounded(10.0, 1.0, 100.0)                   # BS antenna height, m
    h_ut_m: float = bounded(1.5, 1.0, 22.5)                     # user height, m
    users_per_cell: int = bounded(8, 1, 256, integer=True)      # users dropped per cell
    min_dist_m: float = bounded(10.0, 0.0, 2_500.0)             # minimum 2D BS-user distance, m; also <= isd_m / 4

    def validate(self, p: str) -> None:
        check_fields(self, p)
        if self.min_dist_m > self.isd_m / 4:
            raise ConfigError(f"{p}.min_dist_m = {self.min_dist_m!r} is out of range: allowed [0, isd_m / 4] = "
                              f"[0, {self.isd_m / 4:g}]")


INTERFERENCE_MODES = ("full", "activity", "none")
ALLOCATORS = ("equal", "proportional", "min_delay")

# maximum transmission bandwidth N_RB per subcarrier spacing (kHz) and channel bandwidth (MHz):
# 3GPP TS 38.101-1 Table 5.3.2-1 (FR1: 15, 30, 60 kHz) and TS 38.101-2 Table 5.3.2-1 (FR2: 120 kHz)
NRB_TABLE: dict[int, dict[int, int]] = {
    15: {5: 25, 10: 52, 15: 79, 20: 106, 25: 133, 30: 160, 35: 188, 40: 216, 45: 242, 50: 270},
    30: {5: 11, 10: 24, 15: 38, 20: 51, 25: 65, 30: 78, 35: 92, 40: 106, 45: 119, 50: 133, 60: 162,
         70: 189, 80: 217, 90: 245, 100: 273},
    60: {10: 11, 15: 18, 20: 24, 25: 31, 30: 38, 35: 44, 40: 51, 45: 58, 50: 65, 60: 79, 70: 93,
         80: 107, 90: 121, 100: 135, 200: 264},
    120: {50: 32, 100: 66, 200: 132, 400: 264},
}
NUMEROLOGIES_KHZ = tuple(float(k) for k in NRB_TABLE)


def max_resource_blocks(bandwidth_mhz: float, scs_khz: float) -> int | None:
    """N_RB of the 3GPP table for a channel bandwidth and subcarrier spacing, None where it has no entry."""
    if bandwidth_mhz != int(bandwidth_mhz):
        return None
    return NRB_TABLE.get(int(scs_khz), {}).get(int(bandwidth_mhz))


@dataclass(frozen=True)
class RadioConfig:
    carrier_ghz: float = bounded(3.5, 0.5, 100.0)
    bandwidth_mhz: float = bounded(20.0, 0.0, 400.0, lo_open=True)
    scs_khz: float = one_of(30.0, NUMEROLOGIES_KHZ)        # 3GPP numerology: 15 x 2^mu kHz
    n_rb: int | None = None     # resource blocks of 12 subcarriers; None: the table's N_RB for bandwidth and SCS
    bs_power_dbm: float = bounded(30.0, -30.0, 80.0)       # split evenly over RBs
    ue_power_dbm: float = bounded(23.0, -30.0, 40.0)       # spread with constant PSD over the band (per RB: P/n_rb)
    noise_psd_dbm_hz: float = bounded(-174.0, -200.0, -100.0)
    ue_nf_db: float = bounded(9.0, 0.0, 30.0)
    bs_nf_db: float = bounded(5.0, 0.0, 30.0)
    shadow_los_db: float = bounded(4.0, 0.0, 30.0)
    shadow_nlos_db: float = bounded(7.82, 0.0, 30.0)
    interference: str = one_of("full", INTERFERENCE_MODES)
    allocator: str = one_of("min_delay", ALLOCATORS)
    integer_rbs: bool = flag(False)                        # round shares to whole RBs (each transfer >= 1 RB)
    shannon_gap_db: float = bounded(0.0, 0.0, 20.0)
    max_se_bps_hz: float = bounded(math.inf, 0.0, None, lo_open=True, allow_inf=True)  # spectral-efficiency cap

    @property
    def rb_bandwidth_hz(self) -> float:
        return 12 * self.scs_khz * 1e3

    @property
    def resource_blocks(self) -> int:
        """The RBs used: ``n_rb`` when given, else the 3GPP table's N_RB."""
        return self.n_rb if self.n_rb is not None else max_resource_blocks(self.bandwidth_mhz, self.scs_khz)

    def validate(self, p: str) -> None:
        check_fields(self, p)
        table = max_resource_blocks(self.bandwidth_mhz, self.scs_khz)
        if self.n_rb is None:
            if table is None:
                bws = ", ".join(f"{b:g}" for b in NRB_TABLE[int(self.scs_khz)])
                raise ConfigError(f"{p}.bandwidth_mhz = {self.bandwidth_mhz!r}: no 3GPP N_RB entry at {self.scs_khz:g} "
                                  f"kHz; allowed {bws} MHz, or give {p}.n_rb")
            return
        max_rb = table if table is not None else int(self.bandwidth_mhz * 1e3 // (12 * self.scs_khz))
        if isinstance(self.n_rb, bool) or not isinstance(self.n_rb, int) or not 1 <= self.n_rb <= max_rb:
            raise ConfigError(f"{p}.n_rb = {self.n_rb!r} is out of range: {self.bandwidth_mhz:g} MHz at "
                              f"{self.scs_khz:g} kHz holds {max_rb} RBs; allowed an integer in [1, {max_rb}]")


def _validate_entry(row: Any, path: str, *args: Any) -> None:
    """Validate one entry of an array of tables; an error names the entry too (indices count the merged table:
    the defaults' entries first, then the new names in the file's order)."""
    try:
        row.validate(path, *args)
    except ConfigError as e:
        name = getattr(row, "name", None)
        if isinstance(name, str) and name:
            raise ConfigError(f"{e} (the entry named {name!r})") from None
        raise


@dataclass(frozen=True)
class TaskType:
    name: str
    prompt_tokens: float = bounded(dataclasses.MISSING, 1.0, 1e6)         # mean prompt length, tokens
    output_tokens: float = bounded(dataclasses.MISSING, 1.0, 1e6)         # mean output length, tokens
    bits_per_output_token: float = bounded(dataclasses.MISSING, 1.0, 1e9)
    budget_s: float = bounded(dataclasses.MISSING, 0.0, 1e5, lo_open=True)  # delay budget, s
    min_quality: float = bounded(dataclasses.MISSING, 0.0, 1.0)           # quality floor
    weight: float = bounded(1.0, 0.0, 1e6)                                # relative arrival share
    # a model with no quality for this type takes its quality for the type named here (absent: every model
    # must list this type in its quality table)
    quality_like: str | None = None

    def validate(self, p: str) -> None:
        check_name(f"{p}.name", self.name)
        check_fields(self, p)
        if self.quality_like is not None and (not isinstance(self.quality_like, str) or self.quality_like == self.name):
            raise ConfigError(f"{p}.quality_like = {self.quality_like!r}: must name another task type")


def _default_task_types() -> tuple[TaskType, ...]:
    return (
        TaskType("chat", 200, 300, 32, 6.0, 0.60),
        TaskType("summarise", 2000, 200, 32, 8.0, 0.60),
        TaskType("code", 300, 500, 32, 12.0, 0.70),
        TaskType("math", 150, 800, 32, 15.0, 0.80),
        TaskType("image", 80, 1024, 4096, 20.0, 0.50),
    )


@dataclass(frozen=True)
class TrafficConfig:
    p_task: float = bounded(0.5, 0.0, 1.0)                 # Bernoulli task probability per user per slot
    token_sigma: float = bounded(0.4, 0.0, 2.0)            # log-normal sigma of token counts (mean preserved)
    prompt_bits_per_token: float = bounded(32.0, 1.0, 1e6)
    task_types: tuple[TaskType, ...] = field(default_factory=_default_task_types)

    def validate(self, p: str) -> None:
        check_fields(self, p)
        if not self.task_types:
            raise ConfigError(f"{p}.task_types: at least one task type is required")
        for i, t in enumerate(self.task_types):
            _validate_entry(t, f"{p}.task_types[{i}]")
        check_unique(f"{p}.task_types", [t.name for t in self.task_types])
        if sum(t.weight for t in self.task_types) <= 0:
            raise ConfigError(f"{p}.task_types: weights must not all be 0")


@dataclass(frozen=True)
class Hardware:
    """One accelerator: dense peak rate, memory bandwidth and memory (datasheets); the interconnect its
    tensor-parallel all-reduces run over (per-GPU bandwidth in one direction, per-hop latency); and, where
    measured serving data exist for it, its own achieved efficiencies (absent: ``[inference]``'s)."""
    name: str
    peak_flops: float = bounded(dataclasses.MISSING, 0.0, 1e18, lo_open=True)       # FLOP/s, dense FP16/BF16
    mem_bw_bytes_s: float = bounded(dataclasses.MISSING, 0.0, 1e15, lo_open=True)   # bytes/s
    mem_bytes: float = bounded(dataclasses.MISSING, 0.0, 1e15, lo_open=True)        # bytes
    # default: PCIe Gen4 x16, 64 GB/s both directions together (NVIDIA L40S / L4 datasheets) -> 32 GB/s each way
    link_bw_bytes_s: float = bounded(32e9, 1e8, 1e13)                               # bytes/s per GPU, one direction
    link_latency_s: float = bounded(1e-6, 0.0, 1e-4)                                # per ring hop, s
    eta_compute: float | None = bounded(None, 0.0, 1.0, lo_open=True, optional=True)
    eta_memory: float | None = bounded(None, 0.0, 1.0, lo_open=True, optional=True)
    eta_prefill: float | None = bounded(None, 0.0, 1.0, lo_open=True, optional=True)
    eta_attention: float | None = bounded(None, 0.0, 1.0, lo_open=True, optional=True)

    def validate(self, p: str) -> None:
        check_name(f"{p}.name", self.name)
        check_fields(self, p)


@dataclass(frozen=True)
class Engine:
    """One serving engine's fixed costs (kernel launches, host work, synchronisation), where measured data exist
    for it; absent fields: ``[inference]``'s. Engines that share their kernels (a fork and its origin) may share
    an entry. A scenario's action names one by ``engine`` (none: ``[inference]``'s costs); the catalog of
    measured serving (``scripts/tools/validate_latency``) fits them."""
    name: str
    prefill_overhead_s_per_layer: float | None = bounded(None, 0.0, 1e-3, optional=True)   # s
    step_overhead_s_per_layer: float | None = bounded(None, 0.0, 1e-3, optional=True)      # s
    tp_sync_s_per_layer: float | None = bounded(None, 0.0, 1e-3, optional=True)            # s

    def validate(self, p: str) -> None:
        check_name(f"{p}.name", self.name)
        check_fields(self, p)


def _default_hardware() -> tuple[Hardware, ...]:
    # NVLink 4 of H100 SXM: 900 GB/s both directions (NVIDIA H100 datasheet) -> 450 GB/s each way.
    # Efficiencies: those fitted for the same GPU in data/serving/catalog.toml (its rows ran FP8; no BF16 rows of
    # these GPUs there); L4 has no data and takes [inference]'s.
    return (
        Hardware("L40S", 362e12, 864e9, 48e9, eta_compute=0.237, eta_memory=0.786, eta_prefill=0.527, eta_attention=0.895),
        Hardware("L4", 121e12, 300e9, 24e9),
        Hardware("H100-SXM", 989e12, 3.35e12, 80e9, link_bw_bytes_s=450e9,
                 eta_compute=0.339, eta_memory=0.951, eta_prefill=0.545, eta_attention=0.974),
    )


@dataclass(frozen=True)
class LLMModel:
    """Shape of a served LLM (Hugging Face config) and its quality per task type."""
    name: str
    n_params: float = bounded(dataclasses.MISSING, 1e6, 1e13)
    n_layers: int = bounded(dataclasses.MISSING, 1, 1000, integer=True)
    n_kv_heads: int = bounded(dataclasses.MISSING, 1, 1024, integer=True)
    head_dim: int = bounded(dataclasses.MISSING, 1, 4096, integer=True)
    d_model: int = bounded(dataclasses.MISSING, 1, 1 << 17, integer=True)
    bytes_per_weight: float = bounded(2.0, 0.125, 8.0)     # FP16 / BF16
    bytes_per_kv: float = bounded(2.0, 0.125, 8.0)
    bytes_per_activation: float = bounded(2.0, 0.125, 8.0)   # what a tensor-parallel all-reduce moves per value
    quality: dict[str, float] = field(default_factory=dict)   # task type -> [0, 1]

    @property
    def kv_bytes_per_token(self) -> float:
        """KV cache held per context token (keys and values of every KV head of every layer), bytes."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * self.bytes_per_kv

    @property
    def n_heads(self) -> int:
        """Query heads (d_model / head_dim: every model of the catalog has d_model = heads x head_dim)."""
        return max(1, round(self.d_model / self.head_dim))

    def validate(self, p: str, type_names: list[str]) -> None:
        check_name(f"{p}.name", self.name)
        check_fields(self, p)
        if not isinstance(self.quality, dict):
            raise ConfigError(f"{p}.quality = {self.quality!r}: must be a table of task type = quality in [0, 1]")
        for t in type_names:
            if t not in self.quality:
                raise ConfigError(f"{p}.quality: missing task type {t!r} (have {sorted(self.quality)}); add "
                                  f"{t} = <quality in [0, 1]> to the quality table of model {self.name!r}, or "
                                  f"quality_like = \"<another task type>\" to the [[traffic.task_types]] entry {t!r}")
        for t, q in self.quality.items():
            if t not in type_names:
                raise ConfigError(f"{p}.quality.{t}: unknown task type; allowed: {', '.join(type_names)}")
            _QUALITY.check(f"{p}.quality.{t}", q)


def _default_models() -> tuple[LLMModel, ...]:
    # Quality: Meta model cards (MMLU for chat/summarise, HumanEval for code, GSM8K for math).
    # "config" cells of DESIGN.md: 3B code 0.55 (below the 0.70 floor, as in the rough check);
    # image quality 0.55 / 0.65 / 0.75 by model size.
    return (
        LLMModel("llama-3.2-3b", 3.21e9, 28, 8, 128, 3072,
                 quality={"chat": 0.634, "summarise": 0.634, "code": 0.55, "math": 0.777, "image": 0.55}),
        LLMModel("llama-3.1-8b", 8.03e9, 32, 8, 128, 4096,
                 quality={"chat": 0.730, "summarise": 0.730, "code": 0.726, "math": 0.845, "image": 0.65}),
        LLMModel("llama-3.1-70b", 70.6e9, 80, 8, 128, 8192,
                 quality={"chat": 0.860, "summarise": 0.860, "code": 0.805, "math": 0.951, "image": 0.75}),
    )


_QUALITY = Range(0.0, 1.0)
SITES = ("edge", "cloud")


@dataclass(frozen=True)
class Action:
    """A decision: serve the task with `model` on `n_gpus` x `hardware` at `site`.

    An edge action places one such server beside every base station; a cloud
    action is one shared server. Cloud servers carry background sequences
    following a bounded random walk in [0, bg_max_seqs] with steps up to
    +-bg_step_seqs per slot.
    """
    name: str
    model: str
    site: str = one_of(dataclasses.MISSING, SITES)
    hardware: str = dataclasses.field(default=dataclasses.MISSING)
    n_gpus: int = bounded(1, 1, 72, integer=True)     # one tensor-parallel group: at most one NVLink domain (72)
    bg_max_seqs: int = bounded(0, 0, 1_000_000, integer=True)
    bg_step_seqs: int = bounded(0, 0, 1_000_000, integer=True)
    engine: str | None = None      # an [[engines]] entry whose fixed costs the server pays; absent: [inference]'s

    def validate(self, p: str, models: list[str], hardware: list[str], engines: tuple[str, ...] = ()) -> None:
        check_name(f"{p}.name", self.name)
        check_fields(self, p)
        if self.engine is not None and (not isinstance(self.engine, str) or self.engine not in engines):
            raise ConfigError(f"{p}.engine = {self.engine!r}: unknown; allowed: "
                              + (", ".join(engines) if engines else "none (no [[engines]] given)") + ", or absent")
        if isinstance(self.model, (list, dict)) or self.model not in models:
            raise ConfigError(f"{p}.model = {self.model!r}: unknown; allowed: {', '.join(models)}")
        if isinstance(self.hardware, (list, dict)) or self.hardware not in hardware:
            raise ConfigError(f"{p}.hardware = {self.hardware!r}: unknown; allowed: {', '.join(hardware)}")
        if self.site == "edge" and self.bg_max_seqs:
            raise ConfigError(f"{p}.bg_max_seqs = {self.bg_max_seqs}: edge servers carry no background; allowed [0, 0]")


def _default_actions() -> tuple[Action, ...]:
    return (
        Action("edge", "llama-3.2-3b", "edge", "L40S", 1),
        Action("cloud_small", "llama-3.1-8b", "cloud", "H100-SXM", 1, bg_max_seqs=256, bg_step_seqs=32),
        Action("cloud_large", "llama-3.1-70b", "cloud", "H100-SXM", 8, bg_max_seqs=768, bg_step_seqs=96),
    )


@dataclass(frozen=True)
class InferenceConfig:
    # efficiencies and per-layer costs: fitted to 631 published measured serving configurations of 10 sources, engines
    # pooled (what a server of no [[engines]] entry pays)
    # (scripts/tools/validate_latency.py --fit --pool-engines on data/serving; docs/model.md "Validation against measured serving");
    # a GPU's own [[hardware]] eta_* take their place where it has them
    eta_compute: float = bounded(0.322, 0.0, 1.0, lo_open=True)       # decode matmuls: achieved fraction of peak FLOP/s
    eta_memory: float = bounded(0.907, 0.0, 1.0, lo_open=True)        # weight reads: achieved fraction of memory bandwidth
    eta_prefill: float = bounded(0.578, 0.0, 1.0, lo_open=True)       # prefill: achieved fraction of peak FLOP/s
    # per-layer fixed costs (kernel launches, synchronisation): at most 1 ms a layer, far above any GPU's
    prefill_overhead_s_per_layer: float = bounded(0.000136, 0.0, 1e-3)  # fixed first-token cost per layer, s
    step_overhead_s_per_layer: float = bounded(0.000115, 0.0, 1e-3)        # fixed cost per layer of a decode step, s
    tp_sync_s_per_layer: float = bounded(5.1e-05, 0.0, 1e-3)   # fixed synchronisation per layer of a TP > 1 pass, s
    eta_attention: float = bounded(0.886, 0.0, 1.0, lo_open=True)      # decode attention: fraction of memory bandwidth
    # what decode attention's read scales with: the KV heads' bytes ("kv") or, as if every query head had its own
    # KV ("query"; grouped-query models measured as slow as multi-head ones)
    attention_heads: str = one_of("kv", ("kv", "query"))
    kv_reserve_tokens: int = bounded(1024, 1, 10_000_000, integer=True)    # KV tokens reserved per sequence (b_max)
    bg_context_tokens: int = bounded(1024, 0, 10_000_000, integer=True)    # mean context of a background sequence
    max_server_seqs: int = bounded(128, 1, 65_536, integer=True)   # own sequences a server tracks; more are refused
    reject_delay_factor: float = bounded(2.0, 1.0, 100.0)  # a refused task is charged factor x budget, quality 0
    prefill_attention: bool = flag(True)                   # add 2 n_layer L^2 d_model to the prefill FLOPs
    prefill_stall: bool = flag(False)      # a slot's admitted prompts are prefilled before the batch decodes on

    def validate(self, p: str) -> None:
        check_fields(self, p)


@dataclass(frozen=True)
class BackhaulConfig:
    latency_s: float = bounded(0.025, 0.0, 10.0)                 # one-way edge-cloud latency, s
    rate_bps: float = bounded(10e9, 0.0, 1e13, lo_open=True)     # edge-cloud transfer rate, bit/s

    def validate(self, p: str) -> None:
        check_fields(self, p)


@dataclass(frozen=True)
class RewardConfig:
    w_delay: float = bounded(0.5, 0.0, 100.0)
    w_miss: float = bounded(1.0, 0.0, 100.0)

    def validate(self, p: str) -> None:
        check_fields(self, p)


@dataclass(frozen=True)
class OracleConfig:
    max_exhaustive_tasks: int = bounded(4, 0, 12, integer=True)   # exhaustive over K^n assignments of a slot's first n
    sweeps: int = bounded(8, 0, 16, integer=True)                 # coordinate-ascent sweeps afterwards: until one
                                                                  #   moves no task, at most this many

    def validate(self, p: str) -> None:
        check_fields(self, p)


@dataclass(frozen=True)
class SimConfig:
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    radio: RadioConfig = field(default_factory=RadioConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    hardware: tuple[Hardware, ...] = field(default_factory=_default_hardware)
    engines: tuple[Engine, ...] | None = None        # absent: none
    models: tuple[LLMModel, ...] = field(default_factory=_default_models)
    actions: tuple[Action, ...] = field(default_factory=_default_actions)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    backhaul: BackhaulConfig = field(default_factory=BackhaulConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)

    # ---- look-ups -------------------------------------------------------
    @property
    def action_names(self) -> list[str]:
        return [a.name for a in self.actions]

    @property
    def type_names(self) -> list[str]:
        return [t.name for t in self.traffic.task_types]

    @property
    def n_users(self) -> int:
        return self.topology.n_cells * self.topology.users_per_cell

    def model(self, name: str) -> LLMModel:
        return {m.name: m for m in self.models}[name]

    def hw(self, name: str) -> Hardware:
        return {h.name: h for h in self.hardware}[name]

    def inference_for(self, action: Action) -> "InferenceConfig":
        """``[inference]`` with the fixed costs of the action's engine (its fields that are set) in place."""
        if not action.engine:
            return self.inference
        e = {x.name: x for x in self.engines or ()}[action.engine]
        return dataclasses.replace(self.inference, **{f.name: getattr(e, f.name) for f in fields(Engine)
                                                      if f.name != "name" and getattr(e, f.name) is not None})

    def b_max(self, action: Action) -> int:
        """Concurrent sequences a server admits: KV memory left after the weights / per-sequence KV."""
        m, h = self.model(action.model), self.hw(action.hardware)
        kv_mem = h.mem_bytes * action.n_gpus - m.n_params * m.bytes_per_weight
        return int(kv_mem // (m.kv_bytes_per_token * self.inference.kv_reserve_tokens))

    def replace(self, **sections: Any) -> "SimConfig":
        return dataclasses.replace(self, **sections)

    def _with_quality_like(self) -> "SimConfig":
        """Models' quality tables with each task type's ``quality_like`` fallback filled in (self if none)."""
        if not isinstance(self.traffic, TrafficConfig) or not isinstance(self.models, tuple):
            return self
        like = {t.name: t.quality_like for t in self.traffic.task_types
                if isinstance(t, TaskType) and isinstance(t.quality_like, str)}
        names = set(self.type_names)
        for t, other in like.items():
            if other not in names:
                raise ConfigError(f"traffic.task_types ({t}).quality_like = {other!r}: unknown task type; "
                                  f"allowed: {', '.join(sorted(names - {t}))}")
        models, changed = [], False
        for m in self.models:
            if not isinstance(m, LLMModel) or not isinstance(m.quality, dict):
                models.append(m)
                continue
            q = dict(m.quality)
            for t in like:
                other, seen = like[t], {t}
                while other not in q and other in like and other not in seen:    # a chain of fallbacks
                    seen.add(other)
                    other = like[other]
                if t not in q and other in q:
                    q[t] = q[other]
            changed |= q != m.quality
            models.append(dataclasses.replace(m, quality=q) if q != m.quality else m)
        return self.replace(models=tuple(models)) if changed else self

    # ---- validation -----------------------------------------------------
    def validate(self) -> "SimConfig":
        """The config, checked (:class:`ConfigError` naming the field, the value and the allowed range); a task
        type's ``quality_like`` is resolved first: the returned config lists every model's quality for it."""
        resolved = self._with_quality_like()
        if resolved is not self:
            return resolved.validate()
        for name in ("episode", "topology", "radio", "traffic", "inference", "backhaul", "reward", "oracle"):
            if not dataclasses.is_dataclass(getattr(self, name)):
                raise ConfigError(f"{name} = {getattr(self, name)!r}: must be a table")
        for name, rows in (("hardware", self.hardware), ("models", self.models), ("engines", self.engines or ()),
                           ("actions", self.actions)):
            if not isinstance(rows, tuple) or not all(dataclasses.is_dataclass(r) for r in rows):
                raise ConfigError(f"{name} = {rows!r}: must be an array of tables")
        self.episode.validate("episode")
        self.topology.validate("topology")
        self.radio.validate("radio")
        self.traffic.validate("traffic")
        if not self.hardware:
            raise ConfigError("hardware: at least one accelerator is required")
        for i, h in enumerate(self.hardware):
            _validate_entry(h, f"hardware[{i}]")
        check_unique("hardware", [h.name for h in self.hardware])
        if not self.models:
            raise ConfigError("models: at least one model is required")
        for i, m in enumerate(self.models):
            _validate_entry(m, f"models[{i}]", self.type_names)
        check_unique("models", [m.name for m in self.models])
        for i, e in enumerate(self.engines or ()):
            _validate_entry(e, f"engines[{i}]")
        check_unique("engines", [e.name for e in self.engines or ()])
        if not 2 <= len(self.actions) <= 8:
            raise ConfigError(f"actions: {len(self.actions)} given; allowed [2, 8]")
        for i, a in enumerate(self.actions):
            _validate_entry(a, f"actions[{i}]", [m.name for m in self.models], [h.name for h in self.hardware],
                            tuple(e.name for e in self.engines or ()))
        check_unique("actions", self.action_names)
        for i, a in enumerate(self.actions):
            bmax = self.b_max(a)
            if bmax < 1:
                raise ConfigError(f"actions[{i}] ({a.name}): {a.model} leaves no KV memory on "
                                  f"{a.n_gpus} x {a.hardware}; b_max = {bmax}, allowed >= 1")
            if a.bg_max_seqs >= bmax:
                raise ConfigError(f"actions[{i}].bg_max_seqs = {a.bg_max_seqs} is out of range: the server admits "
                                  f"b_max = {bmax} sequences; allowed [0, {bmax - 1}]")
        self.inference.validate("inference")
        self.backhaul.validate("backhaul")
        self.reward.validate("reward")
        self.oracle.validate("oracle")
        return self


# --------------------------------------------------------------------------
# TOML I/O
# --------------------------------------------------------------------------
_SECTIONS = {"episode": EpisodeConfig, "topology": TopologyConfig, "radio": RadioConfig,
             "inference": InferenceConfig, "backhaul": BackhaulConfig, "reward": RewardConfig,
             "oracle": OracleConfig}
_TABLES = {"hardware": Hardware, "models": LLMModel, "engines": Engine, "actions": Action}


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a table, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {unknown}; allowed: {sorted(known)}")
    required = [f.name for f in fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{path}: missing field(s) {missing}")
    return cls(**data)


def _rows(cls: type, rows: Any, defaults: tuple, path: str, merge: bool) -> tuple:
    """An array of tables (``[[hardware]]``, ``[[models]]``, ``[[actions]]``, ``[[traffic.task_types]]``) merged
    with the defaults' entries by name: a new name adds an entry, an existing one replaces that entry; with
    ``replace = true`` in the first entry (or ``merge=False``) the array replaces the defaults' whole table."""
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: must be an array of tables")
    rows = list(rows)
    replace = not merge
    for i, r in enumerate(rows):
        if isinstance(r, dict) and "replace" in r:
            if i:
                raise ConfigError(f"{path}[{i}].replace: only the first entry of the array may hold replace")
            if not isinstance(r["replace"], bool):
                raise ConfigError(f"{path}[0].replace = {r['replace']!r}: must be true or false")
            replace = replace or r["replace"]
            rows[0] = {k: v for k, v in r.items() if k != "replace"}
    if rows and rows[0] == {} and len(rows) > 1:
        rows = rows[1:]                                # an entry holding only replace = true
        offset = 1
    else:
        offset = 0
    built = [_build(cls, r, f"{path}[{i + offset}]") for i, r in enumerate(rows)]
    for i, b in enumerate(built):
        check_name(f"{path}[{i + offset}].name", b.name)
    check_unique(path, [b.name for b in built])
    if replace:
        return tuple(built)
    out = list(defaults)
    where = {d.name: k for k, d in enumerate(out)}
    for b in built:
        if b.name in where:
            out[where[b.name]] = b
        else:
            where[b.name] = len(out)
            out.append(b)
    return tuple(out)


def config_from_dict(data: dict[str, Any], merge: bool = True) -> SimConfig:
    """Build and validate a config from a nested dict: missing sections and fields take the defaults; the entries
    of an array of tables merge with the defaults' by name (``merge=False``, or ``replace = true`` in an array's
    first entry: the array replaces the defaults' table)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: must be a table of sections, got {type(data).__name__}")
    base = SimConfig()
    unknown = sorted(set(data) - set(_SECTIONS) - set(_TABLES) - {"traffic"})
    if unknown:
        raise ConfigError(f"config: unknown section(s) {unknown}")
    kw: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        if name in data:
            kw[name] = _build(cls, data[name], name)
    if "traffic" in data:
        if not isinstance(data["traffic"], dict):
            raise ConfigError(f"traffic: must be a table, got {type(data['traffic']).__name__}")
        tr = dict(data["traffic"])
        if "task_types" in tr:
            tr["task_types"] = _rows(TaskType, tr["task_types"], base.traffic.task_types, "traffic.task_types", merge)
        kw["traffic"] = _build(TrafficConfig, tr, "traffic")
    for name, cls in _TABLES.items():
        if name in data:
            kw[name] = _rows(cls, data[name], getattr(base, name) or (), name, merge)
    return base.replace(**kw).validate()


def config_to_dict(cfg: SimConfig) -> dict[str, Any]:
    """The config as a nested dict of plain values (absent fields left out); ``config_from_dict(d, merge=False)``
    reads it back equal."""
    def conv(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in fields(x) if getattr(x, f.name) is not None}
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x
    return conv(cfg)


def config_hash(cfg: SimConfig | dict) -> str:
    """A short hash of the config (or of its ``config_to_dict``): what names run folders and binds a PPO
    checkpoint to the scenario it was trained on."""
    import hashlib
    import json
    data = cfg if isinstance(cfg, dict) else config_to_dict(cfg)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def set_fields(cfg: SimConfig, assignments: list[str]) -> SimConfig:
    """The config with ``section.field=value`` assignments applied (the command line's ``--set``), validated as
    a TOML file would be. An entry of an array of tables is named: ``actions.cloud_large.n_gpus=4``,
    ``traffic.task_types.chat.budget_s=8``, ``models.llama-3.1-8b.quality.code=0.7``. The value is read as a
    TOML value (``8``, ``1e9``, ``true``, ``"L4"``); one that is not valid TOML is taken as a string (``L4``)."""
    data = config_to_dict(cfg)
    for a in assignments:
        key, eq, text = a.partition("=")
        parts = key.strip().split(".")
        if not eq or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {a!r}: must be section.field=value (e.g. episode.horizon=20)")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        if parts[:2] == ["traffic", "task_types"]:
            table, name, rest = data["traffic"]["task_types"], "traffic.task_types", parts[2:]
        elif parts[0] in _TABLES:
            table, name, rest = data[parts[0]], parts[0], parts[1:]
        else:
            table = None
        if table is not None:                 # an array of tables: an entry by its name (which may hold dots)
            names = [r["name"] for r in table]
            k = next((k for k in range(len(rest) - 1, 0, -1) if ".".join(rest[:k]) in names), None)
            if k is None:
                raise ConfigError(f"--set {a!r}: name an entry of {name}: {name}.<name>.<field> with <name> one of "
                                  f"{', '.join(names)}")
            node, rest = table[names.index(".".join(rest[:k]))], rest[k:]
        elif parts[0] in _SECTIONS or parts[0] == "traffic":
            node, rest = data[parts[0]], parts[1:]
        else:
            raise ConfigError(f"--set {a!r}: unknown section {parts[0]!r}; allowed: "
                              f"{', '.join([*_SECTIONS, 'traffic', *_TABLES])}")
        for p in rest[:-1]:                   # a table inside: models.<name>.quality.<type>
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {a!r}: {p} is not a table")
        node[rest[-1]] = value
    try:
        return config_from_dict(data, merge=False)
    except ConfigError as e:
        raise ConfigError(f"--set {' '.join(assignments)}: {e}") from None


SCENARIOS = ("default", "loaded", "tiny", "edge_tiers")


def scenario_path(name: str) -> str | None:
    """The TOML file of a named scenario preset shipped with the package (None for the default)."""
    if name not in SCENARIOS:
        raise ConfigError(f"--scenario {name!r}: unknown; allowed: {', '.join(SCENARIOS)}")
    return None if name == "default" else os.path.join(os.path.dirname(__file__), "scenarios", f"{name}.toml")


def load_config(path: str | os.PathLike | None) -> SimConfig:
    """Load a TOML config (None: the defaults), validated."""
    if path is None:
        return SimConfig().validate()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    return config_from_dict(data)


def _field_notes(cls: type) -> dict[str, str]:
    """Each field's unit and meaning: the comment on its line in the class's source (one place for both)."""
    import inspect
    import io
    import tokenize
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in fields(cls)}
    notes: dict[str, str] = {}
    line_name: dict[int, str] = {}
    above: list[str] = []                                # comment lines right above a field
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        row, col = tok.start
        if tok.type == tokenize.NAME and col == 4 and tok.string in names and row not in line_name:
            line_name[row] = tok.string
            if above:
                notes[tok.string] = " ".join(above)
            above = []
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("# ").strip()
            if row in line_name:
                notes[line_name[row]] = text
            elif col == 4:
                above.append(text)
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            above = []
    return notes


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip()


def _toml_key(k: str) -> str:
    return tomli_w.dumps({k: 0}).split("=", 1)[0].strip()


def _toml_fields(obj: Any, comments: bool) -> list[str]:
    notes = _field_notes(type(obj)) if comments else {}
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, tuple) and v and dataclasses.is_dataclass(v[0]):
            continue                                     # an array of tables, written after its section
        r = f.metadata.get("range")
        note = "; ".join(x for x in (notes.get(f.name), r and f"allowed {r.describe()}") if x)
        if v is None:
            if comments:
                out.append(f"# {f.name} = (absent){'  # ' + note if note else ''}")
            continue
        out.append(f"{_toml_key(f.name)} = {_toml_value(v)}{'  # ' + note if note else ''}")
    return out


def config_toml(cfg: SimConfig, comments: bool = True) -> str:
    """The config as TOML text, every field written (with ``comments``: each field's unit, meaning and allowed
    range as a comment); each array of tables starts with ``replace = true``, so that
    ``config_from_dict(tomllib.loads(text))`` reads it back equal."""
    lines: list[str] = []

    def table(header: str, obj: Any) -> None:
        lines.extend(["", f"[{header}]", *_toml_fields(obj, comments)])

    def array(header: str, rows: tuple) -> None:
        for i, r in enumerate(rows):
            lines.extend(["", f"[[{header}]]"])
            if i == 0:
                lines.append("replace = true" + ("  # this array replaces the defaults' entries (without it, "
                                                 "entries merge with them by name)" if comments else ""))
            lines.extend(_toml_fields(r, comments))

    if comments:
        lines.append("# genai-edge-lab scenario: every field, with its unit and allowed range (jaxsim/config.py)")
    for name in ("episode", "topology", "radio", "traffic"):
        table(name, getattr(cfg, name))
    array("traffic.task_types", cfg.traffic.task_types)
    for name in ("inference", "backhaul", "reward", "oracle"):
        table(name, getattr(cfg, name))
    for name in _TABLES:
        array(name, getattr(cfg, name) or ())
    return "\n".join(lines).lstrip("\n") + "\n"
