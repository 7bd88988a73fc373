"""The figures of one run folder (``experiment.runs``), drawn from its files alone.

    plot_run("runs/x", formats=("png", "pdf"))     # -> runs/x/figures/cdf.png, cdf.pdf, per_type.png, ...

  cdf            empirical CDFs of the per-task delay (s) and reward, a line per policy (cdf.csv)
  per_type       mean reward and mean delay per task type, bars with 95% t intervals over episodes; the type's
                 delay budget dotted (summary.json)
  per_cell       mean reward and service quality per cell, bars with 95% t intervals over episodes
                 (summary.json's distributions)
  delay_vs_sinr  median delay (s) against the uplink SINR (dB), interquartile band, in SINR deciles (tasks.csv)
  delay_vs_load  median delay (s) against the chosen server's load at decision time (sequences) (tasks.csv)
  server_load    each server's own running and queued sequences over the episode's slots, mean over episodes
                 with 95% t intervals, a panel per policy (slots.csv)

A figure whose files the run did not write (a streamed run without per-task outputs) is skipped with the reason.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from experiment.plotting import color, plt, save_figure
from jaxsim.config import load_config
from jaxsim.fields import ConfigError
from jaxsim.metrics import mean_ci

FIGURES = ("cdf", "per_type", "per_cell", "delay_vs_sinr", "delay_vs_load", "server_load")


def read_table(path: str) -> dict[str, np.ndarray] | None:
    """A CSV as {column: array} (numbers as float64 where the whole column parses), None when absent."""
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    cols = {}
    for j, name in enumerate(head):
        vals = [r[j] for r in body]
        try:
            cols[name] = np.array([float(v) if v != "" else np.nan for v in vals], np.float64)
        except ValueError:
            cols[name] = np.array(vals, dtype=object)
    return cols


class RunFolder:
    """What a run folder holds: its config, episodes, and per policy its summary and (where written) tables."""

    def __init__(self, run_dir: str):
        paths = {f: os.path.join(run_dir, f) for f in ("run.json", "summary.json", "config.toml")}
        missing = [f for f, p in paths.items() if not os.path.exists(p)]
        if not os.path.isdir(run_dir) or missing:
            raise ConfigError(f"RUN_DIR {run_dir!r}: not a finished run folder of jaxsim-montecarlo (no "
                              f"{', '.join(missing) or 'folder'})")
        self.dir = run_dir
        with open(paths["summary.json"]) as f:
            top = json.load(f)
        self.cfg = load_config(paths["config.toml"])
        self.episodes = int(top["run"]["episodes"])
        self.summaries: dict[str, dict] = top["policies"]
        if not self.summaries:
            raise ConfigError(f"RUN_DIR {run_dir!r}: no policy has finished yet")

    def table(self, policy: str, name: str) -> dict[str, np.ndarray] | None:
        return read_table(os.path.join(self.dir, "policies", policy, name))

    def tables(self, name: str) -> dict[str, dict[str, np.ndarray]]:
        """{policy: table} for the policies that wrote ``name``."""
        return {p: t for p in self.summaries if (t := self.table(p, name)) is not None}

    @property
    def interval(self) -> str:
        return f"{self.episodes} episodes, 95% t intervals over episodes"


def _ci(m: dict) -> float:
    return float(m["ci95"]) if np.isfinite(m["ci95"]) else 0.0


def _bars(ax, groups: list[str], series: dict[str, list[dict]], ylabel: str) -> None:
    """Grouped bars: a group per x label, a bar per series, each {mean, ci95}, with its interval."""
    w = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        x = np.arange(len(groups)) + (i - len(series) / 2 + 0.5) * w
        ax.bar(x, [v["mean"] for v in vals], w, yerr=[_ci(v) for v in vals], capsize=2, color=color(name, i),
               label=name)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)


def fig_cdf(run: RunFolder, pyplot):
    cdfs = run.tables("cdf.csv")
    if not cdfs:
        return None
    fig, axes = pyplot.subplots(1, 2, figsize=(9, 3.4))
    for i, (p, t) in enumerate(cdfs.items()):
        n = run.summaries[p].get("distributions", {}).get("delay_s", {}).get("n", "?")
        for ax, m in zip(axes, ("delay_s", "reward")):
            ax.plot(t[m], t["probability"], color=color(p, i), label=f"{p} ({n} tasks)")
    axes[0].set_xlabel("task delay (s)")
    axes[1].set_xlabel("task reward")
    for ax in axes:
        ax.set_ylabel("share of tasks at or below")
        ax.set_ylim(0, 1)
    axes[0].legend()
    fig.suptitle(f"Empirical CDFs of the tasks' delay and reward ({run.episodes} episodes)")
    return fig


def fig_per_type(run: RunFolder, pyplot):
    types = run.cfg.type_names
    fig, axes = pyplot.subplots(1, 2, figsize=(10, 3.4))
    for ax, (m, label) in zip(axes, (("reward", "mean task reward"), ("delay_s", "mean task delay (s)"))):
        _bars(ax, types, {p: [s["per_type"][t][m] for t in types] for p, s in run.summaries.items()}, label)
    for i, tt in enumerate(run.cfg.traffic.task_types):
        axes[1].plot([i - 0.4, i + 0.4], [tt.budget_s] * 2, "k:", lw=1)
    axes[0].legend()
    fig.suptitle(f"Per task type (dotted: the delay budget; {run.interval})")
    return fig


def fig_per_cell(run: RunFolder, pyplot):
    have = {p: s["distributions"]["per_cell"] for p, s in run.summaries.items() if "distributions" in s}
    if not have:
        return None
    cells = sorted(next(iter(have.values())), key=int)
    fig, axes = pyplot.subplots(1, 2, figsize=(10, 3.4))
    for ax, (m, label) in zip(axes, (("mean_reward", "mean task reward"),
                                     ("service_quality", "service quality (share of tasks served)"))):
        _bars(ax, [f"cell {c}" for c in cells], {p: [pc[c][m] for c in cells] for p, pc in have.items()}, label)
    axes[0].legend()
    fig.suptitle(f"Per cell ({run.interval})")
    return fig


def _groups(x: np.ndarray, discrete: bool) -> np.ndarray:
    """A bin index per task: each value its own bin for a discrete x with at most 12 values, else deciles."""
    values = np.unique(x)
    if discrete and values.size <= 12:
        return np.searchsorted(values, x)
    return np.clip(np.digitize(x, np.unique(np.quantile(x, np.linspace(0, 1, 11)))[1:-1]), 0, None)


def _binned(ax, x: np.ndarray, y: np.ndarray, label: str, c: str, discrete: bool) -> None:
    """Median and quartiles of y in each x bin, drawn against the bin's median x as a line and a band."""
    g = _groups(x, discrete)
    r = np.array([(np.median(x[g == b]), *np.percentile(y[g == b], (25, 50, 75))) for b in np.unique(g)])
    ax.plot(r[:, 0], r[:, 2], marker="o", ms=3, color=c, label=label)
    ax.fill_between(r[:, 0], r[:, 1], r[:, 3], color=c, alpha=0.15, lw=0)


