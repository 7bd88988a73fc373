"""Distributions of a run's per-task outcomes: percentiles of delay and reward overall, per task type and per
cell, per-cell means with 95% t intervals over episodes, and the empirical CDFs behind them.

They need the per-task outputs (``RunSpec.per_task``: every run of up to 1,000 episodes by default); a streamed
run of more episodes keeps its per-episode sums only and has no distributions.
"""

from __future__ import annotations

import numpy as np

from experiment.files import write_csv
from jaxsim.config import SimConfig
from jaxsim.metrics import mean_ci

PERCENTILES = (50, 90, 95, 99)
METRICS = ("delay_s", "reward")
CDF_LEVELS = np.linspace(0.0, 1.0, 101)


def percentiles(x: np.ndarray) -> dict:
    """{"p50", "p90", "p95", "p99", "n"} of a sample (linear interpolation), NaN where it is empty."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return {**{f"p{p}": float("nan") for p in PERCENTILES}, "n": 0}
    return {**{f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(x, PERCENTILES))}, "n": int(x.size)}


def _per_episode_mean(values: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Each episode's mean of ``values`` over the tasks ``sel`` ([E, H, U]), NaN for an episode without one."""
    n = sel.sum((1, 2))
    s = np.where(sel, values, 0.0).sum((1, 2))
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def task_distributions(out: dict, cfg: SimConfig) -> dict:
    """{"delay_s": percentiles, "reward": ..., "per_type": {type: {...}}, "per_cell": {cell: {..., "mean_reward",
    "service_quality" (share of tasks meeting budget and floor), "mean_delay_s" with 95% t intervals over
    episodes}}} of one policy's per-task outputs ({field: [E, H, U]})."""
    mask = np.asarray(out["mask"], bool)
    block = lambda sel: {m: percentiles(np.asarray(out[m])[sel]) for m in METRICS}  # noqa: E731
    d = block(mask)
    d["per_type"] = {t: block(mask & (out["task_type"] == i)) for i, t in enumerate(cfg.type_names)}
    cells = {}
    for c in range(cfg.topology.n_cells):
        sel = mask & (out["cell"] == c)
        cells[str(c)] = {**block(sel), "mean_reward": mean_ci(_per_episode_mean(out["reward"], sel)),
                         "service_quality": mean_ci(_per_episode_mean(np.asarray(out["success"], float), sel)),
                         "mean_delay_s": mean_ci(_per_episode_mean(out["delay_s"], sel))}
    d["per_cell"] = cells
    return d


def write_cdfs(path: str, out: dict) -> None:
    """cdf.csv: the empirical quantiles of delay and reward at probabilities 0, 0.01, ..., 1 (the CDF's inverse,
    101 points: what a CDF plot draws)."""
    mask = np.asarray(out["mask"], bool)
    q = {m: np.quantile(np.asarray(out[m])[mask], CDF_LEVELS) if mask.any() else np.full(CDF_LEVELS.size, np.nan)
         for m in METRICS}
    write_csv(path, ["probability", *METRICS],
              ([f"{p:.2f}", *(f"{q[m][i]:.6g}" for m in METRICS)] for i, p in enumerate(CDF_LEVELS)))
