"""Load weights into the layout of ``icl.llm.model`` from (a) GGUF files and (b) Hugging Face checkpoint folders.

GGUF: read with ``gguf.GGUFReader``; quantised tensors are dequantised with ``gguf.quants.dequantize`` to
float32 arrays of shape (out, in) (the ``torch.nn.Linear`` layout), then transposed/fused to ``x @ W`` form.
llama-arch files (llama, mistral, SmolLM) keep llama.cpp's permuted q/k rows and use interleaved RoPE pairs;
qwen2 files are not permuted and use half-split pairs (see ``model.py``).

HF folders: ``config.json`` + ``*.safetensors`` parsed directly (header + raw buffer, bf16 via ml_dtypes), no
torch. Rows are not permuted; half-split RoPE.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from .model import Config

GGUF_ARCHS = ("llama", "qwen2")  # mistral GGUFs use the llama architecture
HF_MODEL_TYPES = ("llama", "mistral", "qwen2")
_QTYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def _gguf():
    import gguf  # local import keeps `import icl.llm` light
    return gguf


def open_gguf(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    return _gguf().GGUFReader(str(path))


def gguf_metadata(reader) -> dict:
    """All key/value fields of a GGUF file as Python values (strings, numbers, lists)."""
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        out[key] = field.contents()
    return out


def _dequantize(tensor) -> np.ndarray:
    gguf = _gguf()
    qt = gguf.GGMLQuantizationType(tensor.tensor_type)
    if qt.name not in _QTYPES:
        raise ValueError(f"tensor {tensor.name}: quantisation {qt.name} is not supported; supported: {', '.join(_QTYPES)}")
    shape = tuple(int(s) for s in reversed(tensor.shape.tolist()))
    if qt.name in ("F32", "F16"):
        arr = np.asarray(tensor.data)
    else:
        arr = gguf.quants.dequantize(np.asarray(tensor.data), qt)
    return np.ascontiguousarray(arr.reshape(shape), dtype=np.float32)


def config_from_gguf(meta: dict, tensor_shapes: dict) -> Config:
    arch = meta.get("general.architecture")
    if arch not in GGUF_ARCHS:
        raise ValueError(f"GGUF architecture {arch!r} is not supported; supported: {', '.join(GGUF_ARCHS)} "
                         "(mistral files use 'llama')")
    g = lambda k, d=None: meta.get(f"{arch}.{k}", d)
    D, H = int(g("embedding_length")), int(g("attention.head_count"))
    K = int(g("attention.head_count_kv", H))
    hd = int(g("attention.key_length", D // H))
    rope_dim = int(g("rope.dimension_count", hd))
    if rope_dim != hd:
        raise ValueError(f"partial RoPE (rope.dimension_count={rope_dim} != head_dim={hd}) is not supported")
    if meta.get(f"{arch}.rope.scaling.type", "none") not in ("none", None):
        raise ValueError(f"RoPE scaling {meta[f'{arch}.rope.scaling.type']!r} is not supported")
    return Config(
        vocab_size=int(tensor_shapes["token_embd.weight"][0]), dim=D, n_layers=int(g("block_count")),
        n_heads=H, n_kv_heads=K, head_dim=hd, hidden_dim=int(g("feed_forward_length")),
        rope_base=float(g("rope.freq_base", 10000.0)), norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
        qkv_bias="blk.0.attn_q.bias" in tensor_shapes, tied_head="output.weight" not in tensor_shapes,
        rope_interleaved=(arch == "llama"), arch=arch)


# per-layer tensor names: attention norm, q/k/v weights ({x} = q, k, v), output, MLP norm, gate, up, down,
# q/k/v biases
GGUF_NAMES = ("attn_norm.weight", "attn_{x}.weight", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
              "ffn_up.weight", "ffn_down.weight", "attn_{x}.bias")
HF_NAMES = ("input_layernorm.weight", "self_attn.{x}_proj.weight", "self_attn.o_proj.weight",
            "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
            "self_attn.{x}_proj.bias")


def _stack_layers(cfg, get, prefix: str, names: tuple) -> dict:
    """Per-layer tensors (stored (out, in)) into the stacked x @ W layout of ``model.py``."""
    an, qkv, out, mn, gate, up, down, bias = names
    per_layer = []
    for i in range(cfg.n_layers):
        b = prefix.format(i=i)
        layer = {
            "attn_norm": get(b + an),
            "wqkv": np.concatenate([get(b + qkv.format(x=x)).T for x in "qkv"], axis=1),
            "wo": get(b + out).T,
            "mlp_norm": get(b + mn),
            "w13": np.concatenate([get(b + gate).T, get(b + up).T], axis=1),
            "w2": get(b + down).T,
        }
        if cfg.qkv_bias:
            layer["bqkv"] = np.concatenate([get(b + bias.format(x=x)) for x in "qkv"])
        per_layer.append(layer)
    return {k: np.stack([layer[k] for layer in per_layer]) for k in per_layer[0]}


def load_gguf(path_or_reader) -> tuple[Config, dict, dict]:
    """GGUF file -> (Config, float32 NumPy params in model layout, metadata dict)."""
    reader = open_gguf(path_or_reader) if isinstance(path_or_reader, (str, os.PathLike)) else path_or_reader
    meta = gguf_metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    shapes = {n: tuple(int(s) for s in reversed(t.shape.tolist())) for n, t in tensors.items()}
    cfg = config_from_gguf(meta, shapes)

    def get(name):
        if name not in tensors:
            raise KeyError(f"GGUF tensor {name!r} missing from {meta.get('general.name', 'file')}")
        return _dequantize(tensors[name])

    params = {"embed": get("token_embd.weight"), "norm": get("output_norm.weight"),
              "layers": _stack_layers(cfg, get, "blk.{i}.", GGUF_NAMES)}
    if not cfg.tied_head:
        params["head"] = get("output.weight").T
    return cfg, params, meta


# ----------------------------------------------------------------------------------------------------------
# Hugging Face folders

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parse a .safetensors file (8-byte header size, JSON header, raw little-endian buffer) to NumPy arrays."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    header = json.loads(bytes(data[8:8 + n]))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        if info["dtype"] == "BF16":
            import ml_dtypes
            arr = raw.view(ml_dtypes.bfloat16)
        elif info["dtype"] in _ST_DTYPES:
            arr = raw.view(_ST_DTYPES[info["dtype"]])
        else:
            raise ValueError(f"{path}: safetensors dtype {info['dtype']} not supported")
        out[name] = arr.reshape(info["shape"])
    return out


def config_from_hf(conf: dict) -> Config:
    mt = conf.get("model_type")
    if mt not in HF_MODEL_TYPES:
        raise ValueError(f"HF model_type {mt!r} is not supported; supported: {', '.join(HF_MODEL_TYPES)}")
    if conf.get("rope_scaling"):
        raise ValueError(f"rope_scaling {conf['rope_scaling']} is not supported")
    D, H = conf["hidden_size"], conf["num_attention_heads"]
    return Config(
        vocab_size=conf["vocab_size"], dim=D, n_layers=conf["num_hidden_layers"], n_heads=H,
        n_kv_heads=conf.get("num_key_value_heads") or H, head_dim=conf.get("head_dim") or D // H,
        hidden_dim=conf["intermediate_size"], rope_base=float(conf.get("rope_theta", 10000.0)),
        norm_eps=float(conf.get("rms_norm_eps", 1e-6)),
        qkv_bias=(mt == "qwen2") or bool(conf.get("attention_bias", False)),
        tied_head=bool(conf.get("tie_word_embeddings", False)), rope_interleaved=False,
        arch="qwen2" if mt == "qwen2" else "llama")


def load_hf_folder(folder: str | os.PathLike) -> tuple[Config, dict]:
    """HF checkpoint folder (config.json + *.safetensors) -> (Config, float32 NumPy params)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face checkpoint folder)")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors files (only safetensors checkpoints are supported)")
    cfg = config_from_hf(json.loads((folder / "config.json").read_text()))
    sd = {}
    for f in files:
        sd.update(read_safetensors(f))

    def get(name):
        if name not in sd:
            raise KeyError(f"{folder}: tensor {name!r} missing")
        return np.asarray(sd[name], dtype=np.float32)

    params = {"embed": get("model.embed_tokens.weight"), "norm": get("model.norm.weight"),
              "layers": _stack_layers(cfg, get, "model.layers.{i}.", HF_NAMES)}
    if not cfg.tied_head:
        params["head"] = (get("lm_head.weight") if "lm_head.weight" in sd else get("model.embed_tokens.weight")).T
    return cfg, params


