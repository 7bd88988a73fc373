"""Rollouts of host policies (ICL, kNN): the environment stays jitted and vmapped over the
episodes in flight; the policy's decision is the one host step per slot.

Episode i uses the same keys as ``jaxsim.rollout.rollout`` (``fold_in(key, i)``, then the same
splits), so every policy sees the same tasks, channels and background load: comparisons are
paired. Episodes run in waves of ``batch_episodes``; the policy's pool persists across waves,
so later episodes decide with more experience.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

from jaxsim import env
from jaxsim.params import EnvParams
from jaxsim.rollout import TASK_FIELDS

from baselines.heuristics import greedy_policy

from .prompt import task_features


@jax.jit
def _reset(keys, params: EnvParams):
    return jax.vmap(lambda k: env.reset(k, params)[1])(keys)


@jax.jit
def _obs(state, params: EnvParams):
    return jax.vmap(lambda s: env.get_obs(params, s))(state)


@jax.jit
def _greedy(state, params: EnvParams):
    return jax.vmap(lambda s: greedy_policy(None, env.get_obs(params, s), params))(state)


@jax.jit
def _step(keys, state, actions, params: EnvParams):
    def one(k, s, a):
        _, s, r, _, info = env.step(k, s, a, params)
        return s, r, {f: info[f] for f in TASK_FIELDS}
    return jax.vmap(one)(keys, state, actions)


def auto_batch_episodes(n_users: int, p_task: float, rows: int, n_episodes: int) -> int:
    """Episodes in flight so that a slot's call carries about two full forwards of ``rows`` prompts (the
    expected tasks of a slot are n_users x p_task per episode); between 1 and n_episodes."""
    per_episode = max(n_users * p_task, 1e-9)
    return int(min(max(n_episodes, 1), max(1, round(2 * rows / per_episode))))


def rollout_host(key, params: EnvParams, policy, n_episodes: int, batch_episodes: int = 4,
                 progress: Callable[[int], None] | None = None, log: Callable[[dict], None] | None = None,
                 first_episode: int = 0, on_wave: Callable[[dict, np.ndarray], None] | None = None):
    """Run a host policy for episodes first_episode .. n_episodes - 1; returns the same arrays as
    ``jaxsim.rollout.rollout`` (None when there is nothing left to run).

    ``log(record)`` receives one record per finished episode (reward, decisions/s, prompt
    length, exploratory and truncated shares so far); ``on_wave(out, episodes)`` each finished
    wave's arrays (for saving progress: a resumed run passes ``first_episode`` = episodes done,
    a multiple of ``batch_episodes``, and the policy state saved with them).
    """
    if n_episodes < 1 or batch_episodes < 1:
        raise ValueError(f"n_episodes = {n_episodes}, batch_episodes = {batch_episodes}: allowed >= 1")
    outs = []
    for start in range(first_episode, n_episodes, batch_episodes):
        ep = np.arange(start, min(start + batch_episodes, n_episodes))
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(ep)
        k_reset, k_run = _split2(keys)
        state = _reset(k_reset, params)
        slot_keys = jax.vmap(lambda k: jax.random.split(k, params.horizon))(k_run)     # [B, H, 2]
        rewards, tasks = [], []
        t0 = time.perf_counter()
        d0 = policy.stats["decisions"]
        for t in range(params.horizon):
            k_pol_step = jax.vmap(jax.random.split)(slot_keys[:, t])                    # [B, 2, 2]
            feats, types, mask = task_features(_obs(state, params))
            fallback = np.asarray(_greedy(state, params)) if getattr(policy, "needs_fallback", False) else None
            actions = policy.decide(feats, types, mask, ep, fallback)
            state, r, info = _step(k_pol_step[:, 1], state, jax.numpy.asarray(actions), params)
            info = jax.tree.map(np.asarray, info)
            policy.observe(feats, types, mask, actions, info["reward"], ep, t)
            rewards.append(np.asarray(r))
            tasks.append(info)
        wall = time.perf_counter() - t0
        out = {"slot_reward": np.stack(rewards, 1),
               **{f: np.stack([x[f] for x in tasks], 1) for f in TASK_FIELDS}}
        outs.append(out)
        if log is not None:
            s = policy.summary()
            dec = s["decisions"] - d0
            for j, e in enumerate(ep):
                log({"episode": int(e), "reward": float(out["slot_reward"][j].mean()),
                     "decisions_per_s": dec / wall if wall > 0 else float("nan"),
                     **{k: v for k, v in s.items() if isinstance(v, (int, float))}})
        if on_wave is not None:
            on_wave(out, ep)
        if progress is not None:
            progress(len(ep))
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else None


def _split2(keys):
    pair = jax.vmap(jax.random.split)(keys)          # [B, 2, ...]
    return pair[:, 0], pair[:, 1]
