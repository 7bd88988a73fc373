"""Flax/JAX LLM runtime: GGUF / Hugging Face weights, torch-free tokenizers, batched scoring with prefix reuse,
KV-cached generation. See docs/llm.md.

    from icl.llm import LanguageModel
    lm = LanguageModel.load("smollm2-135m")
    lm.score(["Task ... load=0.9. Answer:"], [" edge", " cloud"])   # [1, 2] log-likelihoods
    lm.generate(lm.chat_prompt("What is the capital of France?"), max_new_tokens=16)
"""
from .model import Config, Transformer, count_params, forward, init_params, logprobs
from .registry import DEFAULT_MODEL, MODELS, available, installed, resolve
from .runtime import LanguageModel, bucket_batch, bucket_len, common_prefix_len
from .tokenizer import build_gguf_tokenizer, folder_tokenizer, gguf_tokenizer
from .weights import gguf_metadata, load_gguf, load_hf_folder, open_gguf, read_safetensors, write_gguf

__all__ = ["Config", "Transformer", "count_params", "forward", "init_params", "logprobs", "DEFAULT_MODEL", "MODELS",
           "available", "installed", "resolve", "LanguageModel", "bucket_batch", "bucket_len", "common_prefix_len",
           "build_gguf_tokenizer", "folder_tokenizer", "gguf_tokenizer", "gguf_metadata", "load_gguf",
           "load_hf_folder", "open_gguf", "read_safetensors", "write_gguf"]
