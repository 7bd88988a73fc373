"""Train PPO on a scenario and compare it with greedy, random and the oracle on held-out episodes.

    python -m scripts.bench.ppo [--quick] [--config FILE.toml] [--updates N] [--envs N] ...

The last line printed is one JSON object:
{"bench": "ppo", "env_steps_per_s", "train_s", "final_reward", "greedy_reward", "oracle_reward",
 "random_reward"}. Rewards are mean slot rewards (= mean episode rewards) of the deterministic
PPO policy (argmax), greedy and random on the same ``--eval-episodes`` held-out episode keys; the
oracle is slow and runs on the first ``--oracle-episodes`` of those keys only (a line before the
JSON compares PPO and greedy on exactly those episodes). ``train_s`` is the wall time of
``train`` including compilation; ``env_steps_per_s`` counts environment slot steps (n_envs per
vectorised step) per second after the first (compiling) segment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import numpy as np

from baselines import greedy_policy, oracle_policy, random_policy
from baselines.ppo import PPOConfig, policy_params_from, ppo_policy, train
from jaxsim.fields import ConfigError
from experiment.scenario_args import add_scenario_args, print_config, scenario_from_args
from jaxsim.params import make_params
from jaxsim.rollout import rollout

EVAL_KEY_OFFSET = 1_000_003   # evaluation keys: PRNGKey(seed + offset), disjoint from training's PRNGKey(seed)


def slot_rewards(out: dict) -> np.ndarray:
    """[E, H] slot rewards of a rollout result."""
    return out["slot_reward"] if "slot_reward" in out else out["reward"]


def evaluate(key, env_params, policy, policy_params, n_episodes: int) -> np.ndarray:
    """Mean slot reward of each episode, [E]."""
    return slot_rewards(rollout(key, env_params, policy, policy_params, n_episodes, collect_tasks=False)).mean(-1)


def ppo_config_from_args(args) -> PPOConfig:
    kw = {"seed": args.seed}
    for name in ("n_envs", "n_updates", "lr", "ent_coef", "update_epochs", "n_minibatches", "gamma", "gae_lambda",
                 "checkpoint_every"):
        v = getattr(args, name)
        if v is not None:
            kw[name] = v
    if args.quick:
        kw.setdefault("n_envs", 16)
        kw.setdefault("n_updates", 12)
        kw.setdefault("checkpoint_every", 4)
    if args.hidden is not None:
        kw["hidden"] = tuple(int(h) for h in args.hidden.split(","))
    return dataclasses.replace(PPOConfig(), **kw)


def parse_setup(ap: argparse.ArgumentParser, argv=None):
    """Evaluation-size arguments, parsing and validation shared by bench_ppo and train_ppo.

    Returns (args, n_eval, n_oracle, sim_cfg, env_params, ppo_cfg); errors exit before any compute.
    """
    ap.add_argument("--eval-episodes", type=int, default=None)
    ap.add_argument("--oracle-episodes", type=int, default=None)
    args = ap.parse_args(argv)
    n_eval = args.eval_episodes or (8 if args.quick else 64)
    n_oracle = args.oracle_episodes or (2 if args.quick else 4)
    if not 1 <= n_oracle <= n_eval:
        ap.error(f"--oracle-episodes = {n_oracle}: allowed [1, --eval-episodes = {n_eval}]")
    try:
        sim_cfg = scenario_from_args(args)
    except ConfigError as e:
        ap.error(str(e))
    if args.print_config:
        print_config(sim_cfg)
        raise SystemExit(0)
    env_params = make_params(sim_cfg)
    return args, n_eval, n_oracle, sim_cfg, env_params, ppo_config_from_args(args).validate(env_params)


def add_ppo_args(ap: argparse.ArgumentParser) -> None:
    add_scenario_args(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    ap.add_argument("--updates", dest="n_updates", type=int, default=None)
    ap.add_argument("--envs", dest="n_envs", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--ent-coef", type=float, default=None)
    ap.add_argument("--epochs", dest="update_epochs", type=int, default=None)
    ap.add_argument("--minibatches", dest="n_minibatches", type=int, default=None)
    ap.add_argument("--gamma", type=float, default=None)
    ap.add_argument("--gae-lambda", type=float, default=None)
    ap.add_argument("--segment", dest="checkpoint_every", type=int, default=None,
                    help="updates per jitted segment (and between checkpoints)")
    ap.add_argument("--hidden", default=None, help="hidden widths, e.g. 64,64")


class SegmentClock:
    """Progress printer that also measures throughput after the first (compiling) segment."""

    def __init__(self, n_envs: int, horizon: int, out=sys.stdout):
        self.t0 = time.perf_counter()
        self.first = None   # (time, update) at the end of the first segment
        self.last = None
        self.slots_per_update = n_envs * horizon
        self.out = out

    def __call__(self, update: int, metrics: dict) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, update)
        self.last = (now, update)
        print(f"update {update:5d}  t {now - self.t0:7.1f} s  episode reward {metrics['episode_reward'][-1]:.4f}  "
              f"entropy {metrics['entropy'][-1]:.3f}  v_loss {metrics['v_loss'][-1]:.4f}", file=self.out, flush=True)

    def steps_per_s(self) -> float:
        (t1, u1), (t2, u2) = self.first, self.last
        if u2 > u1:
            return (u2 - u1) * self.slots_per_update / (t2 - t1)
        return u1 * self.slots_per_update / (t1 - self.t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_ppo_args(ap)
    args, n_eval, n_oracle, sim_cfg, env_params, cfg = parse_setup(ap, argv)
    print(f"PPO {cfg}", flush=True)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; U = {env_params.n_users}, "
          f"K = {env_params.n_actions}, horizon = {env_params.horizon}", flush=True)

    clock = SegmentClock(cfg.n_envs, env_params.horizon)
    t0 = time.perf_counter()
    result = train(jax.random.PRNGKey(cfg.seed), cfg, env_params, progress=clock)
    jax.block_until_ready(result.runner.params)
    train_s = time.perf_counter() - t0

    k_eval = jax.random.PRNGKey(cfg.seed + EVAL_KEY_OFFSET)
    pp = policy_params_from(result.runner, cfg, env_params)
    r_ppo = evaluate(k_eval, env_params, ppo_policy, pp, n_eval)
    r_greedy = evaluate(k_eval, env_params, greedy_policy, None, n_eval)
    r_random = evaluate(k_eval, env_params, random_policy, None, n_eval)
    t1 = time.perf_counter()
    r_oracle = evaluate(k_eval, env_params, oracle_policy, None, n_oracle)
    print(f"oracle: {n_oracle} episodes in {time.perf_counter() - t1:.1f} s; on those episodes "
          f"ppo {r_ppo[:n_oracle].mean():.4f}, greedy {r_greedy[:n_oracle].mean():.4f}, "
          f"oracle {r_oracle.mean():.4f}", flush=True)
    se = (lambda x: x.std(ddof=1) / np.sqrt(len(x))) if n_eval > 1 else (lambda x: float("nan"))  # noqa: E731
    print(f"{n_eval} held-out episodes: ppo {r_ppo.mean():.4f} +- {se(r_ppo):.4f}, greedy {r_greedy.mean():.4f}, "
          f"random {r_random.mean():.4f}; paired ppo - greedy {(r_ppo - r_greedy).mean():+.4f} "
          f"+- {se(r_ppo - r_greedy):.4f} (s.e.)", flush=True)
    out = {"bench": "ppo", "env_steps_per_s": round(clock.steps_per_s(), 1), "train_s": round(train_s, 2),
           "final_reward": round(float(r_ppo.mean()), 5), "greedy_reward": round(float(r_greedy.mean()), 5),
           "oracle_reward": round(float(r_oracle.mean()), 5), "random_reward": round(float(r_random.mean()), 5)}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
