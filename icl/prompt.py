"""Prompts for the in-context-learning offloading policy.

A prompt is (1) the task description: the goal (the reward of DESIGN.md §6 and what raises
it), every action with its model, site, typical per-token delay and quality per task type,
and what each observation field means with its unit; (2) demonstrations, one compact line
per past (observation, action, reward) record, all formatted identically; (3) the current
observation; (4) an answer cue. The model's chat template wraps it when it has one, so the
answer is the assistant's reply, scored as one of the action names.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from jaxsim.config import SimConfig
from jaxsim.env import Observation

# numeric features of a task, in the order of ``task_features`` (loads come last, one per action)
BASE_FEATURES = ("prompt_tokens", "output_tokens", "budget_s", "min_quality", "sinr_db", "n_tasks")


def task_features(obs: Observation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numeric features [..., F], task types [...] and masks [...] of every task slot (host arrays)."""
    cols = [np.asarray(getattr(obs, f), np.float32) for f in BASE_FEATURES]
    feats = np.concatenate([np.stack(cols, -1), np.asarray(obs.load_seqs, np.float32)], -1)
    return feats, np.asarray(obs.task_type), np.asarray(obs.mask)


class PromptBuilder:
    """Formats descriptions, demonstrations and queries; fits prompts into a token budget."""

    def __init__(self, cfg: SimConfig, count_tokens: Callable[[str], int],
                 wrap: Callable[[str], str] | None = None, max_prompt_tokens: int = 2048):
        self.cfg = cfg
        self.actions = cfg.action_names
        self.types = cfg.type_names
        self.count_tokens = count_tokens
        self.wrap = wrap or (lambda s: s)
        self.max_prompt_tokens = int(max_prompt_tokens)
        self.description = self._description()
        self.dropped = 0        # demonstrations dropped to fit the budget, over the policy's life
        self.truncated = 0      # prompts that lost at least one demonstration
        self.last_tokens = 0    # length of the last prompt built, tokens
        base = self.count_tokens(self.wrap(self.description + self.query_block(np.zeros(len(BASE_FEATURES) + len(
            self.actions), np.float32) + 1e4, 0)))
        if base > self.max_prompt_tokens:
            raise ValueError(f"max_prompt_tokens = {self.max_prompt_tokens}: the description and the current task "
                             f"alone take {base} tokens; allowed >= {base}")

    # -------------------------------------------------------------- text blocks
    def _description(self) -> str:
        cfg = self.cfg
        rw = cfg.reward
        lines = [
            "You decide where each generative-AI task of a 6G network is served. Options:",
        ]
        for a in cfg.actions:
            m, h = cfg.model(a.model), cfg.hw(a.hardware)
            inf = cfg.inference
            b = 1 + a.bg_max_seqs // 2
            bw = h.mem_bw_bytes_s * a.n_gpus * inf.eta_memory
            fl = h.peak_flops * a.n_gpus * inf.eta_compute
            step_ms = 1e3 * max(2 * m.n_params * b / fl,
                                (m.n_params * m.bytes_per_weight + b * inf.bg_context_tokens * m.kv_bytes_per_token) / bw)
            q = ", ".join(f"{t} {m.quality[t]:.2f}" for t in self.types)
            where = ("the edge server of the user's cell, no backhaul" if a.site == "edge" else
                     f"the cloud, shared with other traffic, +{2e3 * cfg.backhaul.latency_s:.0f} ms backhaul")
            lines.append(f"- {a.name}: {m.name} on {a.n_gpus} x {a.hardware} at {where}; about {step_ms:.0f} ms "
                         f"per output token at typical load, slower with more sequences; quality {q}.")
        lines += [
            f"Reward = quality - {rw.w_delay:g} x delay/budget - {rw.w_miss:g} if the delay exceeds the budget or "
            "the quality is below the task's minimum. Choose the option with the highest reward.",
            "Each line: task type, p = prompt tokens, o = output tokens, b = delay budget in s, "
            "q = minimum quality, sinr = link SINR in dB, load = sequences running on "
            + "/".join(self.actions) + ", n = tasks this slot; then -> the option chosen and its reward.",
        ]
        return "\n".join(lines) + "\n"

    def task_line(self, feat: np.ndarray, task_type: int) -> str:
        p, o, b, q, s, n = feat[:len(BASE_FEATURES)]
        loads = "/".join(f"{x:.0f}" for x in feat[len(BASE_FEATURES):])
        return f"{self.types[int(task_type)]} p{p:.0f} o{o:.0f} b{b:g} q{q:.2f} sinr{s:.0f} load {loads} n{n:.0f}"

    def demo_line(self, feat, task_type, action, reward) -> str:
        return f"{self.task_line(feat, task_type)} -> {self.actions[int(action)]} ({reward:+.2f})"

    def query_block(self, feat, task_type) -> str:
        return ("Current task:\n" + self.task_line(feat, task_type) + "\n"
                "Answer with one option: " + ", ".join(self.actions) + ".")

    # -------------------------------------------------------------- prompts
    def build(self, demos: list[str], feat, task_type) -> str:
        """The full prompt; least relevant (first) demonstrations dropped until it fits."""
        demos = list(demos)
        n0 = len(demos)
        while True:
            body = self.description
            if demos:
                body += "Past decisions:\n" + "\n".join(demos) + "\n"
            text = self.wrap(body + self.query_block(feat, task_type))
            self.last_tokens = self.count_tokens(text)     # the built prompt's length, tokens
            if not demos or self.last_tokens <= self.max_prompt_tokens:
                break
            demos = demos[1:]
        if len(demos) < n0:
            self.dropped += n0 - len(demos)
            self.truncated += 1
        return text
