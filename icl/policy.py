"""The in-context-learning offloading policy and its no-LLM controls.

All are *host* policies: each slot, the tasks of every episode in flight are decided in one
batch on the host, then every outcome goes back into the experience pool. No gradient step
touches the LLM.

``ICLPolicy``  ``decide = value`` (default): for each action, the model grades the outcome (a digit 0-9,
               ``prompt.ValuePrompts``) after a prompt of every action's nearest records with their
               grades; the action with the best expected grade wins. ``decide = action`` (the paper's
               form): the log-likelihood of each action's name as the answer; ``generate``: free text,
               parsed for an action name.
``KNNPolicy``  the control: same pool, same selection, and the action with the best mean reward among
               the selected records (untried actions count as unknown and lose to any tried action with
               a positive mean; an empty selection explores).
``KNNValuePolicy``  the value form's no-LLM twin: the same per-action records, and the action whose records
               have the best mean grade.
All explore: with probability epsilon (x decay^episode) a task gets a uniformly random action.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from jaxsim.config import SimConfig
from jaxsim.fields import bounded, check_fields, flag, one_of

from .llm.backend import as_backend
from .pool import STRATEGIES, ExperiencePool
from .prompt import BASE_FEATURES, N_GRADES, PromptBuilder, ValuePrompts, grade_reward, reward_grade, task_features


DECIDE = ("value", "action", "generate")
VALUE_RULES = ("expected", "contrast", "blend")


@dataclass(frozen=True)
class ICLConfig:
    model: str = "smollm2-135m"                          # registered name, .gguf path or checkpoint folder; with
                                                         # an endpoint, the server's model name
    endpoint: str = ""                                   # "" = the Flax runtime; else an OpenAI-compatible base URL
    max_in_flight: int = bounded(4, 1, 256, integer=True)   # endpoint: requests in flight at once
    shots: int = bounded(6, 0, 256, integer=True)        # demonstrations per prompt (value: the total, see below)
    shots_per_action: int = bounded(0, 0, 256, integer=True)  # value form and twin: records per action; 0 = from
                                                         # shots: max(shots // actions, min(shots, 2))
    select: str = one_of("nearest", STRATEGIES)
    epsilon: float = bounded(0.1, 0.0, 1.0)              # exploration probability
    epsilon_decay: float = bounded(1.0, 0.0, 1.0, lo_open=True)   # epsilon x decay^episode
    tau: float = bounded(0.25, 0.0, 1e6)                 # ranked: score = reward - tau x distance
    pool_size: int = bounded(4096, 1, 1 << 24, integer=True)      # records kept (oldest dropped)
    type_penalty: float = bounded(2.0, 0.0, 1e6)         # distance added between different task types
    max_prompt_tokens: int = bounded(2048, 16, 1 << 20, integer=True)  # prompt budget, tokens (value: the
                                             # records per action are cut, least relevant first, to fit)
    decide: str = one_of("value", DECIDE)    # value: grade each action's outcome; action: log-likelihood of each
                                             # action name; generate: free text, parsed
    describe: bool = flag(False)             # value: the action-form description before the header (cached prefix)
    value_rule: str = one_of("contrast", VALUE_RULES)   # value: expected grade; contrast: the grades'
                                             # log-probabilities minus their mean over actions first; blend: the
                                             # contrast value averaged with the records' mean (the twin's)
    calibrate: bool = flag(False)            # subtract each answer's (action) or each action's grade (value)
                                             # log-likelihood for a content-free prompt
    max_new_tokens: int = bounded(8, 1, 256, integer=True)   # generate: answer length limit
    max_rows: int = bounded(16, 1, 256, integer=True)        # value: prompts per forward pass
    dtype: str = one_of("float32", ("float32", "bfloat16"))
    seed: int = bounded(0, 0, 2**63 - 1, integer=True)

    def validate(self) -> "ICLConfig":
        check_fields(self, "icl")
        return self

    @property
    def per_action(self) -> bool:
        """Demonstrations selected per action (the value form and its kNN twin)."""
        return self.decide == "value"

    def records_per_action(self, n_actions: int) -> int:
        """Records of each action in a value prompt: ``shots_per_action``, or ``shots`` shared over the actions
        but never fewer than two (with many actions one record each would leave the decision to the model's
        prior)."""
        if self.shots_per_action:
            return self.shots_per_action
        return max(self.shots // n_actions, min(self.shots, 2))


class DemoPolicy:
    """Pool, selection, exploration and bookkeeping shared by the ICL policy and the kNN control; a host policy
    (``experiment.host.HostPolicy``)."""

    needs_fallback = False
    name = "demo"

    def __init__(self, sim_cfg: SimConfig, cfg: ICLConfig, pool: ExperiencePool | None = None):
        self.sim_cfg, self.cfg = sim_cfg, cfg.validate()
        self.n_actions = len(sim_cfg.actions)
        self.pool = pool or ExperiencePool(len(BASE_FEATURES) + self.n_actions, cfg.pool_size, cfg.type_penalty)
        self.rng = np.random.default_rng(cfg.seed)
        self.stats = {"decisions": 0, "explored": 0, "fallbacks": 0, "decide_s": 0.0}

    def epsilon(self, episode: int) -> float:
        return self.cfg.epsilon * self.cfg.epsilon_decay ** episode

    per_action = False      # demonstrations per action ([Q][A] index arrays) rather than per task ([Q])

    def select(self, feats: np.ndarray, types: np.ndarray) -> list:
        c = self.cfg
        if self.per_action:
            return self.pool.select_per_action(c.select, c.records_per_action(self.n_actions), feats, types,
                                               self.n_actions,
                                               len(BASE_FEATURES), self.rng, c.tau)
        return self.pool.select(c.select, c.shots, feats, types, self.rng, c.tau)

    def choose(self, feats: np.ndarray, types: np.ndarray, demos: list, fallback: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decide(self, obs, episodes: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
        """Actions [B, U] for the tasks of B episodes (``obs``: their observations as NumPy arrays [B, U, ...]).

        fallback [B, U]: the action used when a free-text answer names no action (the greedy heuristic's,
        from the runner); without it such a task gets a random action. Either way it is counted.
        """
        t0 = time.perf_counter()
        feats, types, mask = task_features(obs)
        actions = self.rng.integers(0, self.n_actions, size=mask.shape).astype(np.int32)
        eps = np.array([self.epsilon(int(e)) for e in episodes])[:, None]
        explore = mask & (self.rng.random(mask.shape) < eps)
        ask = mask & ~explore
        b_i, u_i = np.nonzero(ask)
        if len(b_i):
            f, t = feats[b_i, u_i], types[b_i, u_i]
            demos = self.select(f, t)
            fb = actions[b_i, u_i] if fallback is None else np.asarray(fallback)[b_i, u_i]
            actions[b_i, u_i] = self.choose(f, t, demos, fb)
        self.stats["decisions"] += int(mask.sum())
        self.stats["explored"] += int(explore.sum())
        self.stats["decide_s"] += time.perf_counter() - t0
        return actions

    def observe(self, obs, actions, rewards, episodes, slot: int) -> None:
        """Every decided task's outcome goes back into the pool."""
        feats, types, mask = task_features(obs)
        b_i, u_i = np.nonzero(mask)
        self.pool.add(feats[b_i, u_i], types[b_i, u_i], actions[b_i, u_i], rewards[b_i, u_i],
                      np.asarray(episodes)[b_i], np.full(len(b_i), slot))

    def save_experience(self, directory: str) -> None:
        """The pool (orbax, atomic) under ``directory``/pool."""
        self.pool.save(os.path.join(directory, "pool"))

    def load_experience(self, directory: str) -> None:
        self.pool = ExperiencePool.load(os.path.join(directory, "pool"), self.cfg.type_penalty)

    def get_state(self) -> dict:
        """JSON-able state besides the pool (random generator, counters), for resuming a run exactly."""
        return {"rng": self.rng.bit_generator.state, "stats": dict(self.stats)}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.stats.update(state["stats"])

    def summary(self) -> dict:
        s = dict(self.stats)
        s["explored_share"] = s["explored"] / max(s["decisions"], 1)
        s["pool_records"] = len(self.pool)
        return s


