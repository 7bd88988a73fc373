"""Figure 3: ICL versus the number of demonstrations in the prompt and versus the pool size.

    python -m scripts.figures.shots [--quick | --no-quick] [--out results]

Writes results/fig3_shots.png, fig3_shots.csv and fig3_pool.csv. kNN (same pool and selection,
no LLM) is shown beside ICL everywhere.
"""

from __future__ import annotations

from experiment.study import CONTROLS, ICL, Study, figure_main, plt, sweep_figure


SHOTS = ([0, 6, 12], [0, 3, 6, 12, 24])      # quick, full; the value form shows shots // 3 of each action


def make(study: Study) -> str:
    cfg = study.scenario()
    shots = study.points(*SHOTS)
    pools = study.points([16, 4096], [16, 64, 256, 4096])
    refs = {m: study.run(m, cfg) for m in ("greedy", "oracle", "random")}
    pyplot = plt()
    fig, (a1, a2) = pyplot.subplots(1, 2, figsize=(11, 3.8))
    sweep_figure(study, "fig3_shots", "ICL vs demonstrations (nearest, 6 unless swept)", "demonstrations k", shots,
                 {m: [study.run(m, cfg, {**ICL, "shots": k}) for k in shots] for m in ("icl", *CONTROLS)}, refs, a1,
                 fig)
    sweep_figure(study, "fig3_pool", "ICL vs experience-pool size", "pool capacity (records)", pools,
                 {m: [study.run(m, cfg, {**ICL, "pool_size": n}) for n in pools] for m in ("icl", *CONTROLS)},
                 refs, a2, fig)
    fig.suptitle(study.caption(), fontsize=8)
    study.save_figure(fig, "fig3_shots.png")
    pyplot.close(fig)
    return study.figure_path("fig3_shots.png")


def main(argv=None):
    figure_main(make, __doc__, argv)


if __name__ == "__main__":
    main()
