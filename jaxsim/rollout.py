"""Episode rollouts: ``lax.scan`` over slots, ``vmap`` over episodes, episodes
sharded over every device of every process (``jax.sharding``, a 1-D mesh; see
``jaxsim.distributed`` for multi-host runs), streamed in chunks to bound memory.

Episode i always uses ``fold_in(key, i)``, so results do not depend on the
chunk size, the number of devices or processes, or how many episodes are run
alongside it -- to the last bit wherever a device's batch has the same size; a batch
of another size is vectorised differently by XLA, and float results (rates, SINRs)
can then differ in the last bit. A ``reduce`` function (e.g. ``metrics.EpisodeStats``) shrinks each
episode to a few numbers on the device, so a million episodes stream through
without their per-task arrays ever reaching the host.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import distributed, env
from .params import EnvParams

Policy = Callable[[jax.Array, env.Observation, Any], jax.Array]
# per task [H, U] an episode: who and what it was, what it met at decision time, where it went, what it got
TASK_FIELDS = ("mask", "cell", "task_type", "prompt_tokens", "output_tokens", "budget_s", "min_quality",
               "uplink_sinr_db", "downlink_sinr_db", "uplink_rate_bps", "downlink_rate_bps",
               "action", "server", "server_load_seqs", "queue_position", "refused",
               "delay_s", *env.DELAY_PARTS, "quality", "success", "reward")
# per server [H, V] an episode: its state in the slot after admission (env.server_slot_info)
SERVER_FIELDS = env.SERVER_FIELDS
STEP_FIELDS = TASK_FIELDS + SERVER_FIELDS


# --------------------------------------------------------------------------
# the key schedule: every runner (this jitted one, the host runner of the experiment layer) uses these
# --------------------------------------------------------------------------
def episode_key(key, episode):
    """The key of episode ``episode`` of a run with base ``key``."""
    return jax.random.fold_in(key, episode)


def episode_keys(key, start: int, n: int):
    """Keys of episodes start .. start + n - 1, [n, ...]."""
    return jax.vmap(lambda i: episode_key(key, i))(jnp.arange(start, start + n))


def split_episode_key(key, horizon: int):
    """(reset key, slot keys [horizon, ...]) of one episode."""
    k_reset, k_run = jax.random.split(key)
    return k_reset, jax.random.split(k_run, horizon)


def split_slot_key(key):
    """(policy key, environment-step key) of one slot."""
    k_pol, k_step = jax.random.split(key)
    return k_pol, k_step


def run_episode(key, params: EnvParams, policy: Policy, policy_params, collect_tasks: bool = True):
    """One episode: slot rewards [H] and (optionally) per-task info {field: [H, U]}.

    The policy receives the environment params when ``policy_params`` is None.
    """
    pp = params if policy_params is None else policy_params
    k_reset, slot_keys = split_episode_key(key, params.horizon)
    _, state = env.reset(k_reset, params)

    def body(state, k):
        k_pol, k_step = split_slot_key(k)
        obs = env.get_obs(params, state)
        with jax.named_scope("policy"):
            action = policy(k_pol, obs, pp)
        _, state, reward, _, info = env.step(k_step, state, action, params)
        out = {f: info[f] for f in STEP_FIELDS} if collect_tasks else {}
        return state, (reward, out)

    _, (rewards, tasks) = jax.lax.scan(body, state, slot_keys)
    return rewards, tasks


def _episode_output(key, params, policy, policy_params, collect_tasks, reduce):
    rewards, tasks = run_episode(key, params, policy, policy_params, collect_tasks or reduce is not None)
    out = {"slot_reward": rewards, **tasks}
    return out if reduce is None else reduce(out)


# A CPU device runs a slot's kernels one after the other, each over the whole batch: past a few hundred episodes the
# batch's server arrays leave the core's cache and every kernel streams them from memory. Measured on a 2-core CPU
# (greedy, 2 devices, episode-slots/s by episodes vmapped per device): default scenario 128: 43k, 256: 50k,
# 512: 46k, 1024: 40k; the loaded preset 128: 14.1k, 256: 13.4k, 512: 13.0k, 1024: 11.7k (docs/model.md). So a
# CPU device's batch runs as a loop over sub-batches of this many vmapped episodes, inside the one program.
CPU_SUB_BATCH = 256


def sub_batch_for(device) -> int | None:
    """Episodes vmapped at once inside a device's program: ``CPU_SUB_BATCH`` on a CPU, the whole batch elsewhere."""
    return CPU_SUB_BATCH if device.platform == "cpu" else None


