"""Decision bench of the ICL policy: decision quality on fixed decisions, then speed in a real rollout.

    python -m scripts.bench.icl                       # default design (value), SmolLM2-135M, ~10 min on 2 cores
    python -m scripts.bench.icl --designs value,value-describe,action --queries 150
    python -m scripts.bench.icl --llm-endpoint http://127.0.0.1:8080/v1 --llm-model smollm2-135m   # a server

Queries: ``--queries`` tasks drawn (seeded) from the states that the greedy heuristic reaches over
``--query-episodes`` episodes of the scenario; each carries the reward every action would earn, from the
environment's own evaluation of that slot with this task's action changed (the slot's other tasks keep
greedy's actions). Pools: ``random``, the records of ``--pool-episodes`` episodes of uniformly random actions;
``own``, the records of the policy's own short rollout (``--rollout-episodes`` x ``--rollout-horizon`` slots,
from an empty pool, epsilon 0.1), which also gives ``rollout_decisions_per_s``: a real Monte Carlo run of the
same policy, in the same process.

For every design and pool it reports mean reward of the chosen actions, regret and accuracy against the best
action, each action's share, prompt tokens per decision and decisions/s (after a warm-up, all compiles done),
beside random, every single-site policy, greedy, the kNN vote and the value form's per-action kNN twin on the
same queries and pools. Designs:
  value            grades 0-9 per action after per-action nearest records (``icl.prompt.ValuePrompts``),
                   decided by the contrast rule (the default, ``icl.policy.value_estimates``)
  value-expected   the same log-probabilities, decided by the plain expected grade (no extra LLM call)
  value-blend      the same log-probabilities: the contrast value averaged with the records' mean (the twin's)
  value-describe   value with the action-form description in its cached prefix
  value-calibrated value with each action's grades for a content-free prompt subtracted first
  action           the paper's form: each action's name scored as the answer (slow: ~800 tokens a prompt)
The last line is one JSON object for the first design.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from baselines.heuristics import greedy_policy
from experiment.llm_args import add_llm_args, check_llm_args, llm_fields
from icl.llm.backend import as_backend
from icl.policy import ICLConfig, ICLPolicy, KNNPolicy, KNNValuePolicy
from icl.pool import ExperiencePool
from icl.prompt import BASE_FEATURES
from experiment.host import rollout_host
from jaxsim import env
from jaxsim.compilation import compile_counts, use_persistent_cache
from experiment.scenario_args import add_scenario_args, print_config, scenario_from_args
from jaxsim.fields import ConfigError
from jaxsim.params import make_params
from jaxsim.rollout import episode_keys

DESIGNS = ("value", "value-expected", "value-blend", "value-describe", "value-calibrated", "action")
QUERY_SEED, POOL_SEED, ROLLOUT_SEED = 1, 2, 3     # fold_in offsets: queries, pool and rollout see other episodes


# ------------------------------------------------------------------------------------------------ queries
@partial(jax.jit, static_argnums=())
def _query_episode(key, params):
    """One greedy episode: per slot the observation's fields, greedy's actions and the reward of every
    (task, action) pair [H, U, A] from ``env.evaluate`` with only that task's action changed."""
    k_reset, k_run = jax.random.split(key)
    _, state = env.reset(k_reset, params)
    users, acts = jnp.arange(params.n_users), jnp.arange(params.n_actions)

    def body(state, k):
        k_pol, k_step = jax.random.split(k)
        obs = env.get_obs(params, state)
        greedy = greedy_policy(k_pol, obs, params)
        radio = env.radio_delays(params, state)

        def reward_of(u, a):
            return env.evaluate(params, state, greedy.at[u].set(a), radio)[1]["reward"][u]
        rewards = jax.vmap(lambda u: jax.vmap(lambda a: reward_of(u, a))(acts))(users)
        _, state, _, _, _ = env.step(k_step, state, greedy, params)
        fields = {f: getattr(obs, f) for f in (*BASE_FEATURES, "load_seqs", "task_type", "mask")}
        return state, (fields, greedy, rewards)

    _, out = jax.lax.scan(body, state, jax.random.split(k_run, params.horizon))
    return out


