"""Every deciding LLM through llama.cpp's OpenAI-compatible server, on the presets' decision benches: the value
form's decisions through the server beside the embedded Flax runtime's on the same model, queries and pool.

    python -m scripts.studies.icl_server                       # every cell; resumable: cells cached in --out
    python -m scripts.studies.icl_server --doc docs/icl.md     # and replace the table block there
    python -m scripts.studies.icl_server --models smollm2-135m --scenarios default

Each cell runs ``scripts.bench.icl`` with ``--llm-endpoint`` against a server started here on the model's GGUF
(``icl.llm.llama_server``; the server's answers cached on disk) on the bench's random pool and the same queries as
``scripts.studies.icl_regimes`` (80 tasks of 8 greedy episodes): mean reward of the value form's decisions through
the server, the share of grades at the floor, decisions/s, and with ``--flax-models`` the Flax runtime on the same
queries (its reward and decisions/s, the share of equal decisions, the grade log-probabilities' median difference);
beside the twin, the best single site and greedy. The server needs the ``serve`` extra (``make install-serve``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from experiment.files import atomic_write_bytes, read_block_file, update_block
from scripts.studies.icl_regimes import Cells, check_flags, names_list

START, END = "<!-- icl-server:start -->", "<!-- icl-server:end -->"
SCENARIOS = ("default", "loaded")
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated presets ({','.join(SCENARIOS)})")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated deciding LLMs ({','.join(MODELS)})")
    ap.add_argument("--flax-models", default="smollm2-135m,qwen2.5-coder-0.5b",
                    help="models also decided by the Flax runtime for comparison (smollm2-135m,qwen2.5-coder-0.5b; "
                         "the 1.5B's Flax run takes about 5 minutes a scenario on 2 cores)")
    ap.add_argument("--queries", type=int, default=80, help="bench queries per scenario (80)")
    ap.add_argument("--query-episodes", type=int, default=8, help="greedy episodes the queries come from (8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="data/icl_server", help="cells (committed: a later run resumes) and the server's "
                    "answers (llm-cache.sqlite, not committed) (data/icl_server)")
    ap.add_argument("--doc", help="also replace the table block in this markdown file (docs/icl.md)")
    ap.add_argument("--only-cached", action="store_true",
                    help="start no server: the table of the cells already in --out (the others listed as missing)")
    args = ap.parse_args(argv)
    args.scenarios, args.models = names_list(args.scenarios), names_list(args.models)
    args.flax_models = names_list(args.flax_models)
    from icl.llm.registry import MODELS as REGISTERED
    check_flags(ap, (("--scenarios", args.scenarios, SCENARIOS), ("--models", args.models, tuple(REGISTERED)),
                     ("--flax-models", args.flax_models, tuple(REGISTERED))),
                (("--queries", args.queries), ("--query-episodes", args.query_episodes)), may_be_empty=("--flax-models",))
    return args


def bench_argv(args, scenario: str, model: str, url: str) -> list[str]:
    return ["--scenario", scenario, "--llm-endpoint", url, "--llm-model", model, "--designs", "value",
            "--queries", str(args.queries), "--query-episodes", str(args.query_episodes), "--rollout-episodes", "0",
            "--seed", str(args.seed), "--json-only",
            "--flax-reference" if model in args.flax_models else "--no-flax-reference"]


def cell_key(args, scenario: str, model: str) -> tuple[str, dict]:
    """A cell's file name and the key it is saved under (the bench's flags, the server's address left out)."""
    return f"{scenario}-{model}", {"argv": bench_argv(args, scenario, model, "URL")}


def check_can_run(args, cells: Cells) -> None:
    """Before any compute: the server and the weights of every model with a cell still to run (exit 2 otherwise)."""
    todo = sorted({m for m in args.models for s in args.scenarios if cells.get(*cell_key(args, s, m)) is None})
    if not todo or args.only_cached:
        return
    import importlib.util
    from icl.llm.registry import resolve
    problem = None
    if importlib.util.find_spec("llama_cpp") is None:
        problem = "llama.cpp's server is not installed: make install-serve (or --only-cached)"
    for m in todo:
        try:
            resolve(m)
        except (FileNotFoundError, ValueError) as e:
            problem = problem or f"--models: {e}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)


