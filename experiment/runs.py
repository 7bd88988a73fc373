"""Run directories: every policy of a comparison rolled out on the same episodes, summarised, written
atomically and resumable.

    run_policies(cfg, ["greedy", "knn"], RunSpec(episodes=16), "runs/x")

writes into the run directory (a rerun with the same directory, config, seed, episode count and options
skips the policies already finished; an interrupted one resumes from its finished chunks or waves):
  config.toml, run.json                         what was run (the folder's binding: see below)
  policies/<name>/episodes.csv                  per-episode metrics
  policies/<name>/episodes.npz                  the same in float64 (the paired differences are computed from it)
  policies/<name>/tasks.csv                     per task: who, what it met, where it went, every delay part
                                                (``RunSpec.per_task``)
  policies/<name>/slots.csv                     per slot and server: running, queued, admitted, refused,
                                                background, mean context (with tasks.csv)
  policies/<name>/cdf.csv                       delay and reward quantiles at 0, 0.01, ..., 1 (with tasks.csv);
                                                summary.json's "distributions": p50/p90/p95/p99 overall, per
                                                type and per cell, per-cell means with t intervals
  policies/<name>/partial/                      chunks or waves finished so far (removed when the policy is done)
  policies/<name>/summary.json                  means with 95% t intervals (``jaxsim.metrics``), per task type
  policies/<name>/learning.csv                  host policies: per-episode reward, decisions/s, counters
  policies/<name>/tensorboard/                  the same as TensorBoard event files (experiment.events)
  policies/<name>/pool                          host policies with experience: the pool at the end
  summary.csv                                   the printed table (means, t half-widths, delay/reward percentiles)
  summary.json                                  all policies, and their paired differences:
      "paired": {"<a> - <b>": {"reward": {"mean", "ci95", "n", "t95"}, "service_quality": {...}}, ...}
      for every pair of the run's policies, a listed after b: the mean of the per-episode differences
      a - b on the same episodes with its 95% t interval (``jaxsim.metrics.paired_ci``)

A run directory is bound to what its results depend on: the config (its hash), the seed and the episode
count, and the options of the policies that use them (the ICL/kNN settings, the starting pool and the
episodes per wave of host policies; the PPO checkpoint), recorded in run.json. A run into a directory
bound to anything else refuses before any compute (``ConfigError``, naming the folder and both sides)
rather than mix two runs' policies in one folder; ``fresh=True`` (``jaxsim-montecarlo --fresh``)
replaces the directory instead: the old one is moved aside in one rename and deleted, so an interrupted
replacement leaves the old folder whole or none of it, never a mix.

Device policies run over every device of every process (``jaxsim.rollout``; process 0 writes); host
policies in one process (``experiment.host``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass

import jax
import numpy as np
from tqdm import tqdm

from jaxsim import distributed
from jaxsim.compilation import compile_counts, use_persistent_cache
from jaxsim.config import SimConfig, config_hash
from jaxsim.fields import ConfigError
from jaxsim.metrics import EpisodeStats, episode_stats, episode_table, paired_ci, summarise_stats
from jaxsim.params import EnvParams, make_params
from jaxsim.rollout import SERVER_FIELDS, TASK_FIELDS, rollout

from .distributions import PERCENTILES, task_distributions, write_cdfs
from .events import EventLog
from .files import save_config, write_csv, write_json, write_npz
from .host import auto_batch_episodes, rollout_host
from .registry import PolicyOptions, is_host, make_policy

PER_TASK_AUTO_MAX_EPISODES = 1000


@dataclass(frozen=True)
class RunSpec:
    """How many episodes, from which seed, in what pieces."""
    episodes: int = 16
    seed: int = 0
    chunk: int | str = "auto"             # device policies: episodes per compiled batch, or auto (free memory)
    per_task: bool | None = None          # write tasks.csv; None: for runs of at most 1,000 episodes
    batch_episodes: int | None = None     # host policies: episodes per wave; None: auto_batch_episodes

    def validate(self) -> "RunSpec":
        for name, v in (("episodes", self.episodes), ("seed", self.seed)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "episodes" else 0):
                raise ConfigError(f"--{name} = {v!r}: allowed an integer >= {1 if name == 'episodes' else 0}")
        if self.chunk != "auto" and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1):
            raise ConfigError(f"--chunk = {self.chunk!r}: allowed auto or an integer >= 1")
        if self.batch_episodes is not None and (not isinstance(self.batch_episodes, int) or self.batch_episodes < 1):
            raise ConfigError(f"--batch-episodes = {self.batch_episodes!r}: allowed auto or an integer >= 1")
        return self

    @property
    def writes_tasks(self) -> bool:
        return self.per_task if self.per_task is not None else self.episodes <= PER_TASK_AUTO_MAX_EPISODES


def default_run_dir(cfg: SimConfig, spec: RunSpec) -> str:
    return os.path.join("runs", f"montecarlo-{config_hash(cfg)}-s{spec.seed}-e{spec.episodes}")


def host_batch_episodes(cfg: SimConfig, spec: RunSpec, options: PolicyOptions) -> int:
    return spec.batch_episodes or auto_batch_episodes(cfg.n_users, cfg.traffic.p_task, options.icl.max_rows,
                                                      spec.episodes)


BOUND = ("config_hash", "seed", "episodes")                  # every policy's results depend on these
BOUND_OPTIONS = ("icl", "pool", "batch_episodes", "checkpoint")   # some policies' results: None where unused


def bound_options(options: PolicyOptions, host: bool, batch: int) -> dict:
    """The options a run's results depend on, None where no policy of the run uses them."""
    return {"icl": dataclasses.asdict(options.icl) if host else None, "pool": options.pool if host else None,
            "batch_episodes": batch if host else None, "checkpoint": options.checkpoint}


