"""icl.llm.model / runtime on tiny random models: NumPy reference forward, KV-cached decoding, batched scoring."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl.llm import Config, LanguageModel, Transformer, gguf_tokenizer, init_params
from icl.llm.tokenizer import byte_level_meta


def np_forward(cfg: Config, p: dict, tokens: np.ndarray) -> np.ndarray:
    """Plain NumPy (float64) forward of one sequence tokens [T] -> log-probs [T, V]; independent of JAX code."""
    T, H, K, hd = len(tokens), cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    P = {k: np.asarray(v, np.float64) for k, v in p["layers"].items()}
    norm = lambda x, w: x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.norm_eps) * w
    inv = cfg.rope_base ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(T)[:, None] * inv[None]                                        # [T, hd/2]
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]

    def rope(x):                                                                   # [T, N, hd]
        if cfg.rope_interleaved:
            a, b = x[..., 0::2], x[..., 1::2]
            y = np.empty_like(x)
            y[..., 0::2], y[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return y
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)

    x = np.asarray(p["embed"], np.float64)[tokens]
    for l in range(cfg.n_layers):
        h = norm(x, P["attn_norm"][l])
        qkv = h @ P["wqkv"][l] + (P["bqkv"][l] if cfg.qkv_bias else 0)
        q = rope(qkv[:, :H * hd].reshape(T, H, hd))
        k = rope(qkv[:, H * hd:(H + K) * hd].reshape(T, K, hd))
        v = qkv[:, (H + K) * hd:].reshape(T, K, hd)
        out = np.zeros((T, H, hd))
        for head in range(H):
            kv = head // (H // K)
            s = q[:, head] @ k[:, kv].T / np.sqrt(hd) + np.triu(np.full((T, T), -np.inf), 1)
            w = np.exp(s - s.max(-1, keepdims=True))
            out[:, head] = (w / w.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + out.reshape(T, H * hd) @ P["wo"][l]
        h = norm(x, P["mlp_norm"][l])
        g, u = np.split(h @ P["w13"][l], 2, -1)
        x = x + (g / (1 + np.exp(-g)) * u) @ P["w2"][l]
    logits = norm(x, np.asarray(p["norm"], np.float64)) @ (np.asarray(p["embed"], np.float64).T if cfg.tied_head
                                                             else np.asarray(p["head"], np.float64))
    return logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)


CFGS = {
    "llama_interleaved_tied": Config(vocab_size=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                                     hidden_dim=96, rope_base=10000.0, rope_interleaved=True),
    "qwen2_halfsplit_bias_untied": Config(vocab_size=300, dim=64, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=16,
                                          hidden_dim=96, rope_base=1e6, qkv_bias=True, tied_head=False, arch="qwen2"),
}


@pytest.mark.parametrize("query_block", [256, 5])
@pytest.mark.parametrize("name", list(CFGS))
def test_forward_matches_numpy(name, query_block, monkeypatch):
    """query_block 5: the 23 causal queries attend in 5 blocks, each to the keys up to its end only."""
    from icl.llm import model
    monkeypatch.setattr(model, "QUERY_BLOCK", query_block)
    cfg = CFGS[name]
    params = init_params(cfg, seed=1, scale=0.1)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=23)
    got = np.asarray(Transformer(cfg, params)(jnp.asarray(tokens[None])))[0]
    ref = np_forward(cfg, params, tokens)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def tiny_lm(dtype="float32", seed=0, shapes="coarse") -> LanguageModel:
    """A random-weight 2-layer model with a byte-level tokenizer. Its lengths pad to powers of two (``coarse``) by
    default: the policy and figure tests compile about half the shapes; this module's own tests run the fine ones."""
    meta = byte_level_meta(merges=("h e", "l l", "he ll", "Ġ t", "Ġt he"))
    cfg = CFGS["llama_interleaved_tied"]
    return LanguageModel(cfg, init_params(cfg, seed=seed, scale=0.2), gguf_tokenizer(meta), dtype=dtype,
                         shapes=shapes)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(shapes="fine")


def brute_score(lm, prompt, cand):
    ids, c = lm.encode(prompt), lm.encode(cand, special=False)
    lp = np_forward(lm.cfg, lm.params, np.array(ids + c))
    return sum(lp[len(ids) - 1 + j, t] for j, t in enumerate(c))


