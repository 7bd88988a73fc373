"""ICL across regimes: scenarios x experience pools x deciding LLMs, on the decision bench (``scripts.bench.icl``'s
queries: tasks of greedy episodes, each with the reward every action would earn).

    python -m scripts.studies.icl_regimes                        # every cell; resumable: cells cached in --out
    python -m scripts.studies.icl_regimes --doc docs/icl.md      # and replace the table block there
    python -m scripts.studies.icl_regimes --scenarios default --models smollm2-135m --pools random

Scenarios: the default and loaded presets and ``edge_tiers`` (4 actions: two edge tiers). Pools: ``random``
(the records of 8 episodes of uniformly random actions), ``own`` (the records of the ICL policy's own rollout with
this model from an empty pool: ``--own-episodes`` x ``--own-horizon`` slots, epsilon 0.1) and ``cold`` (one
episode of random actions). Models: SmolLM2-135M, Qwen2.5-Coder-0.5B and -1.5B; those in ``--serve`` are asked
through llama.cpp's OpenAI-compatible server (started here, ``icl.llm.llama_server``; answers cached on disk), the
others run in the embedded Flax runtime.

Each row: the value form (``value``: contrast rule) and the ways tried for the model to add to its records, on the
same queries and pool: ``expected`` (the plain expected grade; the same LLM outputs), ``blend`` (the model's
contrast value averaged with the records' mean; the same outputs), ``describe`` (the task description in the
cached prefix; another LLM pass, for the ``--describe-models``); beside the no-LLM kNN vote and the value form's
twin (the same records averaged), the best single-site policy, greedy and the best action; decisions/s of the
value form on this machine (bench queries, after warm-up; an endpoint's from its first, uncached run). ``gap``:
the best ICL column minus the better of twin and best single site (the target: >= 0).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

import jax
import numpy as np

from experiment.files import atomic_write_bytes, read_block_file, update_block
from experiment.host import rollout_host
from icl.llm.backend import load_backend
from icl.policy import ICLConfig, ICLPolicy, KNNPolicy, KNNValuePolicy
from icl.pool import ExperiencePool
from jaxsim.config import config_to_dict, load_config, scenario_path
from jaxsim.params import make_params
from scripts.bench.icl import (POOL_SEED, QUERY_SEED, ROLLOUT_SEED, design_config, make_queries, metrics,
                               random_pool, reference_rows, run_design)

START, END = "<!-- icl-regimes:start -->", "<!-- icl-regimes:end -->"
SCENARIOS = ("default", "loaded", "edge_tiers")
POOLS = ("random", "own", "cold")
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
FREE = ("expected", "blend")          # variants decided from the value form's own LLM outputs
COLD_SEED = 4


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated presets ({','.join(SCENARIOS)})")
    ap.add_argument("--pools", default=",".join(POOLS), help=f"comma-separated, of {', '.join(POOLS)}")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated deciding LLMs ({','.join(MODELS)})")
    ap.add_argument("--serve", default="qwen2.5-coder-1.5b",
                    help="models asked through a llama.cpp server started here (qwen2.5-coder-1.5b; '' for none)")
    ap.add_argument("--describe-models", default="smollm2-135m",
                    help="models that also run the describe variant (smollm2-135m)")
    ap.add_argument("--queries", type=int, default=80, help="bench queries per scenario (80)")
    ap.add_argument("--query-episodes", type=int, default=8, help="greedy episodes the queries come from (8)")
    ap.add_argument("--own-episodes", type=int, default=1, help="episodes of the own rollout (1)")
    ap.add_argument("--own-horizon", type=int, default=6, help="slots per own-rollout episode (6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="data/icl_regimes", help="cells and own pools (committed: a later run resumes), "
                    "and the server answers (llm-cache.sqlite, not committed) (data/icl_regimes)")
    ap.add_argument("--doc", help="also replace the table block in this markdown file (docs/icl.md)")
    ap.add_argument("--only-cached", action="store_true",
                    help="compute nothing new: the table of the cells already in --out (the others left out)")
    args = ap.parse_args(argv)
    args.scenarios, args.pools, args.models = names_list(args.scenarios), names_list(args.pools), names_list(args.models)
    args.serve, args.describe_models = names_list(args.serve), names_list(args.describe_models)
    args.missing = []                 # cells left out by --only-cached
    from icl.llm.registry import MODELS as REGISTERED
    check_flags(ap, (("--scenarios", args.scenarios, SCENARIOS), ("--pools", args.pools, POOLS),
                     ("--models", args.models, tuple(REGISTERED)), ("--serve", args.serve, tuple(REGISTERED))),
                (("--queries", args.queries), ("--query-episodes", args.query_episodes),
                 ("--own-episodes", args.own_episodes), ("--own-horizon", args.own_horizon)), may_be_empty=("--serve",))
    return args


def names_list(text: str) -> list[str]:
    """A comma-separated flag's names, blanks dropped."""
    return [x.strip() for x in text.split(",") if x.strip()]


