"""The paper's qualitative claims, checked against this project's runs (never typed by hand).

    python -m scripts.figures.claims [--quick | --no-quick] [--out results] [--doc docs/claims.md]

Reads (or computes: they are cached) the same runs as figures 1-6 and states, for each claim, what
the runs show, with the numbers. Writes results/claims.md; with --doc, replaces the block between
``<!-- claims:start -->`` and ``<!-- claims:end -->`` in that file.

Every run of a study sees the same episodes, so a claim that one method beats another is tested on
the paired difference: the mean of the per-episode reward differences with its 95% Student-t
interval (n - 1 degrees of freedom for n episodes). It counts as **shown** when that mean is larger
than its half-width (the interval excludes 0), as **direction only** when it points the claimed way
but is within that noise, and as **not supported** when it points the other way. Runs without
per-episode rewards fall back to the conservative test: a difference larger than the sum of the two
95% t half-widths.
"""

from __future__ import annotations

from experiment.files import atomic_write_bytes
from experiment.study import ICL, Study, block_main, icl_label, mean_ci, paired_mean_ci
from scripts.figures import compare_table, explore as fig_explore, shots as fig_shots

START, END = "<!-- claims:start -->", "<!-- claims:end -->"


def _fmt(s: dict) -> str:
    m, ci = mean_ci(s)
    return f"{m:.3f} ± {ci:.3f}"


def difference(better: dict, worse: dict) -> tuple[float, float, bool]:
    """(reward(better) - reward(worse), its 95% half-width, paired): the paired difference over the same
    episodes where both runs have per-episode rewards, else the difference of the means with the sum of the
    two half-widths."""
    d = paired_mean_ci(better, worse)
    if d is not None:
        return d[0], d[1], True
    (a, ca), (b, cb) = mean_ci(better), mean_ci(worse)
    return a - b, ca + cb, False


def compare(better: dict, worse: dict) -> str:
    """'shown' / 'direction only' / 'not supported' for the claim reward(better) > reward(worse)."""
    d, half, _ = difference(better, worse)
    if d > half:
        return "shown"
    return "direction only" if d > 0 else "not supported"


def _vs(better: dict, worse: dict) -> str:
    """The verdict with the difference it rests on, e.g. 'shown (+0.120 ± 0.050 paired)'."""
    d, half, paired = difference(better, worse)
    return f"{compare(better, worse)} ({d:+.3f} ± {half:.3f}{' paired' if paired else ''})"


def verdict(parts: list[str]) -> str:
    if all(p == "shown" for p in parts):
        return "**supported**"
    if all(p == "not supported" for p in parts):
        return "**not supported**"
    if all(p != "not supported" for p in parts):
        return "**direction only** (within the noise of these runs)"
    return "**mixed**"


def claim_icl_vs_drl(study: Study, cfg) -> tuple[str, str]:
    icl, ppo = study.run("icl", cfg, ICL), study.run("ppo", cfg)
    knn, oracle, rnd = study.run("knn", cfg, ICL), study.run("oracle", cfg), study.run("random", cfg)
    twin = study.run("knn_value", cfg, ICL)
    spread = mean_ci(oracle)[0] - mean_ci(rnd)[0]
    gap = (mean_ci(ppo)[0] - mean_ci(icl)[0]) / spread if spread else float("nan")
    close = "shown" if abs(gap) <= 0.1 else ("direction only" if gap < 0.25 else "not supported")
    text = (f"ICL {study.model} ({icl_label(study)}) {_fmt(icl)} vs PPO {_fmt(ppo)} "
            f"(trained {ppo.get('train_s', float('nan')):.0f} s); ICL trails PPO by {gap:.0%} of the random-to-oracle "
            f"range (random {_fmt(rnd)}, oracle {_fmt(oracle)}; 'close' = within 10%). The kNN control with the "
            f"same demonstrations scores {_fmt(knn)}, the value form's per-action kNN twin {_fmt(twin)}.")
    return verdict([close]), text


