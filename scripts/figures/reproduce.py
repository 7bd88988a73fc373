"""Reproduce the paper's figures and the comparison table, from one command.

    python -m scripts.figures.reproduce              # --quick: a small network, ~10 minutes on a 2-core CPU
    python -m scripts.figures.reproduce --no-quick   # the default scenario, 20 episodes a point (GPU or a long CPU run)
    python -m scripts.figures.reproduce --readme README.md   # also the README's table and claims (what `make run` does)

Runs figures 1-6 (``scripts/figures/*.py``), the comparison table and the check of the paper's claims into
``--out`` (default results/): PNG figures, the CSV data behind them, ``comparison.md``, ``claims.md``, and
``runs/`` (every run cached as JSON, so an interrupted reproduction resumes where it stopped). The six PNG
figures are also copied into ``--figures`` (default docs/figures/, shown by the README; '' skips), and with
``--readme`` the table and claims blocks of that file are replaced. Prints an overall summary at the end.
"""

from __future__ import annotations

import os
import shutil
import time

from tqdm import tqdm

from experiment.files import read_block_file, update_block
from experiment.study import study_args
from jaxsim.compilation import use_persistent_cache
from scripts.figures import (claims, compare_table, explore as fig_explore, pertype as fig_pertype,
                             quality as fig_quality, reward as fig_reward, shots as fig_shots, size as fig_size)

STEPS = (("fig1 reward per episode", fig_reward.make), ("fig2 service quality", fig_quality.make),
         ("fig3 demonstrations / pool", fig_shots.make), ("fig4 exploration", fig_explore.make),
         ("fig5 LLM / network size", fig_size.make), ("fig6 per task type", fig_pertype.make),
         ("comparison table", compare_table.make), ("paper's claims", claims.make))


FIGURES = ("fig1_reward", "fig2_quality", "fig3_shots", "fig4_explore", "fig5_size", "fig6_pertype")


def publish_figures(out_dir: str, figures_dir: str, formats: tuple[str, ...] = ("png",)) -> None:
    """Copy the six figures, in each format, into ``figures_dir`` (each atomically: written beside, then
    renamed)."""
    os.makedirs(figures_dir, exist_ok=True)
    for name in FIGURES:
        for fmt in formats:
            tmp = os.path.join(figures_dir, f".{name}.{fmt}.tmp")
            shutil.copyfile(os.path.join(out_dir, f"{name}.{fmt}"), tmp)
            os.replace(tmp, os.path.join(figures_dir, f"{name}.{fmt}"))


def _options(ap) -> None:
    ap.add_argument("--figures", default=os.path.join("docs", "figures"),
                    help="folder the six figures are copied into (docs/figures; '' skips)")
    ap.add_argument("--readme", help="markdown file whose comparison and claims blocks are replaced")


def main(argv=None, lm=None) -> dict:
    args, study = study_args(__doc__.split("\n\n")[0], argv, _options)
    if args.readme:                               # the file and its markers, checked before any run
        read_block_file(args.readme, compare_table.START, compare_table.END)
        read_block_file(args.readme, claims.START, claims.END)
    study.lm = lm
    use_persistent_cache()            # the LLM's and the simulator's programs: compiled once per machine
    done = {}
    t0 = time.perf_counter()
    with tqdm(STEPS, desc="reproduce", unit="step") as bar:
        for name, make in bar:
            bar.set_postfix_str(name)
            done[name] = make(study)
    if args.figures:
        publish_figures(study.out_dir, args.figures, study.formats)
    if args.readme:
        update_block(args.readme, done["comparison table"], compare_table.START, compare_table.END)
        update_block(args.readme, done["paper's claims"], claims.START, claims.END)
    print(f"\nreproduced in {time.perf_counter() - t0:.0f} s into {study.out_dir}/"
          + (f", figures in {args.figures}/" if args.figures else "") + (f", {args.readme} updated" if args.readme else ""))
    for name, out in done.items():
        text_file = study.path("claims.md" if name == "paper's claims" else "comparison.md")
        print(f"  {name}: {out if isinstance(out, str) and out.endswith(study.formats) else text_file}")
    print()
    print(done["comparison table"])
    print(done["paper's claims"])
    return done


if __name__ == "__main__":
    main()