# ----------------------------------------------------------------------------------------------------------
# Writing GGUF (tests, exporting small models)


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (convert_hf_to_gguf.py): half-split rows -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: str | os.PathLike, cfg: Config, hf_params: dict, tokenizer_meta: dict | None = None,
               qtype: str = "F32") -> None:
    """Write a GGUF file the way llama.cpp's converter does, from HF-convention (out, in) float32 arrays.

    hf_params keys: ``embed`` [V, D], ``norm`` [D], optional ``head`` [V, D], and per layer i ``{i}.q`` [H*hd, D],
    ``{i}.k``/``{i}.v`` [K*hd, D], ``{i}.o`` [D, H*hd], ``{i}.gate``/``{i}.up`` [F, D], ``{i}.down`` [D, F],
    ``{i}.attn_norm``/``{i}.ffn_norm`` [D], optional ``{i}.q_bias`` etc. For cfg.arch == "llama" q/k rows
    (and biases) are permuted as llama.cpp does. Matrices are stored as ``qtype`` (F32 or any type
    ``gguf.quants.quantize`` supports, e.g. Q8_0, Q4_0); vectors stay F32.
    tokenizer_meta: optional {"model", "pre", "tokens", "token_type", "merges", "bos", "eos", "chat_template"}.
    """
    gguf = _gguf()
    arch = cfg.arch
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.n_layers)
    w.add_context_length(4096)
    w.add_embedding_length(cfg.dim)
    w.add_feed_forward_length(cfg.hidden_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_base)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_dimension_count(cfg.head_dim)
    if tokenizer_meta:
        t = tokenizer_meta
        w.add_tokenizer_model(t.get("model", "gpt2"))
        w.add_tokenizer_pre(t["pre"])
        w.add_token_list(t["tokens"])
        w.add_token_types(t["token_type"])
        w.add_token_merges(t["merges"])
        if "bos" in t:
            w.add_bos_token_id(t["bos"])
        if "eos" in t:
            w.add_eos_token_id(t["eos"])
        w.add_add_bos_token(bool(t.get("add_bos", False)))
        if t.get("chat_template"):
            w.add_chat_template(t["chat_template"])
    qt = gguf.GGMLQuantizationType[qtype]

    def add(name, arr, quantize=True):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if quantize and arr.ndim == 2 and qtype != "F32":
            w.add_tensor(name, gguf.quants.quantize(arr, qt), raw_dtype=qt)
        else:
            w.add_tensor(name, arr)

    perm = (lambda x, n: llama_permute(x, n)) if arch == "llama" else (lambda x, n: x)
    add("token_embd.weight", hf_params["embed"])
    add("output_norm.weight", hf_params["norm"])
    if "head" in hf_params:
        add("output.weight", hf_params["head"])
    for i in range(cfg.n_layers):
        p, b = (lambda k: hf_params[f"{i}.{k}"]), f"blk.{i}."
        add(b + "attn_norm.weight", p("attn_norm"))
        add(b + "ffn_norm.weight", p("ffn_norm"))
        add(b + "attn_q.weight", perm(p("q"), cfg.n_heads))
        add(b + "attn_k.weight", perm(p("k"), cfg.n_kv_heads))
        add(b + "attn_v.weight", p("v"))
        add(b + "attn_output.weight", p("o"))
        add(b + "ffn_gate.weight", p("gate"))
        add(b + "ffn_up.weight", p("up"))
        add(b + "ffn_down.weight", p("down"))
        if f"{i}.q_bias" in hf_params:
            add(b + "attn_q.bias", perm(p("q_bias"), cfg.n_heads))
            add(b + "attn_k.bias", perm(p("k_bias"), cfg.n_kv_heads))
            add(b + "attn_v.bias", p("v_bias"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