def _batch(keys, params, policy, policy_params, collect_tasks, reduce=None, sub_batch=None):
    """Every episode of ``keys`` (vmapped; with ``sub_batch``, ``sub_batch`` at a time in a loop: the same
    results, a working set that stays in a CPU's cache)."""
    def one(k):
        return _episode_output(k, params, policy, policy_params, collect_tasks, reduce)
    if sub_batch is None or keys.shape[0] <= sub_batch:
        return jax.vmap(one)(keys)
    return jax.lax.map(one, keys, batch_size=sub_batch)


_STATIC = ("policy", "collect_tasks", "reduce", "sub_batch")
_run_batch = jax.jit(_batch, static_argnames=_STATIC)


@partial(jax.jit, static_argnames=_STATIC + ("mesh",))
def _run_local(keys, params, policy, policy_params, collect_tasks, reduce, sub_batch, mesh):
    """:func:`_batch` on every device of ``mesh`` (this process's devices), each on its own block of ``keys``:
    one program, compiled once for all of them (no communication between the blocks, so the blocks' values need no
    varying-axis tracking: ``check_vma=False`` leaves each block exactly the single-device program)."""
    def block(k, p, pp):
        return _batch(k, p, policy, pp, collect_tasks, reduce, sub_batch)
    spec = jax.sharding.PartitionSpec("episodes")
    return jax.shard_map(block, mesh=mesh, in_specs=(spec, jax.sharding.PartitionSpec(), jax.sharding.PartitionSpec()),
                         out_specs=spec, check_vma=False)(keys, params, policy_params)


def _run_sharded(keys: jax.Array, params, policy, policy_params, collect_tasks, reduce, sub_batch="auto"):
    """Every device of this process runs :func:`_batch` on its own shard of the episode-sharded ``keys`` (the
    devices work at once; no communication, within a process or across processes); the shards are put back
    together as global arrays with the keys' sharding.

    One device runs the single-device program; several run it as one program mapped over this process's devices
    (``shard_map`` over a mesh of them), compiled once rather than once per device (XLA:CPU's compilation cache
    keys on the device, so a program per device compiled N times on N devices). Each device's block is the
    single-device program on that block: the same bits as one program per device (checked on the default, loaded
    and tiny scenarios with four policies on 1-3 devices).
    """
    blocks = _local_blocks(keys)
    devices = [b.device for b in blocks]
    sub = sub_batch_for(devices[0]) if sub_batch == "auto" else sub_batch
    if len(blocks) == 1:
        out = _run_batch(blocks[0], jax.device_put(params, devices[0]), policy,
                         jax.device_put(policy_params, devices[0]), collect_tasks, reduce, sub)
    else:
        mesh = jax.sharding.Mesh(np.array(devices), ("episodes",))
        local = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("episodes"))
        rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        k = jax.make_array_from_single_device_arrays((sum(b.shape[0] for b in blocks), *keys.shape[1:]), local, blocks)
        out = _run_local(k, jax.device_put(params, rep), policy, jax.device_put(policy_params, rep),
                         collect_tasks, reduce, sub, mesh)
    n = keys.shape[0]
    return jax.tree.map(lambda x: jax.make_array_from_single_device_arrays((n, *x.shape[1:]), keys.sharding,
                                                                           _local_blocks(x)), out)


def _local_blocks(x: jax.Array) -> list[jax.Array]:
    """This process's shards of ``x`` (sharded along its first axis), one array a device, in episode order."""
    return [sh.data for sh in sorted(x.addressable_shards, key=lambda sh: sh.index[0].start or 0)]


