"""Where a simulated slot's time goes: a profiler trace of the warm jitted rollout, its kernels summed by stage.

    python -m scripts.bench.profile_sim                       # default scenario, greedy, 256 episodes
    python -m scripts.bench.profile_sim --scenario loaded --top 30

Runs one chunk of ``--episodes`` episodes on one device (compiled first, then traced with ``jax.profiler``; on
a CPU with XLA's per-kernel trace events on) and adds up the time of every compiled kernel (a fusion, a sort, a
scatter, ...) over the run. Each kernel is put in the stage whose ``jax.named_scope`` it comes from (the
kernel's root operation decides where XLA fused several): ``new_slot`` (``tasks``, ``fading``, ``rates``), ``observe``,
``policy``, ``serve`` (``radio``, ``enqueue``, ``schedule``, ``book``, ``advance``), ``background``. Prints the
stages and the ``--top`` kernels with their share of the kernel time and microseconds per episode-slot, and
last one JSON object: {"bench": "sim_profile", "episodes": ..., "kernel_us_per_episode_slot": ...,
"stages": {stage: share}, "kernels": [[name, share, op], ...]}. Times are one device's, on a shared machine:
compare shares, and time whole runs with ``scripts.bench.sim``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

STAGES = ("new_slot", "tasks", "fading", "rates", "observe", "policy", "serve", "radio", "enqueue", "schedule", "book",
          "advance", "background")
_DEF = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$")
_OP_NAME = re.compile(r"metadata=\{op_name=\"([^\"]*)\"")


def kernel_ops(hlo_text: str) -> dict[str, str]:
    """Each instruction of the compiled module by name, with the op_name of its metadata; an instruction without
    one (XLA's rewritten cumulative sums) takes its first operand's, marked "<- ", so it still lands in a stage."""
    own, operands = {}, {}
    for line in hlo_text.splitlines():
        m = _DEF.match(line)
        if m:
            op = _OP_NAME.search(m[2])
            own[m[1]] = op[1] if op else None
            operands[m[1]] = re.findall(r"%([\w.\-]+)", m[2].split("metadata=")[0])
    out = {}
    for name, op in own.items():
        if op is None:
            op = next(("<- " + own[a] for a in operands[name] if own.get(a)), "")
        out[name] = op
    return out


def stage_of(op_name: str) -> str:
    """The innermost named stage in an op_name path ("other" outside them)."""
    return next((p for p in reversed(re.split(r"[/()]", op_name)) if p in STAGES), "other")


def trace_kernel_times(trace_dir: str) -> dict[str, float]:
    """Total duration (us) of every complete event in the trace, by name."""
    files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not files:
        raise SystemExit(f"error: the profiler wrote no trace under {trace_dir}")
    tot: dict[str, float] = collections.Counter()
    with gzip.open(files[0]) as f:
        for e in json.load(f)["traceEvents"]:
            if e.get("ph") == "X":
                tot[e["name"]] += float(e.get("dur", 0.0))
    return tot


def main(argv=None) -> dict:
    from experiment.scenario_args import add_scenario_args
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scenario_args(ap)
    ap.add_argument("--episodes", type=int, default=256, help="episodes of the traced chunk, on one device (256)")
    ap.add_argument("--top", type=int, default=20, help="kernels listed (20)")
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.top < 1:
        raise SystemExit(f"error: --episodes = {args.episodes}, --top = {args.top}: allowed integers >= 1")
    # XLA:CPU emits a trace event per kernel only with this flag, read when the backend starts (below)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

    import jax

    from baselines.heuristics import greedy_policy
    from experiment.scenario_args import scenario_from_args
    from jaxsim.fields import ConfigError
    from jaxsim.params import make_params
    from jaxsim.rollout import _run_batch, episode_keys, sub_batch_for

    try:
        cfg = scenario_from_args(args)
    except (ConfigError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    params = make_params(cfg)
    keys = episode_keys(jax.random.PRNGKey(0), 0, args.episodes)

    sub = sub_batch_for(jax.devices()[0])                                       # the program rollout runs

    def run():
        return jax.block_until_ready(_run_batch(keys, params, greedy_policy, None, False, None, sub))
    ops = kernel_ops(_run_batch.lower(keys, params, greedy_policy, None, False, None, sub).compile().as_text())
    run()                                                                       # compile and warm
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            run()
        times = trace_kernel_times(d)
    kernels = {name: us for name, us in times.items() if name in ops}
    if not kernels:
        raise SystemExit("error: the trace has no per-kernel events (an XLA:CPU without traceme, or a backend "
                         "that names its kernels otherwise)")
    total = sum(kernels.values())
    slots = args.episodes * cfg.episode.horizon
    stages: dict[str, float] = collections.Counter()
    for name, us in kernels.items():
        stages[stage_of(ops[name])] += us
    print(f"{jax.default_backend()}: {total / slots:.2f} us of kernels per episode-slot "
          f"({args.episodes} episodes x {cfg.episode.horizon} slots, one device)")
    print(f"{'stage':12s} {'share':>6s} {'us/ep-slot':>10s}")
    for st, us in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"{st:12s} {us / total:6.1%} {us / slots:10.2f}")
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:args.top]
    print(f"\n{'kernel':34s} {'share':>6s} {'us/ep-slot':>10s}  op")
    for name, us in top:
        op = ops[name]
        shown = op if len(op) <= 90 else ("<- ..." if op.startswith("<- ") else "...") + op[-84:]
        print(f"{name[:34]:34s} {us / total:6.1%} {us / slots:10.2f}  {shown}")
    result = {"bench": "sim_profile", "episodes": args.episodes, "horizon": cfg.episode.horizon,
              "backend": jax.default_backend(), "kernel_us_per_episode_slot": total / slots,
              "stages": {k: round(v / total, 4) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
              "kernels": [[name, round(us / total, 4), ops[name]] for name, us in top]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
