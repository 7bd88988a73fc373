"""Multi-device and multi-host runs with JAX's own multi-controller runtime.

Every process runs the same program (SPMD). ``initialize`` starts
``jax.distributed`` when a run spans several processes; after it,
``jax.devices()`` lists the devices of every host and a ``Mesh`` over them
shards episodes globally. Each process builds its own shards of an input
(``global_array``); results come back to every process with
``gather`` (``process_allgather``); only process 0 writes files (``is_writer``).

Where the cluster layout comes from, first match wins:
  1. explicit arguments (``--coordinator HOST:PORT --num-processes N --process-id I``);
  2. ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
  3. SLURM, when the job step has more than one task (``SLURM_STEP_NUM_TASKS`` / ``SLURM_NTASKS``):
     JAX's own cluster detection reads the node list, task count and rank;
  4. otherwise one process: nothing is initialised.
On CPU the cross-process collectives use gloo.

On a CPU host, ``set_cpu_devices`` exposes the cores as that many XLA CPU devices (JAX's
``jax_num_cpu_devices``), so the episode shards of a chunk run side by side, one per core. Results do
not depend on the device count.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .fields import ConfigError

EPISODE_AXIS = "episodes"


class ClusterError(ConfigError):
    """A cluster setting is missing or out of range."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where this process sits in a multi-process run; ``auto`` lets JAX detect it (SLURM)."""
    coordinator: str | None = None      # "host:port" of process 0's coordination service
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False

    @property
    def multi_process(self) -> bool:
        return self.auto or (self.num_processes or 1) > 1

    def validate(self) -> "ClusterSpec":
        if self.auto:
            return self
        given = [x is not None for x in (self.coordinator, self.num_processes, self.process_id)]
        if any(given) and not all(given):
            raise ClusterError("coordinator, num_processes and process_id must be given together "
                               f"(got coordinator={self.coordinator!r}, num_processes={self.num_processes}, "
                               f"process_id={self.process_id})")
        if not any(given):
            return self
        if not re.fullmatch(r"[^\s:]+:\d{1,5}", self.coordinator) or not 0 < int(self.coordinator.rsplit(":", 1)[1]) < 65536:
            raise ClusterError(f"coordinator = {self.coordinator!r}: allowed HOST:PORT with port 1..65535")
        if self.num_processes < 1:
            raise ClusterError(f"num_processes = {self.num_processes}: allowed >= 1")
        if not 0 <= self.process_id < self.num_processes:
            raise ClusterError(f"process_id = {self.process_id}: allowed 0..{self.num_processes - 1}")
        return self


def _env_int(env, name):
    v = env.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ClusterError(f"{name} = {v!r}: allowed an integer") from None


def cluster_spec(coordinator=None, num_processes=None, process_id=None, env=None) -> ClusterSpec:
    """The cluster layout from explicit values, else the environment (see the module docstring)."""
    env = os.environ if env is None else env
    if any(x is not None for x in (coordinator, num_processes, process_id)):
        return ClusterSpec(coordinator, num_processes, process_id).validate()
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return ClusterSpec(env["JAX_COORDINATOR_ADDRESS"], _env_int(env, "JAX_NUM_PROCESSES"),
                           _env_int(env, "JAX_PROCESS_ID")).validate()
    n_tasks = _env_int(env, "SLURM_STEP_NUM_TASKS") or _env_int(env, "SLURM_NTASKS")
    if n_tasks and n_tasks > 1 and env.get("SLURM_PROCID") is not None:
        return ClusterSpec(auto=True)
    return ClusterSpec()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


# A run this small gains nothing from the extra devices: it is compile-bound (the default 16-episode run of
# jaxsim-montecarlo took 21.5 s on one device and 21.3 s on two with the cache off, 2026-12-08; before the devices of a
# process shared one compiled program, every device compiled its own, ~6 s each). One device also keeps such runs'
# per-device batch, and so their last bits, as they were.
MULTI_DEVICE_MIN_EPISODE_SLOTS = 500_000