def _delay_against(run: RunFolder, pyplot, column: str, xlabel: str, title: str, discrete: bool):
    tasks = run.tables("tasks.csv")
    if not tasks:
        return None
    fig, ax = pyplot.subplots(figsize=(6, 3.6))
    for i, (p, t) in enumerate(tasks.items()):
        served = t["refused"] == 0
        if served.any():
            _binned(ax, t[column][served], t["delay_s"][served], f"{p} ({served.sum()} served tasks)",
                    color(p, i), discrete)
    if discrete and max((t[column].max() for t in tasks.values()), default=0) > 50:
        ax.set_xscale("symlog", linthresh=1.0)        # loads from a few sequences to a loaded cloud's hundreds
    ax.set_xlabel(xlabel)
    ax.set_ylabel("task delay (s): median, interquartile band")
    ax.legend()
    ax.set_title(f"{title} ({run.episodes} episodes; refused tasks left out)")
    return fig


def fig_delay_vs_sinr(run: RunFolder, pyplot):
    return _delay_against(run, pyplot, "uplink_sinr_db", "uplink SINR (dB), in deciles", "Delay against SINR", False)


def fig_delay_vs_load(run: RunFolder, pyplot):
    return _delay_against(run, pyplot, "server_load_seqs", "chosen server's load at decision (sequences)",
                          "Delay against the chosen server's load", True)


def fig_server_load(run: RunFolder, pyplot):
    slots = run.tables("slots.csv")
    if not slots:
        return None
    n = len(slots)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = pyplot.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, (p, t) in zip(axes.flat, slots.items()):
        ep, slot = t["episode"].astype(int), t["slot"].astype(int)
        n_ep, horizon = ep.max() + 1, slot.max() + 1
        load = t["running"] + t["queued"]
        names = [a if np.isnan(c) else f"{a} (cell {int(c)})" for a, c in zip(t["action"], t["cell"])]
        for j, srv in enumerate(dict.fromkeys(names)):
            sel = np.array([nm == srv for nm in names])
            grid = np.full((n_ep, horizon), np.nan)
            grid[ep[sel], slot[sel]] = load[sel]
            stats = [mean_ci(grid[:, h]) for h in range(horizon)]
            m = np.array([s["mean"] for s in stats])
            ci = np.array([_ci(s) for s in stats])
            ax.plot(range(horizon), m, color=f"C{j % 10}", label=srv)
            ax.fill_between(range(horizon), m - ci, m + ci, color=f"C{j % 10}", alpha=0.15, lw=0)
        ax.set_title(p)
        ax.set_xlabel("slot")
    for ax in axes[:, 0]:
        ax.set_ylabel("own running + queued sequences")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes.flat[0].legend()
    fig.suptitle(f"Server load over the episode ({run.interval})")
    return fig


DRAW = {"cdf": fig_cdf, "per_type": fig_per_type, "per_cell": fig_per_cell, "delay_vs_sinr": fig_delay_vs_sinr,
        "delay_vs_load": fig_delay_vs_load, "server_load": fig_server_load}
NEEDS = {"cdf": "cdf.csv", "per_cell": "per-task outputs", "delay_vs_sinr": "tasks.csv",
         "delay_vs_load": "tasks.csv", "server_load": "slots.csv"}


def plot_run(run_dir: str, formats: tuple[str, ...] = ("png",), out_dir: str | None = None,
             log=print) -> dict[str, list[str]]:
    """Draw every figure of FIGURES the run's files allow into ``out_dir`` (default RUN_DIR/figures);
    returns {figure: paths written}; ``log`` is told of each figure skipped and why."""
    run = RunFolder(run_dir)
    out_dir = out_dir or os.path.join(run_dir, "figures")
    os.makedirs(out_dir, exist_ok=True)
    pyplot = plt()
    written = {}
    for name in FIGURES:
        fig = DRAW[name](run, pyplot)
        if fig is None:
            log(f"{name}: skipped, the run has no {NEEDS[name]} (a streamed run: rerun with --per-task on)")
            continue
        written[name] = save_figure(fig, os.path.join(out_dir, name), formats)
        pyplot.close(fig)
    return written