def claim_more_shots(study: Study, cfg) -> tuple[str, str]:
    shots = study.points(*fig_shots.SHOTS)
    runs = [study.run("icl", cfg, {**ICL, "shots": k}) for k in shots]
    r = [mean_ci(s)[0] for s in runs]
    more = compare(runs[-1], runs[0])
    first, last = r[1] - r[0], r[-1] - r[-2]
    text = ("ICL reward by demonstrations k: " + ", ".join(f"k={k}: {_fmt(s)}" for k, s in zip(shots, runs))
            + f". k={shots[-1]} vs k=0: {_vs(runs[-1], runs[0])}; first step {first:+.3f}, last step {last:+.3f} "
            f"(diminishing returns: {'yes' if first > last else 'no'}).")
    if more != "not supported" and first <= last:
        return "**mixed** (more demonstrations help; the returns do not diminish)", text
    return verdict([more]), text


def claim_exploration(study: Study, cfg) -> tuple[str, str]:
    pts = fig_explore.points(study)
    runs = [study.run("icl", cfg, {**ICL, "epsilon": e, "epsilon_decay": d})
            for _, e, d in pts]
    best = max(range(1, len(runs)), key=lambda i: mean_ci(runs[i])[0])
    part = compare(runs[best], runs[0])
    text = ("ICL reward by exploration rate: " + ", ".join(f"{p[0]}: {_fmt(s)}" for p, s in zip(pts, runs))
            + f". Best with exploration ({pts[best][0]}) vs none: {_vs(runs[best], runs[0])}.")
    return verdict([part]), text


def claim_bigger_llm(study: Study, cfg, models: list[str]) -> tuple[str, str]:
    if len(models) < 2:
        return "**not tested**", (f"only one deciding LLM is installed ({models[0]}); install a larger one "
                                  "(docs/llm.md) and rerun.")
    runs = [study.run("icl", cfg, {**ICL, "model": m}) for m in models]
    parts = [compare(b, a) for a, b in zip(runs, runs[1:])]
    text = ("ICL reward by deciding LLM, smallest first: " + ", ".join(f"{m}: {_fmt(s)}" for m, s in zip(models, runs))
            + ". Each step up in size: " + ", ".join(_vs(b, a) for a, b in zip(runs, runs[1:])) + ".")
    return verdict(parts), text


def claim_edge_cloud(study: Study, cfg) -> tuple[str, str]:
    singles = {f"{a}_only": study.run(f"{a}_only", cfg) for a in cfg.action_names}
    best_name = max(singles, key=lambda k: mean_ci(singles[k])[0])
    methods = {"oracle": study.run("oracle", cfg), "ppo": study.run("ppo", cfg), f"icl {study.model}": study.run("icl", cfg, ICL)}
    parts = [compare(s, singles[best_name]) for s in methods.values()]
    text = ("Single-site: " + ", ".join(f"{k} {_fmt(s)}" for k, s in singles.items())
            + f". Edge-cloud methods vs the best single site ({best_name}): "
            + ", ".join(f"{k} {_fmt(s)}: {_vs(s, singles[best_name])}" for k, s in methods.items()) + ".")
    return verdict(parts), text


def make(study: Study, models: list[str] | None = None) -> str:
    from icl.llm import installed
    cfg = study.scenario()
    models = models or ([study.model] if study.lm is not None else installed() or [study.model])
    claims = [("ICL comes close to DRL (PPO) without any training", claim_icl_vs_drl(study, cfg)),
              ("More demonstrations help, with diminishing returns", claim_more_shots(study, cfg)),
              ("Exploration helps", claim_exploration(study, cfg)),
              ("A larger deciding LLM decides better", claim_bigger_llm(study, cfg, models)),
              ("Edge-cloud beats edge-only and cloud-only", claim_edge_cloud(study, cfg))]
    scen = study.label()
    text = (f"{study.n_episodes} episodes per point, {scen}, seed {study.seed}; mean reward ± 95% t half-width; "
            "a difference between two methods: paired over the same episodes. "
            f"Generated by `python -m scripts.figures.claims{'' if study.quick else ' --no-quick'}`.\n\n"
            + "\n".join(f"- *{c}*: {v}. {t}" for c, (v, t) in claims) + "\n")
    atomic_write_bytes(study.path("claims.md"), text.encode())
    return text


def main(argv=None):
    block_main(__doc__, make, "doc", START, END, argv)


if __name__ == "__main__":
    main()
