"""PPO actor-critic for task offloading, PureJaxRL-style: the training loop is one jitted function.

    cfg = PPOConfig(n_updates=200)
    result = train(key, cfg, env_params, ckpt_dir="runs/ppo/ckpt", sim_config=sim_cfg)
    policy, policy_params = load_ppo_policy("runs/ppo/ckpt")
    rollout(key, env_params, policy, policy_params, n_episodes)

One update = ``n_envs`` vmapped environments each play one full episode
(``params.horizon`` slots, ``lax.scan``) with the current stochastic policy;
GAE by a reverse ``lax.scan``; ``update_epochs`` epochs of ``n_minibatches``
shuffled minibatches of slots (nested scans); optax Adam with global-norm
clipping and a linearly annealed learning rate. ``train_segment`` runs
``n_updates`` such updates in one ``jax.jit``; ``train`` calls it in segments of
``checkpoint_every`` updates and saves an orbax checkpoint between segments,
so an interrupted run resumes from its last checkpoint and ends bit-identical
to an uninterrupted one (same segment boundaries, same compiled code).

Credit assignment (details in docs/ppo.md): every task is an independent
categorical decision; task i's advantage uses its own reward r_i and the
critic's task baseline b_i, and bootstraps with the slot value V of the next
slot (V = mean of the present tasks' baselines), i.e.
    delta_i(t) = r_i(t) + gamma V(t+1) - b_i(t),
    A_i(t)     = delta_i(t) + gamma lambda A_slot(t+1),
where A_slot is the ordinary GAE of the slot reward with V (the mean of A_i
over the slot's tasks). Absent tasks are masked out of every term.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import serialization, struct

from jaxsim import distributed, env
from jaxsim.config import SimConfig, config_from_dict, config_hash, config_to_dict
from jaxsim.env import Observation
from jaxsim.fields import ConfigError, Range, bounded, check_fields, flag
from jaxsim.params import EnvParams, make_params

from .ppo_networks import (Actor, Critic, Normalizer, global_features, masked_entropy, masked_log_prob,
                           n_global_features, n_task_features, task_features)


_WIDTH = Range(1, 4096, integer=True)


# --------------------------------------------------------------------------
# hyperparameters
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class PPOConfig:
    seed: int = bounded(0, 0, 2**31 - 1, integer=True)     # used by the scripts; train() takes its key explicitly
    n_envs: int = bounded(64, 1, 65536, integer=True)      # parallel environments = episodes per update
    n_updates: int = bounded(150, 1, 10_000_000, integer=True)   # PPO updates (each: n_envs full episodes)
    update_epochs: int = bounded(4, 1, 100, integer=True)
    n_minibatches: int = bounded(8, 1, 65536, integer=True)  # minibatches of slots per epoch (divides n_envs x horizon)
    lr: float = bounded(1e-3, 0.0, 1.0, lo_open=True)
    anneal_lr: bool = flag(True)                           # linear decay to 0 over the whole run
    max_grad_norm: float = bounded(0.5, 0.0, 1e6, lo_open=True)
    gamma: float = bounded(0.9, 0.0, 1.0)                  # per slot
    gae_lambda: float = bounded(0.9, 0.0, 1.0)
    clip_eps: float = bounded(0.2, 0.0, 10.0, lo_open=True)
    ent_coef: float = bounded(0.003, 0.0, 10.0)
    vf_coef: float = bounded(0.5, 0.0, 100.0)
    hidden: tuple[int, ...] = (64, 64)                     # layer widths, each in [1, 4096]
    checkpoint_every: int = bounded(25, 0, 10_000_000, integer=True)  # updates per jitted segment; 0: one segment
    keep_checkpoints: int = bounded(3, 1, 1000, integer=True)

    def validate(self, env_params: EnvParams | None = None) -> "PPOConfig":
        check_fields(self, "ppo")
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise ConfigError(f"ppo.hidden = {self.hidden!r}: must be a non-empty tuple of integers in [1, 4096]")
        for i, h in enumerate(self.hidden):
            _WIDTH.check(f"ppo.hidden[{i}]", h)
        if env_params is not None:
            n_slots = self.n_envs * env_params.horizon
            if n_slots % self.n_minibatches:
                raise ConfigError(f"ppo.n_minibatches = {self.n_minibatches} must divide n_envs x horizon "
                                  f"= {self.n_envs} x {env_params.horizon} = {n_slots}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PPOConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"ppo: unknown field(s) {unknown}; allowed: {sorted(known)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d).validate()


# --------------------------------------------------------------------------
# train state
# --------------------------------------------------------------------------
@struct.dataclass
class RunnerState:
    params: dict          # {"actor": ..., "critic": ...}
    opt_state: Any
    norm: Normalizer
    rng: jnp.ndarray      # raw uint32 [2] PRNG key
    update: jnp.ndarray   # [] int32, updates done


class Transition(NamedTuple):
    x: jnp.ndarray          # [..., U, F] normalised task features
    g: jnp.ndarray          # [..., G] normalised global features
    mask: jnp.ndarray       # [..., U]
    action: jnp.ndarray     # [..., U]
    logp: jnp.ndarray       # [..., U]
    b: jnp.ndarray          # [..., U] task baselines
    value: jnp.ndarray      # [...] slot value
    r_task: jnp.ndarray     # [..., U]
    r_slot: jnp.ndarray     # [...]
    done: jnp.ndarray       # [...]
    success: jnp.ndarray    # [..., U]


def networks(cfg: PPOConfig, env_params: EnvParams):
    return Actor(cfg.hidden, env_params.n_actions), Critic(cfg.hidden)


def make_optimizer(cfg: PPOConfig):
    n_steps = cfg.n_updates * cfg.update_epochs * cfg.n_minibatches
    lr = optax.linear_schedule(cfg.lr, 0.0, n_steps) if cfg.anneal_lr else cfg.lr
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr, eps=1e-5))


def _obs_features(obs, env_params):
    """Vmapped over environments: raw task features [E, U, F], global features [E, G]."""
    return (jax.vmap(task_features, in_axes=(0, None))(obs, env_params),
            jax.vmap(global_features, in_axes=(0, None))(obs, env_params))


@partial(jax.jit, static_argnames=("cfg",))
def init_state(key, cfg: PPOConfig, env_params: EnvParams) -> RunnerState:
    """Network weights, optimiser state and a normaliser primed on the first slots of n_envs episodes."""
    rng, k_actor, k_critic, k_norm = jax.random.split(key, 4)
    actor, critic = networks(cfg, env_params)
    u = env_params.n_users
    x0 = jnp.zeros((u, n_task_features(env_params)))
    m0 = jnp.ones((u,), bool)
    g0 = jnp.zeros((n_global_features(env_params),))
    params = {"actor": actor.init(k_actor, x0, m0, g0), "critic": critic.init(k_critic, x0, m0, g0)}
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_norm, cfg.n_envs), env_params)
    x_raw, g_raw = _obs_features(obs, env_params)
    norm = Normalizer.create(env_params).update(x_raw, obs.mask, g_raw)
    return RunnerState(params, make_optimizer(cfg).init(params), norm, rng, jnp.int32(0))


# --------------------------------------------------------------------------
# one update
# --------------------------------------------------------------------------
def _collect(runner: RunnerState, key, cfg: PPOConfig, env_params: EnvParams, mesh=None):
    """n_envs full episodes with the stochastic policy; returns (Transition [H, E, ...], raw features).

    With a mesh, the environments are sharded over its devices (every process's, on a cluster);
    XLA partitions the rest of the update around them and all-reduces the gradients."""
    actor, critic = networks(cfg, env_params)
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, cfg.n_envs), env_params)
    if mesh is not None:
        obs, state = jax.lax.with_sharding_constraint((obs, state), distributed.episode_sharding(mesh))

    def body(carry, k):
        obs, state = carry
        k_act, k_step = jax.random.split(k)
        x_raw, g_raw = _obs_features(obs, env_params)
        x, g = runner.norm(x_raw, obs.mask, g_raw)
        logits = actor.apply(runner.params["actor"], x, obs.mask, g)
        action = jax.random.categorical(k_act, logits).astype(jnp.int32)
        b, value = critic.apply(runner.params["critic"], x, obs.mask, g)
        obs2, state2, r_slot, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, cfg.n_envs), state, action, env_params)
        tr = Transition(x, g, obs.mask, action, masked_log_prob(logits, action, obs.mask), b, value,
                        info["reward"], r_slot, done, info["success"])
        return (obs2, state2), (tr, x_raw, g_raw)

    _, (traj, x_raw, g_raw) = jax.lax.scan(body, (obs, state), jax.random.split(k_run, env_params.horizon))
    return traj, x_raw, g_raw


def gae(traj: Transition, gamma: float, lam: float):
    """Per-task advantages [H, E, U] and returns (task [H, E, U], slot [H, E]) by a reverse scan.

    The episode ends at the horizon: the value after the last slot is 0.
    """
    not_done = 1.0 - traj.done.astype(jnp.float32)
    next_value = jnp.concatenate([traj.value[1:], jnp.zeros_like(traj.value[:1])]) * not_done

    def body(a_next_slot, t):
        r_task, r_slot, b, value, v_next, nd = t
        a_task = r_task + gamma * v_next[:, None] - b + gamma * lam * (nd * a_next_slot)[:, None]
        a_slot = r_slot + gamma * v_next - value + gamma * lam * nd * a_next_slot
        return a_slot, (a_task, a_slot)

    _, (a_task, a_slot) = jax.lax.scan(
        body, jnp.zeros_like(traj.value[0]),
        (traj.r_task, traj.r_slot, traj.b, traj.value, next_value, not_done), reverse=True)
    return a_task, a_task + traj.b, a_slot + traj.value


def _masked_mean(x, mask):
    return jnp.where(mask, x, 0.0).sum() / jnp.maximum(mask.sum(), 1)


def loss_fn(net_params, batch: Transition, adv, ret_task, ret_slot, cfg: PPOConfig, env_params: EnvParams):
    """Clipped PPO loss over a minibatch of slots; absent tasks contribute nothing (and get no gradient)."""
    actor, critic = networks(cfg, env_params)
    mask = batch.mask
    logits = actor.apply(net_params["actor"], batch.x, mask, batch.g)
    logp = masked_log_prob(logits, batch.action, mask)
    log_ratio = jnp.where(mask, logp - batch.logp, 0.0)
    ratio = jnp.exp(log_ratio)
    adv_mean = _masked_mean(adv, mask)
    adv_std = jnp.sqrt(_masked_mean(jnp.square(adv - adv_mean), mask))
    adv_n = jnp.where(mask, (adv - adv_mean) / (adv_std + 1e-8), 0.0)
    pg = -jnp.minimum(ratio * adv_n, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * adv_n)
    pg_loss = _masked_mean(pg, mask)
    entropy = _masked_mean(masked_entropy(logits, mask), mask)

    b, value = critic.apply(net_params["critic"], batch.x, mask, batch.g)
    empty = mask.sum(-1) == 0
    sq = (jnp.where(mask, jnp.square(b - ret_task), 0.0).sum()
          + jnp.where(empty, jnp.square(value - ret_slot), 0.0).sum())
    v_loss = 0.5 * sq / jnp.maximum(mask.sum() + empty.sum(), 1)

    total = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
    approx_kl = _masked_mean((ratio - 1.0) - log_ratio, mask)
    clip_frac = _masked_mean((jnp.abs(ratio - 1.0) > cfg.clip_eps).astype(jnp.float32), mask)
    return total, {"pg_loss": pg_loss, "v_loss": v_loss, "entropy": entropy, "approx_kl": approx_kl,
                   "clip_frac": clip_frac}


def update_step(runner: RunnerState, cfg: PPOConfig, env_params: EnvParams, mesh=None):
    """Collect n_envs episodes, update the normaliser, run the PPO epochs. Returns (runner, metrics)."""
    rng, k_collect, k_epochs = jax.random.split(runner.rng, 3)
    traj, x_raw, g_raw = _collect(runner, k_collect, cfg, env_params, mesh)
    adv, ret_task, ret_slot = gae(traj, cfg.gamma, cfg.gae_lambda)
    optimizer = make_optimizer(cfg)

    n_slots = cfg.n_envs * env_params.horizon
    flat = jax.tree.map(lambda a: a.reshape((n_slots,) + a.shape[2:]), (traj, adv, ret_task, ret_slot))
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch(carry, mb):
        params, opt_state = carry
        (_, aux), grads = grad_fn(params, *mb, cfg, env_params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), aux

    def epoch(carry, k):
        perm = jax.random.permutation(k, n_slots)
        mbs = jax.tree.map(lambda a: a[perm].reshape((cfg.n_minibatches, -1) + a.shape[1:]), flat)
        return jax.lax.scan(minibatch, carry, mbs)

    (params, opt_state), aux = jax.lax.scan(epoch, (runner.params, runner.opt_state),
                                            jax.random.split(k_epochs, cfg.update_epochs))
    norm = runner.norm.update(x_raw, traj.mask, g_raw)
    metrics = {
        "episode_reward": traj.r_slot.mean(),     # mean slot reward over the n_envs episodes
        "success": _masked_mean(traj.success, traj.mask),
        **{k: v.mean() for k, v in aux.items()},
    }
    return RunnerState(params, opt_state, norm, rng, runner.update + 1), metrics


@partial(jax.jit, static_argnames=("cfg", "n_updates", "mesh"))
def train_segment(runner: RunnerState, env_params: EnvParams, cfg: PPOConfig, n_updates: int, mesh=None):
    """``n_updates`` PPO updates under one jit (a ``lax.scan``); metrics are [n_updates] arrays."""
    return jax.lax.scan(lambda r, _: update_step(r, cfg, env_params, mesh), runner, None, length=n_updates)


def train_mesh(cfg: PPOConfig):
    """The device mesh the environments are sharded over: every device of every process, or None
    on a single device. n_envs must be a multiple of the device count."""
    n = jax.device_count()
    if n == 1:
        return None
    if cfg.n_envs % n:
        raise ConfigError(f"ppo.n_envs = {cfg.n_envs}: must be a multiple of the device count {n} "
                             "(environments are sharded over all devices)")
    return distributed.episode_mesh()


# --------------------------------------------------------------------------
# checkpoints (orbax)
# --------------------------------------------------------------------------
def _manager(ckpt_dir, cfg: PPOConfig | None = None, create: bool = True):
    opts = ocp.CheckpointManagerOptions(max_to_keep=cfg.keep_checkpoints if cfg else None, create=create,
                                        enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(ckpt_dir)), options=opts)


def save_checkpoint(ckpt_dir, runner: RunnerState, cfg: PPOConfig, metrics: dict[str, list[float]],
                    sim_config: SimConfig | None = None) -> int:
    """Save the train state (params, optimiser state, normaliser, RNG, update count) and metadata.

    Orbax writes into a temporary directory and renames it when complete, so a
    checkpoint is either whole or absent. Returns the saved update count.
    """
    step = int(runner.update)
    meta = {"ppo_config": cfg.to_dict(), "update": step, "metrics": metrics,
            "sim_config": None if sim_config is None else config_to_dict(sim_config)}
    with _manager(ckpt_dir, cfg) as mngr:
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(serialization.to_state_dict(runner)),
                                                meta=ocp.args.JsonSave(meta)))
        mngr.wait_until_finished()
    return step


def latest_checkpoint(ckpt_dir) -> int | None:
    if not os.path.isdir(ckpt_dir):
        return None
    with _manager(ckpt_dir, create=False) as mngr:
        return mngr.latest_step()


def load_checkpoint_meta(ckpt_dir, step: int | None = None) -> dict[str, Any]:
    with _manager(ckpt_dir, create=False) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no PPO checkpoint in {str(ckpt_dir)!r}")
        return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def restore_checkpoint(ckpt_dir, env_params: EnvParams, step: int | None = None):
    """(runner, cfg, meta) from the checkpoint at `step` (default: the latest)."""
    meta = load_checkpoint_meta(ckpt_dir, step)
    cfg = PPOConfig.from_dict(meta["ppo_config"])
    template = init_state(jax.random.PRNGKey(0), cfg, env_params)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, serialization.to_state_dict(template))
    with _manager(ckpt_dir, create=False) as mngr:
        restored = mngr.restore(meta["update"], args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    # host round trip: restored arrays come back committed to a device, and committed inputs would
    # make train_segment compile again; uncommitted ones reuse the compiled segment
    state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), restored["state"])
    return serialization.from_state_dict(template, state), cfg, meta


# --------------------------------------------------------------------------
# the host loop
# --------------------------------------------------------------------------
METRIC_NAMES = ("episode_reward", "success", "pg_loss", "v_loss", "entropy", "approx_kl", "clip_frac")


@dataclass
class TrainResult:
    runner: RunnerState
    cfg: PPOConfig
    metrics: dict[str, list[float]] = field(default_factory=dict)   # name -> per update
    resumed_from: int | None = None


def train(key, cfg: PPOConfig, env_params: EnvParams, *, ckpt_dir=None, sim_config: SimConfig | None = None,
          stop_after: int | None = None, progress: Callable[[int, dict[str, list[float]]], None] | None = None
          ) -> TrainResult:
    """Train PPO for ``cfg.n_updates`` updates.

    The updates run in jitted segments of ``cfg.checkpoint_every`` (0: one segment holding the
    whole run); with ``ckpt_dir`` a checkpoint is saved after every segment, and an existing
    checkpoint there is resumed (its PPO config must equal ``cfg``). ``stop_after`` ends the run
    early after the segment that reaches that many updates (simulates an interruption).
    ``progress(update, metrics)`` is called after every segment.
    """
    cfg.validate(env_params)
    mesh = train_mesh(cfg)
    metrics: dict[str, list[float]] = {k: [] for k in METRIC_NAMES}
    resumed = None
    if ckpt_dir is not None and latest_checkpoint(ckpt_dir) is not None:
        runner, saved_cfg, meta = restore_checkpoint(ckpt_dir, env_params)
        if saved_cfg != cfg:
            raise ConfigError(f"checkpoint in {str(ckpt_dir)!r} was written with a different PPOConfig "
                                 f"({saved_cfg}); expected {cfg}")
        metrics = {k: list(meta["metrics"][k]) for k in METRIC_NAMES}
        resumed = int(runner.update)
    else:
        runner = init_state(key, cfg, env_params)
    if mesh is not None:                    # one replicated copy of the train state on every device
        runner = jax.tree.map(lambda x: distributed.global_array(np.asarray(x), distributed.replicated(mesh)), runner)
    seg = cfg.checkpoint_every or cfg.n_updates
    done = int(runner.update)
    while done < cfg.n_updates and (stop_after is None or done < stop_after):
        n = min(seg, cfg.n_updates - done)
        runner, m = train_segment(runner, env_params, cfg, n, mesh)
        for k in METRIC_NAMES:
            metrics[k].extend(float(v) for v in np.asarray(m[k]))
        done = int(runner.update)
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir, runner, cfg, metrics, sim_config)
        if progress is not None:
            progress(done, metrics)
    return TrainResult(runner, cfg, metrics, resumed)


# --------------------------------------------------------------------------
# the trained policy, with the common signature
# --------------------------------------------------------------------------
@struct.dataclass
class PPOPolicyParams:
    actor: dict
    norm: Normalizer
    env_params: EnvParams     # for the features (estimate_rewards); the scenario trained on by default
    hidden: tuple = struct.field(pytree_node=False)
    deterministic: bool = struct.field(pytree_node=False, default=True)


def ppo_policy(key, obs: Observation, pp: PPOPolicyParams):
    """Actions [U] int32 from the observation only: argmax (deterministic) or a sample of the policy."""
    x_raw = task_features(obs, pp.env_params)
    g_raw = global_features(obs, pp.env_params)
    x, g = pp.norm(x_raw, obs.mask, g_raw)
    logits = Actor(pp.hidden, pp.env_params.n_actions).apply(pp.actor, x, obs.mask, g)
    if pp.deterministic:
        return jnp.argmax(logits, -1).astype(jnp.int32)
    return jax.random.categorical(key, logits).astype(jnp.int32)


def policy_params_from(runner: RunnerState, cfg: PPOConfig, env_params: EnvParams,
                       deterministic: bool = True) -> PPOPolicyParams:
    return PPOPolicyParams(runner.params["actor"], runner.norm, env_params, tuple(cfg.hidden), deterministic)


def load_ppo_policy(path, env_params: EnvParams | None = None, deterministic: bool = True,
                    step: int | None = None, sim_config: SimConfig | None = None,
                    allow_other_scenario: bool = False):
    """(policy_fn, policy_params) from a checkpoint directory written by ``train`` (or the ``--out``
    directory of scripts.studies.train_ppo, whose ``ckpt/`` holds it).

    ``rollout(key, env_params, policy_fn, policy_params, n)`` evaluates it. The features use
    ``env_params`` when given (it must have the same numbers of actions and task types as the
    training scenario; the number of users may differ, as the weights are shared over tasks),
    else the scenario saved with the checkpoint. With ``sim_config`` (the scenario it is evaluated on), a
    checkpoint trained on another scenario (another config hash) is refused with a ConfigError unless
    ``allow_other_scenario``.
    """
    path = os.fspath(path)
    if latest_checkpoint(path) is None and latest_checkpoint(os.path.join(path, "ckpt")) is not None:
        path = os.path.join(path, "ckpt")         # the --out directory of scripts.studies.train_ppo
    if latest_checkpoint(path) is None:
        raise FileNotFoundError(f"no PPO checkpoint in {path!r}")
    meta = load_checkpoint_meta(path, step)
    if sim_config is not None and meta.get("sim_config") is not None and not allow_other_scenario:
        trained, here = config_hash(meta["sim_config"]), config_hash(sim_config)
        if trained != here:
            raise ConfigError(f"--checkpoint {path!r}: trained on another scenario (config {trained}) than the one "
                              f"it would run on (config {here}); train on this scenario, or pass "
                              "--allow-other-scenario to evaluate it here anyway")
    if meta.get("sim_config") is not None:
        train_params = make_params(config_from_dict(meta["sim_config"], merge=False))
    elif env_params is not None:
        train_params = env_params
    else:
        raise ConfigError(f"checkpoint {path!r} holds no scenario config: pass env_params")
    if env_params is not None:
        for name in ("n_actions", "n_types"):
            if getattr(env_params, name) != getattr(train_params, name):
                raise ConfigError(f"--checkpoint {path!r}: the scenario has {name} = {getattr(env_params, name)} but "
                                  f"the policy was trained with {name} = {getattr(train_params, name)}; allowed "
                                  f"{getattr(train_params, name)}")
    runner, cfg, _ = restore_checkpoint(path, train_params, meta["update"])
    return ppo_policy, policy_params_from(runner, cfg, env_params or train_params, deterministic)
