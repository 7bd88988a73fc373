"""Figure 1: reward per episode — ICL with its pool growing, PPO's learning curve, heuristics, oracle.

    python -m scripts.figures.reward [--quick | --no-quick] [--out results]

Writes results/fig1_reward.png and fig1_reward.csv (series, episode, reward, ci95).
"""

from __future__ import annotations

import numpy as np

from experiment.study import CONTROLS, ICL, METHOD_COLORS, Study, figure_main, mean_ci, plt, write_csv

LEVELS = ("random", "edge_only", "cloud_small_only", "cloud_large_only", "greedy", "oracle")


def make(study: Study) -> str:
    cfg = study.scenario()
    learners = {m: study.run(m, cfg, ICL) for m in ("icl", *CONTROLS)}
    ppo = study.run("ppo", cfg)
    rows = []
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 4.2))
    n = study.n_episodes
    x = np.arange(1, n + 1)
    for name in LEVELS:
        s = study.run(name, cfg)
        m, ci = mean_ci(s)
        ax.axhline(m, color=METHOD_COLORS[name], lw=1, ls="--", label=f"{name} ({m:.3f})")
        ax.axhspan(m - ci, m + ci, color=METHOD_COLORS[name], alpha=0.08)
        rows += [(name, int(e), r, "") for e, r in zip(x, s["episode_rewards"])]
    for name, s in learners.items():
        ax.plot(x, s["learning"], "o-", color=METHOD_COLORS[name], label=f"{name} (pool grows)")
        rows += [(name, int(e), r, "") for e, r in zip(x, s["learning"])]
    curve = np.asarray(ppo["curve"], float)
    ep_seen = (np.arange(1, len(curve) + 1)) * ppo["episodes_per_update"]
    ax2 = ax.twiny()
    ax2.plot(ep_seen, curve, color=METHOD_COLORS["ppo"], lw=1.5, label="ppo training")
    ax2.set_xlabel("PPO training episodes")
    rows += [("ppo_training", int(e), float(r), "") for e, r in zip(ep_seen, curve)]
    ax.set_xlabel("evaluation episode (the ICL / kNN pool grows across episodes)")
    ax.set_ylabel("mean slot reward")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    ax.set_title(f"Reward per episode (bands: the levels' 95% t intervals)\n{study.caption()}", fontsize=8)
    study.save_figure(fig, "fig1_reward.png")
    pyplot.close(fig)
    write_csv(study.path("fig1_reward.csv"), ["series", "episode", "reward", "ci95"], rows)
    return study.figure_path("fig1_reward.png")


def main(argv=None):
    figure_main(make, __doc__, argv)


if __name__ == "__main__":
    main()