def test_kv_cached_generation_equals_recomputation(lm):
    prompts = ["hello there", "the cat sat on the mat and then", "x"]
    got = lm.generate(prompts, max_new_tokens=10, return_ids=True)
    for p, g in zip(prompts, got):
        ids = lm.encode(p)
        want = []
        for _ in range(10):
            nxt = int(np.argmax(np_forward(lm.cfg, lm.params, np.array(ids))[-1]))
            if nxt in lm.stop_ids:
                break
            want.append(nxt)
            ids.append(nxt)
        assert g == want


def test_sampling_uses_key_and_stop_strings(lm):
    kw = dict(max_new_tokens=12, temperature=1.0)
    a = lm.generate(["hello", "the"], key=jax.random.PRNGKey(3), **kw)
    b = lm.generate(["hello", "the"], key=jax.random.PRNGKey(3), **kw)
    c = lm.generate(["hello", "the"], key=jax.random.PRNGKey(4), **kw)
    assert a == b and a != c
    full = lm.generate("hello", max_new_tokens=12)
    stop = full[3:5]
    assert lm.generate("hello", max_new_tokens=12, stop=[stop]) == full[:full.find(stop)]
    with pytest.raises(ValueError):
        lm.generate("hello", temperature=0.5)


def test_score_batched_padded_prefix_equal(lm):
    shared = "the shell sells the hell of shells to the heller. " * 2
    prompts = [shared + s for s in ["a", "hello there, the end", "tell the tale of the well that fell"]]
    cands = [" he", " the hello", " x"]
    ref = np.array([[brute_score(lm, p, c) for c in cands] for p in prompts])
    batched = lm.score(prompts, cands)
    no_prefix = lm.score(prompts, cands, prefix_reuse=False)
    alone = np.concatenate([lm.score([p], cands) for p in prompts])
    small_chunks = lm.score(prompts, cands, max_batch=2)
    coarse = tiny_lm(shapes="coarse").score(prompts, cands)           # lengths padded to powers of two
    for got in (batched, no_prefix, alone, small_chunks, coarse):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="shapes = 'pow2': allowed fine, coarse"):
        tiny_lm(shapes="pow2")
    per_prompt = lm.score(prompts[:2], [[" he", " x"], [" x", " he"]])
    np.testing.assert_allclose(per_prompt, ref[:2][:, [[0, 2], [2, 0]]][[0, 1], [0, 1]], rtol=1e-4, atol=1e-4)


def test_score_validates_inputs(lm):
    with pytest.raises(ValueError):
        lm.score(["a", "b"], [[" x"], [" x", " y"]])
    with pytest.raises(ValueError):
        lm.score([""], [" x"])
    for bad in ({"max_tokens": 0}, {"max_batch": 0}, {"max_tokens": 2.5}, {"min_prefix": -1}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} = .*allowed an integer"):
            lm.score(["a"], [" x"], **bad)


def test_bfloat16_close_to_float32():
    lm32, lm16 = tiny_lm(), tiny_lm("bfloat16")
    prompts, cands = ["hello there", "the hell"], [" he", " the"]
    assert lm16.params["layers"]["wqkv"].dtype == jnp.bfloat16
    np.testing.assert_allclose(lm16.score(prompts, cands), lm32.score(prompts, cands), rtol=0.05, atol=0.1)