@dataclasses.dataclass
class Queries:
    feats: np.ndarray      # [Q, F] task features (``icl.prompt.task_features`` layout)
    types: np.ndarray      # [Q]
    rewards: np.ndarray    # [Q, A] the reward each action would earn
    greedy: np.ndarray     # [Q] greedy's action


def make_queries(key, params, n_episodes: int, n_queries: int, seed: int) -> Queries:
    fields, greedy, rewards = jax.vmap(lambda k: _query_episode(k, params))(episode_keys(key, 0, n_episodes))
    fields = jax.tree.map(np.asarray, fields)
    cols = [fields[f].astype(np.float32) for f in BASE_FEATURES]
    feats = np.concatenate([np.stack(cols, -1), fields["load_seqs"].astype(np.float32)], -1)   # [E, H, U, F]
    e, t, u = np.nonzero(fields["mask"])
    if len(e) < n_queries:
        raise ConfigError(f"--queries = {n_queries}: only {len(e)} tasks in {n_episodes} episodes; allowed <= {len(e)}")
    pick = np.sort(np.random.default_rng(seed).choice(len(e), n_queries, replace=False))
    e, t, u = e[pick], t[pick], u[pick]
    return Queries(feats[e, t, u], fields["task_type"][e, t, u].astype(np.int32), np.asarray(rewards)[e, t, u],
                   np.asarray(greedy)[e, t, u])


def random_pool(key, params, cfg, n_episodes: int, capacity: int) -> ExperiencePool:
    """The records of ``n_episodes`` episodes of uniformly random actions (a kNN policy that always explores)."""
    pol = KNNPolicy(cfg, ICLConfig(epsilon=1.0, pool_size=capacity))
    rollout_host(key, params, pol, n_episodes, batch_episodes=n_episodes)
    return pol.pool


# ------------------------------------------------------------------------------------------------ metrics
def metrics(q: Queries, chosen: np.ndarray, action_names) -> dict:
    r = q.rewards[np.arange(len(chosen)), chosen]
    best = q.rewards.max(1)
    return {"mean_reward": float(r.mean()), "regret": float((best - r).mean()),
            "accuracy": float((r >= best - 1e-9).mean()),
            "share": {a: float((chosen == i).mean()) for i, a in enumerate(action_names)}}


def reference_rows(q: Queries, action_names) -> dict:
    n = len(q.types)
    rows = {"random": {"mean_reward": float(q.rewards.mean()), "regret": float((q.rewards.max(1)[:, None]
            - q.rewards).mean()), "accuracy": float((q.rewards >= q.rewards.max(1, keepdims=True) - 1e-9).mean())}}
    for i, a in enumerate(action_names):
        rows[f"{a}_only"] = metrics(q, np.full(n, i), action_names)
    rows["greedy"] = metrics(q, q.greedy, action_names)
    rows["best action"] = metrics(q, q.rewards.argmax(1), action_names)
    return rows


def run_design(design: str, pol, q: Queries, pool: ExperiencePool, warm: int = 8) -> tuple[dict, np.ndarray | None]:
    """Decide every query with ``pol`` on ``pool`` (epsilon 0); returns (metrics + speed, value log-probs)."""
    pol.pool = pool
    feats, types = q.feats, q.types
    fb = q.greedy
    if isinstance(pol, ICLPolicy) and pol.llm.kind == "endpoint":
        warm = 0                               # nothing compiles, and warm-up answers would be cached
    if warm:                                   # compile the shapes first: decisions/s is the steady state
        pol.choose(feats[:warm], types[:warm], pol.select(feats[:warm], types[:warm]), fb[:warm])
    tok0, c0 = pol.stats.get("prompt_tokens", 0), compile_counts()["compiles"]
    t0 = time.perf_counter()
    demos = pol.select(feats, types)
    lp = None
    if isinstance(pol, ICLPolicy) and pol.cfg.decide == "value":
        lp = pol.value_logprobs(feats, types, demos) - pol.value_bias
        chosen = pol.action_values(lp, demos).argmax(-1)
    else:
        chosen = pol.choose(feats, types, demos, fb)
    wall = time.perf_counter() - t0
    m = metrics(q, np.asarray(chosen), pol.sim_cfg.action_names)
    m.update(decisions_per_s=len(types) / wall, wall_s=wall, compiles=compile_counts()["compiles"] - c0)
    if isinstance(pol, ICLPolicy):
        m["prompt_tokens"] = (pol.stats["prompt_tokens"] - tok0) / len(types)
    return m, lp


