"""How far the oracle's search beyond its exhaustive limit (exhaustive over the first n tasks, then coordinate
sweeps) is from the exact per-slot optimum, on slots small enough for both.

    python -m scripts.oracle_gap            # last line a JSON object

Scenario: 2 cells x 4 users (at most 8 tasks a slot), the default mix and servers, 20-slot episodes. The exact
oracle searches all 3^8 assignments (max_exhaustive_tasks = 8); the default one exhausts 4 and sweeps once.
Both run on the same episodes; the gap is reported as a share of the random-to-exact range.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from baselines import oracle_policy, random_policy
from jaxsim.config import EpisodeConfig, OracleConfig, SimConfig, TopologyConfig
from jaxsim.params import make_params
from jaxsim.rollout import rollout


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=8)
    args = ap.parse_args(argv)
    if args.episodes < 1:
        ap.error(f"--episodes = {args.episodes}: allowed >= 1")
    base = SimConfig().replace(topology=TopologyConfig(n_cells=2, users_per_cell=4), episode=EpisodeConfig(horizon=20))
    key = jax.random.PRNGKey(0)
    res = {"bench": "oracle_gap", "episodes": args.episodes, "users": base.n_users}
    rewards = {}
    for name, oracle, pol in (("random", OracleConfig(), random_policy), ("default", OracleConfig(4, 1), oracle_policy),
                              ("no_sweep", OracleConfig(4, 0), oracle_policy),
                              ("exact", OracleConfig(8, 0), oracle_policy)):
        out = rollout(key, make_params(base.replace(oracle=oracle)), pol, None, args.episodes)
        rewards[name] = out["slot_reward"]
        res[f"{name}_reward"] = float(out["slot_reward"].mean())
    spread = res["exact_reward"] - res["random_reward"]
    for name in ("default", "no_sweep"):
        res[f"{name}_gap_share"] = (res["exact_reward"] - res[f"{name}_reward"]) / spread
        res[f"{name}_slots_below_exact"] = float(np.mean(rewards[name] < rewards["exact"] - 1e-6))
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
