"""Per-task features, the running observation normaliser, and the Flax actor and critic.

Shapes: U task slots (one per user), F per-task features, G slot-level (global)
features, K actions. Every function works on one slot ([U, F]) or on any
leading batch dimensions ([..., U, F]).

Design (see docs/ppo.md):

* **Actor** — one MLP with weights shared over the slot's tasks. Task i's input
  is its own features, the masked mean of the present tasks' features (what
  else competes for the servers in this slot) and the global features; the
  output is K logits for task i. Actions of different tasks are independent
  given the observation (a factorised categorical policy).
* **Critic** — values the slot. A slot head reads [masked mean of the task
  features, global features] and gives s; a per-task head (shared weights)
  gives v_i. Task i's baseline is b_i = s + v_i and the slot value is
  V = s + mean_{i present} v_i (= s for an empty slot), so V is exactly the
  mean of the present tasks' baselines. This lets every task be credited with
  its own reward while the critic stays a slot value (ppo.py, ``gae``).
* Absent tasks are replaced by zeros (``jnp.where``) at the input of both
  networks, so nothing about them reaches any output or any gradient.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsim.env import Observation
from jaxsim.params import EnvParams

from .heuristics import estimate_rewards, greedy_sequential_policy

REWARD_CLIP = (-3.0, 2.0)   # estimated rewards are clipped to this range before use as features
NORM_CLIP = 10.0            # normalised features are clipped to +-NORM_CLIP
NORM_EPS = 1e-8


# --------------------------------------------------------------------------
# features (observation only: never obs.state)
# --------------------------------------------------------------------------
def n_task_features(params: EnvParams) -> int:
    return params.n_types + 8 + 7 * params.n_actions


def n_global_features(params: EnvParams) -> int:
    return params.n_actions + 2


def task_features(obs: Observation, params: EnvParams) -> jnp.ndarray:
    """Per-task features from the observation alone, [U, F] (F = ``n_task_features``).

    one-hot task type (T); log prompt and output tokens; log budget (s); min quality;
    SINR (dB / 20); log (1 + sequences) on each action's server (K); tasks in the slot
    per user and per user of the cell; slot / horizon; the obs-only reward estimate of
    every action (``estimate_rewards``, clipped, K) and its gap to the task's best
    estimate (K); the estimated best action one-hot (K). The slot's competition: free entries on each
    action's server (log, K); the other tasks of the slot whose best estimate uses the same server, per
    free entry (K); and ``greedy_sequential``'s action one-hot (K), which sees the load and refusals the
    earlier tasks of the slot add.
    """
    f32 = jnp.float32
    est = jnp.clip(estimate_rewards(obs, params), *REWARD_CLIP)                       # [U, K]
    u = obs.mask.shape[-1]
    cols = [
        jax.nn.one_hot(obs.task_type, params.n_types, dtype=f32),
        jnp.log1p(obs.prompt_tokens)[:, None] / 8.0,
        jnp.log1p(obs.output_tokens)[:, None] / 8.0,
        jnp.log(obs.budget_s)[:, None] / 3.0,
        obs.min_quality[:, None],
        obs.sinr_db[:, None] / 20.0,
        jnp.log1p(obs.load_seqs) / 7.0,
        (obs.n_tasks / params.n_users)[:, None],
        (obs.n_cell_tasks / params.users_per_cell)[:, None],
        jnp.broadcast_to(obs.slot / params.horizon, (u, 1)).astype(f32),
        est,
        est - est.max(-1, keepdims=True),
        jax.nn.one_hot(jnp.argmax(est, -1), params.n_actions, dtype=f32),
        jnp.log1p(obs.free_seqs) / 7.0,
        _rivals(obs, params, est) / jnp.maximum(obs.free_seqs, 1.0),
        jax.nn.one_hot(greedy_sequential_policy(None, obs, params), params.n_actions, dtype=f32),
    ]
    x = jnp.concatenate([c.astype(f32) for c in cols], axis=-1)
    return jnp.where(obs.mask[:, None], x, 0.0)


def _rivals(obs: Observation, params: EnvParams, est) -> jnp.ndarray:
    """[U, K]: the other present tasks of the slot whose best estimate is the server action k would use for task u."""
    server = params.act_server_base[None, :] + params.act_is_edge[None, :] * obs.cell[:, None]     # [U, K]
    best = jnp.take_along_axis(server, jnp.argmax(est, -1)[:, None], 1)[:, 0]                     # [U]
    per_server = jnp.zeros(params.n_servers).at[best].add(obs.mask.astype(jnp.float32))          # [V]
    mine = jax.nn.one_hot(jnp.argmax(est, -1), params.n_actions) * obs.mask[:, None]
    return per_server[server] - mine


def global_features(obs: Observation, params: EnvParams) -> jnp.ndarray:
    """Slot-level features, [G]: mean log load of each action's servers over all users
    (server state, not task data), tasks in the slot per user, slot / horizon."""
    load = jnp.log1p(obs.load_seqs).mean(0) / 7.0                                     # [K]
    frac = obs.mask.sum() / params.n_users
    return jnp.concatenate([load, jnp.stack([frac, obs.slot / params.horizon])]).astype(jnp.float32)


# --------------------------------------------------------------------------
# running mean / variance (carried in the train state)
# --------------------------------------------------------------------------
@struct.dataclass
class RunningStats:
    mean: jnp.ndarray   # [D]
    var: jnp.ndarray    # [D]
    count: jnp.ndarray  # []

    @classmethod
    def create(cls, dim: int) -> "RunningStats":
        return cls(jnp.zeros((dim,), jnp.float32), jnp.ones((dim,), jnp.float32), jnp.asarray(1e-4, jnp.float32))

    def update(self, x: jnp.ndarray, weight: jnp.ndarray) -> "RunningStats":
        """Merge a batch x [N, D] with 0/1 weights [N] (parallel-variance formula)."""
        w = weight.astype(jnp.float32)[:, None]
        n = w.sum()
        n_safe = jnp.maximum(n, 1.0)
        b_mean = (x * w).sum(0) / n_safe
        b_var = (jnp.square(x - b_mean) * w).sum(0) / n_safe
        tot = self.count + n
        delta = b_mean - self.mean
        mean = self.mean + delta * n / tot
        m2 = self.var * self.count + b_var * n + jnp.square(delta) * self.count * n / tot
        new = RunningStats(mean, m2 / tot, tot)
        return jax.tree.map(lambda a, b: jnp.where(n > 0, a, b), new, self)

    def normalize(self, x: jnp.ndarray) -> jnp.ndarray:
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + NORM_EPS), -NORM_CLIP, NORM_CLIP)


@struct.dataclass
class Normalizer:
    task: RunningStats     # per-task features, over present tasks
    glob: RunningStats     # global features, over slots

    @classmethod
    def create(cls, params: EnvParams) -> "Normalizer":
        return cls(RunningStats.create(n_task_features(params)), RunningStats.create(n_global_features(params)))

    def update(self, x_raw, mask, g_raw) -> "Normalizer":
        """x_raw [..., U, F], mask [..., U], g_raw [..., G]."""
        f, g = x_raw.shape[-1], g_raw.shape[-1]
        return Normalizer(self.task.update(x_raw.reshape(-1, f), mask.reshape(-1)),
                          self.glob.update(g_raw.reshape(-1, g), jnp.ones(g_raw.reshape(-1, g).shape[0])))

    def __call__(self, x_raw, mask, g_raw):
        x = jnp.where(mask[..., None], self.task.normalize(x_raw), 0.0)
        return x, self.glob.normalize(g_raw)


# --------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------
def masked_mean(x, mask, axis):
    """Mean of x over `axis` where mask is True (0 where none), x [..., U, D], mask [..., U]."""
    m = mask[..., None].astype(x.dtype)
    return (x * m).sum(axis) / jnp.maximum(m.sum(axis), 1.0)


def _slot_inputs(x, mask, g):
    """Each task's input [..., U, 2F+G]: its features, the slot's mean task features, global features."""
    x = jnp.where(mask[..., None], x, 0.0)
    ctx = masked_mean(x, mask, axis=-2)                                        # [..., F]
    u = x.shape[-2]
    rep = lambda a: jnp.broadcast_to(a[..., None, :], a.shape[:-1] + (u, a.shape[-1]))  # noqa: E731
    return jnp.concatenate([x, rep(ctx), rep(g)], axis=-1), ctx


class MLP(nn.Module):
    hidden: Sequence[int]
    out: int
    out_scale: float

    @nn.compact
    def __call__(self, h):
        for width in self.hidden:
            h = nn.tanh(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2)),
                                 bias_init=nn.initializers.zeros)(h))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.out_scale),
                        bias_init=nn.initializers.zeros)(h)


class Actor(nn.Module):
    """Per-task categorical policy with weights shared over the slot's tasks: logits [..., U, K]."""
    hidden: Sequence[int]
    n_actions: int

    @nn.compact
    def __call__(self, x, mask, g):
        h, _ = _slot_inputs(x, mask, g)
        return MLP(self.hidden, self.n_actions, 0.01, name="torso")(h)


class Critic(nn.Module):
    """Slot value: task baselines b [..., U] (b_i = s + v_i) and slot value V [...] (s + mean v_i)."""
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x, mask, g):
        h, ctx = _slot_inputs(x, mask, g)
        v_task = MLP(self.hidden, 1, 1.0, name="task_head")(h)[..., 0]                        # [..., U]
        v_task = jnp.where(mask, v_task, 0.0)
        s = MLP(self.hidden, 1, 1.0, name="slot_head")(jnp.concatenate([ctx, g], -1))[..., 0]  # [...]
        n = mask.sum(-1)
        value = s + v_task.sum(-1) / jnp.maximum(n, 1)
        return s[..., None] + v_task, value


def masked_log_prob(logits, action, mask):
    """log pi(a_i | s) per task [..., U]; 0 for absent tasks."""
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]
    return jnp.where(mask, logp, 0.0)


def masked_entropy(logits, mask):
    lp = jax.nn.log_softmax(logits)
    return jnp.where(mask, -(jnp.exp(lp) * lp).sum(-1), 0.0)