def run(args, cells: Cells) -> tuple[dict, list[str]]:
    """{(scenario, model): the bench's JSON summary}, and the cells not run (``--only-cached``)."""
    from scripts.bench import icl as bench
    os.environ.setdefault("GENAI_EDGE_LAB_LLM_CACHE", os.path.abspath(os.path.join(args.out, "llm-cache.sqlite")))
    table, missing = {}, []
    for model in args.models:
        server = None
        try:
            for s in args.scenarios:
                name, key = cell_key(args, s, model)
                cell = cells.get(name, key)
                if cell is None and args.only_cached:
                    missing.append(name)
                    continue
                if cell is None:
                    if server is None:
                        from icl.llm.llama_server import LlamaServer
                        server = LlamaServer(model)
                        url = server.start()
                    cell = bench.main(bench_argv(args, s, model, url))["summary"]
                    cells.put(name, key, cell)
                table[(s, model)] = cell
                print(f"{s:>8} {model:>20}: server {cell['mean_reward']:.3f} at {cell['decisions_per_s']:.3g}/s"
                      + (f", Flax {cell['flax_mean_reward']:.3f} at {cell['flax_decisions_per_s']:.3g}/s, "
                         f"{cell['flax_agreement']:.0%} equal" if "flax_agreement" in cell else ""), flush=True)
        finally:
            if server is not None:
                server.stop()
    return table, missing


def render(table: dict, missing: list[str], args) -> str:
    lines = [f"Decision bench through llama.cpp's server (llama-cpp-python, `make install-serve`), value form, "
             f"{args.queries} queries a scenario (tasks of {args.query_episodes} greedy episodes), the random pool "
             "(8 episodes), 6 shots, nearest selection; the Flax runtime on the same model, queries and pool beside "
             "it. floor: share of grades not among the server's top 10 log-probabilities. equal: share of the same "
             "decisions; Δ log p: median absolute difference of the grade log-probabilities. Generated by "
             "`python -m scripts.studies.icl_server`."
             + (f" Not run yet: {', '.join(missing)}." if missing else ""),
             "",
             "| scenario | model | server reward | floor | server dec/s | Flax reward | Flax dec/s | equal | Δ log p "
             "| twin | best single site | greedy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (s, model), c in table.items():
        flax = "flax_agreement" in c
        f = lambda k, fmt: format(c[k], fmt) if flax else "-"  # noqa: E731
        lines.append(f"| {s} | {model} | {c['mean_reward']:.3f} | {c['floor_share']:.1%} | {c['decisions_per_s']:.2g} "
                     f"| {f('flax_mean_reward', '.3f')} | {f('flax_decisions_per_s', '.2g')} "
                     f"| {f('flax_agreement', '.0%')} | {f('grade_logprob_median_abs_diff', '.3f')} "
                     f"| {c['knn_value_mean_reward']:.3f} | {c['best_single_site_reward']:.3f} "
                     f"| {c['greedy_reward']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.doc:
        read_block_file(args.doc, START, END)          # the file and its markers, before any run
    cells = Cells(args.out)
    check_can_run(args, cells)
    table, missing = run(args, cells)
    text = render(table, missing, args)
    atomic_write_bytes(os.path.join(args.out, "table.md"), text.encode())
    print("\n" + text)
    if args.doc:
        update_block(args.doc, text, START, END)
    print(json.dumps({"bench": "icl_server", "cells": len(table), "missing": missing,
                      "min_agreement": min((c["flax_agreement"] for c in table.values() if "flax_agreement" in c),
                                           default=None)}))
    return {"table": table, "text": text}


if __name__ == "__main__":
    main()
