"""Figure 4: ICL versus the exploration rate epsilon (0, 0.05, 0.1, 0.2, 0.3, and 0.3 decaying by 0.8 per episode).

    python -m scripts.figures.explore [--quick | --no-quick] [--out results]

Writes results/fig4_explore.png and fig4_explore.csv.
"""

from __future__ import annotations

from experiment.study import CONTROLS, ICL, Study, figure_main, sweep_figure

POINTS = [("0", 0.0, 1.0), ("0.05", 0.05, 1.0), ("0.1", 0.1, 1.0), ("0.2", 0.2, 1.0), ("0.3", 0.3, 1.0),
          ("0.3 x 0.8^ep", 0.3, 0.8)]


def points(study: Study) -> list:
    return study.points(POINTS[:5:2], POINTS)


def make(study: Study) -> str:
    cfg = study.scenario()
    pts = points(study)
    refs = {m: study.run(m, cfg) for m in ("greedy", "oracle", "random")}
    series = {m: [study.run(m, cfg, {**ICL, "epsilon": e, "epsilon_decay": d}) for _, e, d in pts]
              for m in ("icl", *CONTROLS)}
    sweep_figure(study, "fig4_explore", "ICL vs exploration rate", "epsilon", [p[0] for p in pts], series, refs)
    return study.figure_path("fig4_explore.png")


def main(argv=None):
    figure_main(make, __doc__, argv)


if __name__ == "__main__":
    main()
