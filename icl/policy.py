"""The in-context-learning offloading policy and its no-LLM control.

Both are *host* policies: each slot, the tasks of every episode in flight are decided in one
batch on the host (for ICL: one batched LLM ``score`` call per group of prompts that share
their demonstrations, so the shared description, and the demonstrations where they are
shared, are a reused prefix), then every outcome goes back into the experience pool. No
gradient step touches the LLM.

``ICLPolicy``  scores each action's name as the answer to the prompt (log-likelihood) and
               takes the highest.
``KNNPolicy``  the control: same pool, same selection, and the action with the best mean
               reward among the selected records (untried actions count as unknown and lose
               to any tried action with a positive mean; an empty selection explores).
Both explore: with probability epsilon (x decay^episode) a task gets a uniformly random action.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from jaxsim.config import SimConfig

from .pool import STRATEGIES, ExperiencePool
from .prompt import BASE_FEATURES, PromptBuilder


@dataclass(frozen=True)
class ICLConfig:
    model: str = "smollm2-135m"        # registered name, .gguf path or checkpoint folder
    shots: int = 8                     # demonstrations per prompt
    select: str = "nearest"            # random | recent | nearest | ranked | state
    epsilon: float = 0.1               # exploration probability
    epsilon_decay: float = 1.0         # epsilon x decay^episode
    tau: float = 0.25                  # ranked: score = reward - tau x distance
    pool_size: int = 4096              # records kept (oldest dropped)
    type_penalty: float = 2.0          # distance added between different task types
    max_prompt_tokens: int = 2048      # prompt budget; demonstrations are dropped to fit
    decide: str = "score"              # score: log-likelihood of each action name; generate: free text, parsed
    calibrate: bool = False            # score: subtract each answer's log-likelihood for a content-free prompt
    max_new_tokens: int = 8            # generate: answer length limit
    dtype: str = "float32"
    seed: int = 0

    def validate(self) -> "ICLConfig":
        def bad(field, value, allowed):
            raise ValueError(f"icl.{field} = {value!r} is out of range: allowed {allowed}")
        if self.select not in STRATEGIES:
            raise ValueError(f"icl.select = {self.select!r}: unknown; allowed: {', '.join(STRATEGIES)}")
        if not isinstance(self.shots, int) or self.shots < 0 or self.shots > 256:
            bad("shots", self.shots, "[0, 256]")
        if not 0.0 <= self.epsilon <= 1.0:
            bad("epsilon", self.epsilon, "[0, 1]")
        if not 0.0 < self.epsilon_decay <= 1.0:
            bad("epsilon_decay", self.epsilon_decay, "(0, 1]")
        if self.tau < 0:
            bad("tau", self.tau, "[0, inf)")
        if self.pool_size < 1:
            bad("pool_size", self.pool_size, "[1, inf)")
        if self.type_penalty < 0:
            bad("type_penalty", self.type_penalty, "[0, inf)")
        if self.max_prompt_tokens < 16:
            bad("max_prompt_tokens", self.max_prompt_tokens, "[16, inf)")
        if self.decide not in ("score", "generate"):
            raise ValueError(f"icl.decide = {self.decide!r}: unknown; allowed: score, generate")
        if not 1 <= self.max_new_tokens <= 256:
            bad("max_new_tokens", self.max_new_tokens, "[1, 256]")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"icl.dtype = {self.dtype!r}: unknown; allowed: float32, bfloat16")
        return self


class DemoPolicy:
    """Pool, selection, exploration and bookkeeping shared by the ICL policy and the kNN control."""

    name = "demo"

    def __init__(self, sim_cfg: SimConfig, cfg: ICLConfig, pool: ExperiencePool | None = None):
        self.sim_cfg, self.cfg = sim_cfg, cfg.validate()
        self.n_actions = len(sim_cfg.actions)
        self.pool = pool or ExperiencePool(len(BASE_FEATURES) + self.n_actions, cfg.pool_size, cfg.type_penalty)
        self.rng = np.random.default_rng(cfg.seed)
        self.stats = {"decisions": 0, "explored": 0, "fallbacks": 0, "decide_s": 0.0}

    def epsilon(self, episode: int) -> float:
        return self.cfg.epsilon * self.cfg.epsilon_decay ** episode

    def choose(self, feats: np.ndarray, types: np.ndarray, demos: list[np.ndarray], fallback: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decide(self, feats: np.ndarray, types: np.ndarray, mask: np.ndarray, episodes: np.ndarray,
               fallback: np.ndarray | None = None) -> np.ndarray:
        """Actions [B, U] for the tasks of B episodes (feats [B, U, F], types/mask [B, U]).

        fallback [B, U]: the action used when a free-text answer names no action (the greedy heuristic's,
        from the runner); without it such a task gets a random action. Either way it is counted.
        """
        t0 = time.perf_counter()
        actions = self.rng.integers(0, self.n_actions, size=mask.shape).astype(np.int32)
        eps = np.array([self.epsilon(int(e)) for e in episodes])[:, None]
        explore = mask & (self.rng.random(mask.shape) < eps)
        ask = mask & ~explore
        b_i, u_i = np.nonzero(ask)
        if len(b_i):
            f, t = feats[b_i, u_i], types[b_i, u_i]
            demos = self.pool.select(self.cfg.select, self.cfg.shots, f, t, self.rng, self.cfg.tau)
            fb = actions[b_i, u_i] if fallback is None else np.asarray(fallback)[b_i, u_i]
            actions[b_i, u_i] = self.choose(f, t, demos, fb)
        self.stats["decisions"] += int(mask.sum())
        self.stats["explored"] += int(explore.sum())
        self.stats["decide_s"] += time.perf_counter() - t0
        return actions

    def observe(self, feats, types, mask, actions, rewards, episodes, slot: int) -> None:
        """Every decided task's outcome goes back into the pool."""
        b_i, u_i = np.nonzero(mask)
        self.pool.add(feats[b_i, u_i], types[b_i, u_i], actions[b_i, u_i], rewards[b_i, u_i],
                      np.asarray(episodes)[b_i], np.full(len(b_i), slot))

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


