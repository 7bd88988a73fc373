"""Reproduce the paper's figures and the comparison table, from one command.

    python -m scripts.reproduce              # --quick: a small network, minutes on a 2-core CPU
    python -m scripts.reproduce --no-quick   # the default scenario, 20 episodes a point (GPU or a long CPU run)

Runs figures 1-6 (``scripts/fig_*.py``), the comparison table and the check of the paper's claims into
``--out`` (default results/): PNG figures, the CSV data behind them, ``comparison.md``, ``claims.md``, and ``runs/`` (every run cached as JSON, so an
interrupted reproduction resumes where it stopped). Prints an overall summary at the end.
"""

from __future__ import annotations

import time

from tqdm import tqdm

from scripts import claims, compare_table, fig_explore, fig_pertype, fig_quality, fig_reward, fig_shots, fig_size
from scripts.study import study_args

STEPS = (("fig1 reward per episode", fig_reward.make), ("fig2 service quality", fig_quality.make),
         ("fig3 demonstrations / pool", fig_shots.make), ("fig4 exploration", fig_explore.make),
         ("fig5 LLM / network size", fig_size.make), ("fig6 per task type", fig_pertype.make),
         ("comparison table", compare_table.make), ("paper's claims", claims.make))


def main(argv=None, lm=None) -> dict:
    _, study = study_args(__doc__.split("\n\n")[0], argv)
    study.lm = lm
    done = {}
    t0 = time.perf_counter()
    with tqdm(STEPS, desc="reproduce", unit="step") as bar:
        for name, make in bar:
            bar.set_postfix_str(name)
            done[name] = make(study)
    print(f"\nreproduced in {time.perf_counter() - t0:.0f} s into {study.out_dir}/")
    for name, out in done.items():
        text_file = study.path("claims.md" if name == "paper's claims" else "comparison.md")
        print(f"  {name}: {out if isinstance(out, str) and out.endswith('.png') else text_file}")
    print()
    print(done["comparison table"])
    print(done["paper's claims"])
    return done


if __name__ == "__main__":
    main()
