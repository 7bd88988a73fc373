"""Monte Carlo comparison of offloading policies on one scenario.

    jaxsim-montecarlo                       # defaults: every heuristic + oracle, 16 episodes
    jaxsim-montecarlo --config my.toml --policies greedy,oracle --episodes 200 --out runs/x
    jaxsim-montecarlo --scenario tiny --policies icl,knn --episodes 2      # a first ICL try, under a minute
    jaxsim-montecarlo --set episode.horizon=20 --set topology.users_per_cell=4 --print-config
    jaxsim-montecarlo --policies icl,knn --model smollm2-135m --shots 8 --select ranked --epsilon 0.1
    jaxsim-montecarlo --config mine.toml --plot png,pdf     # and its figures (python -m scripts.figures.plot RUN_DIR)
    jaxsim-montecarlo --policies icl --llm-endpoint http://127.0.0.1:8080/v1 --llm-model qwen2.5-coder-1.5b
                                            # the deciding LLM behind an OpenAI-compatible server (docs/llm.md)

Writes a run directory (``experiment.runs``: config, per-episode and per-task CSVs, summaries with 95%
Student-t intervals and every pair's paired difference, the learning log and pool of host policies; every file
atomically; a rerun with the same --out, config, seed, episode count and options skips the policies already
finished, an interrupted one resumes from its finished chunks; an --out that holds a run of another config,
seed, episode count or options is refused, exit 2, unless --fresh replaces it) and prints a summary table.

Large runs stream: each chunk of episodes (sized from free device memory, --chunk auto) is
reduced to per-episode sums on the device, so 10^6 episodes fit a laptop or one GPU. On a
cluster, start one process per host (or per GPU) with --coordinator/--num-processes/--process-id,
or under SLURM with srun and no flags: episodes are sharded over every device of every process,
and process 0 writes the same files a single process would (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import sys
import traceback

from experiment import PolicyOptions, RunSpec, default_policies, is_host, policy_names, run_policies
from experiment.plotting import parse_formats
from experiment.run_plots import plot_run
from experiment.runs import PER_TASK_AUTO_MAX_EPISODES
from experiment.scenario_args import add_scenario_args, print_config, scenario_from_args
from experiment.llm_args import add_llm_args, check_llm_args, llm_fields
from icl.policy import ICLConfig
from jaxsim import distributed
from jaxsim.fields import ConfigError


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


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="jaxsim-montecarlo", description=__doc__.split("\n\n")[0])
    add_scenario_args(ap)
    ap.add_argument("--policies", help="comma-separated policy names (default: every heuristic and the oracle)")
    ap.add_argument("--episodes", type=int, default=16, help="episodes per policy (default 16)")
    ap.add_argument("--seed", type=int, default=0, help="base seed; every policy sees the same episodes")
    ap.add_argument("--out", help="run directory (default runs/montecarlo-<config hash>-s<seed>-e<episodes>)")
    ap.add_argument("--fresh", action="store_true",
                    help="replace the run directory if it exists (by default a rerun resumes it, and one with "
                         "another config, seed, episode count or options is refused)")
    ap.add_argument("--chunk", default="auto",
                    help="episodes per compiled batch, or auto: as many as fit in 40%% of free device memory (auto)")
    ap.add_argument("--per-task", choices=("auto", "on", "off"), default="auto",
                    help=f"write tasks.csv (per-task outcomes); auto: only for runs of at most "
                         f"{PER_TASK_AUTO_MAX_EPISODES} episodes (auto)")
    ap.add_argument("--plot", nargs="?", const="png", metavar="FORMATS",
                    help="draw the run's figures into <out>/figures at the end (scripts.figures.plot), in these "
                    "comma-separated formats: png, pdf, svg (default png)")
    ap.add_argument("--checkpoint", help="PPO checkpoint directory for --policies ppo")
    ap.add_argument("--allow-other-scenario", action="store_true",
                    help="--policies ppo: evaluate a checkpoint trained on another scenario (refused by default)")
    ap.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import MODULE (a module name, found in the current directory too, or a .py file path) "
                         "first; it registers policies with experiment.register; repeatable")
    g = ap.add_argument_group("icl / knn (host policies)")
    g.add_argument("--policy", dest="policies", help="alias of --policies")
    add_llm_args(g)
    g.add_argument("--shots", type=int, help="demonstrations per prompt; value: max(shots // actions, min(shots, 2)) per action "
                   "unless --shots-per-action (6)")
    g.add_argument("--shots-per-action", type=int, help="value: records of each action in a prompt (from --shots)")
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
                   "minus their mean over actions first) (contrast)")
    g.add_argument("--calibrate", action="store_true", default=None,
                   help="subtract the log-likelihoods for a content-free prompt: each answer's (action) or each "
                   "action's grades (value)")
    g.add_argument("--pool", help="start from this saved experience pool (orbax directory)")
    g.add_argument("--batch-episodes", default="auto", help="episodes decided together per wave, or auto: about "
                   "two full forwards of prompts per slot (experiment.host.auto_batch_episodes) (auto)")
    distributed.add_cluster_args(ap)
    return ap.parse_args(argv)


def icl_config(args) -> ICLConfig:
    over = dict(**llm_fields(args), shots=args.shots, shots_per_action=args.shots_per_action, select=args.select,
                epsilon=args.epsilon,
                epsilon_decay=args.epsilon_decay, tau=args.tau, pool_size=args.pool_size,
                max_prompt_tokens=args.max_prompt_tokens, decide=args.decide, describe=args.describe,
                value_rule=args.value_rule, calibrate=args.calibrate)
    return dataclasses.replace(ICLConfig(seed=args.seed), **{k: v for k, v in over.items() if v is not None}).validate()


def import_plugin(plugin: str) -> None:
    """Import a --plugin: a module name (the current directory searched first, as ``python -m`` does) or a path
    to a .py file; any failure is a ConfigError naming it."""
    try:
        if plugin.endswith(".py") or os.sep in plugin or "/" in plugin:
            path = os.path.abspath(plugin)
            if not os.path.isfile(path):
                raise ConfigError(f"--plugin {plugin!r}: no such file")
            name = os.path.splitext(os.path.basename(path))[0]
            if name in sys.modules and os.path.abspath(getattr(sys.modules[name], "__file__", "") or "") != path:
                name = f"_jaxsim_plugin_{name}"          # a module of that name is loaded already: keep it
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            importlib.import_module(plugin)
    except ConfigError:
        raise
    except Exception as e:                                   # ImportError, SyntaxError, an error in its code
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where and not isinstance(e, ImportError) else ""
        raise ConfigError(f"--plugin {plugin!r}: cannot be imported ({type(e).__name__}{at}: {e})") from None


def positive_or_auto(flag: str, value: str) -> int | str:
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{flag} = {value}: allowed auto or an integer >= 1")
    return int(value)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cluster = distributed.spec_from_args(args)
        for plugin in args.plugin:
            import_plugin(plugin)
        cfg = scenario_from_args(args)
        if args.print_config:
            print_config(cfg)
            return 0
        names = [n.strip() for n in (args.policies.split(",") if args.policies else default_policies(cfg)) if n.strip()]
        if not names:
            raise ConfigError("--policies: no policy given; allowed: " + ", ".join(policy_names(cfg)))
        for n in names:
            is_host(n, cfg)                                  # unknown names: an error naming the allowed ones
        if "icl" in names:
            check_llm_args(args)
        formats = parse_formats(args.plot) if args.plot is not None else None
        batch = positive_or_auto("--batch-episodes", args.batch_episodes)
        spec = RunSpec(episodes=args.episodes, seed=args.seed, chunk=positive_or_auto("--chunk", args.chunk),
                       per_task=None if args.per_task == "auto" else args.per_task == "on",
                       batch_episodes=None if batch == "auto" else batch).validate()
        if args.pool is not None and not os.path.isdir(args.pool):
            raise ConfigError(f"--pool {args.pool!r}: no such directory")
        options = PolicyOptions(checkpoint=args.checkpoint, icl=icl_config(args), pool=args.pool,
                                allow_other_scenario=args.allow_other_scenario)
        if any(is_host(n, cfg) for n in names) and cluster.multi_process:
            raise ConfigError(f"--policies {args.policies}: host policies run in one process; "
                              "run them without --coordinator / outside a multi-task job")
        distributed.set_cpu_devices(args.cpu_devices, episode_slots=args.episodes * cfg.episode.horizon)
        distributed.initialize(cluster)
        run_dir, summaries = run_policies(cfg, names, spec, args.out, options, fresh=args.fresh)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not distributed.is_writer():
        return 0
    print(f"\n{args.episodes} episodes x {cfg.episode.horizon} slots per policy; 95% t intervals over episodes; "
          f"results in {run_dir}")
    print_table(summaries)
    if formats is not None:
        written = plot_run(run_dir, formats, log=lambda m: print(m, file=sys.stderr))
        print(f"figures: {', '.join(written)} in {os.path.join(run_dir, 'figures')} ({', '.join(formats)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