def check_flags(ap: argparse.ArgumentParser, names: tuple, counts: tuple = (), may_be_empty: tuple = ()) -> None:
    """Exit 2 naming the flag: every (flag, values, allowed) of ``names`` holds only allowed names, and at least one
    unless the flag is in ``may_be_empty``; every (flag, value) of ``counts`` is >= 1."""
    for flag, vals, allowed in names:
        bad = [v for v in vals if v not in allowed]
        if bad or (not vals and flag not in may_be_empty):
            ap.error(f"{flag}: unknown {bad or 'none given'}; allowed: {', '.join(allowed)}")
    for flag, v in counts:
        if v < 1:
            ap.error(f"{flag} = {v}: allowed >= 1")


class Cells:
    """Results cached as JSON under ``out``/cells, each keyed by everything that makes it."""

    def __init__(self, out: str):
        self.dir = os.path.join(out, "cells")
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name + ".json")

    def get(self, name: str, key: dict):
        p = self.path(name)
        if os.path.exists(p):
            with open(p) as f:
                cell = json.load(f)
            if cell.get("key") == key:
                return cell["value"]
        return None

    def put(self, name: str, key: dict, value) -> None:
        atomic_write_bytes(self.path(name), json.dumps({"key": key, "value": value}, default=float).encode())


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def own_pool(out, scenario, cfg, params, icfg, get_lm, args, key) -> ExperiencePool | None:
    """The ICL policy's own rollout from an empty pool (saved, so a rerun loads it; None with --only-cached
    when it is not there)."""
    run_id = digest([config_to_dict(cfg), args.own_episodes, args.own_horizon, args.seed])
    path = os.path.abspath(os.path.join(out, "pools", f"{scenario}-{icfg.model}-{run_id}"))
    if os.path.isdir(path):
        return ExperiencePool.load(path, icfg.type_penalty)
    if args.only_cached:
        args.missing.append(f"{scenario}/own/{icfg.model}")
        return None
    pol = ICLPolicy(cfg, dataclasses.replace(icfg, epsilon=0.1), lm=get_lm())
    rparams = make_params(cfg.replace(episode=dataclasses.replace(cfg.episode, horizon=args.own_horizon)))
    rollout_host(jax.random.fold_in(key, ROLLOUT_SEED), rparams, pol, args.own_episodes,
                 batch_episodes=args.own_episodes)
    pol.pool.save(path)
    return pol.pool


