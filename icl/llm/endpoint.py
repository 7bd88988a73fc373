"""A client for OpenAI-compatible completion servers (vLLM, SGLang, llama.cpp's server, hosted APIs) as an ICL
backend (``icl.llm.backend.Backend``).

Every question becomes ``POST {endpoint}/completions`` requests, sent concurrently (at most ``max_in_flight``
at a time, in order, so that a server reusing the previous prompt's cache sees one prompt's branches together):

* value form: one request per (prompt, branch) with ``max_tokens`` 1, temperature 0 and ``logprobs`` =
  ``top_logprobs`` (10); the grades are read from the first token's ``top_logprobs``. A grade that is not among
  them gets the *floor*: the smallest log-probability the server returned (a bound: the grade is no more
  likely than that). How often that happens is counted (``stats["floor_grades"]`` of ``stats["grade_slots"]``);
* action form: one request per (prompt, candidate) with ``echo`` and ``logprobs`` 1: the log-probabilities of
  the prompt's own tokens, summed over those of the candidate. A server that does not return prompt
  log-probabilities, or returns them misaligned (llama-cpp-python 0.3.x, abetlen/llama-cpp-python#1983: each
  prompt token booked with the logits after it; detected because its echoed tokens do not cover the
  completion), gets a clear error naming the server and what to use instead (the value form, or vLLM/SGLang);
* generate form: ``max_tokens`` and ``stop``, temperature 0.

Failures: timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff (the server's
``Retry-After`` when it sends one); then, or at once for any other status, ``EndpointError`` names the
endpoint, the model and the server's message. Every answer is cached on disk (SQLite, one row per request,
keyed by endpoint, model and the request body, committed as it arrives), so a rerun or a run resumed after a
failure asks nothing twice. The cache lives at ``$GENAI_EDGE_LAB_LLM_CACHE`` or
``~/.cache/genai-edge-lab/llm-responses.sqlite``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import httpx
import numpy as np

from .backend import new_stats

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """A request to the completion server failed for good (after the retries, or at once for a client error)."""


def default_cache_path() -> Path:
    env = os.environ.get("GENAI_EDGE_LAB_LLM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "genai-edge-lab" / "llm-responses.sqlite"


class ResponseCache:
    """Server answers on disk: SQLite (atomic commits, safe across threads and processes), keyed by the SHA-256
    of (endpoint, model, request body)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
            self.db.commit()

    @staticmethod
    def key(endpoint: str, model: str, payload: dict) -> str:
        src = json.dumps({"endpoint": endpoint, "model": model, "payload": payload}, sort_keys=True)
        return hashlib.sha256(src.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, body: dict) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, json.dumps(body)))
            self.db.commit()

    def __len__(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def check_endpoint(url: str) -> str:
    """The base URL without a trailing slash; a clear error naming the flag when it is not http(s)."""
    url = str(url).strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ValueError(f"--llm-endpoint = {url!r}: allowed an http:// or https:// base URL of an "
                         "OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    if url.endswith("/completions"):
        url = url[: -len("/completions")]
    return url


def check_reachable(url: str) -> None:
    """``GET {url}/models`` once: a server that does not answer at all is an error now, before any compute
    (any HTTP answer will do: not every server lists its models)."""
    try:
        httpx.get(url + "/models", timeout=10)
    except httpx.TransportError as e:
        raise EndpointError(f"--llm-endpoint {url}: the server does not answer ({type(e).__name__}: {e})") from None


def local_tokenizer(model: str):
    """The tokenizer of ``model`` when it names weights on this machine (a registered name whose package is
    installed, a .gguf file, a checkpoint folder); else None. Reads metadata only, never the weights."""
    from .registry import is_model_source, resolve
    if not is_model_source(model):
        return None
    try:
        kind, path = resolve(model)
    except (FileNotFoundError, ValueError):
        return None
    from .tokenizer import folder_tokenizer, gguf_tokenizer
    if kind == "hf":
        return folder_tokenizer(path)
    from .weights import gguf_metadata, open_gguf
    return gguf_tokenizer(gguf_metadata(open_gguf(path)))


class EndpointBackend:
    """An OpenAI-compatible completion server as an ICL backend (see the module docstring)."""

    kind = "endpoint"
    n_params = 0

    def __init__(self, endpoint: str, model: str, *, api_key: str | None = None, max_in_flight: int = 4,
                 timeout_s: float = 120.0, retries: int = 5, backoff_s: float = 0.5, top_logprobs: int = 10,
                 cache_path: str | os.PathLike | None = None, tokenizer=None):
        """tokenizer: for counting tokens and the chat template; None: the model's own when ``model`` names
        weights on this machine (``local_tokenizer``); False: none (the server's tokenize route counts)."""
        for name, value, lo in (("max_in_flight", max_in_flight, 1), ("retries", retries, 0),
                                ("top_logprobs", top_logprobs, 1)):
            if not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} = {value!r}: allowed an integer >= {lo}")
        if not model:
            raise ValueError("--llm-model: the server's model name is required with --llm-endpoint")
        self.endpoint, self.name = check_endpoint(endpoint), str(model)
        self.max_in_flight, self.retries, self.backoff_s = max_in_flight, retries, float(backoff_s)
        self.top_logprobs = top_logprobs
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.endpoint, headers=headers,
                                   timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                                   limits=httpx.Limits(max_connections=max_in_flight))
        self.cache = ResponseCache(cache_path or default_cache_path())
        self.tokenizer = tokenizer if tokenizer is not None else local_tokenizer(self.name)
        self.chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.stats = new_stats()
        self._tokenize_route = None

    # ------------------------------------------------------------------ requests
    def where(self) -> str:
        return f"endpoint {self.endpoint}, model {self.name!r}"

    def post(self, path: str, payload: dict, cache: bool = True) -> dict:
        """One request, from the cache when answered before; retried on timeouts, connection errors, 429, 5xx."""
        key = ResponseCache.key(self.endpoint + path, self.name, payload) if cache else None
        if key is not None and (hit := self.cache.get(key)) is not None:
            self.stats["cached"] += 1
            return hit
        last = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff_s * 2 ** attempt
            try:
                r = self.client.post(path, json=payload)
            except httpx.TransportError as e:       # connection refused / reset, timeouts
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    try:
                        body = r.json()
                    except ValueError:
                        raise EndpointError(f"{self.where()}: {path} answered with no JSON: {r.text[:300]!r}")
                    self.stats["requests"] += 1
                    if key is not None:
                        self.cache.put(key, body)
                    return body
                last = f"HTTP {r.status_code}: {server_message(r)}"
                if r.status_code not in RETRY_STATUS:
                    break
                try:
                    wait = max(wait, float(r.headers.get("retry-after", 0)))
                except ValueError:
                    pass
            if attempt < self.retries:
                time.sleep(wait)
        raise EndpointError(f"{self.where()}: {path} failed after {attempt + 1} attempt(s): {last}")

    def complete_all(self, payloads: list[dict]) -> list[dict]:
        """``/completions`` for every payload, at most ``max_in_flight`` at a time, answers in order. The first
        failure stops the rest (what was answered stays cached)."""
        payloads = [{"model": self.name, **p} for p in payloads]
        if self.max_in_flight == 1 or len(payloads) <= 1:
            return [self.post("/completions", p) for p in payloads]
        with ThreadPoolExecutor(self.max_in_flight) as pool:
            futures = [pool.submit(self.post, "/completions", p) for p in payloads]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def choice(self, body: dict) -> dict:
        try:
            return body["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{self.where()}: an answer without choices: {json.dumps(body)[:300]}")

    def count_usage(self, bodies: list[dict]) -> None:
        self.stats["prompt_tokens"] += sum(int((b.get("usage") or {}).get("prompt_tokens", 0)) for b in bodies)

    # ------------------------------------------------------------------ the backend's questions
    def grade_logprobs(self, prompts, branches, grades, *, prefix="", max_rows=16):
        grades = [str(g) for g in grades]
        Q = len(prompts)
        C = len(branches[0]) if Q else 0
        texts = [prefix + p + b for p, bs in zip(prompts, branches) for b in bs]
        bodies = self.complete_all([{"prompt": t, "max_tokens": 1, "temperature": 0.0,
                                     "logprobs": self.top_logprobs} for t in texts])
        out = np.empty((len(texts), len(grades)))
        floors = 0
        for i, body in enumerate(bodies):
            top = self.first_top_logprobs(self.choice(body))
            floor = min(top.values())
            seen = {}
            for tok, lp in top.items():
                s = tok.strip()
                if s in grades:
                    seen[s] = max(seen.get(s, -np.inf), float(lp))
            floors += sum(g not in seen for g in grades)
            out[i] = [seen.get(g, floor) for g in grades]
        self.count_usage(bodies)
        self.stats["calls"] += 1
        self.stats["grade_slots"] += out.size
        self.stats["floor_grades"] += floors
        return out.reshape(Q, C, len(grades))

    def first_top_logprobs(self, choice: dict) -> dict:
        lp = choice.get("logprobs") or {}
        top = lp.get("top_logprobs") if isinstance(lp, dict) else None
        if not top or not isinstance(top[0], dict) or not top[0]:
            raise EndpointError(f"{self.where()}: the answer has no top_logprobs (the value form needs a server "
                                f"that returns logprobs={self.top_logprobs} for completions): "
                                f"{json.dumps(choice)[:300]}")
        return top[0]

    def score(self, prompts, candidates):
        prompts, candidates = list(prompts), list(candidates)
        bodies = self.complete_all([{"prompt": p + c, "max_tokens": 1, "temperature": 0.0, "echo": True,
                                     "logprobs": 1} for p in prompts for c in candidates])
        out = np.empty(len(bodies))
        for i, body in enumerate(bodies):
            p = prompts[i // len(candidates)]
            out[i] = self.continuation_logprob(self.choice(body), len(p), len(p) + len(candidates[i % len(candidates)]))
        self.count_usage(bodies)
        self.stats["calls"] += 1
        return out.reshape(len(prompts), len(candidates))

    def continuation_logprob(self, choice: dict, start: int, end: int) -> float:
        """Sum of the echoed prompt tokens' log-probabilities over characters [start, end) of the text sent."""
        lp = choice.get("logprobs") or {}
        toks, lps, offs = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
        if not toks or lps is None or offs is None or len(toks) != len(lps) or len(lps) < 2:
            raise EndpointError(f"{self.where()}: no prompt log-probabilities in the answer (the action form needs "
                                "echo with logprobs; llama-cpp-python's server: --logits_all true; llama.cpp's own "
                                "server has no echo: use the value form, --decide value)")
        if "".join(toks) != choice.get("text", ""):
            # an echo whose tokens do not cover prompt + completion is misaligned: llama-cpp-python 0.3.x books
            # each prompt token with the logits *after* it (abetlen/llama-cpp-python#1983)
            raise EndpointError(f"{self.where()}: the echoed prompt log-probabilities are misaligned with the text "
                                "(the tokens do not cover prompt + completion; llama-cpp-python has this bug, "
                                "abetlen/llama-cpp-python#1983): the action form needs a server with correct echo "
                                "logprobs (vLLM, SGLang); use the value form, --decide value")
        total, n = 0.0, 0
        for tok, val, off in zip(toks, lps, offs):
            if off < end and off + len(tok) > start:
                if val is None:
                    raise EndpointError(f"{self.where()}: the echoed candidate token {tok!r} has no log-probability")
                total, n = total + float(val), n + 1
        if n == 0:
            raise EndpointError(f"{self.where()}: the echoed answer does not cover the candidate (characters "
                                f"{start}-{end}); tokens {toks[-4:]}")
        return total

    def generate(self, prompts, max_new_tokens, stop=()):
        bodies = self.complete_all([{"prompt": p, "max_tokens": int(max_new_tokens), "temperature": 0.0,
                                     **({"stop": list(stop)} if stop else {})} for p in prompts])
        self.count_usage(bodies)
        self.stats["calls"] += 1
        return [str(self.choice(b).get("text", "")) for b in bodies]

    # ------------------------------------------------------------------ text helpers
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: by the local tokenizer of the model when there is one, else the server's own
        tokenize route (vLLM / SGLang ``/tokenize``, llama.cpp ``/tokenize``, llama-cpp-python
        ``/extras/tokenize``)."""
        if self.tokenizer:
            return len(self.tokenizer.encode(text, add_special_tokens=True))
        root = self.endpoint[:-3] if self.endpoint.endswith("/v1") else self.endpoint
        routes = [self._tokenize_route] if self._tokenize_route else [
            (root + "/tokenize", "prompt"), (root + "/extras/tokenize", "input"), (root + "/tokenize", "content")]
        for url, field in routes:             # (route, the field that carries the text)
            try:
                r = self.client.post(url, json={"model": self.name, field: text})
                if r.status_code == 200 and isinstance(r.json().get("tokens"), list):
                    self._tokenize_route = (url, field)
                    return len(r.json()["tokens"])
            except (httpx.HTTPError, ValueError):
                pass
        raise EndpointError(f"{self.where()}: cannot count tokens: no local tokenizer for this model name and no "
                            "tokenize route on the server (name a registered model or .gguf with --llm-model)")

    def chat_prompt(self, user: str) -> str:
        if not self.chat_template:
            raise ValueError(f"{self.where()}: no chat template (no local tokenizer for this model name)")
        return self.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                  add_generation_prompt=True)

    def info(self) -> dict:
        s = self.stats
        return {"backend": "endpoint", "endpoint": self.endpoint, "model": self.name,
                "top_logprobs": self.top_logprobs, "floor_share": s["floor_grades"] / max(s["grade_slots"], 1),
                "requests": s["requests"], "cached": s["cached"]}

    def close(self) -> None:
        self.client.close()


def server_message(r: httpx.Response) -> str:
    """The server's error message: OpenAI's {"error": {"message": ...}}, or the body's start."""
    try:
        body = r.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message") if isinstance(err, dict) else None
        return str(msg or body)[:500]
    except ValueError:
        return r.text[:500]
