"""Fuzz the simulator with random valid configs: every numeric field drawn within its declared range
(``jaxsim.fields``), a few slots each under the random and greedy policies, and every reward, delay,
quality, SINR and load checked finite.

    python -m scripts.tools.fuzz_configs                 # 10^4 configs; last line a JSON summary
    python -m scripts.tools.fuzz_configs --n 500 --seed 3

Sizes and modes (cells, users, resource blocks, actions, task types, tracked sequences, horizon,
allocator, interference) are static in the kernel, so the configs are drawn in a few *shape groups*; within a
group every config is a traced parameter pytree, and one jitted, vmapped program runs a whole batch of them.
Cross-field rules are drawn inside their limits (min_dist_m <= isd_m / 4, background below b_max); a draw the
validator still rejects (for instance a model that leaves no KV memory) is drawn again and counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from baselines.heuristics import greedy_policy, random_policy
from jaxsim.config import EpisodeConfig, InferenceConfig, OracleConfig, RadioConfig, SimConfig
from jaxsim.fields import ConfigError, Range
from jaxsim.params import make_params
from jaxsim.rollout import run_episode

# static shapes and modes of each group (everything else is drawn)
GROUPS = (
    dict(topology=dict(n_cells=3, users_per_cell=8), radio=dict(), inference=dict(max_server_seqs=128)),
    # the second group stalls decode for the slot's prefills; the third has more entries than the packed sort takes
    dict(topology=dict(n_cells=1, users_per_cell=3),
         radio=dict(bandwidth_mhz=10.0, scs_khz=15.0, allocator="equal", interference="activity", integer_rbs=True),
         inference=dict(max_server_seqs=8, prefill_stall=True)),
    dict(topology=dict(n_cells=7, users_per_cell=2),
         radio=dict(bandwidth_mhz=100.0, scs_khz=120.0, n_rb=40, allocator="proportional", interference="none"),
         inference=dict(max_server_seqs=257)),
)
STATIC = {"topology": ("n_cells", "users_per_cell"), "radio": ("bandwidth_mhz", "scs_khz", "n_rb", "allocator",
          "interference", "integer_rbs"), "inference": ("max_server_seqs", "prefill_stall"), "episode": ("horizon",)}
HORIZON = 3
QUALITY = Range(0.0, 1.0)


def _draw(obj, rng: np.random.Generator, keep=()):
    """A copy of the dataclass ``obj`` with every declared field (range, choice, flag) drawn, ``keep`` left as is."""
    new = {f.name: f.metadata["range"].sample(rng) for f in dataclasses.fields(obj)
           if "range" in f.metadata and f.name not in keep}
    return dataclasses.replace(obj, **new)


def sample_config(rng: np.random.Generator, group: dict, base: SimConfig = SimConfig()) -> SimConfig:
    """One random config of a shape group (not yet validated)."""
    top = _draw(dataclasses.replace(base.topology, **group["topology"]), rng, keep=STATIC["topology"])
    top = dataclasses.replace(top, min_dist_m=float(rng.uniform(0.0, top.isd_m / 4)))
    radio = _draw(dataclasses.replace(RadioConfig(), **group["radio"]), rng, keep=STATIC["radio"])
    traffic = _draw(base.traffic, rng)
    traffic = dataclasses.replace(traffic, task_types=tuple(_draw(t, rng) for t in traffic.task_types))
    hardware = tuple(_draw(h, rng) for h in base.hardware)
    models = tuple(dataclasses.replace(_draw(m, rng), quality={t: QUALITY.sample(rng) for t in m.quality})
                   for m in base.models)
    cfg = base.replace(
        episode=dataclasses.replace(_draw(EpisodeConfig(), rng, keep=STATIC["episode"]), horizon=HORIZON),
        topology=top, radio=radio, traffic=traffic, hardware=hardware, models=models,
        inference=_draw(dataclasses.replace(InferenceConfig(), **group["inference"]), rng, keep=STATIC["inference"]),
        backhaul=_draw(base.backhaul, rng), reward=_draw(base.reward, rng), oracle=OracleConfig())
    actions = []
    for a in cfg.actions:
        a = _draw(a, rng, keep=("site", "bg_max_seqs", "bg_step_seqs"))        # the site fixes the server count
        if a.site == "cloud":
            b_max = cfg.b_max(a)
            if b_max >= 1:
                bg = int(rng.integers(0, b_max))
                a = dataclasses.replace(a, bg_max_seqs=bg, bg_step_seqs=int(rng.integers(0, bg + 1)))
        actions.append(a)
    return cfg.replace(actions=tuple(actions))


def valid_configs(rng: np.random.Generator, group: dict, n: int) -> tuple[list[SimConfig], int]:
    """n validated configs of a group and the number of draws the validator rejected."""
    out, rejected = [], 0
    while len(out) < n:
        cfg = sample_config(rng, group)
        try:
            out.append(cfg.validate())
        except ConfigError:
            rejected += 1
            if rejected > 100 * n + 1000:
                raise RuntimeError(f"group {group}: fewer than 1% of draws valid") from None
    return out, rejected


POLICIES = (random_policy, greedy_policy)


@jax.jit
def _episodes(keys, params, which):
    """[B] configs x one episode each under ``POLICIES[which]`` (one program for every policy: a switch on a
    traced index): finite-ness of every float the episode produces, per config."""
    def policy(key, obs, p):
        return jax.lax.switch(which, POLICIES, key, obs, p)

    def one(key, p):
        rewards, tasks = run_episode(key, p, policy, None)
        floats = [rewards] + [v for k, v in tasks.items() if jnp.issubdtype(v.dtype, jnp.floating)]
        return jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats]).all(), jnp.stack(
            [jnp.any(jnp.isnan(x)) for x in floats]).any(), tasks["mask"].sum()
    return jax.vmap(one)(keys, params)


def fuzz(n: int = 10_000, seed: int = 0, batch: int = 500) -> dict:
    """Run ``n`` random valid configs (spread over the shape groups); the JSON-able summary."""
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    res = {"fuzz": "configs", "n": 0, "nan": 0, "non_finite": 0, "tasks": 0, "rejected_draws": 0,
           "groups": len(GROUPS), "policies": ["random", "greedy"], "horizon": HORIZON, "seed": seed}
    first_bad = None
    per_group = [n // len(GROUPS) + (g < n % len(GROUPS)) for g in range(len(GROUPS))]
    for g, group in enumerate(GROUPS):
        left = per_group[g]
        while left > 0:
            m = min(batch, left)
            cfgs, rej = valid_configs(rng, group, m)
            res["rejected_draws"] += rej
            # one treedef for the batch: the queue's booking loop compiled in for every config (always correct)
            ps = [make_params(c).replace(may_queue=True) for c in cfgs]
            stacked = jax.tree.map(lambda *x: jnp.stack(x), *ps)
            # pad to a whole batch: one compiled shape per group
            pad = batch - m if per_group[g] >= batch else 0
            if pad:
                stacked = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, 0)]), stacked)
            for which, pol in enumerate(POLICIES):
                key, sub = jax.random.split(key)
                finite, nan, tasks = jax.tree.map(np.asarray, _episodes(jax.random.split(sub, m + pad), stacked,
                                                                        jnp.int32(which)))
                finite, nan, tasks = finite[:m], nan[:m], tasks[:m]
                res["nan"] += int(nan.sum())
                res["non_finite"] += int((~finite).sum())
                res["tasks"] += int(tasks.sum())
                if first_bad is None and not finite.all():
                    first_bad = {"group": g, "policy": pol.__name__,
                                 "config": json.loads(json.dumps(dataclasses.asdict(cfgs[int(np.argmin(finite))]),
                                                                 default=str))}
            res["n"] += m
            left -= m
    if first_bad is not None:
        res["first_non_finite"] = first_bad
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="configs (default 10^4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=500, help="configs per compiled batch (default 500)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.batch < 1:
        ap.error(f"--n = {args.n}, --batch = {args.batch}: allowed >= 1")
    t0 = time.perf_counter()
    res = fuzz(args.n, args.seed, args.batch)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res))
    return 0 if res["non_finite"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
