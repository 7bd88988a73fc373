"""Benchmark the Flax LLM runtime on CPU: ``python -m scripts.bench.llm [--model NAME] [--quick]``.

Measures (float32):
* matmul_gflops: best rate of a large square f32 matmul through JAX, compiled with the runtime's XLA options
  (``icl.llm.runtime.compiler_options``: the same GEMM as the model's; the machine's practical ceiling);
* prefill_tokens_per_s: a jitted forward over [batch, T] prompt tokens (keys/values at every token; the last
  layer's attention output and MLP, and the head, at the last position only);
* mfu = prefill_tokens_per_s * 2 * n_params / (matmul_gflops * 1e9);
* decisions_per_s: ``LanguageModel.score`` decisions (one prompt scored against 3 candidates) per second for
  batches of 1, 8 and 32 prompts of ~400 tokens sharing a ~300-token prefix, with prefix reuse and without (the
  two timed alternately; a single prompt has nothing to share, so its two figures differ by noise only);
* torch_ratio: our decisions/s without prefix reuse / transformers-PyTorch's on the same batch of 8 prompts (like
  for like: both run every prompt token), timed alternately in the same process so machine noise hits both;
  torch_ratio_prefix_reuse: the same with our prefix reuse on (how the ICL policy runs). Null when torch and
  transformers' torch models do not import;
* llama_cpp_prefill_tokens_per_s: llama.cpp (llama-cpp-python, the ``serve`` extra) evaluating the same
  [batch, 256] random tokens of the same GGUF file, one sequence at a time (its Python API runs one), on the
  same threads, timed alternately with ours; llama_cpp_ratio = ours / llama.cpp's. Null without the extra or
  for a non-GGUF model.
The last printed line is one JSON object (key "bench": "llm"); the figures reported are those at the
largest batch (32 by default; --batches 1,32,256 on a GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from icl.llm import LanguageModel
from icl.llm import model as M
from icl.llm.registry import DEFAULT_MODEL
from icl.llm.runtime import stage

CANDIDATES = [" edge", " cloud", " local"]
SHARED = ("You are the scheduler of a 6G edge-cloud network that serves generative AI tasks (text, image and "
          "video generation). Each task arrives at a base station with an edge server that holds a small model "
          "and a limited GPU, and a remote cloud data centre with large models reached over a backhaul link. "
          "Running a task at the edge gives low latency but lower quality and may overload the edge GPU; "
          "running it in the cloud gives higher quality but adds transmission delay and cost. A task has a "
          "prompt length in tokens, a requested output length, a deadline in milliseconds and a quality "
          "requirement. The edge load is the fraction of the edge GPU already in use. ")


def best_times_alternating(fns, reps):
    """Best wall time of each function (waiting for its JAX results), calling them in turn ``reps`` times after
    one warm-up call each: machine noise then hits every function alike."""
    for fn in fns:
        jax.block_until_ready(fn())
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def best_time(fn, reps):
    return best_times_alternating([fn], reps)[0]


def matmul_gflops(n=3072, reps=5):
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = stage()(lambda a, b: a @ b)
    return 2 * n ** 3 / best_time(lambda: f(a, b), reps) / 1e9


@stage(static_argnums=0)
def _prefill(cfg, params, tokens):
    B, T = tokens.shape
    h, _ = M.forward(cfg, params, tokens, jnp.broadcast_to(jnp.arange(T), (B, T)),
                     M.causal_mask(jnp.full((B,), T), T), out=jnp.full((B, 1), T - 1))
    return M.logprobs(cfg, params, h[:, 0])


def make_prompts(lm, n, shared_tokens, suffix_tokens, seed=0):
    """n prompts: a shared task description (~shared_tokens) + a per-task state (~suffix_tokens) + 'Answer:'."""
    rng = np.random.default_rng(seed)
    shared = SHARED
    while len(lm.encode(shared)) < shared_tokens:
        shared += SHARED
    shared = lm.tokenizer.decode(lm.encode(shared)[:shared_tokens])
    prompts = []
    tail = "\nWhere should it run? Answer:"
    for i in range(n):
        s, words = f"\nTask {i}:", []
        while True:  # add state fields while the prompt stays within shared_tokens + suffix_tokens
            words.append(rng.choice([f" prompt {rng.integers(10, 2000)} tokens,", f" output {rng.integers(10, 500)} tokens,",
                                     f" deadline {rng.integers(50, 900)} ms,", f" edge load {rng.random():.2f},",
                                     f" quality {rng.random():.1f},", f" link {rng.integers(5, 99)} Mbit/s,"]))
            if len(lm.encode(shared + s + "".join(words) + tail)) > shared_tokens + suffix_tokens:
                words.pop()
                break
        prompts.append(shared + s + "".join(words) + tail)
    return prompts


def torch_scorer(lm_name, prompts):
    """A function scoring ``prompts`` (first candidate tokens) with transformers' PyTorch model, or None."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from icl.llm.registry import resolve
        kind, path = resolve(lm_name)
        kw = {"gguf_file": path.name} if kind == "gguf" else {}
        root = path.parent if kind == "gguf" else path
        tok = AutoTokenizer.from_pretrained(str(root), **kw)
        tm = AutoModelForCausalLM.from_pretrained(str(root), dtype=torch.float32, **kw).eval()
    except Exception as e:  # torch or its transformers models unavailable
        print(f"torch reference unavailable: {type(e).__name__}: {str(e)[:120]}")
        return None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cand = [tok.encode(c, add_special_tokens=False)[0] for c in CANDIDATES]
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    def run():
        with torch.inference_mode():
            enc = tok(prompts, return_tensors="pt", padding=True)
            logits = tm(**enc, logits_to_keep=1).logits[:, -1]
            return torch.log_softmax(logits, -1)[:, cand]

    return run


