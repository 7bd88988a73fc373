"""Summary statistics of rollouts: per-episode metrics and 95% confidence intervals.

Episodes are the independent samples: every interval is mean +- 1.96 x the
standard error over episode-level values (normal approximation; with fewer
than 2 episodes the half-width is reported as NaN).
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959964


def mean_ci(x) -> dict:
    """{"mean", "ci95", "n"} of a 1-D sample (NaNs dropped)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": math.nan, "ci95": math.nan, "n": 0}
    half = Z95 * x.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": float(x.mean()), "ci95": float(half), "n": n}


def episode_metrics(out: dict, task_type: int | None = None) -> dict[str, np.ndarray]:
    """Per-episode reward, service quality, mean delay and quality, [E] each.

    reward: DESIGN.md §6 (mean over slots of the slot's mean task reward); with `task_type`,
    the mean reward of that type's tasks instead. Episodes without such a task give NaN.
    """
    mask = out["mask"].astype(bool)
    if task_type is not None:
        mask = mask & (out["task_type"] == task_type)
    n = mask.sum((1, 2)).astype(np.float64)
    per = lambda f: np.where(n > 0, (np.where(mask, out[f], 0)).sum((1, 2)) / np.maximum(n, 1), np.nan)  # noqa: E731
    reward = out["slot_reward"].mean(1) if task_type is None else per("reward")
    return {"reward": reward, "service_quality": per("success"), "delay_s": per("delay_s"),
            "quality": per("quality"), "n_tasks": n}


def summarise(out: dict, type_names: list[str]) -> dict:
    """Overall and per-task-type summaries with 95% intervals."""
    def block(tt):
        em = episode_metrics(out, tt)
        d = {k: mean_ci(v) for k, v in em.items() if k != "n_tasks"}
        d["n_tasks"] = int(em["n_tasks"].sum())
        return d
    s = block(None)
    mask = out["mask"].astype(bool)
    s["delay_parts_s"] = {k: float(out[k][mask].mean()) if mask.any() else math.nan
                          for k in ("uplink_s", "backhaul_s", "wait_s", "prefill_s", "decode_s", "downlink_s")}
    s["refused_share"] = float(out["refused"][mask].mean()) if mask.any() else math.nan
    s["action_share"] = np.bincount(out["action"][mask], minlength=int(out["action"].max()) + 1).astype(float).tolist()
    total = sum(s["action_share"]) or 1.0
    s["action_share"] = [a / total for a in s["action_share"]]
    s["per_type"] = {name: block(i) for i, name in enumerate(type_names)}
    return s