def cpu_device_count(value: int | str = "auto", episode_slots: int | None = None) -> int:
    """The number of CPU devices ``set_cpu_devices`` asks for (validated; see there)."""
    if value == "auto":
        small = episode_slots is not None and episode_slots < MULTI_DEVICE_MIN_EPISODE_SLOTS
        return 1 if small else usable_cores()
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= 4096:
        raise ClusterError(f"cpu_devices = {value!r}: allowed auto or an integer in [1, 4096]")
    return n


def set_cpu_devices(value: int | str = "auto", episode_slots: int | None = None) -> int | None:
    """Expose this host's CPU as ``value`` XLA devices.

    "auto": one per usable core, unless ``episode_slots`` (episodes x horizon per policy, when the
    caller knows it) is below ``MULTI_DEVICE_MIN_EPISODE_SLOTS``: then one. XLA:CPU runs a program's
    fused kernels one after another, most of them on one core, so a chunk sharded over one device per
    core keeps every core busy (1.4-1.55x on 2 cores for the default scenario). Only possible before
    JAX starts its backends; afterwards, or when ``XLA_FLAGS`` already forces a host device count,
    nothing changes. Returns the count set, or None when nothing changed.
    """
    n = cpu_device_count(value, episode_slots)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:                      # the backends already run
        return None
    return n


def add_cluster_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("multi-host (JAX distributed runtime; default: SLURM or JAX_* variables, else one process)")
    g.add_argument("--cpu-devices", default="auto",
                   help="XLA CPU devices per process, episodes sharded over them: auto (one per core for runs of "
                        f"at least {MULTI_DEVICE_MIN_EPISODE_SLOTS:,} episode-slots per policy, else one) or N; "
                        "results do not depend on it (auto)")
    g.add_argument("--coordinator", help="HOST:PORT of process 0's coordination service")
    g.add_argument("--num-processes", type=int, help="number of processes in the run")
    g.add_argument("--process-id", type=int, help="this process's rank, 0 .. num-processes - 1")


def spec_from_args(args) -> ClusterSpec:
    return cluster_spec(args.coordinator, args.num_processes, args.process_id)


def initialize(spec: ClusterSpec, timeout_s: int = 300) -> bool:
    """Start ``jax.distributed`` for a multi-process spec (once); True when the run spans processes.

    Must run before anything touches a JAX backend (``jax.devices()``, any computation).
    """
    if not spec.multi_process:
        return False
    if jax.distributed.is_initialized():
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if spec.auto:
        jax.distributed.initialize(initialization_timeout=timeout_s)
    else:
        jax.distributed.initialize(spec.coordinator, spec.num_processes, spec.process_id,
                                   initialization_timeout=timeout_s)
    return True


def is_writer() -> bool:
    """Process 0 writes the run's files; the others compute their shards and wait."""
    return jax.process_index() == 0


def episode_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, axis ``episodes``."""
    return Mesh(np.array(jax.devices()), (EPISODE_AXIS,))


def episode_sharding(mesh: Mesh | None = None) -> NamedSharding:
    return NamedSharding(mesh or episode_mesh(), PartitionSpec(EPISODE_AXIS))


def replicated(mesh: Mesh | None = None) -> NamedSharding:
    return NamedSharding(mesh or episode_mesh(), PartitionSpec())


def global_array(host_data: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array sharded by ``sharding`` from a host copy every process holds in full."""
    host_data = np.asarray(host_data)
    return jax.make_array_from_callback(host_data.shape, sharding, lambda idx: host_data[idx])


def gather(tree):
    """Every leaf as a full NumPy array on every process (an all-gather across processes)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def broadcast_from_writer(x):
    """Process 0's value of a small pytree, on every process."""
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils
    return multihost_utils.broadcast_one_to_all(x)


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
