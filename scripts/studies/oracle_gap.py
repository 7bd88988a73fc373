"""How far the oracle's search beyond its exhaustive limit (exhaustive over the first n tasks, then coordinate
sweeps) is from the exact per-slot optimum, on slots small enough for both; and, on each preset, whether any
shipped heuristic beats it on a slot.

    python -m scripts.studies.oracle_gap            # last line a JSON object

Exact gap: 2 cells x 4 users (at most 8 tasks a slot), the default mix and servers, 20-slot episodes. The exact
oracle searches all 3^8 assignments (max_exhaustive_tasks = 8); the default one exhausts 4 and sweeps until a
sweep moves no task (at most ``oracle.sweeps``); ``one_sweep`` stops after one sweep, ``no_sweep`` runs none.
All run on the same episodes; the gap is reported as a share of the random-to-exact range.

Bound (``--presets``, each with ``--preset-episodes`` episodes): along the oracle's own trajectory, every slot's
state is scored with ``env.evaluate`` under the oracle's assignment and under each shipped heuristic's (random
with the key the rollout gives the policy, every single site, greedy, greedy_sequential).
``<preset>_slots_heuristic_above_oracle`` counts the slots where one of them has a higher summed slot reward
than the oracle's by more than 1e-4 (should be 0); ``<preset>_max_heuristic_minus_oracle`` is the largest
difference over slots and heuristics (summed reward of a slot; <= 0 up to float rounding when the oracle bounds
them). ``<preset>_oracle_reward`` and ``<preset>_best_heuristic_reward`` are mean slot rewards of each
policy's own rollout on those episodes (the comparison of jaxsim-montecarlo), ``<preset>_best_heuristic`` names
the best heuristic there.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from baselines import greedy_policy, greedy_sequential_policy, oracle_policy, random_policy, single_site
from jaxsim import env
from jaxsim.config import EpisodeConfig, OracleConfig, SimConfig, TopologyConfig, load_config, scenario_path
from jaxsim.params import make_params
from jaxsim.rollout import episode_keys, rollout, split_episode_key, split_slot_key

BOUND_TOL = 1e-4      # summed slot reward: float rounding of one assignment evaluated in different batches


def heuristics(cfg: SimConfig):
    """(name, policy) of every shipped device heuristic, named as the policy registry names them."""
    return [("random", random_policy), *[(f"{a}_only", single_site(i)) for i, a in enumerate(cfg.action_names)],
            ("greedy", greedy_policy), ("greedy_sequential", greedy_sequential_policy)]


def bound_check(cfg: SimConfig, n_episodes: int, key):
    """Along the oracle's trajectory: summed slot rewards [E x H] of the oracle and [E x H, P] of each heuristic
    on the same states, and the slots' task counts [E x H]."""
    p = make_params(cfg)
    pols = [pol for _, pol in heuristics(cfg)]

    def episode(ep_key):
        k_reset, slot_keys = split_episode_key(ep_key, p.horizon)
        _, state = env.reset(k_reset, p)

        def body(state, k):
            k_pol, k_step = split_slot_key(k)
            obs = env.get_obs(p, state)
            a_or = oracle_policy(k_pol, obs, p)
            acts = jnp.stack([a_or] + [pol(k_pol, obs, p) for pol in pols])
            summed = jax.vmap(lambda a: env.evaluate(p, state, a)[1]["reward"].sum())(acts)
            _, nxt, _, _, _ = env.step(k_step, state, a_or, p)
            return nxt, (summed, state.active.sum())

        return jax.lax.scan(body, state, slot_keys)[1]

    summed, n_tasks = jax.jit(jax.vmap(episode))(episode_keys(key, 0, n_episodes))
    summed = np.asarray(summed).reshape(-1, len(pols) + 1)
    return summed[:, 0], summed[:, 1:], np.asarray(n_tasks).reshape(-1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=8, help="episodes of the exact-gap scenario")
    ap.add_argument("--presets", default="default,loaded", help="presets of the bound check ('' for none)")
    ap.add_argument("--preset-episodes", type=int, default=4, help="episodes of each preset in the bound check")
    args = ap.parse_args(argv)
    for name in ("episodes", "preset_episodes"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} = {getattr(args, name)}: allowed >= 1")
    presets = [s for s in args.presets.split(",") if s]
    cfgs = {name: load_config(scenario_path(name)) for name in presets}   # unknown names fail before any compute
    base = SimConfig().replace(topology=TopologyConfig(n_cells=2, users_per_cell=4), episode=EpisodeConfig(horizon=20))
    key = jax.random.PRNGKey(0)
    res = {"bench": "oracle_gap", "episodes": args.episodes, "users": base.n_users}
    rewards = {}
    for name, oracle, pol in (("random", OracleConfig(), random_policy), ("default", OracleConfig(), oracle_policy),
                              ("one_sweep", OracleConfig(sweeps=1), oracle_policy),
                              ("no_sweep", OracleConfig(sweeps=0), oracle_policy),
                              ("exact", OracleConfig(8, 0), oracle_policy)):
        out = rollout(key, make_params(base.replace(oracle=oracle)), pol, None, args.episodes)
        rewards[name] = out["slot_reward"]
        res[f"{name}_reward"] = float(out["slot_reward"].mean())
    spread = res["exact_reward"] - res["random_reward"]
    for name in ("default", "one_sweep", "no_sweep"):
        res[f"{name}_gap_share"] = (res["exact_reward"] - res[f"{name}_reward"]) / spread
        res[f"{name}_slots_below_exact"] = float(np.mean(rewards[name] < rewards["exact"] - 1e-6))

    res["preset_episodes"] = args.preset_episodes
    for preset, cfg in cfgs.items():
        r_or, r_heur, n_tasks = bound_check(cfg, args.preset_episodes, key)
        diff = r_heur - r_or[:, None]
        res[f"{preset}_slots"] = int(r_or.size)
        res[f"{preset}_slots_heuristic_above_oracle"] = int((diff.max(1) > BOUND_TOL).sum())
        res[f"{preset}_max_heuristic_minus_oracle"] = float(diff.max())
        p = make_params(cfg)
        # the bound check ran the oracle's own rollout (the same key schedule): its slot rewards are the mean rewards
        own = {"oracle": float(np.mean(np.where(n_tasks > 0, r_or / np.maximum(n_tasks, 1), 0.0)))}
        own.update({name: float(rollout(key, p, pol, None, args.preset_episodes, collect_tasks=False)["slot_reward"]
                                .mean()) for name, pol in heuristics(cfg)})
        best = max((n for n in own if n != "oracle"), key=own.get)
        res[f"{preset}_oracle_reward"] = own["oracle"]
        res[f"{preset}_best_heuristic"] = best
        res[f"{preset}_best_heuristic_reward"] = own[best]
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