def flax_reference(cfg, icfg: ICLConfig, q: Queries, pool: ExperiencePool, endpoint_lp: np.ndarray,
                   endpoint_row: dict, out) -> dict:
    """The same design on the same queries and pool through the embedded Flax runtime on the same model (when
    its weights are on this machine): its decisions/s, and how far the endpoint's answers are from it."""
    from icl.llm.endpoint import local_tokenizer
    if local_tokenizer(icfg.model) is None:
        out(f"\nno Flax reference: the weights of {icfg.model!r} are not on this machine")
        return {}
    from icl.llm.backend import load_backend
    pol = ICLPolicy(cfg, dataclasses.replace(icfg, endpoint=""), lm=load_backend(icfg.model))
    m, lp = run_design("flax", pol, q, pool)
    demos = pol.select(q.feats, q.types)
    v_flax = pol.action_values(lp, demos).argmax(-1)
    v_end = pol.action_values(endpoint_lp, demos).argmax(-1)
    p_flax, p_end = np.exp(lp), np.exp(endpoint_lp)
    ref = {"flax_decisions_per_s": m["decisions_per_s"], "flax_mean_reward": m["mean_reward"],
           "flax_agreement": float((v_flax == v_end).mean()),
           "grade_logprob_median_abs_diff": float(np.median(np.abs(lp - endpoint_lp))),
           "grade_prob_max_abs_diff": float(np.abs(p_flax - p_end).max()),
           "endpoint_vs_flax_speed": endpoint_row["decisions_per_s"] / m["decisions_per_s"]}
    out(f"\nFlax runtime on the same model: {m['decisions_per_s']:.3g} decisions/s (endpoint "
        f"{endpoint_row['decisions_per_s']:.3g}), mean reward {m['mean_reward']:.3f} (endpoint "
        f"{endpoint_row['mean_reward']:.3f}); decisions agree on {ref['flax_agreement']:.1%}; grade log-probs differ "
        f"by {ref['grade_logprob_median_abs_diff']:.3f} (median), probabilities by at most "
        f"{ref['grade_prob_max_abs_diff']:.3f}")
    return ref


def design_config(design: str, base: ICLConfig) -> ICLConfig:
    if design == "action":
        return dataclasses.replace(base, decide="action")
    return dataclasses.replace(base, decide="value", describe=design == "value-describe",
                               calibrate=design == "value-calibrated",
                               value_rule={"value-expected": "expected", "value-blend": "blend"}.get(design, "contrast"))