# --------------------------------------------------------------------------
# chunk size from available memory
# --------------------------------------------------------------------------
def host_memory_available_bytes() -> int:
    """Memory this process may still use: MemAvailable, capped by a cgroup limit when there is one."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(avail), 0)


def device_memory_available_bytes(device) -> int:
    """Free memory of an accelerator (its allocator's limit minus use); CPU devices share host memory."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return host_memory_available_bytes() // max(1, len(jax.local_devices()))


def bytes_per_episode(params: EnvParams, policy: Policy, policy_params, collect_tasks: bool, reduce=None,
                      probe: int = 16) -> tuple[float, float]:
    """(device bytes, host bytes) one episode needs, from XLA's memory analysis of a probe batch.

    Device bytes count the compiled program's temporaries, inputs and outputs; host bytes
    the outputs that come back.
    """
    keys = jax.ShapeDtypeStruct((probe, *jax.random.PRNGKey(0).shape), jnp.uint32)
    compiled = _run_batch.lower(keys, params, policy, policy_params, collect_tasks, reduce).compile()
    m = compiled.memory_analysis()
    device = (m.temp_size_in_bytes + m.output_size_in_bytes + m.argument_size_in_bytes) / probe
    return device, m.output_size_in_bytes / probe


def auto_chunk(params: EnvParams, policy: Policy, policy_params=None, collect_tasks: bool = True, reduce=None,
               n_episodes: int | None = None, memory_fraction: float = 0.4, max_per_device: int = 1 << 16) -> int:
    """Episodes per compiled batch: as many as fit in ``memory_fraction`` of free device memory
    (and, for what comes back, of free host memory), a multiple of the global device count.

    Small runs (at most 64 episodes per device) run as one batch without measuring.
    """
    nd = jax.device_count()
    if n_episodes is not None and n_episodes <= 64 * nd:
        return (n_episodes + nd - 1) // nd * nd
    dev_b, host_b = bytes_per_episode(params, policy, policy_params, collect_tasks, reduce)
    per_device = memory_fraction * device_memory_available_bytes(jax.local_devices()[0]) / dev_b
    per_device = min(per_device, memory_fraction * host_memory_available_bytes() / (host_b * nd))
    per_device = int(max(1, min(per_device, max_per_device)))
    if n_episodes is not None:
        per_device = min(per_device, (n_episodes + nd - 1) // nd)
    return per_device * nd


# --------------------------------------------------------------------------
# the rollout
# --------------------------------------------------------------------------
def rollout(key, params: EnvParams, policy: Policy, policy_params=None, n_episodes: int = 1,
            chunk: int | str = 1024, collect_tasks: bool = True, progress: Callable[[int], None] | None = None,
            first_episode: int = 0, reduce: Callable[[dict], Any] | None = None,
            on_chunk: Callable[[int, dict], None] | None = None, sub_batch: int | str | None = "auto"):
    """Run episodes first_episode .. first_episode + n_episodes - 1.

    Returns numpy {"slot_reward": [E, H], field: [E, H, U], ...}, or with ``reduce`` (a hashable
    function of one episode's outputs) the stacked reductions [E, ...]. Each chunk of
    episodes is sharded over every device of every process (padded to a multiple of the device
    count; ``chunk="auto"`` sizes it from free memory) and gathered to every process.
    After each chunk, ``on_chunk(first_episode_of_chunk, outputs)`` and ``progress(n_done)`` are called.
    ``sub_batch``: episodes vmapped at once inside a device's program (auto: ``sub_batch_for`` the device; None:
    the device's whole share of the chunk); it changes no result.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes = {n_episodes}: allowed >= 1")
    if not (sub_batch is None or sub_batch == "auto" or isinstance(sub_batch, int) and not isinstance(sub_batch, bool)
            and sub_batch >= 1):
        raise ValueError(f"sub_batch = {sub_batch!r}: allowed 'auto', None or an integer >= 1")
    nd = jax.device_count()
    if chunk == "auto":
        chunk = auto_chunk(params, policy, policy_params, collect_tasks, reduce, n_episodes)
    elif not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk = {chunk!r}: allowed 'auto' or an integer >= 1")
    sharding = distributed.episode_sharding()
    chunk = max(nd, (min(chunk, n_episodes) + nd - 1) // nd * nd)
    outs = []
    for start in range(0, n_episodes, chunk):
        n = min(chunk, n_episodes - start)
        keys = np.asarray(episode_keys(key, first_episode + start, chunk))   # full chunk: one compiled shape
        out = _run_sharded(distributed.global_array(keys, sharding), params, policy, policy_params,
                           collect_tasks, reduce, sub_batch)
        out = jax.tree.map(lambda x: x[:n], distributed.gather(out))
        if on_chunk is not None:
            on_chunk(first_episode + start, out)
        outs.append(out)
        if progress is not None:
            progress(n)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