@pytest.mark.parametrize("query_block", [256, 2])
@pytest.mark.parametrize("mask_kind", ["shared", "per_row", "per_token"])
def test_segment_attention_merge_equals_softmax_over_concatenation(mask_kind, query_block, monkeypatch):
    """Attention over [shared batch-1 segment ; per-row causal segment], merged by log-sum-exp, equals one softmax
    over the concatenated (broadcast) keys, also when the causal queries run in blocks of 2 (block [a, b) reads
    keys [0, b) of the causal segment only); fully masked rows stay finite."""
    from icl.llm import model
    from icl.llm.model import attention
    monkeypatch.setattr(model, "QUERY_BLOCK", query_block)
    rng = np.random.default_rng(0)
    B, T, H, K, hd, S = 3, 5, 4, 2, 8, 7
    q = rng.standard_normal((B, T, H, hd)).astype(np.float32)
    k0, v0 = (rng.standard_normal((1, S, K, hd)).astype(np.float32) for _ in range(2))
    k1, v1 = (rng.standard_normal((B, T, K, hd)).astype(np.float32) for _ in range(2))
    m0 = {"shared": rng.random((1, 1, S)) < 0.7, "per_row": rng.random((B, 1, S)) < 0.7,
          "per_token": rng.random((B, T, S)) < 0.7}[mask_kind]
    m0[..., 0] = True
    m1 = np.tril(np.ones((T, T), bool))[None] & (np.arange(T) < np.array([5, 3, 1])[:, None])[:, None, :]
    got = np.asarray(attention(jnp.asarray(q), [(jnp.asarray(k0), jnp.asarray(v0), jnp.asarray(m0)),
                                               (jnp.asarray(k1), jnp.asarray(v1), jnp.asarray(m1))]))
    k = np.concatenate([np.broadcast_to(k0, (B, S, K, hd)), k1], 1).astype(np.float64)
    v = np.concatenate([np.broadcast_to(v0, (B, S, K, hd)), v1], 1).astype(np.float64)
    mask = np.concatenate([np.broadcast_to(m0, (B, T, S)), m1], -1)
    ref = np.zeros((B, T, H, hd))
    for h in range(H):
        s = np.einsum("btd,bsd->bts", q[:, :, h], k[:, :, h // (H // K)]) / np.sqrt(hd)
        s = np.where(mask, s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        ref[:, :, h] = np.einsum("bts,bsd->btd", w / w.sum(-1, keepdims=True), v[:, :, h // (H // K)])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    empty = np.asarray(attention(jnp.asarray(q), [(jnp.asarray(k0), jnp.asarray(v0), jnp.zeros((1, 1, S), bool)),
                                                 (jnp.asarray(k1), jnp.asarray(v1), jnp.zeros((B, T, T), bool))]))
    assert np.isfinite(empty).all()


def test_bucket_len_bounds_padding_and_shape_count():
    from icl.llm import bucket_len
    n = np.arange(1, 4097)
    b = np.array([bucket_len(i) for i in n])
    assert (b >= n).all() and (np.diff(b) >= 0).all()
    assert ((b - n)[n > 64] / n[n > 64]).max() < 0.125 and ((b - n)[n > 128] / n[n > 128]).max() < 0.0625
    assert bucket_len(97) == 104 and bucket_len(400) == 400 and bucket_len(1000) == 1024
    assert len(set(b[n <= 512])) == 48 and len(set(b)) == 160       # shapes that can compile up to 512, 4096


@pytest.mark.parametrize("with_prefix", [False, True])
def test_forward_at_out_positions_equals_full_forward(lm, with_prefix):
    """forward(out=idx): the last layer's attention and MLP only at idx give the full forward's hidden states there
    and the same key/value cache; out of width 0 gives the cache alone."""
    from icl.llm.model import causal_mask, forward, take_rows
    cfg, params = lm.cfg, lm.params
    rng = np.random.default_rng(3)
    B, T, P = 3, 11, 6
    ctx, p0 = (), 0
    if with_prefix:
        _, (kp, vp) = forward(cfg, params, jnp.asarray(rng.integers(0, cfg.vocab_size, (1, P))), jnp.arange(P)[None],
                              causal_mask(jnp.array([P]), P))
        ctx, p0 = [(kp, vp, jnp.ones((1, 1, P), bool))], P
    tokens = jnp.asarray(rng.integers(0, cfg.vocab_size, (B, T)))
    pos = p0 + jnp.broadcast_to(jnp.arange(T), (B, T))
    mask = causal_mask(jnp.array([11, 7, 4]), T)
    h_full, kv_full = forward(cfg, params, tokens, pos, mask, ctx)
    idx = jnp.array([[10, 0], [6, 3], [3, 3]])
    h, kv = forward(cfg, params, tokens, pos, mask, ctx, out=idx)
    np.testing.assert_allclose(np.asarray(h), np.asarray(take_rows(h_full, idx)), rtol=1e-5, atol=1e-5)
    h0, kv0 = forward(cfg, params, tokens, pos, mask, ctx, out=jnp.zeros((B, 0), jnp.int32))
    assert h0.shape == (B, 0, cfg.dim)
    for a, b, c in zip(kv_full, kv, kv0):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
