"""Decoder-only transformer (llama / mistral / qwen2 family) as pure JAX functions plus a Flax NNX container.

Layout (chosen for large flat matmuls; ``x @ W`` everywhere, layers stacked on a leading axis L so the
forward pass is one ``lax.scan`` and compiles once regardless of depth):

    embed   [V, D]                 token embedding (also the output head when ``cfg.tied_head``)
    head    [D, V]                 untied output head (absent when tied)
    norm    [D]                    final RMSNorm weight
    layers/attn_norm [L, D]        pre-attention RMSNorm weight
    layers/wqkv      [L, D, (H + 2K) * hd]   fused q | k | v projection
    layers/bqkv      [L, (H + 2K) * hd]      fused q | k | v bias (only when ``cfg.qkv_bias``, Qwen2)
    layers/wo        [L, H * hd, D]
    layers/mlp_norm  [L, D]
    layers/w13       [L, D, 2F]    fused SwiGLU gate | up projection
    layers/w2        [L, F, D]

H query heads share K key/value heads (GQA: query head h reads KV head h // (H // K)).

RoPE pairing (``cfg.rope_interleaved``): HF checkpoints and qwen2 GGUF rotate the pairs (i, i + hd/2)
("half split", ``rotate_half``); llama.cpp's converter permutes the q/k rows of llama-arch models so
that the same rotation becomes pairs (2i, 2i + 1) ("interleaved"). Both conventions are exact.

Attention is written over a list of *key/value segments*, each with its own boolean mask, so that the same
block serves full prefill, scoring against a cached shared prefix (segment batch 1, broadcast over rows),
scoring candidates against cached suffixes, and cached decoding.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

NEG_INF = -1e30


@dataclasses.dataclass(frozen=True)
class Config:
    """Architecture hyper-parameters (hashable: used as a static jit argument)."""

    vocab_size: int
    dim: int                 # D, residual width
    n_layers: int            # L
    n_heads: int             # H, query heads
    n_kv_heads: int          # K, key/value heads (GQA), divides H
    head_dim: int            # hd
    hidden_dim: int          # F, SwiGLU width
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False   # Qwen2
    tied_head: bool = True
    rope_interleaved: bool = False
    arch: str = "llama"

    @property
    def qkv_dim(self) -> int:
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim


def param_shapes(cfg: Config) -> dict:
    """Nested dict of parameter shapes in the layout documented at the top of this module."""
    L, D, F = cfg.n_layers, cfg.dim, cfg.hidden_dim
    layers = {"attn_norm": (L, D), "wqkv": (L, D, cfg.qkv_dim), "wo": (L, cfg.n_heads * cfg.head_dim, D),
              "mlp_norm": (L, D), "w13": (L, D, 2 * F), "w2": (L, F, D)}
    if cfg.qkv_bias:
        layers["bqkv"] = (L, cfg.qkv_dim)
    shapes = {"embed": (cfg.vocab_size, D), "norm": (D,), "layers": layers}
    if not cfg.tied_head:
        shapes["head"] = (D, cfg.vocab_size)
    return shapes


def init_params(cfg: Config, seed: int = 0, scale: float = 0.02) -> dict:
    """Random float32 NumPy parameters (normal(0, scale) matrices, 1 + small noise for norm weights)."""
    rng = np.random.default_rng(seed)

    def make(name, shape):
        if name.endswith("norm"):
            return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    shapes = param_shapes(cfg)
    out = {k: make(k, v) for k, v in shapes.items() if k != "layers"}
    out["layers"] = {k: make(k, v) for k, v in shapes["layers"].items()}
    return out


def count_params(params: dict) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


# ----------------------------------------------------------------------------------------------------------
# Pure functions


def rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    """RMSNorm over the last axis, computed in float32, returned in x.dtype."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * w.astype(jnp.float32)).astype(x.dtype)


def rope_tables(positions: jax.Array, head_dim: int, base: float, interleaved: bool) -> tuple[jax.Array, jax.Array]:
    """cos, sin of shape [B, T, 1, hd] (float32) for integer positions [B, T], laid out for ``apply_rope``:
    frequency i sits at lanes (2i, 2i+1) when interleaved, else at lanes (i, i + hd/2)."""
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    inv = np.repeat(inv, 2) if interleaved else np.concatenate([inv, inv])
    ang = positions[..., None].astype(jnp.float32) * jnp.asarray(inv, jnp.float32)
    return jnp.cos(ang)[:, :, None, :], jnp.sin(ang)[:, :, None, :]


