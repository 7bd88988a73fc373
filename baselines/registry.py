"""Policy names -> (policy function, policy params), for the command-line tools.

Names: ``random``, ``greedy``, ``oracle``, ``<action>_only`` for every action of the config
(``edge_only``, ``cloud_small_only``, ``cloud_large_only`` by default), ``ppo`` (needs a
checkpoint), and the host policies ``icl``, ``knn`` and ``knn_value`` (``icl.policy``), which are returned as
objects with ``decide``/``observe`` and run by ``icl.runner.rollout_host``.
``policy_params`` None means the policy receives the environment params.
"""

from __future__ import annotations

from typing import Any, Callable

from jaxsim.config import SimConfig

from . import heuristics, oracle


def policy_names(cfg: SimConfig) -> list[str]:
    return ["random", *[f"{a}_only" for a in cfg.action_names], "greedy", "oracle", "ppo", "icl", "knn", "knn_value"]


def default_policies(cfg: SimConfig) -> list[str]:
    return ["random", *[f"{a}_only" for a in cfg.action_names], "greedy", "oracle"]


HOST_POLICIES = ("icl", "knn", "knn_value")


def make_policy(name: str, cfg: SimConfig, checkpoint: str | None = None, icl_cfg=None) -> tuple[Callable, Any]:
    fixed = {f"{a}_only": i for i, a in enumerate(cfg.action_names)}
    if name == "random":
        return heuristics.random_policy, None
    if name == "greedy":
        return heuristics.greedy_policy, None
    if name == "oracle":
        return oracle.oracle_policy, None
    if name in fixed:
        return heuristics.single_site(fixed[name]), None
    if name == "ppo":
        if not checkpoint:
            raise ValueError("policy 'ppo' needs --checkpoint PATH (a directory written by scripts.train_ppo)")
        from .ppo import load_ppo_policy
        return load_ppo_policy(checkpoint)
    if name in HOST_POLICIES:
        from icl.policy import ICLConfig, make_host_policy
        return make_host_policy(name, cfg, icl_cfg or ICLConfig()), None
    raise ValueError(f"policy {name!r}: unknown; allowed: {', '.join(policy_names(cfg))}")