class ICLPolicy(DemoPolicy):
    """An LLM picks the action from a prompt of description, demonstrations and the current task."""

    name = "icl"

    def __init__(self, sim_cfg: SimConfig, cfg: ICLConfig, lm=None, pool: ExperiencePool | None = None):
        super().__init__(sim_cfg, cfg, pool)
        if lm is None:
            from .llm import LanguageModel
            lm = LanguageModel.load(cfg.model, dtype=cfg.dtype)
        self.lm = lm
        has_template = getattr(lm.tokenizer, "chat_template", None)
        wrap = (lambda s: lm.chat_prompt(s)) if has_template else (lambda s: s + "\nAnswer:")
        self.candidates = list(sim_cfg.action_names) if has_template else [" " + a for a in sim_cfg.action_names]
        self.prompts = PromptBuilder(sim_cfg, lambda s: len(lm.encode(s)), wrap, cfg.max_prompt_tokens)
        self.needs_fallback = cfg.decide == "generate"      # the runner then passes greedy's actions
        self.bias = np.zeros(len(self.candidates))
        if cfg.calibrate:
            # content-free calibration: the answer prior of the description with no demonstration and no task
            cf = wrap(self.prompts.description + "Current task:\nN/A\nAnswer with one option: "
                      + ", ".join(sim_cfg.action_names) + ".")
            self.bias = lm.score([cf], self.candidates)[0]
        self.stats.update({"prompt_tokens": 0, "llm_calls": 0, "llm_s": 0.0})

    def parse_answer(self, text: str) -> int | None:
        """The action named first in a free-text answer (longest names matched first), or None."""
        names = self.sim_cfg.action_names
        hits = []
        for a in sorted(range(len(names)), key=lambda i: -len(names[i])):
            pos = text.find(names[a])
            if pos >= 0 and not any(p <= pos < p + len(names[b]) for b, p in hits):
                hits.append((a, pos))
        return min(hits, key=lambda h: h[1])[0] if hits else None

    def choose(self, feats, types, demos, fallback):
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
            texts = self.lm.generate(prompts, self.cfg.max_new_tokens, stop=["\n"])
            for i, text in enumerate(texts):
                a = self.parse_answer(text)
                if a is None:
                    self.stats["fallbacks"] += 1
                out[i] = fallback[i] if a is None else a
            self.stats["llm_calls"] += 1
            groups = {}
        for idx in groups.values():
            lp = self.lm.score([prompts[i] for i in idx], self.candidates) - self.bias
            out[idx] = lp.argmax(1)
            self.stats["llm_calls"] += 1
        self.stats["llm_s"] += time.perf_counter() - t0
        return out

    def get_state(self) -> dict:
        return {**super().get_state(), "truncated": self.prompts.truncated, "dropped": self.prompts.dropped}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.prompts.truncated, self.prompts.dropped = state["truncated"], state["dropped"]

    def summary(self) -> dict:
        s = super().summary()
        asked = max(s["decisions"] - s["explored"], 1)
        s["mean_prompt_tokens"] = s["prompt_tokens"] / asked
        s["truncated_prompts"] = self.prompts.truncated
        s["truncated_share"] = self.prompts.truncated / asked
        s["dropped_demos"] = self.prompts.dropped
        s["fallback_share"] = s["fallbacks"] / asked
        s["model"] = self.cfg.model
        s["n_params"] = int(getattr(self.lm, "n_params", 0))
        return s


def make_host_policy(name: str, sim_cfg: SimConfig, cfg: ICLConfig, lm=None) -> DemoPolicy:
    if name == "icl":
        return ICLPolicy(sim_cfg, cfg, lm=lm)
    if name == "knn":
        return KNNPolicy(sim_cfg, cfg)
    raise ValueError(f"host policy {name!r}: unknown; allowed: icl, knn")


def with_overrides(cfg: ICLConfig, **kw) -> ICLConfig:
    return dataclasses.replace(cfg, **{k: v for k, v in kw.items() if v is not None}).validate()
