"""Shared machinery of the figure scripts (``scripts/figures/*.py``, ``scripts/figures/reproduce.py``).

A :class:`Study` fixes the scenario size (``--quick``: a small network and few episodes that run in
minutes on a 2-core CPU; full: DESIGN.md's default scenario, 20 episodes), the seed, the deciding
LLM, and a results folder. Every run is cached there as JSON (``runs/<key>.json``, written
atomically), so a rerun or an interrupted reproduction recomputes nothing already finished.
Figures are written as PNG (``--format png,pdf,svg`` for others) with the numbers behind them as CSV.
``--config FILE`` / ``--scenario NAME`` / ``--set section.field=value`` run the figures on a user's scenario,
as given (``--quick`` then only sets the episode count).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from experiment.files import atomic_write_bytes, read_block_file, update_block, write_csv
from experiment.llm_args import add_llm_args, check_llm_args
from experiment.plotting import METHOD_COLORS, parse_formats, plt, save_figure  # noqa: F401 (figure scripts')
from experiment.scenario_args import add_scenario_args, print_config, scenario_from_args
from jaxsim.config import EpisodeConfig, SimConfig, TopologyConfig, config_to_dict
from jaxsim.fields import ConfigError
from jaxsim.metrics import episode_metrics, paired_ci, summarise
from jaxsim.params import make_params
from jaxsim.rollout import rollout

# the ICL settings of every figure (the rest are ``icl.policy.ICLConfig``'s defaults: the value form, 6 shots,
# the contrast rule), used by ICL and by its no-LLM controls alike
ICL = {"select": "nearest", "epsilon": 0.1}
HOST = ("icl", "knn", "knn_value")          # policies decided on the host from an experience pool
CONTROLS = ("knn", "knn_value")             # the no-LLM controls shown beside ICL everywhere


@dataclass
class Study:
    out_dir: str
    quick: bool = True
    seed: int = 0
    model: str = "smollm2-135m"
    lm: Any = None                       # a loaded icl.llm.LanguageModel or backend (tests pass a tiny one)
    endpoint: str = ""                   # the deciding LLM behind this OpenAI-compatible server ("" = Flax runtime)
    max_in_flight: int = 4               # requests in flight to the endpoint
    episodes: int | None = None          # override the preset
    tiny: bool = False                   # tests: 1 cell x 2 users, 4 slots, 2-point sweeps
    base: SimConfig | None = None        # a user's scenario (--config/--scenario/--set), used as given
    base_name: str = "own"               # its name in labels: the preset's or the file's
    formats: tuple[str, ...] = ("png",)  # the figures' file formats (--format)
    cache: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ presets
    def scenario(self, users_per_cell: int | None = None) -> SimConfig:
        """A user's scenario (``base``) as given; else quick: 2 cells x 3 users, 8-slot episodes (sized so that
        ``make run`` takes about 10 minutes on 2 cores); full: the default scenario."""
        cfg = SimConfig()
        if self.base is not None:
            cfg = self.base                  # a user's scenario is not resized
        elif self.tiny:
            # 2 users per cell: the first point of the network-size sweep, so fig5 reuses fig1's runs there
            cfg = cfg.replace(topology=TopologyConfig(n_cells=1, users_per_cell=2), episode=EpisodeConfig(horizon=4))
        elif self.quick:
            cfg = cfg.replace(topology=TopologyConfig(n_cells=2, users_per_cell=3), episode=EpisodeConfig(horizon=8))
        if users_per_cell is not None:
            cfg = cfg.replace(topology=dataclasses.replace(cfg.topology, users_per_cell=users_per_cell))
        return cfg.validate()

    def label(self) -> str:
        """The scenario in words, e.g. "quick scenario (2 cells x 3 users, 8 slots)"."""
        c = self.scenario()
        kind = self.base_name if self.base is not None else "tiny" if self.tiny else "quick" if self.quick else "default"
        return f"{kind} scenario ({c.topology.n_cells} cells x {c.topology.users_per_cell} users, {c.episode.horizon} slots)"

    def caption(self) -> str:
        """What every figure states: the scenario, episodes per point and the interval type."""
        return f"{self.label()}; {self.n_episodes} episodes a point, 95% t intervals over episodes"

    @property
    def n_episodes(self) -> int:
        return self.episodes or (2 if self.tiny else 3 if self.quick else 20)

    def points(self, quick: list, full: list) -> list:
        """A sweep's points: full, quick, or (tiny) the first and last quick point."""
        return [quick[0], quick[-1]] if self.tiny else quick if self.quick else full

    def path(self, *parts: str) -> str:
        p = os.path.join(self.out_dir, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def figure_path(self, name: str) -> str:
        """The path of figure ``name`` (e.g. "fig1_reward.png") in the first of the study's formats."""
        return self.path(f"{os.path.splitext(name)[0]}.{self.formats[0]}")

    def save_figure(self, fig, name: str) -> str:
        """Write figure ``name`` into the results folder in each of the study's formats; returns the first."""
        return save_figure(fig, self.path(name), self.formats)[0]

    def language_model(self, name: str | None = None):
        name = name or self.model
        if self.lm is not None and name == self.model:
            return self.lm
        if name not in self.cache:
            from icl.llm.backend import load_backend
            self.cache[name] = load_backend(name, endpoint=self.endpoint, max_in_flight=self.max_in_flight)
        return self.cache[name]

    # ------------------------------------------------------------------ runs
    def run(self, method: str, cfg: SimConfig, icl: dict | None = None, ppo_updates: int | None = None) -> dict:
        """Summary of one method on one scenario (cached): means with CIs, per type, per-episode rewards."""
        if method == "icl":
            icl = {"model": self.model, **({"endpoint": self.endpoint} if self.endpoint else {}), **(icl or {})}
        if method in HOST:                  # the whole ICL config (its defaults included) keys the cache
            from icl.policy import ICLConfig
            icl_cfg = ICLConfig(seed=self.seed, **(icl or {})).validate()
            icl = run_key_fields(icl_cfg, len(cfg.action_names))
        key_src = json.dumps({"m": method, "cfg": config_to_dict(cfg), "icl": icl, "ppo": ppo_updates,
                              "seed": self.seed, "n": self.n_episodes,
                              "model": (icl or {}).get("model", self.model) if method == "icl" else None},
                             sort_keys=True, default=str)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        path = self.path("runs", f"{method}-{key}.json")
        if os.path.exists(path):
            with open(path) as f:
                cached = json.load(f)
            if "t95" in cached["reward"]:         # else cached before the t intervals: computed again
                return cached
        params = make_params(cfg)
        rkey = jax.random.PRNGKey(self.seed)
        extra: dict = {}
        t0 = time.perf_counter()
        if method in HOST:
            from experiment import PolicyOptions, evaluate
            icfg = icl_cfg
            log: list[dict] = []
            lm = self.language_model(icfg.model) if method == "icl" else None
            out, extra = evaluate(method, cfg, self.n_episodes, self.seed, PolicyOptions(icl=icfg, lm=lm),
                                  log=log.append)
            extra["learning"] = [r["reward"] for r in log]
        elif method == "ppo":
            from baselines.ppo import PPOConfig, policy_params_from, ppo_policy, train
            n_up = ppo_updates or (3 if self.tiny else 20 if self.quick else 150)
            pcfg = PPOConfig(n_envs=16 if self.quick else 64, n_updates=n_up, checkpoint_every=0,
                             n_minibatches=4 if self.quick else 8)
            res = train(jax.random.PRNGKey(self.seed + 1), pcfg, params)
            extra["train_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = rollout(rkey, params, ppo_policy, policy_params_from(res.runner, pcfg, params), self.n_episodes)
            extra.update(curve=res.metrics.get("episode_reward", []), episodes_per_update=pcfg.n_envs)
        else:
            from experiment import evaluate
            out, extra = evaluate(method, cfg, self.n_episodes, self.seed)
        wall = time.perf_counter() - t0
        summary = summarise(out, cfg.type_names, len(cfg.action_names))
        summary["wall_s"] = wall
        summary["decisions_per_s"] = float(out["mask"].sum()) / wall if wall > 0 else float("nan")
        summary["episode_rewards"] = episode_metrics(out, len(cfg.type_names), len(cfg.action_names))["reward"].tolist()
        summary.update(extra)
        atomic_write_bytes(path, json.dumps(summary, default=float).encode())
        return summary


def run_key_fields(c, n_actions: int) -> dict:
    """The ICL config as it keys a cached run: every field, but those added after runs were cached only where
    they change what a run does (an endpoint named; records per action other than the old shots // actions),
    and never the endpoint's requests in flight (they change no result)."""
    d = dataclasses.asdict(c)
    d.pop("max_in_flight")
    if not d["endpoint"]:
        d.pop("endpoint")
    if not d["shots_per_action"]:
        d.pop("shots_per_action")
    if c.per_action and c.records_per_action(n_actions) != c.shots // n_actions:
        d["records_per_action"] = c.records_per_action(n_actions)
    return d


def icl_label(study: Study) -> str:
    """How the figures' ICL runs decide, for labels: e.g. "value, nearest, 6 shots"."""
    from icl.policy import ICLConfig
    c = ICLConfig(**ICL)
    return f"{c.decide}, {c.select}, {c.shots} shots"


# ---------------------------------------------------------------------- output helpers
def mean_ci(s: dict, metric: str = "reward") -> tuple[float, float]:
    """(mean, 95% t half-width; 0 where undefined) of one run's metric."""
    m = s[metric]
    return float(m["mean"]), float(m["ci95"]) if np.isfinite(m["ci95"]) else 0.0


def paired_mean_ci(a: dict, b: dict) -> tuple[float, float] | None:
    """(mean, 95% t half-width) of the per-episode reward differences a - b of two runs on the same episodes
    (``jaxsim.metrics.paired_ci``), or None when either run lacks its per-episode rewards or their episode
    counts differ."""
    ea, eb = a.get("episode_rewards"), b.get("episode_rewards")
    if ea is None or eb is None or len(ea) != len(eb):
        return None
    d = paired_ci(ea, eb)
    return d["mean"], d["ci95"] if np.isfinite(d["ci95"]) else 0.0


def study_args(description: str, argv=None, extra=None) -> tuple[argparse.Namespace, Study]:
    """Common options of the figure scripts (``extra(ap)`` adds a script's own); errors before any compute."""
    ap = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(ap)
    ap.add_argument("--quick", action=argparse.BooleanOptionalAction, default=True,
                    help="small network, few episodes (default); --no-quick: the default scenario, 20 episodes")
    ap.add_argument("--out", default="results", help="results folder (default results/)")
    ap.add_argument("--seed", type=int, default=0)
    add_llm_args(ap, "smollm2-135m")
    ap.add_argument("--episodes", type=int, help="episodes per point (default 3 quick, 20 full)")
    ap.add_argument("--format", default="png", help="figure formats, comma-separated: png, pdf, svg (default png)")
    add_scenario_args(ap)
    args = ap.parse_args(argv)
    if args.episodes is not None and args.episodes < 2:
        ap.error(f"--episodes = {args.episodes}: allowed >= 2 (confidence intervals need two)")
    try:
        check_llm_args(args, check_model=False)     # a loaded model may be given (tests); loading names the error
        formats = parse_formats(args.format)
        named = args.config is not None or args.scenario is not None or bool(args.set_fields)
        base = scenario_from_args(args) if named else None
    except ConfigError as e:
        ap.error(str(e))
    if args.print_config:
        print_config(base if base is not None else Study(args.out, args.quick).scenario())
        raise SystemExit(0)
    name = args.scenario or (os.path.splitext(os.path.basename(args.config))[0] if args.config else "default")
    if args.set_fields:
        name += " (" + ", ".join(args.set_fields) + ")"
    return args, Study(args.out, args.quick, args.seed, args.model, episodes=args.episodes, base=base,
                       base_name=name, formats=formats, endpoint=args.llm_endpoint or "",
                       max_in_flight=args.llm_in_flight or 4)


def sweep_figure(study: Study, name: str, title: str, xlabel: str, xs: list, series: dict[str, list[dict]],
                 refs: dict[str, dict], ax=None, fig=None):
    """Reward (with 95% intervals) of each series over a swept parameter, reference levels dashed;
    writes <name>.csv; returns the axes. ``xs`` may be labels (strings)."""
    pyplot = plt()
    own = ax is None
    if own:
        fig, ax = pyplot.subplots(figsize=(6, 3.8))
    pos = np.arange(len(xs))
    rows = []
    for label, sums in series.items():
        vals = [mean_ci(s) for s in sums]
        color = METHOD_COLORS.get(label.split(" ")[0], None)
        ax.errorbar(pos, [v[0] for v in vals], yerr=[v[1] for v in vals], marker="o", capsize=3, label=label,
                    color=color)
        rows += [(label, str(x), f"{v[0]:.6g}", f"{v[1]:.6g}") for x, v in zip(xs, vals)]
    for label, s in refs.items():
        m, _ = mean_ci(s)
        ax.axhline(m, ls="--", lw=1, color=METHOD_COLORS.get(label, "gray"), label=f"{label} ({m:.3f})")
        rows.append((label, "", f"{m:.6g}", f"{mean_ci(s)[1]:.6g}"))
    ax.set_xticks(pos, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean slot reward")
    ax.set_title(f"{title}\n{study.caption()}" if own else title, fontsize=8 if own else 9)   # shared: suptitle
    ax.legend(fontsize=7)
    write_csv(study.path(f"{name}.csv"), ["series", "x", "reward", "ci95"], rows)
    if own:
        study.save_figure(fig, f"{name}.png")
        pyplot.close(fig)
    return ax


def figure_main(make, doc: str, argv=None) -> None:
    """The command line of a figure script: common options, then ``make(study)``; prints the PNG path."""
    _, study = study_args(doc.split("\n\n")[0], argv)
    print(make(study))


def block_main(doc: str, make_text, flag: str, start: str, end: str, argv=None) -> None:
    """Command line of a text-producing study script: common options plus ``--<flag> FILE`` whose marked block
    gets the text; the file and its markers are checked before any run."""
    args, study = study_args(doc.split("\n\n")[0], argv,
                             lambda ap: ap.add_argument(f"--{flag}", help=f"markdown file whose {start} block is replaced"))
    target = getattr(args, flag)
    if target:
        read_block_file(target, start, end)
    text = make_text(study)
    if target:
        update_block(target, text, start, end)
    print(text)
