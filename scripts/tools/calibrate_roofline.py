"""Calibrate the roofline inference model against this project's own Flax LLM on this machine.

    python -m scripts.tools.calibrate_roofline [--model smollm2-135m] [--out results] [--quick]

1. Measures the machine: peak FLOP/s (a large f32 matmul through JAX) and memory bandwidth (a
   jitted reduction over a 512 MiB array: bytes read / s).
2. Times the LLM: prefill of B x L tokens and one KV-cached decode step at context C, for several
   batch sizes B (the runtime's own jitted stages, warm, best of --reps).
3. Predicts the same times with the simulator's own server formulas (``jaxsim.inference.prefill_s`` for
   the B prompts together and ``decode_step_s`` at context L, on ``inference.serving_params`` built from
   the measured F and BW), both with the simulator's default efficiencies (``InferenceConfig``) and with
   efficiencies fitted here: eta_prefill from the prefill times (compute-bound: geometric mean of
   FLOPs / F over measured time), eta_memory from the decode steps (memory-bound at these batches:
   geometric mean of (weights + KV bytes) / BW over measured time), no per-layer overhead (a GPU's
   kernel-launch cost), eta_compute at its default; and reports each point's relative error.

Writes <out>/calibration.csv and calibration.json and prints one JSON line last. Runs as is on a GPU
(jax picks the device).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiment.files import atomic_write_bytes
from jaxsim import inference
from jaxsim.config import Hardware, InferenceConfig, LLMModel
from scripts.bench.llm import best_time, matmul_gflops
from experiment.study import write_csv


EFFICIENCIES = ("eta_compute", "eta_memory", "eta_prefill", "prefill_overhead_s_per_layer", "step_overhead_s_per_layer",
                "eta_attention", "attention_heads")


def machine_peak(reps: int, n: int = 3072, mib: int = 512) -> tuple[float, float]:
    """(FLOP/s of an n x n f32 matmul, bytes/s of a reduction over `mib` MiB)."""
    flops = matmul_gflops(n, reps) * 1e9
    x = jnp.ones((mib * 2 ** 20 // 4,), jnp.float32)
    red = jax.jit(jnp.sum)
    bw = x.nbytes / best_time(lambda: red(x), reps)
    return flops, bw


def llm_times(lm, batches, prompt_len: int, reps: int, decode_steps: int = 8):
    """Per batch size: (prefill s for B x prompt_len tokens, decode-step s at context prompt_len)."""
    from icl.llm import runtime as R
    cfg, params = lm.cfg, lm.params
    out = {}
    key = jax.random.PRNGKey(0)
    for b in batches:
        toks = jnp.asarray(np.random.default_rng(b).integers(100, cfg.vocab_size, (b, prompt_len)), jnp.int32)
        valid = jnp.ones((b, prompt_len), bool)
        size = prompt_len + 64
        pre = best_time(lambda: R._gen_prefill(cfg, params, toks, valid, size, key, jnp.float32(1.0), True), reps)
        tok, cache = R._gen_prefill(cfg, params, toks, valid, size, key, jnp.float32(1.0), True)
        vmask = jnp.concatenate([valid, jnp.zeros((b, 64), bool)], 1)

        def steps(tok=tok, cache=cache):
            # decode_steps steps from the same prefilled cache (the step donates its cache: copy first)
            c = (cache[0] + 0, cache[1] + 0)
            t = tok
            for s in range(decode_steps):
                m = vmask.at[:, prompt_len + s].set(True)
                t, c = R._gen_step(cfg, params, c, m, t, jnp.full((b,), prompt_len + s), jnp.int32(prompt_len + s),
                                   key, jnp.float32(1.0), True)
            return t
        copy = best_time(lambda: (cache[0] + 0, cache[1] + 0), reps)
        step = (best_time(steps, reps) - copy) / decode_steps
        out[b] = (pre, step)
    return out


def predict(dims, b, prompt_len, flops, bw, eff):
    """(prefill of b prompts of prompt_len tokens, one decode step of b sequences at context prompt_len), s,
    from jaxsim.inference's formulas. dims: (n_params, n_layers, n_kv_heads, head_dim, d_model, bytes);
    eff: InferenceConfig fields."""
    n, nl, kvh, hd, dm, nbytes = dims
    machine = Hardware("this-machine", flops, bw, 1e15)
    model = LLMModel("llm", n, nl, kvh, hd, dm, bytes_per_weight=nbytes, bytes_per_kv=nbytes)
    sp = inference.serving_params([(machine, model, 1)], dataclasses.replace(InferenceConfig(), **eff))
    pre = inference.prefill_s(sp, 0, jnp.float32(prompt_len), jnp.float32(b))
    step = inference.decode_step_s(sp, jnp.float32(b), jnp.float32(prompt_len), jnp.int32(0))
    return float(pre), float(step)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default="results")
    ap.add_argument("--quick", action="store_true", help="batches 1, 4; 3 repetitions")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--prompt-len", type=int, default=256)
    args = ap.parse_args(argv)
    if args.prompt_len < 8 or (args.reps is not None and args.reps < 1):
        ap.error("--prompt-len must be >= 8 and --reps >= 1")
    reps = args.reps or (2 if args.quick else 3)
    batches = [1, 4] if args.quick else [1, 4, 16]

    from icl.llm import LanguageModel
    lm = LanguageModel.load(args.model)
    c = lm.cfg
    n = float(lm.n_params)
    bytes_w = np.dtype(jax.tree.leaves(lm.params)[0].dtype).itemsize
    kv_tok = 2 * c.n_layers * c.n_kv_heads * c.head_dim * bytes_w
    flops, bw = machine_peak(reps)
    times = llm_times(lm, batches, args.prompt_len, reps)

    dims = (n, c.n_layers, c.n_kv_heads, c.head_dim, c.dim, bytes_w)
    inf = InferenceConfig()
    design = {k: getattr(inf, k) for k in EFFICIENCIES}
    # fitted: prefill is compute-bound, decode steps at these batches memory-bound (weights + KV at context L)
    pre_flops = {b: b * (2 * n * args.prompt_len + 2 * c.n_layers * args.prompt_len ** 2 * c.dim) for b in batches}
    step_bytes = {b: n * bytes_w + b * args.prompt_len * kv_tok for b in batches}
    eta_p = math.exp(np.mean([math.log(pre_flops[b] / flops / times[b][0]) for b in batches]))
    eta_m = math.exp(np.mean([math.log(step_bytes[b] / bw / times[b][1]) for b in batches]))
    # the runtime reads the KV heads it has, at the weights' bandwidth; no per-layer costs on a CPU
    fitted = dict(design, eta_memory=eta_m, eta_attention=eta_m, eta_prefill=eta_p, prefill_overhead_s_per_layer=0.0,
                  step_overhead_s_per_layer=0.0, attention_heads="kv")
    rows, report = [], {}
    for label, eff in (("design", design), ("fitted", fitted)):
        errs = []
        for b in batches:
            pred = predict(dims, b, args.prompt_len, flops, bw, eff)
            for k, what in ((0, "prefill"), (1, "decode_step")):
                err = pred[k] / times[b][k] - 1.0
                errs.append(abs(err))
                rows.append([label, what, b, args.prompt_len, f"{times[b][k]:.6g}", f"{pred[k]:.6g}", f"{err:+.4f}"])
        report[label] = {**eff, "mean_abs_rel_error": float(np.mean(errs)), "max_abs_rel_error": float(np.max(errs))}
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "calibration.csv"),
              ["efficiencies", "stage", "batch", "context", "measured_s", "predicted_s", "rel_error"], rows)
    result = {"bench": "roofline_calibration", "model": args.model, "device": str(jax.devices()[0]),
              "peak_flops": flops, "mem_bw_bytes_s": bw, "n_params": n, **{f"{k}": v for k, v in report.items()}}
    atomic_write_bytes(os.path.join(args.out, "calibration.json"), json.dumps({**result, "rows": rows}, indent=2).encode())
    for r in rows:
        print("  ".join(str(x) for x in r))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