def model_cells(get_lm, model, backend, scenario, cfg, q, pools, args, cells, base_key) -> dict:
    """value, its free variants and (for --describe-models) describe, on every pool: {pool: {column: metrics}}."""
    out = {}
    names = cfg.action_names
    base = ICLConfig(model=model, shots=6, select="nearest", epsilon=0.0, seed=args.seed).validate()
    for pool_name, pool in pools.items():
        key = {**base_key, "pool": pool_name, "pool_records": len(pool), "model": model, "backend": backend,
               "pool_digest": hashlib.sha256(pool.features.tobytes() + pool.reward.tobytes()
                                             + pool.action.tobytes()).hexdigest()[:16]}
        name = f"{scenario}-{pool_name}-{model}"
        row = cells.get(name, key)
        if row is None and args.only_cached:
            args.missing.append(f"{scenario}/{pool_name}/{model}")
            continue
        if row is None:
            row = {}
            lm = get_lm()
            pol = ICLPolicy(cfg, design_config("value", base), lm=lm)
            g0, f0 = lm.stats["grade_slots"], lm.stats["floor_grades"]
            m, lp = run_design("value", pol, q, pool)
            row["value"] = m
            demos = pol.select(q.feats, q.types)
            for v in FREE:
                row[v] = metrics(q, pol.action_values(lp, demos, "expected" if v == "expected" else "blend")
                                 .argmax(-1), names)
            row["floor_share"] = (lm.stats["floor_grades"] - f0) / max(lm.stats["grade_slots"] - g0, 1)
            cells.put(name, key, row)
        if model in args.describe_models and "describe" not in row and not args.only_cached:
            pol = ICLPolicy(cfg, design_config("value-describe", base), lm=get_lm())
            row["describe"], _ = run_design("value-describe", pol, q, pool)
            cells.put(name, key, row)
        out[pool_name] = row
        print(f"  {scenario:>10} {pool_name:>6} {model:>20} ({backend}): value {row['value']['mean_reward']:.3f}, "
              + ", ".join(f"{v} {row[v]['mean_reward']:.3f}" for v in (*FREE, "describe") if v in row)
              + f"; {row['value']['decisions_per_s']:.3g} decisions/s", flush=True)
    return out