class KNNPolicy(DemoPolicy):
    """The no-LLM control: best mean reward among the selected records."""

    name = "knn"

    def choose(self, feats, types, demos, fallback):
        out = np.empty(len(types), np.int32)
        for i, d in enumerate(demos):
            if len(d) == 0:
                out[i] = self.rng.integers(self.n_actions)
                continue
            acts, rews = self.pool.action[d], self.pool.reward[d]
            sums = np.bincount(acts, weights=rews, minlength=self.n_actions)
            cnt = np.bincount(acts, minlength=self.n_actions)
            mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), 0.0)
            mean = np.where(cnt > 0, mean, np.minimum(0.0, mean[cnt > 0].max()))   # untried: unknown, 0 at best
            best = np.flatnonzero(mean == mean.max())
            out[i] = best[self.rng.integers(len(best))] if len(best) > 1 else best[0]
        return out


class KNNValuePolicy(DemoPolicy):
    """The value form's no-LLM twin: each action's nearest records (the same as the value prompt's) and the
    action whose records have the best mean outcome grade; an action without records counts as unknown
    (grade 5, reward about 0, at best), as in the kNN vote."""

    name = "knn_value"
    per_action = True

    def choose(self, feats, types, demos, fallback):
        return np.array([self.best(value_from_records(self.pool, d)) for d in demos], np.int32)

    def best(self, values: np.ndarray) -> int:
        top = np.flatnonzero(values == values.max())
        return int(top[self.rng.integers(len(top))] if len(top) > 1 else top[0])


