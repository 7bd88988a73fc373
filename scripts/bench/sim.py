"""Benchmark: the jitted JAX kernel versus the NumPy float64 reference, both vectorised over
episodes, in the same process, on the default scenario with greedy actions.

    python -m scripts.bench.sim            # 64, 1024 and 8192 episodes x 50 slots
    python -m scripts.bench.sim --quick    # 64 and 256 episodes
    python -m scripts.bench.sim --sizes 10000,100000,1000000 --numpy-max 10000 --chunk auto   # a GPU

Prints one line per size and, last, one JSON object for the largest size:
{"bench": "sim", "episodes": ..., "jax_episode_slots_per_s": ..., "numpy_episode_slots_per_s": ...,
 "ratio": ..., "peak_rss_mb": ...}. JAX is timed warm (a first run of the same shape compiles);
episodes are run in chunks of --chunk to bound memory (auto: sized from free device memory), each chunk
sharded over --cpu-devices XLA CPU devices on a CPU host (auto: one per core; NumPy uses one core).
peak_rss_mb is the process's peak resident memory (both engines included). The NumPy reference
runs only for sizes up to --numpy-max; larger sizes are compared with its rate at the largest
size it ran.

Memory-bandwidth roofline: the JSON also carries ``bytes_per_episode_slot`` (XLA's cost analysis
of one compiled, vmapped slot: greedy decision + env.step, i.e. the bytes its fused kernels read
and write), ``bandwidth_gb_s`` (a streaming a*x+b over a large array, timed here) and
``roofline_fraction`` = episode-slots/s x bytes per episode-slot / bandwidth. On a GPU the
intermediates between fused kernels live in device memory, so this is the share of the memory
roofline reached; on a CPU most of them stay in cache and the fraction can exceed 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import jax

from baselines.heuristics import greedy_policy
from jaxsim import env, reference
from jaxsim.config import SimConfig
from jaxsim.distributed import set_cpu_devices
from jaxsim.params import make_params
from jaxsim.rollout import auto_chunk, rollout


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _bytes_accessed(compiled) -> float:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("bytes accessed", float("nan")))


def bytes_per_episode_slot(params, n: int = 1024) -> float:
    """Bytes XLA's compiled program reads and writes for one slot of ``n`` vmapped episodes, per episode."""
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    states = jax.vmap(lambda k: env.reset(k, params)[1])(keys)

    def slot(keys, states):
        def one(k, s):
            k1, k2 = jax.random.split(k)
            a = greedy_policy(k1, env.get_obs(params, s), params)
            return env.step(k2, s, a, params)[1:3]
        return jax.vmap(one)(keys, states)
    return _bytes_accessed(jax.jit(slot).lower(keys, states).compile()) / n


def bandwidth_gb_s(n_bytes: int, repeats: int = 5) -> float:
    """Sustained memory bandwidth of the default device: y = a*x + b over n_bytes of float32 (read + write)."""
    f = jax.jit(lambda x: x * 1.0001 + 1.0, donate_argnums=0)     # in place: no fresh pages to fault in
    x = f(jax.numpy.ones((n_bytes // 4,), jax.numpy.float32))
    x = f(x).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        x = f(x)
    x.block_until_ready()
    return 2 * n_bytes * repeats / (time.perf_counter() - t0) / 1e9


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 and 256 episodes")
    ap.add_argument("--sizes", help="comma-separated episode counts (overrides the defaults)")
    ap.add_argument("--chunk", default="2048", help="JAX episodes per compiled batch, or auto (default 2048)")
    ap.add_argument("--cpu-devices", default="auto",
                    help="XLA CPU devices the JAX episodes are sharded over: auto (one per core) or N (auto)")
    ap.add_argument("--sub-batch", default="auto",
                    help="episodes vmapped at once inside a device's program: auto (256 on a CPU, the whole share "
                         "elsewhere: jaxsim.rollout.CPU_SUB_BATCH), none (the whole share) or N (auto)")
    ap.add_argument("--numpy-max", type=int, default=None,
                    help="run the NumPy reference only up to this many episodes (default: every size)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([64, 256] if args.quick else [64, 1024, 8192])
    if any(s < 1 for s in sizes) or not (args.chunk == "auto" or args.chunk.isdigit() and int(args.chunk) >= 1):
        raise SystemExit("error: --sizes must be positive integers and --chunk auto or a positive integer")
    sub = args.sub_batch.lower()
    if not (sub in ("auto", "none") or sub.isdigit() and int(sub) >= 1):
        raise SystemExit(f"error: --sub-batch = {args.sub_batch!r}: allowed auto, none or an integer >= 1")
    sub_batch = "auto" if sub == "auto" else None if sub == "none" else int(sub)
    if args.numpy_max is not None and args.numpy_max < min(sizes):
        raise SystemExit(f"error: --numpy-max = {args.numpy_max}: allowed >= the smallest --sizes ({min(sizes)}): "
                         "the ratio needs the reference at one size at least")
    try:
        set_cpu_devices(args.cpu_devices)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    cfg = SimConfig()
    params = make_params(cfg)
    np_params = reference.to_numpy(params)
    horizon = cfg.episode.horizon
    key = jax.random.PRNGKey(0)
    bytes_slot = bytes_per_episode_slot(params)
    bw = bandwidth_gb_s(1 << 30 if jax.default_backend() == "gpu" else 1 << 28)
    result, np_rate, np_reward = {}, None, float("nan")
    for n in sizes:
        chunk = auto_chunk(params, greedy_policy, None, False, n_episodes=n) if args.chunk == "auto" \
            else min(n, int(args.chunk))
        rollout(key, params, greedy_policy, None, chunk, chunk=chunk, collect_tasks=False,
                sub_batch=sub_batch)                                     # compile this shape
        t0 = time.perf_counter()
        out = rollout(key, params, greedy_policy, None, n, chunk=chunk, collect_tasks=False, sub_batch=sub_batch)
        jax_s = time.perf_counter() - t0
        if args.numpy_max is None or n <= args.numpy_max:
            t0 = time.perf_counter()
            np_reward = float(reference.simulate(np_params, n, seed=0).mean())
            np_rate = n * horizon / (time.perf_counter() - t0)
        jax_rate = n * horizon / jax_s
        result = {"bench": "sim", "episodes": n, "chunk": chunk,
                  "sub_batch": sub, "jax_episode_slots_per_s": jax_rate, "numpy_episode_slots_per_s": np_rate,
                  "ratio": jax_rate / np_rate, "peak_rss_mb": peak_rss_mb(),
                  "bytes_per_episode_slot": bytes_slot, "bandwidth_gb_s": bw,
                  "roofline_fraction": jax_rate * bytes_slot / (bw * 1e9),
                  "jax_mean_reward": float(out["slot_reward"].mean()), "numpy_mean_reward": np_reward,
                  "backend": jax.default_backend(), "devices": jax.device_count()}
        print(f"episodes {n:>7}: jax {jax_rate:>10.0f} ep-slots/s, numpy {np_rate:>9.0f} ep-slots/s, ratio "
              f"{result['ratio']:.2f}, {result['roofline_fraction']:.1%} of the bandwidth roofline, "
              f"mean reward jax {result['jax_mean_reward']:.4f} / numpy {np_reward:.4f}", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
