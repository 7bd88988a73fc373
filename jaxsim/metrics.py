"""Summary statistics of rollouts: per-episode sums, per-episode metrics and 95% confidence intervals.

Two steps, so that a million-episode run never holds its per-task arrays:
  ``EpisodeStats``  (JAX, per episode, run on the device inside the rollout): sums over one
                    episode's tasks per task type, delay parts, refusals and action counts;
  ``summarise_stats`` (NumPy, on the host): per-episode metrics and the run's summary.
``summarise(out, ...)`` chains them for full rollout outputs (``out`` with per-task arrays).

Episodes are the independent samples: every interval is mean +- t x the standard error over
episode-level values, t the 97.5% quantile of Student's t with n - 1 degrees of freedom for n
episodes (4.303 for 3 episodes, 2.093 for 20, 1.960 in the limit), so that the 95% coverage holds
for the few episodes of the figures too. The key ``ci95`` holds that half-width and ``t95`` the
critical value used; with fewer than 2 episodes both are NaN. ``paired_ci`` is the same interval
for per-episode differences between two policies on the same episodes (the natural comparison
when every policy sees the same episodes: the episode-to-episode spread cancels).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .env import DELAY_PARTS

PER_TYPE_FIELDS = ("reward", "success", "delay_s", "quality")


@functools.lru_cache(maxsize=None)
def t95(n: int) -> float:
    """The two-sided 95% critical value of Student's t for a sample of ``n`` (n - 1 degrees of freedom);
    NaN for n < 2."""
    if n < 2:
        return math.nan
    from scipy.stats import t          # scipy: a dependency of jax
    return float(t.ppf(0.975, n - 1))


def mean_ci(x) -> dict:
    """{"mean", "ci95", "n", "t95"} of a 1-D sample (NaNs dropped): ci95 = t95 x sd / sqrt(n), t95 the
    Student-t critical value for n - 1 degrees of freedom (``t95``)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": math.nan, "ci95": math.nan, "n": 0, "t95": math.nan}
    t = t95(n)
    half = t * x.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": float(x.mean()), "ci95": float(half), "n": n, "t95": t}


def paired_ci(a, b) -> dict:
    """``mean_ci`` of the per-episode differences a - b of two policies on the same episodes (episodes where
    either value is NaN dropped)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_ci: {a.shape} and {b.shape} episodes; a paired difference needs the same episodes")
    return mean_ci(a - b)


@dataclass(frozen=True)
class EpisodeStats:
    """One episode's sums, from its ``slot_reward`` [H] and task fields [H, U] (pure JAX).

    Returns {"slot_reward": mean slot reward, "n": tasks per type [T],
    "<f>": sum of f over each type's tasks [T] for f in PER_TYPE_FIELDS,
    "<part>": sum of each delay part over all tasks, "refused": refusals,
    "actions": tasks per action [A]}. Hashable, so it can be a static jit argument.
    """
    n_types: int
    n_actions: int

    def __call__(self, ep: dict) -> dict:
        mask = ep["mask"].astype(bool)
        of_type = mask[..., None] & (ep["task_type"][..., None] == jnp.arange(self.n_types))    # [H, U, T]
        per_type = lambda x: jnp.where(of_type, x[..., None].astype(jnp.float32), 0.0).sum((0, 1))  # noqa: E731
        total = lambda x: jnp.where(mask, x.astype(jnp.float32), 0.0).sum()                        # noqa: E731
        chosen = mask[..., None] & (ep["action"][..., None] == jnp.arange(self.n_actions))
        return {"slot_reward": ep["slot_reward"].astype(jnp.float32).mean(), "n": of_type.sum((0, 1)),
                **{f: per_type(ep[f]) for f in PER_TYPE_FIELDS},
                **{p: total(ep[p]) for p in DELAY_PARTS}, "refused": total(ep["refused"]),
                "actions": chosen.sum((0, 1))}


_stats_batch = jax.jit(lambda out, stats: jax.vmap(stats)(out), static_argnames="stats")


def episode_stats(out: dict, n_types: int, n_actions: int) -> dict[str, np.ndarray]:
    """``EpisodeStats`` of every episode of a full rollout output ({"slot_reward": [E, H], field: [E, H, U]})."""
    fields = ("slot_reward", "mask", "task_type", "action", *PER_TYPE_FIELDS, *DELAY_PARTS, "refused")
    return jax.tree.map(np.asarray, _stats_batch({f: out[f] for f in fields}, EpisodeStats(n_types, n_actions)))


def episode_table(stats: dict, task_type: int | None = None) -> dict[str, np.ndarray]:
    """Per-episode reward, service quality, mean delay and quality, and task count, [E] each, from
    per-episode ``EpisodeStats``.

    reward: DESIGN.md §6 (mean over slots of the slot's mean task reward); with `task_type`,
    the mean reward of that type's tasks instead. Episodes without such a task give NaN.
    """
    n_t = np.asarray(stats["n"], np.float64)
    n = n_t.sum(-1) if task_type is None else n_t[:, task_type]

    def mean_of(f):
        s = np.asarray(stats[f], np.float64)
        s = s.sum(-1) if task_type is None else s[:, task_type]
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)
    reward = np.asarray(stats["slot_reward"], np.float64) if task_type is None else mean_of("reward")
    return {"reward": reward, "service_quality": mean_of("success"), "delay_s": mean_of("delay_s"),
            "quality": mean_of("quality"), "n_tasks": n}


def summarise_stats(stats: dict, type_names: list[str]) -> dict:
    """Overall and per-task-type summaries with 95% t intervals, from per-episode ``EpisodeStats``."""
    def block(tt):
        em = episode_table(stats, tt)
        d = {k: mean_ci(v) for k, v in em.items() if k != "n_tasks"}
        d["n_tasks"] = int(em["n_tasks"].sum())
        return d
    s = block(None)
    n_all = float(np.asarray(stats["n"], np.float64).sum())
    share = lambda x: float(np.asarray(x, np.float64).sum() / n_all) if n_all else math.nan  # noqa: E731
    s["delay_parts_s"] = {p: share(stats[p]) for p in DELAY_PARTS}
    s["refused_share"] = share(stats["refused"])
    s["action_share"] = [share(stats["actions"][:, a]) for a in range(stats["actions"].shape[1])]
    s["per_type"] = {name: block(i) for i, name in enumerate(type_names)}
    return s


def episode_metrics(out: dict, n_types: int, n_actions: int, task_type: int | None = None) -> dict[str, np.ndarray]:
    """``episode_table`` of a full rollout output."""
    return episode_table(episode_stats(out, n_types, n_actions), task_type)


def summarise(out: dict, type_names: list[str], n_actions: int) -> dict:
    """``summarise_stats`` of a full rollout output."""
    return summarise_stats(episode_stats(out, len(type_names), n_actions), type_names)
