"""Figure 2: service quality (and mean delay, mean quality) per method.

    python -m scripts.figures.quality [--quick | --no-quick] [--out results]

Writes results/fig2_quality.png and fig2_quality.csv.
"""

from __future__ import annotations

from experiment.study import HOST, ICL, METHOD_COLORS, Study, figure_main, mean_ci, plt, write_csv

METHODS = ("random", "edge_only", "cloud_small_only", "cloud_large_only", "greedy", "knn", "knn_value", "icl", "ppo",
           "oracle")


def summaries(study: Study, cfg) -> dict[str, dict]:
    return {m: study.run(m, cfg, ICL if m in HOST else None) for m in METHODS}


def make(study: Study) -> str:
    cfg = study.scenario()
    sums = summaries(study, cfg)
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(12, 3.8))
    rows = []
    for ax, (metric, label) in zip(axes, (("service_quality", "service quality (share of tasks in budget and quality)"),
                                         ("delay_s", "mean delay (s)"), ("quality", "mean quality"))):
        vals = [mean_ci(sums[m], metric) for m in METHODS]
        ax.bar(range(len(METHODS)), [v[0] for v in vals], yerr=[v[1] for v in vals],
               color=[METHOD_COLORS[m] for m in METHODS], capsize=3)
        ax.set_xticks(range(len(METHODS)), METHODS, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
    for m in METHODS:
        rows.append([m] + [f"{v:.6g}" for k in ("reward", "service_quality", "delay_s", "quality")
                           for v in mean_ci(sums[m], k)])
    fig.suptitle(f"Service quality, delay and quality per method\n{study.caption()}")
    study.save_figure(fig, "fig2_quality.png")
    pyplot.close(fig)
    write_csv(study.path("fig2_quality.csv"), ["method", "reward", "reward_ci95", "service_quality", "sq_ci95",
                                               "delay_s", "delay_ci95", "quality", "quality_ci95"], rows)
    return study.figure_path("fig2_quality.png")


def main(argv=None):
    figure_main(make, __doc__, argv)


if __name__ == "__main__":
    main()