def rotation(head_dim: int, interleaved: bool) -> np.ndarray:
    """Signed permutation R [hd, hd] with x @ R = the "rotate by 90 degrees" partner of x:
    interleaved (-x[2i+1], x[2i]) pairs, or half split (-x[i + hd/2], x[i]) (``rotate_half``)."""
    r = np.zeros((head_dim, head_dim), np.float32)
    h = head_dim // 2
    for i in range(h):
        a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + h)
        r[b, a], r[a, b] = -1.0, 1.0
    return r


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array, interleaved: bool) -> jax.Array:
    """Rotate x [B, T, N, hd] by position: pairs (2i, 2i+1) if interleaved else (i, i + hd/2).

    Written as x * cos + (x @ R) * sin with a constant signed permutation R: no strided lane shuffles, which
    XLA:CPU handles poorly (the strided form of the interleaved case was 2x slower end to end)."""
    rot = x @ jnp.asarray(rotation(x.shape[-1], interleaved), x.dtype)
    return (x.astype(jnp.float32) * cos + rot.astype(jnp.float32) * sin).astype(x.dtype)


Segment = tuple  # (k [Bs, S, K, hd], v [Bs, S, K, hd], mask bool broadcastable to [B, T, S]); Bs in {1, B}


def segment_attention(qg: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array):
    """Unnormalised softmax attention of grouped, pre-scaled queries qg [B, T, K, G, hd] over one key/value
    segment k, v [Bs, S, K, hd] (Bs = 1: shared by every row; Bs = B: one per row) with mask broadcastable
    to [B, T, S].

    Returns (m, l, o): the row maximum of the masked float32 scores m [B, T, K, G, 1], l = sum(exp(s - m))
    [B, T, K, G, 1] and o = exp(s - m) @ v [B, T, K, G, hd] (float32), to be merged with ``merge_segments``.

    The scores are laid out [Bs, K, N, S] with N = the queries of a KV head (B*T*G rows for a shared segment,
    T*G per row otherwise), so both matmuls are plain batched [N, hd] x [hd, S] products and the large score
    tensor is never transposed (its [B, T, K, G, S] layout made attention 40% of a 400-token prefill). A shared
    segment (Bs = 1 < B) is one matmul per KV head of every row's queries: it is neither broadcast nor copied.
    """
    B, T, K, G, hd = qg.shape
    Bs, S = k.shape[:2]
    R = 1 if Bs == 1 else B                                      # rows of the score batch
    qf = jnp.transpose(qg.reshape(R, B // R, T, K, G, hd), (0, 3, 1, 2, 4, 5)).reshape(R, K, -1, hd)
    kt, vt = (jnp.transpose(x, (0, 2, 1, 3)) for x in (k, v))                                 # [R, K, S, hd]
    s = jnp.einsum("rknd,rksd->rkns", qf, kt).astype(jnp.float32)                            # [R, K, N, S]
    mask = jnp.broadcast_to(mask, (*mask.shape[:-1], S))
    if mask.shape[:2] == (1, 1):                                  # one key mask for every query
        mask = mask.reshape(1, 1, 1, S)
    else:                                                         # per query: expand over G to the N rows
        mask = jnp.broadcast_to(jnp.broadcast_to(mask, (B, T, S))[:, :, None], (B, T, G, S)).reshape(R, 1, -1, S)
    m = jnp.max(jnp.where(mask, s, NEG_INF), axis=-1, keepdims=True)   # the mask is applied inside each pass
    e = jnp.where(mask, jnp.exp(s - m), 0.0)                           # (no masked copy of s is written)
    l = jnp.sum(e, axis=-1, keepdims=True)
    o = jnp.einsum("rkns,rksd->rknd", e.astype(vt.dtype), vt).astype(jnp.float32)
    back = lambda x: jnp.transpose(x.reshape(R, K, B // R, T, G, x.shape[-1]), (0, 2, 3, 1, 4, 5)).reshape(
        B, T, K, G, x.shape[-1])
    return back(m), back(l), back(o)


QUERY_BLOCK = 256   # longest query block of ``causal_segment_attention`` (tokens)


def causal_segment_attention(qg: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array):
    """``segment_attention`` of the queries over their own tokens (k, v [B, T, K, hd]) under a lower-triangular
    mask (no token sees a later one; mask broadcastable to [B, T, T]).

    The T queries are cut into n = ceil(T / QUERY_BLOCK) near-equal blocks and block [a, b) reads keys [0, b)
    only, which skips most of the score matrix's masked upper triangle: 75% of it is computed at n = 2 (a 400-token
    prompt), 62.5% at n = 4. Scores, maxima and sums are those of ``segment_attention`` exactly (the skipped
    scores had weight 0); the parts are concatenated along T."""
    T = qg.shape[1]
    n = -(-T // QUERY_BLOCK)
    if n == 1:
        return segment_attention(qg, k, v, mask)
    ends = [-(-T * (i + 1) // n) for i in range(n)]
    parts = []
    for a, b in zip([0] + ends[:-1], ends):
        m = mask[:, a:b] if mask.shape[1] == T else mask
        parts.append(segment_attention(qg[:, a:b], k[:, :b], v[:, :b], m[..., :b] if m.shape[-1] == T else m))
    return tuple(jnp.concatenate(x, axis=1) for x in zip(*parts))


def merge_segments(parts) -> jax.Array:
    """Combine the (m, l, o) of several segments (``segment_attention``) into softmax attention over their
    concatenation: sum_i o_i exp(m_i - m) / sum_i l_i exp(m_i - m) with m = max_i m_i (log-sum-exp merge)."""
    m = parts[0][0]
    for mi, _, _ in parts[1:]:
        m = jnp.maximum(m, mi)
    num = den = 0.0
    for mi, li, oi in parts:
        c = jnp.exp(mi - m)
        num, den = num + oi * c, den + li * c
    return num / jnp.where(den > 0, den, 1.0)                # a query that sees no key at all (padding) gets 0


def attention(q: jax.Array, segments: Sequence[Segment], causal: bool = True) -> jax.Array:
    """Softmax attention of q [B, T, H, hd] over the concatenation of key/value segments -> [B, T, H, hd].

    causal: the last segment holds the queries' own tokens (k, v [B, T, K, hd]) under a lower-triangular mask
    (``causal_segment_attention`` skips the scores above the diagonal); the others are cached context. With
    causal=False every segment is attended in full (queries that are a selection of the tokens).
    Each segment is attended separately (``segment_attention``) and the parts are merged by log-sum-exp
    (``merge_segments``), which equals one softmax over the concatenated scores up to float rounding. A segment
    with batch 1 is shared by every row (e.g. a cached prompt prefix) and is never copied.
    Masked keys get weight 0; a query with no visible key (a padding row) gets 0, not NaN.
    """
    B, T, H, hd = q.shape
    K = segments[0][0].shape[2]
    qg = (q * (hd ** -0.5)).reshape(B, T, K, H // K, hd)
    *ctx, last = segments
    parts = [segment_attention(qg, *seg) for seg in ctx]
    out = merge_segments(parts + [(causal_segment_attention if causal else segment_attention)(qg, *last)])
    return out.reshape(B, T, H, hd).astype(q.dtype)


def project_qkv(cfg: Config, p: dict, x: jax.Array, cos, sin):
    """Attention input of a layer: RMSNorm, q/k/v projection and RoPE of x [B, T, D] ->
    q [B, T, H, hd] (before RoPE), k (rotated) and v [B, T, K, hd]."""
    B, T, _ = x.shape
    H, K, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    qkv = rms_norm(x, p["attn_norm"], cfg.norm_eps) @ p["wqkv"]
    if cfg.qkv_bias:
        qkv = qkv + p["bqkv"]
    q, k, v = jnp.split(qkv, [H * hd, (H + K) * hd], axis=-1)
    k = apply_rope(k.reshape(B, T, K, hd), cos, sin, cfg.rope_interleaved)
    return q.reshape(B, T, H, hd), k, v.reshape(B, T, K, hd)


def attend_and_mlp(cfg: Config, p: dict, x: jax.Array, q: jax.Array, cos, sin, segments: Sequence[Segment],
                   causal: bool = True) -> jax.Array:
    """The rest of a layer for x [B, Q, D] with its queries q [B, Q, H, hd] (before RoPE, rotated here with
    cos/sin [B, Q, 1, hd]): attention over ``segments`` (see ``attention``), output projection, SwiGLU MLP, both
    residual. Returns x [B, Q, D]."""
    B, Q, _ = x.shape
    q = apply_rope(q, cos, sin, cfg.rope_interleaved)
    x = x + attention(q, segments, causal).reshape(B, Q, q.shape[2] * q.shape[3]) @ p["wo"]
    g, u = jnp.split(rms_norm(x, p["mlp_norm"], cfg.norm_eps) @ p["w13"], 2, axis=-1)
    return x + (jax.nn.silu(g) * u) @ p["w2"]


def take_rows(x: jax.Array, idx: jax.Array) -> jax.Array:
    """x [B|1, T, ...] at positions idx int [B, Q] of each row -> [B, Q, ...] (a batch-1 x is shared by the rows)."""
    x = jnp.broadcast_to(x, (idx.shape[0], *x.shape[1:]))
    return jnp.take_along_axis(x, idx.reshape(*idx.shape, *[1] * (x.ndim - 2)), axis=1)


def forward(cfg: Config, params: dict, tokens: jax.Array, positions: jax.Array, self_mask: jax.Array,
            ctx: Sequence[tuple] = (), out: jax.Array | None = None):
    """Run all layers.

    tokens, positions: int [B, T]; self_mask: bool [B, T, T] (which of these tokens each token sees; lower
    triangular: a token never sees a later one);
    ctx: cached segments (k [L, Bs, S, K, hd], v [L, Bs, S, K, hd], mask broadcastable to [B, T, S]);
    out: optional int [B, Q], the positions whose hidden states are wanted (Q may be 0: the key/value cache
    only). The last layer then computes its keys and values at every token but its attention output and MLP only
    at these positions (one layer in L saved where a single position is read).
    Returns (hidden [B, T, D] (or [B, Q, D] at ``out``) before the final norm, (k, v) [L, B, T, K, hd] of these
    tokens).
    """
    dtype = params["embed"].dtype
    x = jnp.take(params["embed"], tokens, axis=0).astype(dtype)
    cos, sin = rope_tables(positions, cfg.head_dim, cfg.rope_base, cfg.rope_interleaved)
    masks = [c[2] for c in ctx]
    B, T = tokens.shape

    def step(x, layer):
        p, kvs, i = layer
        segs = [(k, v, m) for (k, v), m in zip(kvs, masks)]
        q, k, v = project_qkv(cfg, p, x, cos, sin)
        every = lambda x: attend_and_mlp(cfg, p, x, q, cos, sin, segs + [(k, v, self_mask)])
        if out is None:
            return every(x), (k, v)

        def selected(x):                       # the last layer: queries, attention output and MLP at ``out`` only
            at = lambda m: take_rows(m, out) if m.shape[1] == T else m
            segs_q = [(k_, v_, at(m)) for k_, v_, m in segs] + [(k, v, at(self_mask))]
            y = attend_and_mlp(cfg, p, take_rows(x, out), take_rows(q, out), take_rows(cos, out),
                               take_rows(sin, out), segs_q, causal=False)
            return x.at[jnp.arange(B)[:, None], out].set(y)

        return jax.lax.cond(i == cfg.n_layers - 1, selected, every, x), (k, v)

    x, kv = jax.lax.scan(step, x, (params["layers"], [(c[0], c[1]) for c in ctx], jnp.arange(cfg.n_layers)))
    return (x if out is None else take_rows(x, out)), kv


def logprobs(cfg: Config, params: dict, h: jax.Array) -> jax.Array:
    """Final norm + output head + log-softmax on the given hidden states only: [..., D] -> float32 [..., V]."""
    h = rms_norm(h, params["norm"], cfg.norm_eps)
    w = params["embed"].T if cfg.tied_head else params["head"]
    return jax.nn.log_softmax((h @ w).astype(jnp.float32), axis=-1)


def causal_mask(lengths: jax.Array, T: int) -> jax.Array:
    """bool [B, T, T]: causal and key < length (right padding)."""
    i = jnp.arange(T)
    return (i[None, :, None] >= i[None, None, :]) & (i[None, None, :] < lengths[:, None, None])


# ----------------------------------------------------------------------------------------------------------
# Flax NNX container


class Transformer(nnx.Module):
    """NNX module holding the stacked parameters; ``__call__`` returns full-sequence logits (tests, small
    inputs). The runtime (``icl.llm.runtime``) jit-compiles the pure functions above on ``self.params()``.
    """

    def __init__(self, cfg: Config, params: dict | None = None, *, dtype=jnp.float32, seed: int = 0):
        self.cfg = cfg
        params = init_params(cfg, seed) if params is None else params
        shapes = param_shapes(cfg)
        for name, shape in [(k, v) for k, v in shapes.items() if k != "layers"] + \
                           [("layers_" + k, v) for k, v in shapes["layers"].items()]:
            src = params["layers"][name[7:]] if name.startswith("layers_") else params[name]
            if tuple(src.shape) != tuple(shape):
                raise ValueError(f"parameter {name}: expected shape {shape}, got {tuple(src.shape)}")
            setattr(self, name, nnx.Param(jnp.asarray(src, dtype)))

    def params(self) -> dict:
        """Plain nested dict of jax arrays in the module's layout."""
        shapes = param_shapes(self.cfg)
        out = {k: getattr(self, k)[...] for k in shapes if k != "layers"}
        out["layers"] = {k: getattr(self, "layers_" + k)[...] for k in shapes["layers"]}
        return out

    def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """tokens int [B, T] (right padded to ``lengths``) -> float32 log-probabilities [B, T, V]."""
        B, T = tokens.shape
        lengths = jnp.full((B,), T) if lengths is None else lengths
        pos = jnp.broadcast_to(jnp.arange(T), (B, T))
        h, _ = forward(self.cfg, self.params(), tokens, pos, causal_mask(lengths, T))
        return logprobs(self.cfg, self.params(), h)