def llama_cpp_prefill(lm_name, tokens: np.ndarray):
    """A function evaluating each row of ``tokens`` [B, T] from an empty context with llama.cpp on the same GGUF
    file (its KV cache cleared before each row), or None."""
    try:
        import llama_cpp
        from icl.llm.registry import resolve
        kind, path = resolve(lm_name)
        if kind != "gguf":
            return None
        threads = max(1, len(os.sched_getaffinity(0)))
        llm = llama_cpp.Llama(str(path), n_ctx=tokens.shape[1] + 16, n_batch=tokens.shape[1], n_threads=threads,
                              n_threads_batch=threads, verbose=False)
    except Exception as e:  # the extra missing, or the file not loadable by this llama.cpp
        print(f"llama.cpp reference unavailable: {type(e).__name__}: {str(e)[:120]}")
        return None

    def run():
        for row in tokens:
            llm.reset()
            llm.eval(row.tolist())

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--quick", action="store_true", help="small fast run (batches 1 and 4, fewer repetitions)")
    ap.add_argument("--no-torch", action="store_true", help="skip the transformers-PyTorch reference")
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp reference")
    ap.add_argument("--batches", help="comma-separated prompt batch sizes; the figures reported are the largest's "
                                      "(default 1,8,32; a GPU: 1,32,256)")
    args = ap.parse_args(argv)
    reps = 1 if args.quick else 2
    batches = [1, 4] if args.quick else [1, 8, 32]
    if args.batches:
        try:
            batches = sorted({int(b) for b in args.batches.split(",")})
        except ValueError:
            batches = [0]
        if batches[0] < 1:
            ap.error(f"--batches = {args.batches!r}: allowed comma-separated integers >= 1")

    t = time.perf_counter()
    lm = LanguageModel.load(args.model)
    print(f"loaded {args.model}: {lm.n_params / 1e6:.1f}M params in {time.perf_counter() - t:.1f}s")
    gf = matmul_gflops(2048 if args.quick else 3072, reps + 2)
    print(f"matmul: {gf:.0f} GFLOP/s")

    B, T = batches[-1], 256
    toks_np = np.random.default_rng(0).integers(100, lm.cfg.vocab_size, (B, T)).astype(np.int32)
    toks = jnp.asarray(toks_np)
    ours = lambda: _prefill(lm.cfg, lm.params, toks)  # noqa: E731
    run_cpp = None if args.no_llama_cpp else llama_cpp_prefill(args.model, toks_np)
    if run_cpp is None:
        t_ours, t_cpp = best_time(ours, reps), None
    else:
        t_ours, t_cpp = best_times_alternating([ours, run_cpp], reps)
    pf = B * T / t_ours
    mfu = pf * 2 * lm.n_params / (gf * 1e9)
    print(f"prefill [{B}x{T}]: {pf:.0f} tokens/s, MFU {mfu:.2f}")
    cpp_pf = cpp_ratio = None
    if t_cpp is not None:
        cpp_pf, cpp_ratio = B * T / t_cpp, t_cpp / t_ours
        print(f"llama.cpp prefill of the same tokens (one sequence at a time, timed alternately): {cpp_pf:.0f} "
              f"tokens/s; ours / llama.cpp's = {cpp_ratio:.2f}")

    dps, dps_np, ratios = {}, {}, {}
    prompts_all = make_prompts(lm, max(batches), 300, 100)
    n_prompt = np.mean([len(lm.encode(p)) for p in prompts_all])
    n_suffix = n_prompt - 300
    for b in batches:
        prompts = prompts_all[:b]
        t_p, t_np = best_times_alternating([lambda: lm.score(prompts, CANDIDATES),
                                            lambda: lm.score(prompts, CANDIDATES, prefix_reuse=False)], reps)
        dps[b], dps_np[b] = b / t_p, b / t_np
        ratios[b] = dps[b] / dps_np[b]
        print(f"batch {b:3d}: {dps[b]:7.2f} decisions/s with prefix reuse, {dps_np[b]:7.2f} without "
              f"(x{ratios[b]:.2f}; prompt/suffix tokens = {n_prompt:.0f}/{n_suffix:.0f} = {n_prompt / n_suffix:.2f})")

    torch_ratio = torch_ratio_prefix = None
    if not args.no_torch:
        tb = min(8, max(batches))
        prompts = prompts_all[:tb]
        run_torch = torch_scorer(args.model, prompts)
        if run_torch:
            t_torch, t_np, t_p = best_times_alternating(
                [run_torch, lambda: lm.score(prompts, CANDIDATES, prefix_reuse=False),
                 lambda: lm.score(prompts, CANDIDATES)], reps + 1)
            torch_ratio, torch_ratio_prefix = t_torch / t_np, t_torch / t_p
            print(f"batch {tb}, timed alternately: transformers-PyTorch {tb / t_torch:.2f} decisions/s, ours "
                  f"{tb / t_np:.2f} without prefix reuse (ratio {torch_ratio:.2f}), {tb / t_p:.2f} with "
                  f"(ratio {torch_ratio_prefix:.2f})")
    b = max(batches)
    print(json.dumps({"bench": "llm", "model": args.model, "n_params": lm.n_params, "matmul_gflops": round(gf, 1),
                      "prefill_tokens_per_s": round(pf, 1), "mfu": round(mfu, 3), "decisions_per_s": round(dps[b], 2),
                      "decisions_per_s_no_prefix": round(dps_np[b], 2), "batch": b, "backend": jax.default_backend(),
                      "torch_ratio": torch_ratio and round(torch_ratio, 3),
                      "torch_ratio_prefix_reuse": torch_ratio_prefix and round(torch_ratio_prefix, 3),
                      "llama_cpp_prefill_tokens_per_s": cpp_pf and round(cpp_pf, 1),
                      "llama_cpp_ratio": cpp_ratio and round(cpp_ratio, 3)}))


if __name__ == "__main__":
    main()