def run(args) -> dict:
    key = jax.random.PRNGKey(args.seed)
    cells = Cells(args.out)
    os.environ.setdefault("GENAI_EDGE_LAB_LLM_CACHE", os.path.abspath(os.path.join(args.out, "llm-cache.sqlite")))
    table: dict = {}
    scen = {}
    for s in args.scenarios:
        cfg = load_config(scenario_path(s))
        params = make_params(cfg)
        t0 = time.perf_counter()
        q = make_queries(jax.random.fold_in(key, QUERY_SEED), params, args.query_episodes, args.queries, args.seed)
        pools = {}
        if "random" in args.pools:
            pools["random"] = random_pool(jax.random.fold_in(key, POOL_SEED), params, cfg, 8, 4096)
        if "cold" in args.pools:
            pools["cold"] = random_pool(jax.random.fold_in(key, COLD_SEED), params, cfg, 1, 4096)
        print(f"{s}: {len(q.types)} queries, pools {', '.join(f'{k} {len(v)}' for k, v in pools.items())} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        scen[s] = (cfg, params, q, pools)
    for model in args.models:
        backend = "llama.cpp server" if model in args.serve else "flax"
        loaded: dict = {}

        def get_lm():
            """The model, loaded (or its server started) at the first cell that needs it."""
            if "lm" not in loaded:
                if model in args.serve:
                    from icl.llm.llama_server import LlamaServer
                    loaded["server"] = LlamaServer(model)
                    loaded["lm"] = load_backend(model, endpoint=loaded["server"].start(), max_in_flight=2)
                else:
                    loaded["lm"] = load_backend(model)
            return loaded["lm"]
        try:
            for s in args.scenarios:
                cfg, params, q, pools = scen[s]
                pools = dict(pools)
                base_key = {"scenario": s, "config": digest(config_to_dict(cfg)), "queries": args.queries,
                            "query_episodes": args.query_episodes, "seed": args.seed}
                if "own" in args.pools:
                    icfg = ICLConfig(model=model, seed=args.seed).validate()
                    t0 = time.perf_counter()
                    own = own_pool(args.out, s, cfg, params, icfg, get_lm, args, key)
                    if own is not None:
                        pools["own"] = own
                        print(f"  {s}: own pool of {model}: {len(own)} records ({time.perf_counter() - t0:.0f} s)",
                              flush=True)
                base_key_own = {"own_episodes": args.own_episodes, "own_horizon": args.own_horizon}
                pools = {p: pools[p] for p in args.pools if p in pools}
                rows = model_cells(get_lm, model, backend, s, cfg, q, pools, args, cells, {**base_key, **base_key_own})
                for p, row in rows.items():
                    ref = reference_rows(q, cfg.action_names)
                    ref["knn"], _ = run_design("knn", KNNPolicy(cfg, ICLConfig(epsilon=0.0, seed=args.seed)), q,
                                               pools[p], warm=0)
                    ref["twin"], _ = run_design("knn_value", KNNValuePolicy(cfg, ICLConfig(epsilon=0.0,
                                                seed=args.seed)), q, pools[p], warm=0)
                    table[(s, p, model)] = {"backend": backend, "pool_records": len(pools[p]), **row,
                                            "refs": ref, "actions": list(cfg.action_names)}
        finally:
            if "server" in loaded:
                loaded["server"].stop()
            loaded.clear()
    return table


def render(table: dict, args) -> str:
    cols = ["value", "expected", "blend", "describe"]
    lines = [f"Decision bench, {args.queries} queries a scenario (tasks of {args.query_episodes} greedy episodes, "
             f"each with every action's reward); mean reward of the chosen actions. Pools: random (8 episodes of "
             f"random actions), own (the policy's own rollout, {args.own_episodes} x {args.own_horizon} slots), cold "
             "(1 episode of random actions). 6 shots (2 records per action, at least), nearest selection. "
             "gap = best ICL column - max(twin, best single site). Generated by `python -m scripts.studies.icl_regimes`."
             + (f" Not run yet (resumable, `python -m scripts.studies.icl_regimes`): {', '.join(args.missing)}."
                if args.missing else ""),
             "",
             "| scenario | pool (records) | model (backend) | ICL value | expected | blend | describe | kNN vote | twin "
             "| best single site | greedy | best action | dec/s | gap |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (s, p, model), r in table.items():
        refs = r["refs"]
        single = max(refs[f"{a}_only"]["mean_reward"] for a in r["actions"])
        best_icl = max(r[c]["mean_reward"] for c in cols if c in r)
        gap = best_icl - max(refs["twin"]["mean_reward"], single)
        cell = lambda c: f"{r[c]['mean_reward']:.3f}" if c in r else "-"  # noqa: E731
        lines.append(f"| {s} | {p} ({r['pool_records']}) | {model} ({r['backend']}) | "
                     + " | ".join(cell(c) for c in cols)
                     + f" | {refs['knn']['mean_reward']:.3f} | {refs['twin']['mean_reward']:.3f} | {single:.3f} | "
                     f"{refs['greedy']['mean_reward']:.3f} | {refs['best action']['mean_reward']:.3f} | "
                     f"{r['value']['decisions_per_s']:.2g} | {gap:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.doc:
        read_block_file(args.doc, START, END)          # the file and its markers, before any run
    table = run(args)
    text = render(table, args)
    atomic_write_bytes(os.path.join(args.out, "table.md"), text.encode())
    print("\n" + text)
    if args.doc:
        update_block(args.doc, text, START, END)
    gaps = [float(line.rsplit("|", 2)[-2]) for line in text.splitlines() if line.startswith("| ") and
            line.rsplit("|", 2)[-2].strip()[:1] in "+-"]
    print(json.dumps({"bench": "icl_regimes", "cells": len(table), "met": sum(g >= 0 for g in gaps),
                      "worst_gap": min(gaps) if gaps else None}))
    return {"table": table, "text": text}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
