"""Benchmark: the jitted JAX kernel versus the NumPy float64 reference, both vectorised over
episodes, in the same process, on the default scenario with greedy actions.

    python -m scripts.bench_sim            # 64, 1024 and 8192 episodes x 50 slots
    python -m scripts.bench_sim --quick    # 64 and 256 episodes

Prints one line per size and, last, one JSON object for the largest size:
{"bench": "sim", "episodes": ..., "jax_episode_slots_per_s": ..., "numpy_episode_slots_per_s": ...,
 "ratio": ..., "peak_rss_mb": ...}. JAX is timed warm (a first run of the same shape compiles);
episodes are run in chunks of --chunk to bound memory. peak_rss_mb is the process's peak
resident memory (both engines included).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import jax

from baselines.heuristics import greedy_policy
from jaxsim import reference
from jaxsim.config import SimConfig
from jaxsim.params import make_params
from jaxsim.rollout import rollout


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 and 256 episodes")
    ap.add_argument("--sizes", help="comma-separated episode counts (overrides the defaults)")
    ap.add_argument("--chunk", type=int, default=2048, help="JAX episodes per compiled batch (default 2048)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([64, 256] if args.quick else [64, 1024, 8192])
    if any(s < 1 for s in sizes) or args.chunk < 1:
        raise SystemExit("error: --sizes and --chunk must be positive integers")
    cfg = SimConfig()
    params = make_params(cfg)
    np_params = reference.to_numpy(params)
    horizon = cfg.episode.horizon
    key = jax.random.PRNGKey(0)
    result = {}
    for n in sizes:
        chunk = min(n, args.chunk)
        rollout(key, params, greedy_policy, None, chunk, chunk=chunk, collect_tasks=False)  # compile this shape
        t0 = time.perf_counter()
        out = rollout(key, params, greedy_policy, None, n, chunk=chunk, collect_tasks=False)
        jax_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        np_rewards = reference.simulate(np_params, n, seed=0)
        np_s = time.perf_counter() - t0
        result = {"bench": "sim", "episodes": n,
                  "jax_episode_slots_per_s": n * horizon / jax_s,
                  "numpy_episode_slots_per_s": n * horizon / np_s,
                  "ratio": np_s / jax_s, "peak_rss_mb": peak_rss_mb(),
                  "jax_mean_reward": float(out["slot_reward"].mean()),
                  "numpy_mean_reward": float(np_rewards.mean()),
                  "backend": jax.default_backend(), "devices": jax.device_count()}
        print(f"episodes {n:>6}: jax {result['jax_episode_slots_per_s']:>10.0f} ep-slots/s, numpy "
              f"{result['numpy_episode_slots_per_s']:>9.0f} ep-slots/s, ratio {result['ratio']:.2f}, "
              f"mean reward jax {result['jax_mean_reward']:.4f} / numpy {result['numpy_mean_reward']:.4f}", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
