"""Train the PPO actor-critic with orbax checkpoints and write its learning curve.

    python -m scripts.studies.train_ppo --out runs/ppo [--config FILE.toml] [--updates N] [--quick] ...

Writes under ``--out``:
  ckpt/                 orbax checkpoints (every ``--segment`` updates); rerunning the same command
                        resumes from the latest one and ends with the same parameters
  learning_curve.csv    per update: mean episode reward of the training (stochastic) policy, success
                        share, losses, entropy, approx. KL, clip fraction
  learning_curve.json   the same, plus the reference levels and the final evaluation
  learning_curve.png    the curve with the greedy and oracle levels as horizontal lines

The reference levels are evaluated on held-out episode keys: greedy and random on
``--eval-episodes`` episodes, the oracle (slow) on the first ``--oracle-episodes`` of them, and the
trained policy (deterministic argmax) on the same keys. The policy loads with
``baselines.ppo.load_ppo_policy(OUT/ckpt)``.

On several devices the environments of each update are sharded over all of them; on a cluster
start one process per host with --coordinator/--num-processes/--process-id (or srun under
SLURM, no flags): process 0 writes the files, every process takes part (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from baselines import greedy_policy, oracle_policy, random_policy
from baselines.ppo import METRIC_NAMES, load_ppo_policy, train
from jaxsim import distributed
from experiment.events import EventLog
from experiment.files import atomic_write_bytes
from scripts.bench.ppo import EVAL_KEY_OFFSET, SegmentClock, add_ppo_args, evaluate, parse_setup


def write_curve_csv(path: str, metrics: dict[str, list[float]]) -> None:
    rows = [["update", *METRIC_NAMES]]
    for i in range(len(metrics["episode_reward"])):
        rows.append([str(i + 1), *(repr(metrics[k][i]) for k in METRIC_NAMES)])
    text = "\n".join(",".join(r) for r in rows) + "\n"
    atomic_write_bytes(path, text.encode())


def plot_curve(path: str, metrics: dict[str, list[float]], levels: dict[str, tuple[str, float]],
               title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(metrics["episode_reward"])
    x = np.arange(1, len(y) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, y, lw=1, alpha=0.5, color="C0", label="PPO (training policy, per update)")
    if len(y) >= 5:
        w = max(5, len(y) // 20)
        ax.plot(x[w - 1:], np.convolve(y, np.ones(w) / w, "valid"), color="C0", lw=2, label=f"PPO, {w}-update mean")
    styles = {"oracle": ("k", "--"), "greedy_oracle_eps": ("C1", "--"), "greedy": ("C1", "-."),
              "random": ("C3", ":"), "ppo_eval": ("C0", ":")}
    for k, (label, v) in levels.items():
        c, ls = styles[k]
        ax.axhline(v, color=c, ls=ls, lw=1.2, label=f"{label} {v:.3f}")
    ax.set_xlabel("PPO update")
    ax.set_ylabel("mean episode reward (mean slot reward)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def start_cluster(argv) -> None:
    """Join a multi-process run (flags, JAX_* variables or SLURM) before anything touches a device."""
    pre = argparse.ArgumentParser(add_help=False)
    distributed.add_cluster_args(pre)
    known, _ = pre.parse_known_args(argv)
    try:
        distributed.initialize(distributed.spec_from_args(known))
    except distributed.ClusterError as e:
        sys.exit(f"error: {e}")


def main(argv=None) -> dict:
    start_cluster(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_ppo_args(ap)
    ap.add_argument("--out", required=True, help="output directory")
    distributed.add_cluster_args(ap)
    args, n_eval, n_oracle, sim_cfg, env_params, cfg = parse_setup(ap, argv)
    writer = distributed.is_writer()
    if writer:
        os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "ckpt")
    print(f"PPO {cfg}", flush=True)

    clock = SegmentClock(cfg.n_envs, env_params.horizon)
    t0 = time.perf_counter()
    result = train(jax.random.PRNGKey(cfg.seed), cfg, env_params, ckpt_dir=ckpt, sim_config=sim_cfg, progress=clock)
    train_s = time.perf_counter() - t0
    if result.resumed_from is not None:
        print(f"resumed from the checkpoint at update {result.resumed_from}", flush=True)

    k_eval = jax.random.PRNGKey(cfg.seed + EVAL_KEY_OFFSET)
    policy, pp = load_ppo_policy(ckpt)          # what other tools load
    r_ppo = evaluate(k_eval, env_params, policy, pp, n_eval)
    r_greedy = evaluate(k_eval, env_params, greedy_policy, None, n_eval)
    r_random = evaluate(k_eval, env_params, random_policy, None, n_eval)
    r_oracle = evaluate(k_eval, env_params, oracle_policy, None, n_oracle)
    levels = {"oracle": float(r_oracle.mean()), "greedy": float(r_greedy.mean()), "random": float(r_random.mean()),
              "ppo_eval": float(r_ppo.mean())}
    plot_levels = {  # reference lines, each labelled with the held-out episodes it averages
        "oracle": (f"oracle ({n_oracle} ep.)", levels["oracle"]),
        "greedy_oracle_eps": (f"greedy (same {n_oracle} ep.)", float(r_greedy[:n_oracle].mean())),
        "greedy": (f"greedy ({n_eval} ep.)", levels["greedy"]),
        "random": (f"random ({n_eval} ep.)", levels["random"]),
        "ppo_eval": (f"PPO final, argmax ({n_eval} ep.)", levels["ppo_eval"]),
    }
    summary = {
        "ppo_config": cfg.to_dict(), "train_s": train_s, "updates": int(result.runner.update),
        "resumed_from": result.resumed_from,
        "eval": {"episodes": n_eval, "oracle_episodes": n_oracle, "ppo": levels["ppo_eval"],
                 "greedy": levels["greedy"], "random": levels["random"], "oracle": levels["oracle"],
                 "ppo_on_oracle_episodes": float(r_ppo[:n_oracle].mean()),
                 "greedy_on_oracle_episodes": float(r_greedy[:n_oracle].mean())},
        "metrics": result.metrics,
    }
    if not writer:
        return summary
    atomic_write_bytes(os.path.join(args.out, "learning_curve.json"), json.dumps(summary, indent=1).encode())
    write_curve_csv(os.path.join(args.out, "learning_curve.csv"), result.metrics)
    with EventLog(os.path.join(args.out, "tensorboard")) as events:
        for i in range(len(result.metrics["episode_reward"])):
            events.scalars(i + 1, {k: result.metrics[k][i] for k in METRIC_NAMES}, "ppo")
        events.scalars(int(result.runner.update), summary["eval"], "eval")
    plot_curve(os.path.join(args.out, "learning_curve.png"), result.metrics, plot_levels,
               f"PPO, {cfg.n_envs} envs x {env_params.horizon} slots per update, U = {env_params.n_users}")
    print(f"held-out ({n_eval} episodes; oracle {n_oracle}): ppo {levels['ppo_eval']:.4f}  "
          f"greedy {levels['greedy']:.4f}  random {levels['random']:.4f}  oracle {levels['oracle']:.4f}", flush=True)
    print(f"wrote {args.out}/learning_curve.{{csv,json,png}}, {args.out}/tensorboard and {ckpt}", flush=True)
    return summary


if __name__ == "__main__":
    main()