def print_rows(title: str, rows: dict, file=sys.stdout) -> None:
    print(f"\n{title}", file=file)
    hdr = f"{'method':<34} {'reward':>8} {'regret':>8} {'accuracy':>8} {'shares':>18} {'tokens':>7} {'dec/s':>8}"
    print(hdr, file=file)
    print("-" * len(hdr), file=file)
    for name, m in rows.items():
        sh = "/".join(f"{v:.2f}" for v in m["share"].values()) if "share" in m else ""
        tok = f"{m['prompt_tokens']:.0f}" if "prompt_tokens" in m else ""
        dps = f"{m['decisions_per_s']:.3g}" if "decisions_per_s" in m else ""
        print(f"{name:<34} {m['mean_reward']:>8.3f} {m['regret']:>8.3f} {m['accuracy']:>8.3f} {sh:>18} {tok:>7} "
              f"{dps:>8}", file=file)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scenario_args(ap)
    add_llm_args(ap, "smollm2-135m")
    ap.add_argument("--flax-reference", action=argparse.BooleanOptionalAction, default=True,
                    help="with --llm-endpoint: also decide the random pool's queries with the embedded Flax runtime "
                    "on the same model (when its weights are here): decisions/s of both, agreement, grade "
                    "log-probability difference (on)")
    ap.add_argument("--designs", default="value,value-expected", help=f"comma-separated, of {', '.join(DESIGNS)}; "
                    "the first is the JSON line's (value,value-expected)")
    ap.add_argument("--shots", type=int, default=ICLConfig.shots, help=f"demonstrations per prompt ({ICLConfig.shots})")
    ap.add_argument("--shots-per-action", type=int, default=0,
                    help="value: records of each action (0: max(shots // actions, min(shots, 2)))")
    ap.add_argument("--select", default="nearest", help="demonstration selection (nearest)")
    ap.add_argument("--queries", type=int, default=320, help="query tasks (320)")
    ap.add_argument("--query-episodes", type=int, default=20, help="greedy episodes the queries come from (20)")
    ap.add_argument("--pool-episodes", type=int, default=8, help="random-action episodes of the random pool (8)")
    ap.add_argument("--rollout-episodes", type=int, default=4, help="episodes of the policy's own rollout (4)")
    ap.add_argument("--rollout-horizon", type=int, default=10, help="slots per rollout episode (10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-only", action="store_true", help="print the JSON line only")
    args = ap.parse_args(argv)
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    bad = [d for d in designs if d not in DESIGNS]
    for name, value, lo in (("--queries", args.queries, 1), ("--query-episodes", args.query_episodes, 1),
                            ("--pool-episodes", args.pool_episodes, 1), ("--rollout-episodes", args.rollout_episodes, 0),
                            ("--rollout-horizon", args.rollout_horizon, 1), ("--shots", args.shots, 1)):
        if value < lo:
            ap.error(f"{name} = {value}: allowed >= {lo}")
    if bad or not designs:
        ap.error(f"--designs: unknown {bad or 'none given'}; allowed: {', '.join(DESIGNS)}")
    args.designs = designs
    return args


