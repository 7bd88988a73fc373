"""Figure 5: ICL versus the size of the deciding LLM (every model this machine can load) and versus
the network size (users per cell).

    python -m scripts.figures.size [--quick | --no-quick] [--out results] [--models a,b,...]

Writes results/fig5_size.png, fig5_llm_size.csv and fig5_network_size.csv. Models default to every
registered model whose weights are installed (``icl.llm.installed()``); ``--models`` takes names,
.gguf paths or checkpoint folders.
"""

from __future__ import annotations


from experiment.study import CONTROLS, HOST, ICL, Study, plt, study_args, sweep_figure


def make(study: Study, models: list[str] | None = None) -> str:
    from icl.llm import installed
    cfg = study.scenario()
    models = models or ([study.model] if study.lm is not None else installed() or [study.model])
    users = study.points([2, 3], [4, 8, 12, 16])
    pyplot = plt()
    fig, (a1, a2) = pyplot.subplots(1, 2, figsize=(11, 3.8))
    refs = {m: study.run(m, cfg) for m in ("greedy", "oracle")}
    refs.update({m: study.run(m, cfg, ICL) for m in CONTROLS})
    sweep_figure(study, "fig5_llm_size", "ICL vs deciding LLM", "model", models,
                 {"icl": [study.run("icl", cfg, {**ICL, "model": m}) for m in models]}, refs, a1, fig)
    series = {m: [study.run(m, study.scenario(users_per_cell=u), ICL if m in HOST else None)
                  for u in users] for m in ("icl", *CONTROLS, "greedy", "oracle")}
    sweep_figure(study, "fig5_network_size", "ICL vs network size", "users per cell", users, series, {}, a2, fig)
    fig.suptitle(study.caption(), fontsize=8)
    study.save_figure(fig, "fig5_size.png")
    pyplot.close(fig)
    return study.figure_path("fig5_size.png")


def main(argv=None):
    args, study = study_args(__doc__.split("\n\n")[0], argv,
                             lambda ap: ap.add_argument("--models", help="comma-separated deciding LLMs"))
    print(make(study, args.models.split(",") if args.models else None))


if __name__ == "__main__":
    main()
