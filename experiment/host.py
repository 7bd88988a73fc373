"""Host policies (decided in Python between jitted steps: ICL, kNN, your own) and their runner.

A host policy follows :class:`HostPolicy`. The environment stays jitted and vmapped over the episodes
in flight; the policy's decision is the one host step per slot. Episode i uses the key schedule of
``jaxsim.rollout`` (``episode_key``, ``split_episode_key``, ``split_slot_key``), so a host policy sees the
same tasks, channels and background load as a jitted one: comparisons are paired. Episodes run in waves
of ``batch_episodes``; the policy's experience persists across waves.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from baselines.heuristics import greedy_policy
from jaxsim import env
from jaxsim.env import Observation
from jaxsim.params import EnvParams
from jaxsim.rollout import STEP_FIELDS, episode_keys, split_episode_key, split_slot_key


@runtime_checkable
class HostPolicy(Protocol):
    """What the host runner and the run directories need of a policy decided on the host.

    ``obs`` is the batch's :class:`jaxsim.env.Observation` as NumPy arrays [B, U, ...] (B episodes in flight;
    its privileged ``state`` is None);
    ``episodes`` [B] their indices. ``fallback`` is the greedy heuristic's actions [B, U] when
    ``needs_fallback``, else None.
    """
    needs_fallback: bool

    def decide(self, obs: Observation, episodes: np.ndarray, fallback: np.ndarray | None) -> np.ndarray:
        """Actions [B, U] int32 (masked-out entries are ignored)."""

    def observe(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray, episodes: np.ndarray,
                slot: int) -> None:
        """Each task's outcome (rewards [B, U]) after the slot."""

    def get_state(self) -> dict:
        """JSON-able state (random generator, counters) that, with ``save_experience``, resumes a run exactly."""

    def set_state(self, state: dict) -> None: ...

    def save_experience(self, directory: str) -> None:
        """Write array state (an experience pool) under ``directory`` (atomically)."""

    def load_experience(self, directory: str) -> None: ...

    def summary(self) -> dict:
        """Counters for the run's summary; ``decisions`` (tasks decided so far) is required."""


class SimpleHostPolicy:
    """A base for your own host policy: implement ``decide``; the rest keeps no state."""
    needs_fallback = False

    def __init__(self):
        self.decisions = 0

    def decide(self, obs, episodes, fallback):
        raise NotImplementedError

    def observe(self, obs, actions, rewards, episodes, slot):
        self.decisions += int(np.asarray(obs.mask).sum())

    def get_state(self) -> dict:
        return {"decisions": self.decisions}

    def set_state(self, state: dict) -> None:
        self.decisions = int(state["decisions"])

    def save_experience(self, directory: str) -> None:
        pass

    def load_experience(self, directory: str) -> None:
        pass

    def summary(self) -> dict:
        return {"decisions": self.decisions}


@jax.jit
def _reset(keys, params: EnvParams):
    return jax.vmap(lambda k: env.reset(k, params)[1])(keys)


@jax.jit
def _obs(state, params: EnvParams):
    """The batch's observations without the privileged full state (host policies decide from what a policy
    sees; the state stays on the device)."""
    return jax.vmap(lambda s: env.get_obs(params, s).replace(state=None))(state)


@jax.jit
def _greedy(state, params: EnvParams):
    return jax.vmap(lambda s: greedy_policy(None, env.get_obs(params, s), params))(state)


@jax.jit
def _step(keys, state, actions, params: EnvParams):
    def one(k, s, a):
        _, s, r, _, info = env.step(split_slot_key(k)[1], s, a, params)
        return s, r, {f: info[f] for f in STEP_FIELDS}
    return jax.vmap(one)(keys, state, actions)


def auto_batch_episodes(n_users: int, p_task: float, rows: int, n_episodes: int) -> int:
    """Episodes in flight so that a slot's call carries about two full forwards of ``rows`` prompts (the
    expected tasks of a slot are n_users x p_task per episode); between 1 and n_episodes."""
    per_episode = max(n_users * p_task, 1e-9)
    return int(min(max(n_episodes, 1), max(1, round(2 * rows / per_episode))))


def rollout_host(key, params: EnvParams, policy: HostPolicy, n_episodes: int, batch_episodes: int = 4,
                 progress: Callable[[int], None] | None = None, log: Callable[[dict], None] | None = None,
                 first_episode: int = 0, on_wave: Callable[[dict, np.ndarray], None] | None = None):
    """Run a host policy for episodes first_episode .. n_episodes - 1; returns the same arrays as
    ``jaxsim.rollout.rollout`` (None when there is nothing left to run).

    ``log(record)`` receives one record per finished episode (reward, decisions/s and the policy's numeric
    summary so far); ``on_wave(out, episodes)`` each finished wave's arrays (for saving progress: a resumed
    run passes ``first_episode`` = episodes done, a multiple of ``batch_episodes``, and the policy state
    saved with them).
    """
    if not isinstance(policy, HostPolicy):
        raise TypeError(f"{type(policy).__name__} is not a HostPolicy (experiment.host): it needs "
                        "needs_fallback, decide, observe, get_state, set_state, save_experience, load_experience, summary")
    if n_episodes < 1 or batch_episodes < 1:
        raise ValueError(f"n_episodes = {n_episodes}, batch_episodes = {batch_episodes}: allowed >= 1")
    outs = []
    for start in range(first_episode, n_episodes, batch_episodes):
        ep = np.arange(start, min(start + batch_episodes, n_episodes))
        k_reset, slot_keys = jax.vmap(lambda k: split_episode_key(k, params.horizon))(
            episode_keys(key, start, len(ep)))                                          # [B], [B, H]
        state = _reset(k_reset, params)
        rewards, tasks = [], []
        t0 = time.perf_counter()
        d0 = policy.summary()["decisions"]
        for t in range(params.horizon):
            obs = jax.tree.map(np.asarray, _obs(state, params))
            fallback = np.asarray(_greedy(state, params)) if policy.needs_fallback else None
            actions = np.asarray(policy.decide(obs, ep, fallback), np.int32)
            state, r, info = _step(slot_keys[:, t], state, jnp.asarray(actions), params)
            info = jax.tree.map(np.asarray, info)
            policy.observe(obs, actions, info["reward"], ep, t)
            rewards.append(np.asarray(r))
            tasks.append(info)
        wall = time.perf_counter() - t0
        out = {"slot_reward": np.stack(rewards, 1),
               **{f: np.stack([x[f] for x in tasks], 1) for f in STEP_FIELDS}}
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
