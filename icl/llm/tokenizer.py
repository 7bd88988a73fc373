"""Tokenizers without PyTorch.

GGUF: rebuild the byte-level BPE from ``tokenizer.ggml.tokens`` / ``merges`` / ``token_type`` with the ``tokenizers``
library, choosing the pre-tokenizer that matches ``tokenizer.ggml.pre`` (as llama.cpp does):

* ``smollm``: each digit is its own piece, then GPT-2 byte-level splitting;
* ``qwen2`` (and ``deepseek-r1-qwen``): NFC normalisation, the Qwen2 regex split, then byte-level;
* ``llama-bpe`` / ``llama3``: the Llama-3 regex split, then byte-level;
* ``gpt2`` / ``default``: GPT-2 byte-level splitting.

Token types 3 (control) and 4 (user defined) become special added tokens (matched whole, never split).
The result is wrapped as a ``transformers.PreTrainedTokenizerFast`` carrying ``tokenizer.chat_template``, so
``apply_chat_template`` works. Folders use ``AutoTokenizer.from_pretrained(folder)``.
"""
from __future__ import annotations

import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SUPPORTED_PRE = ("smollm", "qwen2", "deepseek-r1-qwen", "llama-bpe", "llama3", "gpt2", "default")


def _pre_tokenizer(pre: str):
    """(normalizer or None, pre_tokenizer) for a ``tokenizer.ggml.pre`` value."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    raw_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    if pre == "smollm":
        return None, pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("qwen2", "deepseek-r1-qwen"):
        split = pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False)
        return normalizers.NFC(), pre_tokenizers.Sequence([split, raw_bytes])
    if pre in ("llama-bpe", "llama3"):
        split = pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False)
        return None, pre_tokenizers.Sequence([split, raw_bytes])
    if pre in ("gpt2", "default"):
        return None, byte_level
    raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported; supported: {', '.join(SUPPORTED_PRE)}")


def build_gguf_tokenizer(meta: dict) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` from GGUF metadata (see module docstring)."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer model {kind!r} is not supported; only byte-level BPE ('gpt2') is")
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    norm, pre = _pre_tokenizer(meta.get("tokenizer.ggml.pre", "default"))
    if norm is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty in (3, 4)])
    bos = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        b = tokens[bos]
        tok.post_processor = processors.TemplateProcessing(single=f"{b}:0 $A:0", pair=f"{b}:0 $A:0 {b}:1 $B:1",
                                                           special_tokens=[(b, bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _transformers():
    """The transformers package, imported without its advisory notice that PyTorch is missing (this project uses
    only its tokenizers and never needs torch); a user's own TRANSFORMERS_NO_ADVISORY_WARNINGS is kept."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers
    return transformers


def gguf_tokenizer(meta: dict):
    """``transformers.PreTrainedTokenizerFast`` (with chat template and bos/eos/pad/unk) from GGUF metadata."""
    PreTrainedTokenizerFast = _transformers().PreTrainedTokenizerFast

    tokens = meta["tokenizer.ggml.tokens"]
    special = {}
    for name in ("bos", "eos", "unknown", "padding"):
        i = meta.get(f"tokenizer.ggml.{name}_token_id")
        if i is not None and 0 <= int(i) < len(tokens):
            special[{"unknown": "unk_token", "padding": "pad_token"}.get(name, name + "_token")] = tokens[int(i)]
    return PreTrainedTokenizerFast(tokenizer_object=build_gguf_tokenizer(meta),
                                   chat_template=meta.get("tokenizer.chat_template"), **special)


def folder_tokenizer(folder: str | os.PathLike):
    """Tokenizer of a Hugging Face checkpoint folder (tokenizer.json / tokenizer_config.json, local only)."""
    return _transformers().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_level_meta(pre: str = "smollm", merges: tuple = (), specials: tuple = ("<|endoftext|>", "<|im_start|>",
                    "<|im_end|>"), chat_template: str | None = None) -> dict:
    """GGUF-style tokenizer metadata of a small byte-level BPE: specials (ids 0..), the 256 byte symbols, then one
    token per merge ("a b" -> "ab"). bos = specials[1], eos = specials[2] when present. Used for tests/tiny models."""
    tokens = list(specials) + [bytes_to_unicode()[b] for b in range(256)]
    tokens += [m.replace(" ", "") for m in merges]
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": [3] * len(specials) + [1] * (len(tokens) - len(specials)),
            "tokenizer.ggml.merges": list(merges), "tokenizer.ggml.add_bos_token": False}
    if len(specials) >= 3:
        meta.update({"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
                     "tokenizer.ggml.padding_token_id": 2})
    if chat_template:
        meta["tokenizer.chat_template"] = chat_template
    return meta