def main(argv=None, lm=None) -> dict:
    args = parse_args(argv)
    try:
        cfg = scenario_from_args(args)
        if args.print_config:
            print_config(cfg)
            raise SystemExit(0)
        check_llm_args(args)
        base = ICLConfig(**llm_fields(args), shots=args.shots, shots_per_action=args.shots_per_action,
                         select=args.select, epsilon=0.0, seed=args.seed).validate()
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    use_persistent_cache()
    out = (lambda *a, **k: None) if args.json_only else print
    params = make_params(cfg)
    key = jax.random.PRNGKey(args.seed)
    t0 = time.perf_counter()
    q = make_queries(jax.random.fold_in(key, QUERY_SEED), params, args.query_episodes, args.queries, args.seed)
    pools = {"random": random_pool(jax.random.fold_in(key, POOL_SEED), params, cfg, args.pool_episodes,
                                   base.pool_size)}
    out(f"{len(q.types)} queries from {args.query_episodes} greedy episodes, random pool of {len(pools['random'])} "
        f"records ({time.perf_counter() - t0:.0f} s)")
    if lm is None:
        from icl.llm.backend import load_backend
        lm = load_backend(args.model, endpoint=base.endpoint, max_in_flight=base.max_in_flight)
    lm = as_backend(lm)
    names = cfg.action_names
    results: dict = {}
    lps_of: dict = {}            # pool -> design -> grade log-probabilities [Q, A, G]
    first = args.designs[0]

    def bench_pool(pool_name: str) -> None:
        pool = pools[pool_name]
        rows = reference_rows(q, names)
        rows["knn (vote)"], _ = run_design("knn", KNNPolicy(cfg, base), q, pool, warm=0)
        rows["knn_value (per-action twin)"], _ = run_design("knn_value", KNNValuePolicy(cfg, base), q, pool, warm=0)
        lps = lps_of.setdefault(pool_name, {})
        for d in args.designs:
            pol = ICLPolicy(cfg, design_config(d, base), lm=lm)
            if d in ("value-expected", "value-blend") and "value" in lps:     # the same LLM outputs, another rule
                pol.pool = pool
                m = metrics(q, pol.action_values(lps["value"], pol.select(q.feats, q.types)).argmax(-1), names)
                m.update({k: rows["icl value"][k] for k in ("decisions_per_s", "prompt_tokens", "wall_s")})
                rows[f"icl {d}"] = m
                continue
            rows[f"icl {d}"], lp = run_design(d, pol, q, pool)
            if lp is not None:
                lps[d] = lp
        results[pool_name] = rows
        print_rows(f"pool: {pool_name} ({len(pool)} records), {len(q.types)} queries, model {args.model}, "
                   f"{args.shots} shots, select {args.select}", rows) if not args.json_only else None

    bench_pool("random")
    reference = {}
    if lm.kind == "endpoint" and args.flax_reference and first in lps_of["random"]:
        reference = flax_reference(cfg, design_config(first, base), q, pools["random"], lps_of["random"][first],
                                   results["random"][f"icl {first}"], out)
    rollout = {}
    if args.rollout_episodes:
        pol = ICLPolicy(cfg, dataclasses.replace(design_config(first, base),
                                                 epsilon=0.1), lm=lm)
        rparams = make_params(cfg.replace(episode=dataclasses.replace(cfg.episode, horizon=args.rollout_horizon)))
        c0 = compile_counts()["compiles"]
        t1 = time.perf_counter()
        res = rollout_host(jax.random.fold_in(key, ROLLOUT_SEED), rparams, pol, args.rollout_episodes,
                           batch_episodes=args.rollout_episodes)
        wall = time.perf_counter() - t1
        s = pol.summary()
        rollout = {"rollout_decisions_per_s": s["decisions"] / wall, "rollout_decisions": s["decisions"],
                   "rollout_llm_share": s["llm_s"] / wall, "rollout_compiles": compile_counts()["compiles"] - c0,
                   "rollout_mean_reward": float(res["slot_reward"].mean())}
        pools["own"] = pol.pool
        out(f"\nrollout: {s['decisions']} decisions in {wall:.0f} s = {rollout['rollout_decisions_per_s']:.3g}/s "
            f"(LLM {rollout['rollout_llm_share']:.0%} of it), {rollout['rollout_compiles']} compiles")
        bench_pool("own")
    rnd = results["random"]
    d = rnd[f"icl {first}"]
    summary = {"bench": "icl", "model": args.model, "design": first, "shots": args.shots, "select": args.select,
               "queries": len(q.types), "mean_reward": d["mean_reward"], "regret": d["regret"],
               "accuracy": d["accuracy"], "share": d["share"],
               "knn_mean_reward": rnd["knn (vote)"]["mean_reward"],
               "knn_value_mean_reward": rnd["knn_value (per-action twin)"]["mean_reward"],
               "best_single_site_reward": max(rnd[f"{a}_only"]["mean_reward"] for a in names),
               "greedy_reward": rnd["greedy"]["mean_reward"], "random_reward": rnd["random"]["mean_reward"],
               "best_action_reward": rnd["best action"]["mean_reward"],
               "decisions_per_s": d["decisions_per_s"], "prompt_tokens": d.get("prompt_tokens"),
               "backend": lm.info(), "floor_share": lm.stats["floor_grades"] / max(lm.stats["grade_slots"], 1),
               **reference, **rollout}
    if rollout:
        summary["rollout_vs_bench"] = rollout["rollout_decisions_per_s"] / d["decisions_per_s"]
    if "own" in results:
        own = results["own"]
        summary.update(own_pool_mean_reward=own[f"icl {first}"]["mean_reward"],
                       own_pool_knn_mean_reward=own["knn (vote)"]["mean_reward"],
                       own_pool_knn_value_mean_reward=own["knn_value (per-action twin)"]["mean_reward"])
    summary["wall_s"] = time.perf_counter() - t0
    summary["compiles"] = compile_counts()["compiles"]
    print(json.dumps(summary, default=float))
    return {"summary": summary, "results": results}


if __name__ == "__main__":
    main()
