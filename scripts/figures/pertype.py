"""Figure 6: quality and delay per task type for edge-only, cloud-only and edge-cloud (ICL, PPO, oracle).

    python -m scripts.figures.pertype [--quick | --no-quick] [--out results]

Writes results/fig6_pertype.png and fig6_pertype.csv.
"""

from __future__ import annotations

import numpy as np

from experiment.study import ICL, METHOD_COLORS, Study, figure_main, plt, write_csv

METHODS = ("edge_only", "cloud_small_only", "cloud_large_only", "icl", "ppo", "oracle")


def make(study: Study) -> str:
    cfg = study.scenario()
    sums = {m: study.run(m, cfg, ICL if m == "icl" else None) for m in METHODS}
    types = cfg.type_names
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 3.8))
    rows = []
    w = 0.8 / len(METHODS)
    for ax, (metric, label) in zip(axes, (("quality", "mean quality"), ("delay_s", "mean delay (s)"))):
        for i, m in enumerate(METHODS):
            vals = [sums[m]["per_type"][t][metric] for t in types]
            mean = [v["mean"] for v in vals]
            ci = [v["ci95"] if np.isfinite(v["ci95"]) else 0.0 for v in vals]
            ax.bar(np.arange(len(types)) + (i - len(METHODS) / 2 + 0.5) * w, mean, w, yerr=ci, capsize=2,
                   color=METHOD_COLORS[m], label=m)
            rows += [(m, t, metric, f"{a:.6g}", f"{b:.6g}") for t, a, b in zip(types, mean, ci)]
        ax.set_xticks(range(len(types)), types)
        ax.set_ylabel(label)
    for t_i, t in enumerate(types):   # the quality floor and the delay budget of each type
        tt = cfg.traffic.task_types[t_i]
        axes[0].plot([t_i - 0.4, t_i + 0.4], [tt.min_quality] * 2, "k:", lw=1)
        axes[1].plot([t_i - 0.4, t_i + 0.4], [tt.budget_s] * 2, "k:", lw=1)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Per task type (dotted: quality floor / delay budget)\n{study.caption()}")
    study.save_figure(fig, "fig6_pertype.png")
    pyplot.close(fig)
    write_csv(study.path("fig6_pertype.csv"), ["method", "task_type", "metric", "mean", "ci95"], rows)
    return study.figure_path("fig6_pertype.png")


def main(argv=None):
    figure_main(make, __doc__, argv)


if __name__ == "__main__":
    main()
