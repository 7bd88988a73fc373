"""What the ICL policies ask of a language model, and the two models that answer: the Flax runtime and a server.

A backend (``Backend``) answers three questions, all over many prompts at once:

* ``grade_logprobs(prompts, branches, grades, prefix=...)``: log p(next token = grade g | prefix + prompt +
  branch) for every prompt, each of its branches and every grade string: float64 [Q, C, G] (the value form);
* ``score(prompts, candidates)``: the log-likelihood of each candidate continuation after each prompt,
  float64 [Q, C] (the action form);
* ``generate(prompts, max_new_tokens, stop)``: greedy free text (the generate form);

plus ``count_tokens(text)``, ``chat_prompt(user)`` (or ``chat_template`` false: no template), ``info()`` (what
the run records) and ``stats`` (tokens, requests, grades that fell to the floor).

``FlaxBackend`` wraps ``icl.llm.LanguageModel`` (the default: the same calls as before, so the same results).
``icl.llm.endpoint.EndpointBackend`` asks an OpenAI-compatible server (vLLM, SGLang, llama.cpp, an API).
``load_backend`` builds either from a model name and an optional endpoint URL.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    kind: str                 # "flax" | "endpoint"
    name: str                 # the model's name (registered name, path, or the server's model id)
    n_params: int             # 0 when unknown (a remote model)
    chat_template: bool       # whether ``chat_prompt`` applies the model's chat template
    stats: dict

    def grade_logprobs(self, prompts: Sequence[str], branches: Sequence[Sequence[str]], grades: Sequence[str],
                       *, prefix: str = "", max_rows: int = 16) -> np.ndarray: ...

    def score(self, prompts: Sequence[str], candidates: Sequence[str]) -> np.ndarray: ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]: ...

    def count_tokens(self, text: str) -> int: ...

    def chat_prompt(self, user: str) -> str: ...

    def info(self) -> dict: ...


def new_stats() -> dict:
    """Counters every backend keeps: prompt tokens computed, model calls, requests sent and answered from the
    cache (endpoint), grade slots and how many of them fell to the floor (endpoint: the grade was not among
    the server's top log-probabilities)."""
    return {"prompt_tokens": 0, "calls": 0, "requests": 0, "cached": 0, "grade_slots": 0, "floor_grades": 0}


class FlaxBackend:
    """The embedded Flax/JAX runtime (``icl.llm.LanguageModel``) as a backend."""

    kind = "flax"

    def __init__(self, lm):
        self.lm = lm
        self.name = str(getattr(lm, "name", ""))
        self.n_params = int(getattr(lm, "n_params", 0))
        self.chat_template = bool(getattr(getattr(lm, "tokenizer", None), "chat_template", None))
        self.stats = new_stats()

    def token_ids(self, strings: Sequence[str], what: str) -> list[int]:
        ids = [self.lm.encode(s, special=False) for s in strings]
        if any(len(i) != 1 for i in ids):
            raise ValueError(f"model {self.name!r}: the {what} {list(strings)} must be single tokens")
        return [i[0] for i in ids]

    def grade_logprobs(self, prompts, branches, grades, *, prefix="", max_rows=16):
        lp = self.lm.branch_logprobs(prompts, branches, self.token_ids(grades, "grades"), prefix=prefix,
                                     max_rows=max_rows)
        n_pre = len(self.lm.encode(prefix)) if prefix else 0
        self.stats["prompt_tokens"] += sum(len(self.lm.encode(prefix + p)) - n_pre for p in prompts) + sum(
            len(self.lm.encode(b, special=False)) for bs in branches for b in bs)
        self.stats["calls"] += 1
        self.stats["grade_slots"] += lp.size
        return lp

    def score(self, prompts, candidates):
        self.stats["calls"] += 1
        return self.lm.score(list(prompts), list(candidates))

    def generate(self, prompts, max_new_tokens, stop=()):
        self.stats["calls"] += 1
        return self.lm.generate(list(prompts), max_new_tokens, stop=list(stop))

    def count_tokens(self, text):
        return len(self.lm.encode(text))

    def chat_prompt(self, user):
        return self.lm.chat_prompt(user)

    def info(self):
        return {"backend": "flax", "model": self.name, "dtype": getattr(self.lm, "dtype", None)}


def as_backend(lm) -> Backend:
    """``lm`` if it is a backend already, else a ``LanguageModel`` (or a test's stand-in) wrapped as one."""
    return lm if isinstance(lm, Backend) else FlaxBackend(lm)


def load_backend(model: str, *, dtype: str = "float32", endpoint: str = "", max_in_flight: int = 4,
                 api_key: str | None = None, cache_path: str | None = None) -> Backend:
    """The Flax runtime on ``model`` (a registered name, .gguf path or checkpoint folder), or, with
    ``endpoint`` (an OpenAI-compatible base URL such as http://127.0.0.1:8080/v1), that server's ``model``.
    The key comes from ``api_key`` or ``$OPENAI_API_KEY``; it is never recorded."""
    if endpoint:
        from .endpoint import EndpointBackend, check_endpoint, check_reachable
        check_reachable(check_endpoint(endpoint))
        return EndpointBackend(endpoint, model, api_key=api_key, max_in_flight=max_in_flight, cache_path=cache_path)
    from .runtime import LanguageModel
    return FlaxBackend(LanguageModel.load(model, dtype=dtype))
