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

from jaxsim import inference
from jaxsim.config import SimConfig
from jaxsim.env import Observation
from jaxsim.params import make_params

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
        params = make_params(cfg)
        for i, a in enumerate(cfg.actions):
            m = cfg.model(a.model)
            step_ms = 1e3 * float(inference.decode_step_s(params, 1 + a.bg_max_seqs // 2, params.bg_context,
                                                          params.act_server_base[i]))
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


# ------------------------------------------------------------------------------------------------ value form
N_GRADES = 10     # outcome grades 0..9, each a single digit token


def reward_grade(reward) -> np.ndarray:
    """Outcome grade 0..9 of a reward: floor((reward + 1) x 5), clipped (reward -1 -> 0, 0 -> 5, 0.8 -> 9)."""
    return np.clip(np.floor((np.asarray(reward, np.float64) + 1.0) * 5.0), 0, N_GRADES - 1).astype(np.int32)


def grade_reward(grade) -> np.ndarray:
    """The reward at the middle of a grade's interval (the inverse of ``reward_grade`` up to its rounding)."""
    return (np.asarray(grade, np.float64) + 0.5) / 5.0 - 1.0


class ValuePrompts:
    """Prompts of the *value* formulation: the model grades the outcome of each action for the current task.

    One prompt per task: the nearest records of every action, grouped by action, each line ending in its
    outcome grade, then the current task's own fields; each action is one short *branch* after that prompt
    (its server's load, the action's name and the colon), and the digit after a branch is scored. The outcome
    words (the ten digits) are the same for every action, so their prior is common to all branches.

        Outcome grade 0-9 (9 best) of past generation tasks by where they were served:
        code in3 out5 sinr14 n11 load5 -> edge:2
        code in3 out5 sinr12 n10 load180 -> cloud_small:7
        code in3 out5 sinr13 n12              + branch " load178 -> cloud_small:"  -> next digit

    A line shows what the outcome depends on: task type, prompt and output tokens in hundreds, SINR in dB,
    tasks this slot, and the load (sequences running) of the chosen action's server only; budget and minimum
    quality are fixed by the task type and not repeated. Every digit is a token in SmolLM2's and Qwen2.5's
    vocabularies, so a line is ~18 tokens. (A more compact line, "code in3 out5 s14 n11 load5 edge:2" with a
    header explaining the fields, was ~12% shorter but lost 0.02-0.03 mean reward on the decision bench.) ``describe`` puts the action-form description
    (``PromptBuilder.description``) before the header; either way that fixed prefix is computed once.
    """

    def __init__(self, cfg: SimConfig, describe: bool = False):
        self.cfg, self.actions, self.types = cfg, cfg.action_names, cfg.type_names
        self.n_base = len(BASE_FEATURES)
        head = "Outcome grade 0-9 (9 best) of past generation tasks by where they were served:\n"
        self.prefix = (PromptBuilder(cfg, lambda s: 0).description + head) if describe else head

    def task_fields(self, feat, task_type) -> str:
        p, o, _, _, s, n = feat[:self.n_base]
        return f"{self.types[int(task_type)]} in{p / 100:.0f} out{o / 100:.0f} sinr{s:.0f} n{n:.0f}"

    def branch(self, feat, action: int) -> str:
        return f" load{feat[self.n_base + int(action)]:.0f} -> {self.actions[int(action)]}:"

    def demo_line(self, feat, task_type, action, reward) -> str:
        return f"{self.task_fields(feat, task_type)}{self.branch(feat, action)}{int(reward_grade(reward))}\n"

    def prompt(self, demo_lines: list[str], feat, task_type) -> str:
        """Demonstrations then the current task's fields (the prefix is not included)."""
        return "".join(demo_lines) + self.task_fields(feat, task_type)
