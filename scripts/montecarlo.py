"""Monte Carlo comparison of offloading policies on one scenario.

    jaxsim-montecarlo                       # defaults: every heuristic + oracle, 16 episodes
    jaxsim-montecarlo --config my.toml --policies greedy,oracle --episodes 200 --out runs/x
    jaxsim-montecarlo --policies icl,knn --model smollm2-135m --shots 8 --select ranked --epsilon 0.1

Writes into the run directory (every file atomically; a rerun with the same
--out, config, seed and episode count skips the policies already finished):
  config.toml, run.json                         what was run
  policies/<name>/episodes.csv                  per-episode metrics
  policies/<name>/tasks.csv                     per-task outcomes and delay parts (--per-task; by
                                                default only for runs of at most 1,000 episodes)
  policies/<name>/partial/                      chunks finished so far (removed when the policy is done)
  policies/<name>/summary.json                  means with 95% intervals, per task type
  policies/<name>/learning.csv                  icl/knn: per-episode reward, decisions/s, prompt length, ...
  policies/<name>/pool                          icl/knn: the experience pool (orbax) at the end
  summary.json                                  all policies
and prints a summary table. An interrupted run resumes from its finished chunks.

Large runs stream: each chunk of episodes (sized from free device memory, --chunk auto) is
reduced to per-episode sums on the device, so 10^6 episodes fit a laptop or one GPU. On a
cluster, start one process per host (or per GPU) with --coordinator/--num-processes/--process-id,
or under SLURM with srun and no flags: episodes are sharded over every device of every process,
and process 0 writes the same files a single process would (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import time

import jax
import numpy as np
from tqdm import tqdm

from baselines.registry import HOST_POLICIES, default_policies, make_policy, policy_names
from jaxsim import distributed
from jaxsim.compilation import compile_counts, use_persistent_cache
from jaxsim.config import ConfigError, SimConfig, atomic_write_bytes, config_to_dict, load_config, save_config
from jaxsim.metrics import EpisodeStats, episode_stats, episode_table, summarise_stats
from jaxsim.params import make_params
from jaxsim.rollout import TASK_FIELDS, rollout

PER_TASK_AUTO_MAX_EPISODES = 1000


def _csv_bytes(header: list[str], rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def config_hash(cfg: SimConfig) -> str:
    return hashlib.sha256(json.dumps(config_to_dict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_npz(path: str, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def write_policy_results(pdir: str, stats: dict, cfg: SimConfig, extra: dict, out: dict | None = None) -> dict:
    """Per-episode CSV, per-task CSV (when the full outputs ``out`` are given) and summary JSON of one
    policy, from its per-episode ``EpisodeStats``; returns the summary."""
    os.makedirs(pdir, exist_ok=True)
    types, actions = cfg.type_names, cfg.action_names
    em = episode_table(stats)
    cols = [em[k] for k in ("reward", "service_quality", "delay_s", "quality")]
    ep_rows = ([e, *(f"{c[e]:.6g}" for c in cols), int(em["n_tasks"][e])] for e in range(len(em["reward"])))
    atomic_write_bytes(os.path.join(pdir, "episodes.csv"), _csv_bytes(
        ["episode", "reward", "service_quality", "mean_delay_s", "mean_quality", "n_tasks"], ep_rows))
    summary = {**summarise_stats(stats, types), **extra, "actions": actions}
    write_json(os.path.join(pdir, "summary.json"), summary)
    if out is None:
        return summary
    e_i, t_i, u_i = np.nonzero(out["mask"])
    num = [f for f in TASK_FIELDS if f not in ("mask", "task_type", "action", "success", "refused")]
    rows = zip(e_i, t_i, u_i, (types[k] for k in out["task_type"][e_i, t_i, u_i]),
               (actions[k] for k in out["action"][e_i, t_i, u_i]),
               *([f"{x:.6g}" for x in out[f][e_i, t_i, u_i]] for f in num),
               out["success"][e_i, t_i, u_i].astype(int), out["refused"][e_i, t_i, u_i].astype(int))
    atomic_write_bytes(os.path.join(pdir, "tasks.csv"), _csv_bytes(
        ["episode", "slot", "user", "task_type", "action", *num, "success", "refused"], rows))
    return summary


def run_device_policy(key, params, policy, pparams, args, pdir: str, bar, resume: bool, per_task: bool,
                      reducer: EpisodeStats) -> tuple[dict, dict | None]:
    """A jittable policy over every device of every process, chunk by chunk; process 0 saves each
    finished chunk under partial/, and a resumed run starts after the last contiguous one.
    Returns (per-episode stats, full outputs or None)."""
    part = os.path.join(pdir, "partial")
    chunks: list[dict] = []
    if distributed.is_writer():
        if resume and os.path.isdir(part):
            for name in sorted(os.listdir(part)):
                m = re.fullmatch(r"chunk-(\d+)-(\d+)\.npz", name)
                if m is None:
                    continue                                  # e.g. a temporary file of an interrupted write
                if int(m[1]) != sum(len(c["slot_reward"]) for c in chunks):
                    break
                with np.load(os.path.join(part, name)) as z:
                    chunks.append({k: z[k] for k in z.files})
        else:
            shutil.rmtree(part, ignore_errors=True)
        os.makedirs(part, exist_ok=True)
    done = int(distributed.broadcast_from_writer(np.int32(sum(len(c["slot_reward"]) for c in chunks))))
    bar.update(done)

    def save(first, out):
        if distributed.is_writer():
            write_npz(os.path.join(part, f"chunk-{first:09d}-{len(out['slot_reward'])}.npz"), out)
    if done < args.episodes:
        new = rollout(key, params, policy, pparams, args.episodes - done, chunk=args.chunk, progress=bar.update,
                      first_episode=done, reduce=None if per_task else reducer, on_chunk=save)
        chunks.append(new)
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if distributed.is_writer() else None
    if out is None:
        return None, None
    if per_task:
        return episode_stats(out, reducer.n_types, reducer.n_actions), out
    return out, None


def print_table(summaries: dict[str, dict], file=None) -> None:
    file = sys.stdout if file is None else file
    oracle = summaries.get("oracle", {}).get("reward", {}).get("mean")
    hdr = f"{'policy':<18} {'reward':>16} {'service quality':>17} {'delay s':>8} {'quality':>8} {'gap to oracle':>14}"
    print(hdr, file=file)
    print("-" * len(hdr), file=file)
    for name, s in summaries.items():
        r, q = s["reward"], s["service_quality"]
        gap = "" if oracle is None or oracle == 0 else f"{(oracle - r['mean']) / abs(oracle):+.1%}"
        print(f"{name:<18} {r['mean']:>8.3f} ± {r['ci95']:<5.3f} {q['mean']:>9.3f} ± {q['ci95']:<5.3f} "
              f"{s['delay_s']['mean']:>8.2f} {s['quality']['mean']:>8.3f} {gap:>14}", file=file)


def run_host_policy(key, params, policy, args, pdir: str, bar, resume: bool) -> tuple[dict, dict]:
    """ICL / kNN: waves of episodes on the host, saved after every wave (arrays, pool, policy state),
    so an interrupted run resumes at the next wave with the same results; then the per-episode
    learning log and the final pool."""
    from icl.pool import ExperiencePool
    from icl.runner import rollout_host
    part = os.path.join(pdir, "partial")
    state_path = os.path.join(part, "state.json")
    log: list[dict] = []
    done, acc = 0, None
    c0 = compile_counts()
    if resume and os.path.exists(state_path):
        with open(state_path) as f:
            st = json.load(f)
        done, log = st["episodes_done"], st["log"]
        with np.load(os.path.join(part, "episodes.npz")) as z:
            acc = {k: z[k][:done] for k in z.files}
        policy.pool = ExperiencePool.load(os.path.join(part, "pool"), policy.cfg.type_penalty)
        policy.set_state(st["policy"])
        bar.update(done)
    elif args.pool:
        policy.pool = ExperiencePool.load(args.pool, policy.cfg.type_penalty)

    def on_episode(rec):
        log.append(rec)
        bar.set_postfix(reward=f"{rec['reward']:.3f}", dec_s=f"{rec['decisions_per_s']:.1f}")

    def on_wave(out, ep):
        nonlocal acc
        acc = out if acc is None else {k: np.concatenate([acc[k], out[k]]) for k in acc}
        write_npz(os.path.join(part, "episodes.npz"), acc)
        policy.pool.save(os.path.join(part, "pool"))
        write_json(state_path, {"episodes_done": int(ep[-1]) + 1, "policy": policy.get_state(), "log": log})

    rollout_host(key, params, policy, args.episodes, args.batch_episodes, progress=bar.update,
                 log=on_episode, first_episode=done, on_wave=on_wave)
    cols = list(log[0])
    atomic_write_bytes(os.path.join(pdir, "learning.csv"), _csv_bytes(cols, ([r.get(c) for c in cols] for r in log)))
    policy.pool.save(os.path.join(pdir, "pool"))
    return acc, {"icl": dataclasses.asdict(policy.cfg), "host": {**policy.summary(), **{
        f"run_{k}": v - c0.get(k, 0) for k, v in compile_counts().items()}}}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="jaxsim-montecarlo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="scenario TOML (default: the DESIGN.md defaults)")
    ap.add_argument("--policies", help="comma-separated policy names (default: every heuristic and the oracle)")
    ap.add_argument("--episodes", type=int, default=16, help="episodes per policy (default 16)")
    ap.add_argument("--seed", type=int, default=0, help="base seed; every policy sees the same episodes")
    ap.add_argument("--out", help="run directory (default runs/montecarlo-<config hash>-s<seed>-e<episodes>)")
    ap.add_argument("--chunk", default="auto",
                    help="episodes per compiled batch, or auto: as many as fit in 40%% of free device memory (auto)")
    ap.add_argument("--per-task", choices=("auto", "on", "off"), default="auto",
                    help=f"write tasks.csv (per-task outcomes); auto: only for runs of at most "
                         f"{PER_TASK_AUTO_MAX_EPISODES} episodes (auto)")
    ap.add_argument("--checkpoint", help="PPO checkpoint directory for --policies ppo")
    g = ap.add_argument_group("icl / knn (host policies)")
    g.add_argument("--policy", dest="policies", help="alias of --policies")
    g.add_argument("--model", help="deciding LLM: registered name, .gguf path or checkpoint folder (smollm2-135m)")
    g.add_argument("--shots", type=int, help="demonstrations per prompt; value: shots // actions per action (9)")
    g.add_argument("--select", help="demonstration selection: random, recent, nearest, ranked, state (nearest)")
    g.add_argument("--epsilon", type=float, help="exploration probability (0.1)")
    g.add_argument("--epsilon-decay", type=float, help="epsilon x decay^episode (1.0)")
    g.add_argument("--tau", type=float, help="ranked selection: reward - tau x distance (0.25)")
    g.add_argument("--pool-size", type=int, help="experience records kept (4096)")
    g.add_argument("--max-prompt-tokens", type=int, help="prompt budget in tokens (2048)")
    g.add_argument("--decide", help="value (grade each action's outcome 0-9 after per-action demonstrations; the "
                   "best expected grade wins), action (log-likelihood of each action name) or generate (free text; "
                   "an answer naming no action falls back to greedy and is counted) (value)")
    g.add_argument("--describe", action="store_true", default=None,
                   help="value: put the task description before the demonstrations (a cached prefix)")
    g.add_argument("--value-rule", help="value: expected (expected grade) or contrast (grade log-probabilities "
                   "minus their mean over actions first) (expected)")
    g.add_argument("--calibrate", action="store_true", default=None,
                   help="subtract the log-likelihoods for a content-free prompt: each answer's (action) or each "
                   "action's grades (value)")
    g.add_argument("--pool", help="start from this saved experience pool (orbax directory)")
    g.add_argument("--batch-episodes", default="auto", help="episodes decided together per wave, or auto: about "
                   "two full forwards of prompts per slot (icl.runner.auto_batch_episodes) (auto)")
    distributed.add_cluster_args(ap)
    return ap.parse_args(argv)


def icl_config(args):
    from icl.policy import ICLConfig, with_overrides
    return with_overrides(ICLConfig(seed=args.seed), model=args.model, shots=args.shots, select=args.select,
                          epsilon=args.epsilon, epsilon_decay=args.epsilon_decay, tau=args.tau,
                          pool_size=args.pool_size, max_prompt_tokens=args.max_prompt_tokens, decide=args.decide,
                          describe=args.describe, value_rule=args.value_rule, calibrate=args.calibrate)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cluster = distributed.spec_from_args(args)
        cfg = load_config(args.config)
        if args.episodes < 1:
            raise ConfigError(f"--episodes = {args.episodes}: allowed >= 1")
        if args.chunk != "auto":
            if not args.chunk.isdigit() or int(args.chunk) < 1:
                raise ConfigError(f"--chunk = {args.chunk}: allowed auto or an integer >= 1")
            args.chunk = int(args.chunk)
        names = args.policies.split(",") if args.policies else default_policies(cfg)
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise ConfigError("--policies: no policy given")
        bad = [n for n in names if n not in policy_names(cfg)]
        if bad:
            raise ConfigError(f"--policies: unknown {bad}; allowed: {', '.join(policy_names(cfg))}")
        if args.batch_episodes != "auto" and (not str(args.batch_episodes).isdigit() or int(args.batch_episodes) < 1):
            raise ConfigError(f"--batch-episodes = {args.batch_episodes}: allowed auto or an integer >= 1")
        icfg = icl_config(args) if any(n in HOST_POLICIES for n in names) else None
        if args.batch_episodes == "auto":
            from icl.runner import auto_batch_episodes
            rows = icfg.max_rows if icfg else 16
            args.batch_episodes = auto_batch_episodes(cfg.n_users, cfg.traffic.p_task, rows, args.episodes)
        args.batch_episodes = int(args.batch_episodes)
        if args.pool and not os.path.isdir(args.pool):
            raise ConfigError(f"--pool {args.pool!r}: no such directory")
        host = [n for n in names if n in HOST_POLICIES]
        if host and cluster.multi_process:
            raise ConfigError(f"--policies {','.join(host)}: ICL and kNN run in one process; "
                              "run them without --coordinator / outside a multi-task job")
        distributed.set_cpu_devices(args.cpu_devices, episode_slots=args.episodes * cfg.episode.horizon)
        distributed.initialize(cluster)
        policies = {n: make_policy(n, cfg, args.checkpoint, icfg) for n in names}
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if any(n in HOST_POLICIES for n in names):
        use_persistent_cache()              # the LLM's programs: compiled once per machine, not once per run
    params = make_params(cfg)
    chash = config_hash(cfg)
    run_dir = args.out or os.path.join("runs", f"montecarlo-{chash}-s{args.seed}-e{args.episodes}")
    writer = distributed.is_writer()
    per_task = args.per_task == "on" or (args.per_task == "auto" and args.episodes <= PER_TASK_AUTO_MAX_EPISODES)
    meta = {"config_hash": chash, "seed": args.seed, "episodes": args.episodes,
            "options": {"icl": dataclasses.asdict(icfg) if icfg else None, "checkpoint": args.checkpoint,
                        "batch_episodes": args.batch_episodes},
            "devices": sorted({str(d.device_kind) for d in jax.devices()}), "device_count": jax.device_count(),
            "process_count": jax.process_count(), "jax": jax.__version__}
    meta_path = os.path.join(run_dir, "run.json")
    same_run = False
    if writer:
        os.makedirs(run_dir, exist_ok=True)
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                old = json.load(f)
            same_run = all(old.get(k) == meta[k] for k in ("config_hash", "seed", "episodes", "options"))
        save_config(cfg, os.path.join(run_dir, "config.toml"))
        write_json(meta_path, {**meta, "policies": names})
    same_run = bool(distributed.broadcast_from_writer(np.int32(same_run)))
    reducer = EpisodeStats(len(cfg.type_names), len(cfg.action_names))

    summaries: dict[str, dict] = {}
    summary_path = os.path.join(run_dir, "summary.json")
    key = jax.random.PRNGKey(args.seed)
    for name, (policy, pparams) in policies.items():
        pdir = os.path.join(run_dir, "policies", name)
        done_path = os.path.join(pdir, "summary.json")
        finished = bool(distributed.broadcast_from_writer(np.int32(writer and same_run and os.path.exists(done_path))))
        if finished:
            if writer:
                with open(done_path) as f:
                    summaries[name] = json.load(f)
                print(f"{name}: already in {pdir}, skipped")
            continue
        t0 = time.perf_counter()
        extra: dict = {}
        with tqdm(total=args.episodes, desc=name, unit="ep", leave=False, disable=not writer) as bar:
            if name in HOST_POLICIES:
                out, extra = run_host_policy(key, params, policy, args, pdir, bar, same_run)
                stats = episode_stats(out, reducer.n_types, reducer.n_actions)
                out = out if per_task else None
            else:
                stats, out = run_device_policy(key, params, policy, pparams, args, pdir, bar, same_run, per_task,
                                               reducer)
        wall = time.perf_counter() - t0
        if not writer:
            continue
        decisions = int(stats["n"].sum())
        summaries[name] = write_policy_results(pdir, stats, cfg, {
            "policy": name, "episodes": args.episodes, "wall_s": wall,
            "decisions_per_s": decisions / wall if wall > 0 else math.nan, **extra}, out)
        shutil.rmtree(os.path.join(pdir, "partial"), ignore_errors=True)
        write_json(summary_path, {"run": meta, "policies": summaries})
    distributed.barrier("montecarlo-done")
    if not writer:
        return 0
    write_json(summary_path, {"run": meta, "policies": summaries})
    print(f"\n{args.episodes} episodes x {cfg.episode.horizon} slots per policy; 95% intervals over episodes; "
          f"results in {run_dir}")
    print_table(summaries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
