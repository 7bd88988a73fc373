"""``LanguageModel``: load weights + tokenizer, score candidate continuations in batches, generate text.

Scoring (``score``) runs in up to three jit-compiled stages; every shape is bucketed (lengths by ``bucket_len``:
at most 12.5% padding above 64 tokens, 6.25% above 128; batch to powers of two) so only a handful of shapes ever
compile. ``shapes="coarse"`` pads lengths to powers of two instead (``coarse_len``): about half the shapes at up to
twice the tokens, for short runs of small models where compiling dominates (the test suite's tiny model):

1. *shared prefix* (optional, default on): the longest common token prefix of all prompts of the call is run
   once as a batch-1 sequence and its key/value cache kept ([L, 1, P, K, hd]);
2. *suffixes*: the rest of every prompt, right padded, attends to the prefix cache (one batch-1 segment shared by
   all rows, never copied: ``model.segment_attention``) and to itself causally, the two parts merged by
   log-sum-exp. The head is applied only at each row's last real token, giving the
   log-probability of every candidate's first token. The suffix cache is kept;
3. *candidates* (only when some candidate has >= 2 tokens): all C candidates of a prompt are laid side by side
   in one row of C * Tc tokens with a block-diagonal causal mask, attending to prefix + that prompt's suffix
   cache; the head is applied only at the positions that predict candidate tokens 2.. .

The score of a candidate is the sum of the log-probabilities of its tokens (natural log) given the prompt.
Candidate token ids are ``encode(candidate)`` without special tokens, appended to ``encode(prompt)``; so put the
separating space in the candidate (" edge"), as usual for BPE vocabularies.

Generation (``generate``) left-pads the prompts, prefills a fixed-size KV cache, then decodes one token per jitted
step (greedy, or temperature sampling from a ``jax.random`` key) until every row hit an end-of-sequence token,
a stop string or ``max_new_tokens``.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import model as M
from .registry import DEFAULT_MODEL, resolve
from .tokenizer import folder_tokenizer, gguf_tokenizer
from .weights import load_gguf, load_hf_folder, open_gguf

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SHAPES = ("fine", "coarse")  # how token lengths are padded (``LanguageModel``'s ``shapes``)
PREFIX_CACHE_SIZE = 4       # key/value caches of token prefixes kept per model (``LanguageModel.prefix_cache``)


def bucket_len(n: int, quantum: int = 32) -> int:
    """Padded length: powers of two (>= 8) up to 16, then multiples of a step that is 1/16 of n's power-of-two
    octave, clamped to [8, ``quantum``] (8 up to 256 tokens, 16 up to 512, then ``quantum``). Padding stays below
    12.5% above 64 tokens and below 6.25% above 128 (a 97-token suffix runs as 104, a 400-token prompt as 400)
    while a workload compiles few shapes."""
    n = int(n)
    if n <= 16:
        return max(8, 1 << max(0, n - 1).bit_length())
    step = min(quantum, max(8, (1 << ((n - 1).bit_length() - 1)) // 16))
    return -(-n // step) * step


def coarse_len(n: int) -> int:
    """Padded length for ``shapes="coarse"``: powers of two, at least 64. Up to twice the tokens of
    :func:`bucket_len`, but a workload compiles about half the shapes: for short runs of small models, where
    compiling a shape costs more than the padding it saves."""
    return max(64, 1 << max(0, int(n) - 1).bit_length())


def bucket_batch(n: int) -> int:
    n = int(n)
    return 1 << max(0, n - 1).bit_length()


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


# ----------------------------------------------------------------------------------------------------------
# XLA options and the jitted stages (cfg is static; everything else is arrays)

# XLA:CPU runs reductions through YNNPACK and matmuls through its own (Eigen) GEMM. XLA's default (jaxlib
# 0.10) also sends matmuls to YNNPACK, which was 12% slower on a no-prefix score of 8 x 416 tokens (f32, 2-core
# x86; both compiled in one process and timed alternately, best of 4).
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def compiler_options() -> tuple:
    """The XLA compiler options of the LLM stages on the default backend: ``_CPU_OPTIONS`` on a CPU whose XLA
    takes them, none otherwise (a GPU, or an XLA without the option)."""
    if jax.default_backend() != "cpu":
        return ()
    try:
        jax.jit(jnp.sum, compiler_options=_CPU_OPTIONS).lower(jnp.ones(4)).compile()
    except Exception:                      # this XLA does not know the option or its value
        return ()
    return tuple(_CPU_OPTIONS.items())


def stage(**jit_kw):
    """Decorator: ``jax.jit(fn, **jit_kw)`` with ``compiler_options()``, built at the first call (when JAX runs)."""
    def wrap(fn):
        jitted = functools.cache(lambda: jax.jit(fn, compiler_options=dict(compiler_options()) or None, **jit_kw))
        return functools.wraps(fn)(lambda *args: jitted()(*args))
    return wrap


@stage(static_argnums=0)
def _prefill_prefix(cfg, params, tokens, length):
    """tokens int [1, P] (right padded to ``length``) -> cache (k, v) [L, 1, P, K, hd]."""
    P = tokens.shape[1]
    _, kv = M.forward(cfg, params, tokens, jnp.arange(P)[None], M.causal_mask(length[None], P),
                      out=jnp.zeros((1, 0), jnp.int32))
    return kv


def _prefix_segments(prefix):
    if prefix is None:
        return [], 0
    pk, pv, plen = prefix
    return [(pk, pv, (jnp.arange(pk.shape[2]) < plen)[None, None, :])], plen


@stage(static_argnums=0)
def _score_suffix(cfg, params, tokens, lengths, first_ids, prefix):
    """Suffixes int [B, T] (right padded to lengths [B]) after the optional prefix cache.

    Returns log p(first candidate token) [B, C] for first_ids [B, C], and the suffix cache (k, v) [L, B, T, K, hd].
    """
    B, T = tokens.shape
    ctx, plen = _prefix_segments(prefix)
    pos = plen + jnp.broadcast_to(jnp.arange(T), (B, T))
    h, kv = M.forward(cfg, params, tokens, pos, M.causal_mask(lengths, T), ctx, out=(lengths - 1)[:, None])
    lp = M.logprobs(cfg, params, h[:, 0])                                               # [B, V]
    return jnp.take_along_axis(lp, first_ids, axis=1), kv


@stage(static_argnums=0)
def _score_rest(cfg, params, cand, cand_len, prefix, suffix_kv, suffix_len):
    """Candidate tokens 2.. : cand int [B, C, Tc] with lengths [B, C] -> summed log-probs [B, C]."""
    B, C, Tc = cand.shape
    ctx, plen = _prefix_segments(prefix)
    ctx.append((suffix_kv[0], suffix_kv[1], (jnp.arange(suffix_kv[0].shape[2])[None, :] < suffix_len[:, None])[:, None]))
    j = jnp.arange(C * Tc)
    cj, tj = j // Tc, j % Tc
    mask = ((cj[:, None] == cj[None, :]) & (tj[:, None] >= tj[None, :]))[None]           # [1, CTc, CTc]
    pos = (plen + suffix_len)[:, None] + tj[None, :]
    at = np.arange(C * Tc).reshape(C, Tc)[:, :-1].ravel()              # the positions that predict tokens 2..
    h, _ = M.forward(cfg, params, cand.reshape(B, C * Tc), pos, mask, ctx, out=jnp.broadcast_to(at, (B, at.size)))
    lp = M.logprobs(cfg, params, h.reshape(B, C, Tc - 1, -1))                           # [B, C, Tc-1, V]
    tok_lp = jnp.take_along_axis(lp, cand[:, :, 1:, None], axis=-1)[..., 0]
    valid = jnp.arange(1, Tc)[None, None, :] < cand_len[..., None]
    return jnp.sum(jnp.where(valid, tok_lp, 0.0), axis=-1)


@stage(static_argnums=0)
def _score_branches(cfg, params, tokens, positions, mask, out, target_ids, prefix):
    """Prompts with C short branches laid after them in one row each: tokens / positions int [B, T], mask bool
    [B, T, T] (a prompt token sees the earlier prompt tokens; a branch token sees the whole prompt and the earlier
    tokens of its own branch), out int [B, C] (each branch's last token). Returns log p(target) [B, C, n_targets]
    of the token after each branch."""
    ctx, _ = _prefix_segments(prefix)
    h, _ = M.forward(cfg, params, tokens, positions, mask, ctx, out=out)
    lp = M.logprobs(cfg, params, h)                                                     # [B, C, V]
    return jnp.take(lp, target_ids, axis=-1)


def _sample(lp, key, temperature, greedy: bool):
    if greedy:
        return jnp.argmax(lp, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, lp / temperature, axis=-1).astype(jnp.int32)


@stage(static_argnums=(0, 4, 7))
def _gen_prefill(cfg, params, tokens, valid, size, key, temperature, greedy):
    """Left-padded prompts int [B, T0] with valid bool [B, T0] -> (first tokens [B], cache (k, v) [L, B, size, K, hd])."""
    B, T0 = tokens.shape
    pos = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    i = jnp.arange(T0)
    mask = (i[None, :, None] >= i[None, None, :]) & valid[:, None, :]
    h, (k, v) = M.forward(cfg, params, tokens, pos, mask, out=jnp.full((B, 1), T0 - 1))
    pad = [(0, 0), (0, 0), (0, size - T0), (0, 0), (0, 0)]
    cache = (jnp.pad(k, pad), jnp.pad(v, pad))
    return _sample(M.logprobs(cfg, params, h[:, 0]), key, temperature, greedy), cache


@stage(static_argnums=(0, 9), donate_argnums=(2,))
def _gen_step(cfg, params, cache, valid, tok, pos, t, key, temperature, greedy):
    """One decode step: tok [B] at positions pos [B] written to cache column t -> (next tokens [B], cache)."""
    B = tok.shape[0]
    ctx = [(cache[0], cache[1], valid[:, None, :])]
    h, (k, v) = M.forward(cfg, params, tok[:, None], pos[:, None], jnp.ones((B, 1, 1), bool), ctx)
    cache = tuple(jax.lax.dynamic_update_slice(c, x, (0, 0, t, 0, 0)) for c, x in zip(cache, (k, v)))
    return _sample(M.logprobs(cfg, params, h[:, 0]), key, temperature, greedy), cache


# ----------------------------------------------------------------------------------------------------------


class LanguageModel:
    """A decoder-only LM (``icl.llm.model``) with its tokenizer. Build with ``LanguageModel.load(name_or_path)``."""

    def __init__(self, cfg: M.Config, params: dict, tokenizer, dtype: str = "float32", name: str = "",
                 shapes: str = "fine"):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} not supported; use one of {list(_DTYPES)}")
        if shapes not in SHAPES:
            raise ValueError(f"shapes = {shapes!r}: allowed {', '.join(SHAPES)}")
        self.cfg, self.tokenizer, self.dtype, self.name, self.shapes = cfg, tokenizer, dtype, name, shapes
        self.params = M.Transformer(cfg, params, dtype=_DTYPES[dtype]).params()
        self.n_params = M.count_params(self.params)
        self.stop_ids = sorted({i for i in [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in
                                ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")
                                if t in tokenizer.get_vocab()] if i is not None})

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_MODEL, dtype: str = "float32", shapes: str = "fine") -> "LanguageModel":
        """Registered name (``icl.llm.registry.MODELS``), ``.gguf`` path or HF checkpoint folder."""
        kind, path = resolve(name_or_path)
        if kind == "gguf":
            cfg, params, meta = load_gguf(open_gguf(path))
            tok = gguf_tokenizer(meta)
        else:
            cfg, params = load_hf_folder(path)
            tok = folder_tokenizer(path)
        return cls(cfg, params, tok, dtype=dtype, name=str(name_or_path), shapes=shapes)

    def padded_len(self, n: int) -> int:
        """The length ``n`` tokens run at: :func:`bucket_len` (``shapes="fine"``) or :func:`coarse_len`."""
        return coarse_len(n) if self.shapes == "coarse" else bucket_len(n)

    # -- text helpers -----------------------------------------------------------------------------------
    def encode(self, text: str, special: bool = True) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=special)
        return list(ids)

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        """The chat-templated prompt text (generation prompt appended) for one user message."""
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    # -- scoring ----------------------------------------------------------------------------------------
    def score(self, prompts: Sequence[str], candidates: Sequence[str] | Sequence[Sequence[str]], *,
              prefix_reuse: bool = True, min_prefix: int = 16, max_batch: int = 32,
              max_tokens: int | None = None) -> np.ndarray:
        """Total log-likelihood (nats) of each candidate continuation: float64 [n_prompts, n_candidates].

        candidates: one list shared by all prompts, or one list per prompt (same length C for all).
        prefix_reuse: compute the longest common token prefix of the prompts once (if >= min_prefix tokens and
        there are several prompts) and score only the suffixes against its cache. Results equal
        prefix_reuse=False up to float rounding.
        max_batch / max_tokens: rows and padded tokens per suffix forward; max_tokens defaults to 4096 on a CPU
        (32 prompts of 400 tokens without prefix reuse: 1.97 decisions/s in forwards of 8 rows, 1.63 in one of 32,
        whose activations and attention scores outgrow the caches) and 16384 elsewhere.
        """
        for name, value, smallest in (("max_batch", max_batch, 1), ("max_tokens", max_tokens, 1),
                                      ("min_prefix", min_prefix, 0)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < smallest):
                raise ValueError(f"{name} = {value!r}: allowed an integer >= {smallest}"
                                 + (" or None" if name == "max_tokens" else ""))
        prompts = list(prompts)
        n = len(prompts)
        if n == 0:
            return np.zeros((0, len(candidates)))
        if isinstance(candidates[0], str):
            candidates = [list(candidates)] * n
        if len(candidates) != n or len({len(c) for c in candidates}) != 1:
            raise ValueError("candidates: one list for all prompts, or one list per prompt, all of the same length")
        C = len(candidates[0])
        p_ids = [self.encode(p) for p in prompts]
        if min(len(p) for p in p_ids) == 0:
            raise ValueError("empty prompt (no tokens)")
        c_ids = [[self.encode(c, special=False) for c in cs] for cs in candidates]
        if any(len(c) == 0 for cs in c_ids for c in cs):
            raise ValueError("a candidate encodes to no tokens")

        if max_tokens is None:
            max_tokens = 4096 if jax.default_backend() == "cpu" else 16384
        plen = min(common_prefix_len(p_ids), min(len(p) for p in p_ids) - 1) if prefix_reuse and n > 1 else 0
        prefix = None
        if plen >= max(1, min_prefix):
            prefix = self.prefix_cache(p_ids[0][:plen])
        else:
            plen = 0

        out = np.zeros((n, C))
        suf_len = np.array([len(p) - plen for p in p_ids])
        order = np.argsort(suf_len, kind="stable")
        chunks, cur = [], []
        for i in order:
            if cur and (len(cur) >= max_batch or self.padded_len(suf_len[i]) * bucket_batch(len(cur) + 1) > max_tokens):
                chunks.append(cur)
                cur = []
            cur.append(i)
        chunks.append(cur)
        for idx in chunks:
            Bb, T = bucket_batch(len(idx)), self.padded_len(int(suf_len[idx].max()))
            toks = np.zeros((Bb, T), np.int32)
            lens = np.ones(Bb, np.int32)
            first = np.zeros((Bb, C), np.int32)
            for r, i in enumerate(idx):
                toks[r, :suf_len[i]] = p_ids[i][plen:]
                lens[r] = suf_len[i]
                first[r] = [c[0] for c in c_ids[i]]
            lp1, skv = _score_suffix(self.cfg, self.params, jnp.asarray(toks), jnp.asarray(lens),
                                     jnp.asarray(first), prefix)
            total = np.asarray(lp1, np.float64)
            tc = max(len(c) for i in idx for c in c_ids[i])
            if tc > 1:
                Tc = bucket_batch(tc)
                cand = np.zeros((Bb, C, Tc), np.int32)
                clen = np.ones((Bb, C), np.int32)
                for r, i in enumerate(idx):
                    for j, c in enumerate(c_ids[i]):
                        cand[r, j, :len(c)] = c
                        clen[r, j] = len(c)
                total += np.asarray(_score_rest(self.cfg, self.params, jnp.asarray(cand), jnp.asarray(clen),
                                                prefix, skv, jnp.asarray(lens)), np.float64)
            out[idx] = total[:len(idx)]
        return out

    def prefix_cache(self, ids: Sequence[int]):
        """The key/value cache (k, v, length) of a token prefix, computed once and kept (the last
        ``PREFIX_CACHE_SIZE`` prefixes used): a fixed description or header costs one forward per policy, not
        one per call."""
        key = tuple(int(i) for i in ids)
        cache = self.__dict__.setdefault("_prefixes", {})
        if key in cache:
            cache[key] = cache.pop(key)                        # most recently used last
            return cache[key]
        toks = np.zeros((1, self.padded_len(len(key))), np.int32)
        toks[0, :len(key)] = key
        k, v = _prefill_prefix(self.cfg, self.params, jnp.asarray(toks), jnp.int32(len(key)))
        cache[key] = (k, v, jnp.int32(len(key)))
        while len(cache) > PREFIX_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        return cache[key]

    def branch_logprobs(self, prompts: Sequence[str], branches: Sequence[Sequence[str]], targets: Sequence[int],
                        *, prefix: str = "", max_rows: int = 16, length_quantum: int = 16) -> np.ndarray:
        """log p(target token | prefix + prompt + branch) for every prompt, each of its C branches and every
        target token id: float64 [n_prompts, C, n_targets] (natural log, over the whole vocabulary).

        A prompt and its C branches are one row of a single forward pass: the branches are laid after the
        prompt, each seeing the prompt and itself only, so the prompt is computed once for all its branches.
        ``prefix``: text every prompt starts with (a fixed header); its key/value cache is computed once
        (``prefix_cache``) and shared by every row of every call. Token ids are ``encode(prefix + prompt)``, then
        ``encode(branch)`` without special tokens appended: end the prompt where a token boundary is certain
        (before a space). Rows run in forwards of ``max_rows`` (powers of two below), shortest first, each row
        (prompt, then its branches packed back to back) padded to a multiple of ``length_quantum`` tokens: few
        shapes compile.
        """
        for name, value in (("max_rows", max_rows), ("length_quantum", length_quantum)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} = {value!r}: allowed an integer >= 1")
        n = len(prompts)
        if len(branches) != n or len({len(b) for b in branches}) > 1:
            raise ValueError("branches: one list per prompt, all of the same length")
        targets = np.asarray(targets, np.int32)
        if n == 0:
            return np.zeros((0, len(branches[0]) if branches else 0, len(targets)))
        C = len(branches[0])
        if C == 0 or targets.size == 0 or targets.min() < 0 or targets.max() >= self.cfg.vocab_size:
            raise ValueError(f"branches and targets must be non-empty; target ids in [0, {self.cfg.vocab_size})")
        pre = self.encode(prefix) if prefix else []
        p_ids = []
        for p in prompts:
            ids = self.encode(prefix + p)
            if ids[:len(pre)] != pre or len(ids) == len(pre):
                raise ValueError(f"prompt {p[:40]!r}...: after the prefix it must add tokens, and the prefix must "
                                 "tokenize the same on its own (end the prefix with a newline)")
            p_ids.append(ids[len(pre):])
        b_ids = [[self.encode(b, special=False) for b in bs] for bs in branches]
        if any(len(b) == 0 for bs in b_ids for b in bs):
            raise ValueError("a branch encodes to no tokens")
        prefix_kv = self.prefix_cache(pre) if pre else None
        plen = len(pre)
        out = np.zeros((n, C, len(targets)))
        row_len = np.array([len(p) + sum(len(b) for b in bs) for p, bs in zip(p_ids, b_ids)])
        order = np.argsort(row_len, kind="stable")
        for start in range(0, n, max_rows):
            idx = order[start:start + max_rows]
            R = bucket_batch(len(idx))
            longest = int(row_len[idx].max())
            T = coarse_len(longest) if self.shapes == "coarse" else -(-longest // length_quantum) * length_quantum
            toks = np.zeros((R, T), np.int32)
            pos = np.zeros((R, T), np.int32)
            seen = np.zeros((R, T, T), bool)
            at = np.zeros((R, C), np.int32)
            for r, i in enumerate(idx):
                L = len(p_ids[i])
                toks[r, :L] = p_ids[i]
                pos[r, :L] = plen + np.arange(L)
                seen[r, :L, :L] = np.tril(np.ones((L, L), bool))
                s0 = L
                for c, b in enumerate(b_ids[i]):          # branches packed back to back after the prompt
                    s1 = s0 + len(b)
                    toks[r, s0:s1] = b
                    pos[r, s0:s1] = plen + L + np.arange(len(b))
                    seen[r, s0:s1, :L] = True
                    seen[r, s0:s1, s0:s1] = np.tril(np.ones((len(b), len(b)), bool))
                    at[r, c] = s1 - 1
                    s0 = s1
            lp = _score_branches(self.cfg, self.params, jnp.asarray(toks), jnp.asarray(pos), jnp.asarray(seen),
                                 jnp.asarray(at), jnp.asarray(targets), prefix_kv)
            out[idx] = np.asarray(lp, np.float64)[:len(idx)]
        return out

    # -- generation -------------------------------------------------------------------------------------
    def generate(self, prompts: str | Sequence[str], max_new_tokens: int = 64, *, temperature: float = 0.0,
                 key: jax.Array | None = None, stop: Sequence[str] = (), return_ids: bool = False):
        """Continue each prompt (raw text: use ``chat_prompt`` for chat models).

        temperature 0 -> greedy; > 0 -> sampling from softmax(logits / temperature) with ``key`` (jax.random key,
        required). Stops a row at an end-of-sequence token, at the first stop string (excluded from the text),
        or after max_new_tokens. Returns the continuation text(s) without special tokens.
        """
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        greedy = temperature <= 0
        if not greedy and key is None:
            raise ValueError("temperature > 0 needs a jax.random key")
        key = jax.random.PRNGKey(0) if key is None else key
        ids = [self.encode(p) for p in prompts]
        B, Bb, T0 = len(ids), bucket_batch(len(ids)), self.padded_len(max(len(i) for i in ids))
        S = T0 + self.padded_len(max_new_tokens)
        toks = np.zeros((Bb, T0), np.int32)
        valid = np.zeros((Bb, S), bool)
        for r in range(Bb):
            row = ids[min(r, B - 1)]
            toks[r, T0 - len(row):] = row
            valid[r, T0 - len(row):T0] = True
        pos = valid.sum(1).astype(np.int32)
        temp = jnp.float32(max(temperature, 1e-6))
        key, sub = jax.random.split(key)
        tok, cache = _gen_prefill(self.cfg, self.params, jnp.asarray(toks), jnp.asarray(valid[:, :T0]),
                                  S, sub, temp, greedy)
        out = [[] for _ in range(B)]
        texts = [""] * B
        done = np.zeros(B, bool)
        stop_ids = set(self.stop_ids)
        for t in range(max_new_tokens):
            host = np.asarray(tok)
            for r in np.flatnonzero(~done):
                if int(host[r]) in stop_ids:
                    done[r] = True
                    continue
                out[r].append(int(host[r]))
                texts[r] = self.tokenizer.decode(out[r], skip_special_tokens=True)
                hits = [texts[r].find(s) for s in stop if s and s in texts[r]]
                if hits:
                    texts[r], done[r] = texts[r][:min(hits)], True
            if done.all() or t == max_new_tokens - 1:
                break
            key, sub = jax.random.split(key)
            tok, cache = _gen_step(self.cfg, self.params, cache, jnp.asarray(valid), tok, jnp.asarray(pos),
                                   jnp.int32(T0 + t), sub, temp, greedy)
            valid[:, T0 + t] = True
            pos += 1
        res = out if return_ids else texts
        return res[0] if single else res
