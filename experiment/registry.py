"""Every policy by name, device (jitted) and host (ICL, kNN) alike, built from one set of options.

    from experiment import register
    register("always_edge", lambda key, obs, params: jnp.zeros(obs.mask.shape, jnp.int32))

A *device* policy is ``policy(key, obs, params) -> actions [U] int32``, pure JAX, run inside the jitted,
vmapped rollout (``params`` is its own pytree, or the environment's ``EnvParams`` when ``build`` gives
None). A *host* policy is an object following ``experiment.host.HostPolicy``, decided in Python between
jitted steps. ``register(name, policy)`` adds a device policy; ``register(name, build=fn, host=...)`` a
policy built from the scenario and the options: ``fn(cfg, options)`` returns ``(policy, policy_params)``
for a device policy, the policy object for a host one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax.numpy as jnp

from baselines import heuristics, oracle
from icl.policy import ICLConfig, make_host_policy
from icl.pool import ExperiencePool
from jaxsim.config import SimConfig
from jaxsim.fields import ConfigError
from jaxsim.params import make_params


@dataclass(frozen=True)
class PolicyOptions:
    """Everything a policy may be built from besides the scenario."""
    checkpoint: str | None = None          # ppo: a checkpoint directory (scripts.studies.train_ppo --out)
    icl: ICLConfig = ICLConfig()           # icl, knn, knn_value
    pool: str | None = None                # host policies with a pool: start from this saved experience
    lm: Any = None                         # icl: an already loaded icl.llm.LanguageModel (else icl.model is loaded)
    allow_other_scenario: bool = False     # ppo: evaluate a checkpoint trained on another scenario


@dataclass(frozen=True)
class PolicyEntry:
    name: str
    host: bool
    build: Callable[[SimConfig, PolicyOptions], Any]
    doc: str = ""


_REGISTRY: dict[str, PolicyEntry] = {}


def register(name: str, policy: Callable | None = None, *, build: Callable | None = None, host: bool = False,
             doc: str = "") -> None:
    """Add a policy under ``name`` (replacing a registered one of that name): either a device policy function
    ``policy(key, obs, env_params)``, or ``build(cfg, options)`` (see the module docstring)."""
    if (policy is None) == (build is None):
        raise ValueError(f"register({name!r}): give exactly one of policy and build")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"register({name!r}): a policy name must be an identifier (letters, digits, _)")
    if policy is not None:
        if host:
            raise ValueError(f"register({name!r}): a host policy needs build=...")
        build = lambda cfg, options, _p=policy: (_p, None)            # noqa: E731
    _REGISTRY[name] = PolicyEntry(name, host, build, doc)


def _heuristic(name: str, action: int | None = None):
    """A shipped heuristic as ``heuristics.heuristic_policy`` with its choice as the policy's data, so every
    heuristic of a scenario (random, greedy, greedy_sequential and each ``<action>_only``, the task-type table of
    its action) runs one compiled program; the rollouts of the heuristic's own function bit for bit."""
    def build(cfg: SimConfig, options: PolicyOptions):
        table = None if action is None else jnp.full(len(cfg.traffic.task_types), action, jnp.int32)
        return heuristics.heuristic_policy, heuristics.heuristic_choice(name, make_params(cfg), table)
    return build


def _entries(cfg: SimConfig) -> dict[str, PolicyEntry]:
    """The registered policies plus one ``<action>_only`` policy per action of ``cfg``."""
    singles = {f"{a}_only": PolicyEntry(f"{a}_only", False, _heuristic("table", i), f"every task to {a}")
               for i, a in enumerate(cfg.action_names)}
    return {"random": _REGISTRY["random"], **singles, **{k: v for k, v in _REGISTRY.items() if k != "random"}}


def policy_names(cfg: SimConfig) -> list[str]:
    return list(_entries(cfg))


def default_policies(cfg: SimConfig) -> list[str]:
    """The policies a Monte Carlo run compares when none are named: every heuristic and the oracle."""
    return ["random", *[f"{a}_only" for a in cfg.action_names], "greedy", "greedy_sequential", "oracle"]


def is_host(name: str, cfg: SimConfig) -> bool:
    return _entry(name, cfg).host


def _entry(name: str, cfg: SimConfig) -> PolicyEntry:
    entries = _entries(cfg)
    if name not in entries:
        raise ConfigError(f"--policies: {name!r} unknown; allowed: {', '.join(entries)}")
    return entries[name]


def make_policy(name: str, cfg: SimConfig, options: PolicyOptions = PolicyOptions()):
    """``(policy, policy_params)`` of a device policy; the policy object of a host policy."""
    return _entry(name, cfg).build(cfg, options)


# ---------------------------------------------------------------------- the built-in policies
def _ppo(cfg: SimConfig, options: PolicyOptions):
    if not options.checkpoint:
        raise ConfigError("--checkpoint: policy 'ppo' needs a checkpoint directory (written by scripts.studies.train_ppo)")
    from baselines.ppo import load_ppo_policy
    return load_ppo_policy(options.checkpoint, make_params(cfg), sim_config=cfg,   # checked against the scenario
                           allow_other_scenario=options.allow_other_scenario)


def _host(name: str):
    def build(cfg: SimConfig, options: PolicyOptions):
        pool = ExperiencePool.load(options.pool, options.icl.type_penalty) if options.pool else None
        return make_host_policy(name, cfg, options.icl, lm=options.lm, pool=pool)
    return build


register("random", build=_heuristic("random"), doc="a uniformly random action for every task")
register("greedy", build=_heuristic("greedy"), doc="each task's best estimated reward on its own")
register("greedy_sequential", build=_heuristic("greedy_sequential"),
         doc="the slot's tasks one by one, each seeing the load the earlier ones added")
register("oracle", oracle.oracle_policy, doc="search over the slot's joint assignment with the true outcomes")
register("ppo", build=_ppo, doc="the trained actor-critic (baselines.ppo)")
register("icl", build=_host("icl"), host=True, doc="the in-context-learning LLM (icl.policy.ICLPolicy)")
register("knn", build=_host("knn"), host=True, doc="the no-LLM control: best mean reward of the selected records")
register("knn_value", build=_host("knn_value"), host=True, doc="the value form's no-LLM twin")