def binding_conflicts(old: dict, meta: dict) -> list[str]:
    """What differs between a run directory's run.json (``old``) and this run's ``meta``, as 'what: the folder's
    vs this run's' phrases; an option that one side does not use (None) binds nothing."""
    diffs = [f"{'config' if k == 'config_hash' else k} {old.get(k)} vs {meta[k]}" for k in BOUND
             if old.get(k) != meta[k]]
    was, now = old.get("options") or {}, meta["options"]
    for k in BOUND_OPTIONS:
        a, b = was.get(k), now.get(k)
        if a is None or b is None or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k}.{f} {a.get(f)!r} vs {b.get(f)!r}" for f in sorted({*a, *b}) if a.get(f) != b.get(f)]
        else:
            diffs.append(f"{k} {a!r} vs {b!r}")
    return diffs


def merged_options(old: dict | None, meta: dict) -> dict:
    """This run's options, with those it does not use kept from the folder's run.json (they still bind it)."""
    was = (old or {}).get("options") or {}
    return {**{k: was.get(k) for k in BOUND_OPTIONS}, **{k: v for k, v in meta["options"].items() if v is not None}}


RUN_FILES = ("config.toml", "run.json", "summary.json", "summary.csv", "policies", "figures")  # what a run holds


def replace_run_dir(run_dir: str) -> None:
    """Remove a run directory for --fresh: moved aside in one rename (so that the folder is the old one whole
    or absent, never a mix), then deleted; leftovers of an interrupted replacement are deleted too."""
    parent, base = os.path.split(os.path.abspath(run_dir))
    aside = os.path.join(parent, f".{base}.replaced-")
    if os.path.exists(run_dir):
        os.rename(run_dir, f"{aside}{os.getpid()}-{time.time_ns()}")
    for name in os.listdir(parent):
        if name.startswith(os.path.basename(aside)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def check_run_dir(run_dir: str, meta: dict, fresh: bool) -> dict | None:
    """The run.json of an existing run directory that this run may resume (None: none there); a clear error,
    before any compute, when the directory holds another run's results and ``fresh`` is not set."""
    meta_path = os.path.join(run_dir, "run.json")
    here, target = os.path.realpath(os.getcwd()), os.path.realpath(run_dir)
    if fresh and (here == target or here.startswith(target + os.sep)):
        raise ConfigError(f"--fresh: --out {run_dir!r} is (or holds) the current directory; not replaced")
    if fresh and os.path.isdir(run_dir):
        other = sorted(f for f in os.listdir(run_dir) if f not in RUN_FILES and not f.startswith(".tmp-"))
        if other:
            raise ConfigError(f"--fresh: --out {run_dir!r} holds files that no run writes ({', '.join(other[:3])}"
                              f"{', ...' if len(other) > 3 else ''}); not replaced")
    if not os.path.exists(meta_path):
        if os.path.isdir(os.path.join(run_dir, "policies")) and not fresh:
            raise ConfigError(f"--out {run_dir!r} holds policies/ but no run.json (not a run directory of this "
                              "version, or a damaged one): give another --out, or --fresh to replace it")
        return None
    with open(meta_path) as f:
        old = json.load(f)
    diffs = binding_conflicts(old, meta)
    if diffs and not fresh:
        raise ConfigError(f"--out {run_dir!r} holds another run (the folder's vs this run's: {'; '.join(diffs)}); "
                          "give another --out, or --fresh to replace it")
    return None if fresh else old


def check_writable(run_dir: str) -> None:
    """A clear error, before any compute, when the run directory cannot be created or written."""
    probe = run_dir
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    probe = probe or "."
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {run_dir!r}: {probe!r} is not a writable directory")


# ---------------------------------------------------------------------- one policy's results
def write_policy_results(pdir: str, stats: dict, cfg: SimConfig, extra: dict, out: dict | None = None) -> dict:
    """Per-episode CSV, per-task CSV (when the full outputs ``out`` are given) and summary JSON of one
    policy, from its per-episode ``EpisodeStats``; returns the summary."""
    os.makedirs(pdir, exist_ok=True)
    types, actions = cfg.type_names, cfg.action_names
    em = episode_table(stats)
    cols = [em[k] for k in ("reward", "service_quality", "delay_s", "quality")]
    write_csv(os.path.join(pdir, "episodes.csv"),
              ["episode", "reward", "service_quality", "mean_delay_s", "mean_quality", "n_tasks"],
              ([e, *(f"{c[e]:.6g}" for c in cols), int(em["n_tasks"][e])] for e in range(len(em["reward"]))))
    write_npz(os.path.join(pdir, "episodes.npz"), em)
    summary = {**summarise_stats(stats, types), **extra, "actions": actions}
    if out is not None:
        summary["distributions"] = task_distributions(out, cfg)
        write_cdfs(os.path.join(pdir, "cdf.csv"), out)
    write_json(os.path.join(pdir, "summary.json"), summary)
    if out is None:
        return summary
    write_task_table(os.path.join(pdir, "tasks.csv"), out, cfg)
    write_server_table(os.path.join(pdir, "slots.csv"), out, cfg)
    return summary


def _fmt(x) -> str:
    return str(int(x)) if isinstance(x, (np.integer, int)) else f"{x:.6g}"


def write_task_table(path: str, out: dict, cfg: SimConfig) -> None:
    """tasks.csv: one row per task, the columns of ``jaxsim.rollout.TASK_FIELDS`` (names for the task type
    and the action; 0/1 for refused and success), after episode, slot and user."""
    types, actions = cfg.type_names, cfg.action_names
    e_i, t_i, u_i = np.nonzero(out["mask"])
    fields = [f for f in TASK_FIELDS if f != "mask"]
    names = {"task_type": types, "action": actions}
    cols = []
    for f in fields:
        v = out[f][e_i, t_i, u_i]
        if f in names:
            cols.append([names[f][k] for k in v])
        elif v.dtype == bool:
            cols.append(v.astype(int).tolist())
        else:
            cols.append([_fmt(x) for x in v])
    write_csv(path, ["episode", "slot", "user", *fields], zip(e_i, t_i, u_i, *cols))


def server_names(cfg: SimConfig) -> list[tuple[str, int | None]]:
    """(action name, cell or None for a cloud server) of each server index, in the kernel's order."""
    out = []
    for a in cfg.actions:
        out.extend([(a.name, c) for c in range(cfg.topology.n_cells)] if a.site == "edge" else [(a.name, None)])
    return out


def write_server_table(path: str, out: dict, cfg: SimConfig) -> None:
    """slots.csv: one row per episode, slot and server: the server's action and cell (edge), and its state in
    the slot after admission (``jaxsim.rollout.SERVER_FIELDS``: own running and queued sequences, admitted and
    refused this slot, background sequences, mean context of its own running ones)."""
    if SERVER_FIELDS[0] not in out:
        return
    srv = server_names(cfg)
    e, h, v = out[SERVER_FIELDS[0]].shape
    cols = {f: out[f].reshape(-1) for f in SERVER_FIELDS}
    idx = np.indices((e, h, v)).reshape(3, -1)
    rows = ([ei, ti, vi, srv[vi][0], "" if srv[vi][1] is None else srv[vi][1], *(_fmt(cols[f][k]) for f in SERVER_FIELDS)]
            for k, (ei, ti, vi) in enumerate(idx.T))
    write_csv(path, ["episode", "slot", "server", "action", "cell", *(f.removeprefix("srv_") for f in SERVER_FIELDS)],
              rows)


def run_device_policy(key, params: EnvParams, policy, pparams, spec: RunSpec, pdir: str, bar, resume: bool,
                      reducer: EpisodeStats) -> tuple[dict | None, dict | None]:
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
    if done < spec.episodes:
        new = rollout(key, params, policy, pparams, spec.episodes - done, chunk=spec.chunk, progress=bar.update,
                      first_episode=done, reduce=None if spec.writes_tasks else reducer, on_chunk=save)
        chunks.append(new)
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if distributed.is_writer() else None
    if out is None:
        return None, None
    if spec.writes_tasks:
        return episode_stats(out, reducer.n_types, reducer.n_actions), out
    return out, None


def run_host_policy(key, params: EnvParams, policy, spec: RunSpec, batch_episodes: int, pdir: str, bar,
                    resume: bool) -> tuple[dict, dict]:
    """A host policy in waves of episodes, saved after every wave (arrays, experience, policy state), so an
    interrupted run resumes at the next wave with the same results; then the per-episode learning log and the
    final experience. Returns (outputs, extra summary fields)."""
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
        policy.load_experience(part)
        policy.set_state(st["policy"])
        bar.update(done)

    events = EventLog(os.path.join(pdir, "tensorboard"))

    def on_episode(rec):
        log.append(rec)
        events.scalars(rec["episode"], {k: v for k, v in rec.items() if k != "episode"}, "host")
        bar.set_postfix(reward=f"{rec['reward']:.3f}", dec_s=f"{rec['decisions_per_s']:.1f}")

    def on_wave(out, ep):
        nonlocal acc
        acc = out if acc is None else {k: np.concatenate([acc[k], out[k]]) for k in acc}
        write_npz(os.path.join(part, "episodes.npz"), acc)
        policy.save_experience(part)
        write_json(state_path, {"episodes_done": int(ep[-1]) + 1, "policy": policy.get_state(), "log": log})

    try:
        rollout_host(key, params, policy, spec.episodes, batch_episodes, progress=bar.update, log=on_episode,
                     first_episode=done, on_wave=on_wave)
    finally:
        events.close()
    cols = list(log[0])
    write_csv(os.path.join(pdir, "learning.csv"), cols, ([r.get(c) for c in cols] for r in log))
    policy.save_experience(pdir)
    return acc, {"host": {**policy.summary(), **{f"run_{k}": v - c0.get(k, 0) for k, v in compile_counts().items()}}}


# ---------------------------------------------------------------------- a comparison
PAIRED_METRICS = ("reward", "service_quality")


def read_episode_table(pdir: str) -> dict[str, np.ndarray]:
    """A finished policy's per-episode metrics: episodes.npz (float64), or episodes.csv in folders written
    before it."""
    path = os.path.join(pdir, "episodes.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    with open(os.path.join(pdir, "episodes.csv")) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in PAIRED_METRICS}


def paired_differences(tables: dict[str, dict]) -> dict[str, dict]:
    """{"<a> - <b>": {metric: paired_ci(a, b)}} for every pair of policies, a listed after b."""
    names = list(tables)
    return {f"{a} - {b}": {m: paired_ci(tables[a][m], tables[b][m]) for m in PAIRED_METRICS}
            for j, a in enumerate(names) for b in names[:j]}


def run_policies(cfg: SimConfig, names: list[str], spec: RunSpec = RunSpec(),
                 run_dir: str | None = None, options: PolicyOptions = PolicyOptions(),
                 progress: bool = True, fresh: bool = False) -> tuple[str, dict[str, dict]]:
    """Roll out every named policy on the same episodes into ``run_dir`` (default ``default_run_dir``); returns
    (run_dir, {name: summary}) (summaries on the writing process only). Every input is checked, and every
    policy built, before any rollout; a ``run_dir`` bound to another config, seed, episode count or options
    is refused (``ConfigError``), or with ``fresh`` replaced."""
    spec = spec.validate()
    host = [n for n in names if is_host(n, cfg)]
    if host and jax.process_count() > 1:
        raise ConfigError(f"--policies {','.join(host)}: host policies run in one process; "
                          "run them without --coordinator / outside a multi-task job")
    run_dir = run_dir or default_run_dir(cfg, spec)
    check_writable(run_dir)
    batch = host_batch_episodes(cfg, spec, options)
    writer = distributed.is_writer()
    meta = {"config_hash": config_hash(cfg), "seed": spec.seed, "episodes": spec.episodes,
            "options": bound_options(options, bool(host), batch),
            "devices": sorted({str(d.device_kind) for d in jax.devices()}), "device_count": jax.device_count(),
            "process_count": jax.process_count(), "jax": jax.__version__}
    old, refused = None, None
    if writer:
        try:
            old = check_run_dir(run_dir, meta, fresh)
        except ConfigError as e:
            refused = e
    if bool(distributed.broadcast_from_writer(np.int32(refused is not None))):
        raise refused or ConfigError(f"--out {run_dir!r}: refused by process 0 (see its error)")
    policies = {n: make_policy(n, cfg, options) for n in names}
    if host:
        use_persistent_cache()              # the LLM's programs: compiled once per machine, not once per run
    params = make_params(cfg)
    meta["options"] = merged_options(old, meta)
    same_run = old is not None
    if writer:
        if fresh:
            replace_run_dir(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        save_config(cfg, os.path.join(run_dir, "config.toml"))
        write_json(os.path.join(run_dir, "run.json"), {**meta, "policies": names})
    same_run = bool(distributed.broadcast_from_writer(np.int32(same_run)))
    reducer = EpisodeStats(len(cfg.type_names), len(cfg.action_names))

    summaries: dict[str, dict] = {}
    tables: dict[str, dict] = {}
    summary_path = os.path.join(run_dir, "summary.json")
    top = lambda: {"run": meta, "policies": summaries, "paired": paired_differences(tables)}  # noqa: E731
    key = jax.random.PRNGKey(spec.seed)
    for name, built in policies.items():
        pdir = os.path.join(run_dir, "policies", name)
        done_path = os.path.join(pdir, "summary.json")
        finished = bool(distributed.broadcast_from_writer(np.int32(writer and same_run and os.path.exists(done_path))))
        if finished:
            if writer:
                with open(done_path) as f:
                    summaries[name] = json.load(f)
                tables[name] = read_episode_table(pdir)
                print(f"{name}: already in {pdir}, skipped")
            continue
        t0 = time.perf_counter()
        extra: dict = {}
        with tqdm(total=spec.episodes, desc=name, unit="ep", leave=False, disable=not (writer and progress)) as bar:
            if name in host:
                out, extra = run_host_policy(key, params, built, spec, batch, pdir, bar, same_run)
                extra["icl"] = dataclasses.asdict(options.icl)
                stats = episode_stats(out, reducer.n_types, reducer.n_actions)
                out = out if spec.writes_tasks else None
            else:
                stats, out = run_device_policy(key, params, *built, spec, pdir, bar, same_run, reducer)
        wall = time.perf_counter() - t0
        if not writer:
            continue
        decisions = int(stats["n"].sum())
        summaries[name] = write_policy_results(pdir, stats, cfg, {
            "policy": name, "episodes": spec.episodes, "wall_s": wall,
            "decisions_per_s": decisions / wall if wall > 0 else math.nan, **extra}, out)
        tables[name] = episode_table(stats)
        shutil.rmtree(os.path.join(pdir, "partial"), ignore_errors=True)
        write_json(summary_path, top())
    distributed.barrier("montecarlo-done")
    if writer:
        write_json(summary_path, top())
        write_summary_table(os.path.join(run_dir, "summary.csv"), summaries)
    return run_dir, summaries


def write_summary_table(path: str, summaries: dict[str, dict]) -> None:
    """summary.csv: the printed table, a row per policy: means with 95% t half-widths, and the delay and reward
    percentiles of its tasks (empty for a streamed run without per-task outputs)."""
    pcts = [f"p{p}" for p in PERCENTILES]
    header = ["policy", *(f"{m}_{k}" for m in ("reward", "service_quality", "delay_s", "quality") for k in ("mean", "ci95")),
              *(f"{m}_{p}" for m in ("delay_s", "reward") for p in pcts)]
    rows = []
    for name, s in summaries.items():
        d = s.get("distributions", {})
        rows.append([name, *(f"{s[m][k]:.6g}" for m in ("reward", "service_quality", "delay_s", "quality")
                             for k in ("mean", "ci95")),
                     *("" if m not in d else f"{d[m][p]:.6g}" for m in ("delay_s", "reward") for p in pcts)])
    write_csv(path, header, rows)


# ---------------------------------------------------------------------- in memory (the figure study)
def evaluate(name: str, cfg: SimConfig, n_episodes: int, seed: int = 0, options: PolicyOptions = PolicyOptions(),
             log=None) -> tuple[dict, dict]:
    """Roll out one registered policy for ``n_episodes`` with no run directory: (outputs, extra), where extra
    holds a host policy's summary."""
    params = make_params(cfg)
    key = jax.random.PRNGKey(seed)
    if is_host(name, cfg):
        pol = make_policy(name, cfg, options)
        batch = host_batch_episodes(cfg, RunSpec(episodes=n_episodes, seed=seed), options)
        return rollout_host(key, params, pol, n_episodes, batch_episodes=batch, log=log), {"host": pol.summary()}
    pol, pp = make_policy(name, cfg, options)
    return rollout(key, params, pol, pp, n_episodes), {}