def value_from_records(pool: ExperiencePool, per_action: list[np.ndarray]) -> np.ndarray:
    """Mean grade-midpoint reward of each action's records [A]; an action without records gets min(grade 5's
    reward, the best known)."""
    vals = np.array([grade_reward(reward_grade(pool.reward[d])).mean() if len(d) else np.nan for d in per_action])
    known = vals[np.isfinite(vals)]
    unknown = min(float(grade_reward(5)), known.max()) if len(known) else 0.0
    return np.where(np.isfinite(vals), vals, unknown)


def value_estimates(lp: np.ndarray, rule: str = "expected") -> np.ndarray:
    """Expected outcome (reward units) of each action from the grade log-probabilities lp [..., A, G].

    expected: the grade distribution renormalised over the G grade tokens (so anything outside the grades,
    and any constant added to every grade's logit, cancels), mapped to rewards by ``grade_reward``.
    contrast: each grade's log-probability minus its mean over the actions first, which cancels any per-grade
    prior b_g shared by the actions exactly (only the differences between the actions' answers remain)."""
    if rule not in ("expected", "contrast"):
        raise ValueError(f"icl.value_rule = {rule!r}: unknown; allowed: {', '.join(VALUE_RULES)}")
    lp = np.asarray(lp, np.float64)
    if rule == "contrast":
        lp = lp - lp.mean(axis=-2, keepdims=True)
    z = lp - lp.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    return p @ grade_reward(np.arange(lp.shape[-1]))


class ICLPolicy(DemoPolicy):
    """An LLM picks the action from a prompt of description, demonstrations and the current task."""

    name = "icl"

    def __init__(self, sim_cfg: SimConfig, cfg: ICLConfig, lm=None, pool: ExperiencePool | None = None):
        """lm: a backend (``icl.llm.backend``), a loaded ``LanguageModel``, or None: loaded from ``cfg`` (the
        Flax runtime on ``cfg.model``, or the server at ``cfg.endpoint``)."""
        super().__init__(sim_cfg, cfg, pool)
        if lm is None:
            from .llm.backend import load_backend
            lm = load_backend(cfg.model, dtype=cfg.dtype, endpoint=cfg.endpoint, max_in_flight=cfg.max_in_flight)
        self.llm = lm = as_backend(lm)
        self.per_action = cfg.per_action
        self.stats.update({"prompt_tokens": 0, "llm_calls": 0, "llm_s": 0.0})
        if cfg.decide == "value":
            self.values = ValuePrompts(sim_cfg, cfg.describe)
            self.grades = [str(g) for g in range(N_GRADES)]
            self.needs_fallback = False
            self.value_bias = np.zeros((self.n_actions, N_GRADES))
            if cfg.calibrate:
                # content-free calibration per action: the grades each branch gets with no record and no task
                self.value_bias = lm.grade_logprobs(
                    ["N/A"], [[f" load N/A -> {a}:" for a in sim_cfg.action_names]], self.grades,
                    prefix=self.values.prefix)[0]
            return
        has_template = lm.chat_template
        wrap = (lambda s: lm.chat_prompt(s)) if has_template else (lambda s: s + "\nAnswer:")
        self.candidates = list(sim_cfg.action_names) if has_template else [" " + a for a in sim_cfg.action_names]
        self.prompts = PromptBuilder(sim_cfg, lm.count_tokens, wrap, cfg.max_prompt_tokens)
        self.needs_fallback = cfg.decide == "generate"      # the runner then passes greedy's actions
        self.bias = np.zeros(len(self.candidates))
        if cfg.calibrate:
            # content-free calibration: the answer prior of the description with no demonstration and no task
            cf = wrap(self.prompts.description + "Current task:\nN/A\nAnswer with one option: "
                      + ", ".join(sim_cfg.action_names) + ".")
            self.bias = lm.score([cf], self.candidates)[0]

    def parse_answer(self, text: str) -> int | None:
        """The action named first in a free-text answer (longest names matched first), or None."""
        names = self.sim_cfg.action_names
        hits = []
        for a in sorted(range(len(names)), key=lambda i: -len(names[i])):
            pos = text.find(names[a])
            if pos >= 0 and not any(p <= pos < p + len(names[b]) for b, p in hits):
                hits.append((a, pos))
        return min(hits, key=lambda h: h[1])[0] if hits else None

    def value_prompt(self, feat, task_type, per_action: list) -> str:
        """The value prompt of one task from its records per action, within ``max_prompt_tokens`` (the prefix
        included): while over, the least relevant record of the action with the most records is dropped (and
        counted). A prompt with fewer characters than the budget cannot exceed it, so tokens are counted only
        for long ones."""
        pool, vp, budget = self.pool, self.values, self.cfg.max_prompt_tokens
        per = [list(d) for d in per_action]

        def text():
            lines = [vp.demo_line(pool.features[j], pool.task_type[j], pool.action[j], pool.reward[j])
                     for d in per for j in d]
            return vp.prompt(lines, feat, task_type)

        out = text()
        while (len(vp.prefix) + len(out) > budget and any(per)
               and self.llm.count_tokens(vp.prefix + out) > budget):
            longest = max(range(len(per)), key=lambda a: len(per[a]))
            per[longest].pop(0)
            self.stats["dropped_demos"] = self.stats.get("dropped_demos", 0) + 1
            out = text()
        return out

    def value_logprobs(self, feats, types, demos) -> np.ndarray:
        """Grade log-probabilities [Q, A, G] of every action for every task (one ``grade_logprobs`` call)."""
        vp = self.values
        prompts = [self.value_prompt(f, t, per) for f, t, per in zip(feats, types, demos)]
        branches = [[vp.branch(f, a) for a in range(self.n_actions)] for f in feats]
        t0 = time.perf_counter()
        tok0 = self.llm.stats["prompt_tokens"]
        lp = self.llm.grade_logprobs(prompts, branches, self.grades, prefix=vp.prefix, max_rows=self.cfg.max_rows)
        self.stats["llm_s"] += time.perf_counter() - t0
        self.stats["llm_calls"] += 1
        # tokens computed per decision (Flax: the prompt after the cached prefix, and the branches; a server:
        # the prompt tokens it reports)
        self.stats["prompt_tokens"] += self.llm.stats["prompt_tokens"] - tok0
        return lp

    def action_values(self, lp: np.ndarray, demos: list, rule: str | None = None) -> np.ndarray:
        """Each action's value [Q, A] (reward units) from the grade log-probabilities lp [Q, A, G] by ``rule``
        (the config's): expected or contrast (``value_estimates``), or blend: the contrast value and the mean
        outcome of the action's records in the prompt (``value_from_records``, the twin's), averaged."""
        rule = rule or self.cfg.value_rule
        if rule != "blend":
            return value_estimates(lp, rule)
        twin = np.stack([value_from_records(self.pool, d) for d in demos]) if len(demos) else np.zeros(lp.shape[:2])
        return 0.5 * value_estimates(lp, "contrast") + 0.5 * twin

    def choose(self, feats, types, demos, fallback):
        if self.cfg.decide == "value":
            v = self.action_values(self.value_logprobs(feats, types, demos) - self.value_bias, demos)
            return v.argmax(-1).astype(np.int32)
        pool = self.pool
        lines = [[self.prompts.demo_line(pool.features[j], pool.task_type[j], pool.action[j], pool.reward[j])
                  for j in d] for d in demos]
        prompts = []
        for ln, f, t in zip(lines, feats, types):
            prompts.append(self.prompts.build(ln, f, t))
            self.stats["prompt_tokens"] += self.prompts.last_tokens
        # group prompts whose demonstrations are identical: their common prefix then covers them
        groups: dict[tuple, list[int]] = {}
        for i, d in enumerate(demos):
            groups.setdefault(tuple(d.tolist()), []).append(i)
        if len(groups) > len(prompts) // 2:          # per-task demonstrations: one call, shared description
            groups = {(): list(range(len(prompts)))}
        out = np.empty(len(prompts), np.int32)
        t0 = time.perf_counter()
        if self.cfg.decide == "generate":
            texts = self.llm.generate(prompts, self.cfg.max_new_tokens, stop=["\n"])
            for i, text in enumerate(texts):
                a = self.parse_answer(text)
                if a is None:
                    self.stats["fallbacks"] += 1
                out[i] = fallback[i] if a is None else a
            self.stats["llm_calls"] += 1
            groups = {}
        for idx in groups.values():
            lp = self.llm.score([prompts[i] for i in idx], self.candidates) - self.bias
            out[idx] = lp.argmax(1)
            self.stats["llm_calls"] += 1
        self.stats["llm_s"] += time.perf_counter() - t0
        return out

    def get_state(self) -> dict:
        if self.cfg.decide == "value":
            return super().get_state()
        return {**super().get_state(), "truncated": self.prompts.truncated, "dropped": self.prompts.dropped}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self.cfg.decide != "value":
            self.prompts.truncated, self.prompts.dropped = state["truncated"], state["dropped"]

    def summary(self) -> dict:
        s = super().summary()
        asked = max(s["decisions"] - s["explored"], 1)
        s["mean_prompt_tokens"] = s["prompt_tokens"] / asked
        truncated, dropped = ((0, self.stats.get("dropped_demos", 0)) if self.cfg.decide == "value" else
                              (self.prompts.truncated, self.prompts.dropped))
        s["truncated_prompts"] = truncated
        s["truncated_share"] = truncated / asked
        s["dropped_demos"] = dropped
        s["fallback_share"] = s["fallbacks"] / asked
        s["model"] = self.cfg.model
        s["n_params"] = int(self.llm.n_params)
        s["backend"] = self.llm.info()
        s["floor_share"] = self.llm.stats["floor_grades"] / max(self.llm.stats["grade_slots"], 1)
        return s


def make_host_policy(name: str, sim_cfg: SimConfig, cfg: ICLConfig, lm=None,
                     pool: ExperiencePool | None = None) -> DemoPolicy:
    """The ICL policy or one of its no-LLM controls, optionally starting from a saved ``pool``."""
    if name == "icl":
        return ICLPolicy(sim_cfg, cfg, lm=lm, pool=pool)
    if name == "knn":
        return KNNPolicy(sim_cfg, cfg, pool)
    if name == "knn_value":
        return KNNValuePolicy(sim_cfg, cfg, pool)
    raise ValueError(f"host policy {name!r}: unknown; allowed: icl, knn, knn_value")
