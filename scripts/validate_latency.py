"""The project's LLM server model held against published measured serving.

    python -m scripts.validate_latency            # table, then a JSON line last
    python -m scripts.validate_latency --fit      # also refit the efficiencies on the fit half

Data: NVIDIA TensorRT-LLM's performance page, ``docs/source/performance.md`` of github.com/NVIDIA/TensorRT-LLM
as updated for v0.6.1 (commit 138f96d45f90b9667426f7c47297d8c06bafac73; low-latency rows from v0.5): measured
output-token throughput of static batches (``gptSessionBenchmark``: B requests of ISL prompt tokens generating
OSL tokens each) and first-token latency at batch 1, for GPT-J 6B, Llama-2 7B, Llama-2 70B and Falcon 180B on
H100 SXM and L40S (FP8 weights and KV cache) and A100 SXM4 80 GB (FP16). Every number below is typed from that
page; nothing is fitted into the data.

What the project books (``jaxsim.inference``, the environment's own functions on a parameter pytree holding one
server per configuration):
- a batch's time = prefill of its B prompts together (``prefill_s``: per-layer overhead + max(FLOPs / F_prefill,
  weight read)) + the decode of OSL - 1 further tokens by all B sequences, context growing from ISL + 1
  (``batch_schedule``: per-operator roofline, closed-form phase sums); throughput = B OSL / time / GPUs;
- first-token latency = ``prefill_s`` of one prompt.

Scope: the server model has no tensor-parallel communication or synchronisation term, so the targets are
checked on the single-GPU configurations (TP = 1); the multi-GPU rows are printed beside them with their own
errors (``tp_*_mape``). Configurations are split into halves by alternating rows within each table (both
lengths of every model in each half); ``--fit`` fits (eta_compute, eta_memory, eta_prefill, overhead per layer)
on the fit half by coordinate search and reports the errors on the other half. The project's defaults
(``jaxsim.config.InferenceConfig``) are the values this fit printed, rounded.

Writes <out>/latency_validation.csv; the last line printed is
{"bench": "latency", "n": ..., "throughput_mape": ..., "ttft_mape": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiment.files import write_csv
from experiment.runs import check_writable
from jaxsim import inference
from jaxsim.config import InferenceConfig
from jaxsim.fields import ConfigError

SOURCE = ("NVIDIA TensorRT-LLM docs/source/performance.md, v0.6.1 "
          "(github.com/NVIDIA/TensorRT-LLM, commit 138f96d45f90b9667426f7c47297d8c06bafac73)")

# model shapes (Hugging Face configs): parameters, layers, KV heads, head dim, d_model
MODELS = {
    "gpt-j-6b": (6.05e9, 28, 16, 256, 4096),
    "llama-2-7b": (6.74e9, 32, 32, 128, 4096),
    "llama-2-70b": (68.98e9, 80, 8, 128, 8192),
    "falcon-180b": (179.5e9, 80, 8, 64, 14848),
}
# accelerators at the precision the page ran them (datasheets): dense peak FLOP/s, memory bytes/s, bytes/value
GPUS = {
    "H100-SXM-FP8": (1979e12, 3.35e12, 1.0),
    "L40S-FP8": (733e12, 864e9, 1.0),
    "A100-SXM4-80GB-FP16": (312e12, 2.039e12, 2.0),
}
# peak throughput tables: (gpu, model, batch, TP, input len, output len, measured output tokens/s per GPU)
THROUGHPUT = [
    ("H100-SXM-FP8", "gpt-j-6b", 1024, 1, 128, 128, 26150), ("H100-SXM-FP8", "gpt-j-6b", 120, 1, 128, 2048, 8011),
    ("H100-SXM-FP8", "gpt-j-6b", 64, 1, 2048, 128, 2551), ("H100-SXM-FP8", "gpt-j-6b", 64, 1, 2048, 2048, 3327),
    ("H100-SXM-FP8", "llama-2-7b", 768, 1, 128, 128, 19694), ("H100-SXM-FP8", "llama-2-7b", 112, 1, 128, 2048, 6818),
    ("H100-SXM-FP8", "llama-2-7b", 80, 1, 2048, 128, 2244), ("H100-SXM-FP8", "llama-2-7b", 48, 1, 2048, 2048, 2740),
    ("H100-SXM-FP8", "llama-2-70b", 1024, 2, 128, 128, 2657), ("H100-SXM-FP8", "llama-2-70b", 480, 4, 128, 2048, 1486),
    ("H100-SXM-FP8", "llama-2-70b", 96, 2, 2048, 128, 306), ("H100-SXM-FP8", "llama-2-70b", 64, 2, 2048, 2048, 547),
    ("H100-SXM-FP8", "falcon-180b", 1024, 4, 128, 128, 987), ("H100-SXM-FP8", "falcon-180b", 1024, 8, 128, 2048, 724),
    ("H100-SXM-FP8", "falcon-180b", 64, 4, 2048, 128, 112), ("H100-SXM-FP8", "falcon-180b", 64, 4, 2048, 2048, 264),
    ("L40S-FP8", "gpt-j-6b", 64, 1, 128, 128, 3630), ("L40S-FP8", "gpt-j-6b", 64, 1, 128, 2048, 1859),
    ("L40S-FP8", "gpt-j-6b", 32, 1, 2048, 128, 616), ("L40S-FP8", "gpt-j-6b", 32, 1, 2048, 2048, 757),
    ("L40S-FP8", "llama-2-7b", 64, 1, 128, 128, 3240), ("L40S-FP8", "llama-2-7b", 64, 1, 128, 2048, 1622),
    ("L40S-FP8", "llama-2-7b", 32, 1, 2048, 128, 581), ("L40S-FP8", "llama-2-7b", 16, 1, 2048, 2048, 531),
    # A100: the page's single-GPU rows (its multi-GPU rows do not say whether they are per GPU)
    ("A100-SXM4-80GB-FP16", "gpt-j-6b", 512, 1, 128, 128, 6374), ("A100-SXM4-80GB-FP16", "gpt-j-6b", 60, 1, 2048, 128, 670),
    ("A100-SXM4-80GB-FP16", "llama-2-7b", 384, 1, 128, 128, 5586),
    ("A100-SXM4-80GB-FP16", "llama-2-7b", 60, 1, 128, 2048, 1928),
    ("A100-SXM4-80GB-FP16", "llama-2-7b", 52, 1, 2048, 128, 591),
]
# low-latency tables, batch 1: (gpu, model, TP, input len, measured first-token latency, ms)
FIRST_TOKEN = [
    ("H100-SXM-FP8", "gpt-j-6b", 1, 128, 7), ("H100-SXM-FP8", "gpt-j-6b", 1, 2048, 29),
    ("H100-SXM-FP8", "llama-2-7b", 1, 128, 7), ("H100-SXM-FP8", "llama-2-7b", 1, 2048, 36),
    ("H100-SXM-FP8", "llama-2-70b", 4, 128, 26), ("H100-SXM-FP8", "llama-2-70b", 4, 2048, 109),
    ("H100-SXM-FP8", "falcon-180b", 8, 128, 27), ("H100-SXM-FP8", "falcon-180b", 8, 2048, 205),
    ("L40S-FP8", "gpt-j-6b", 1, 128, 12), ("L40S-FP8", "gpt-j-6b", 1, 2048, 71),
    ("L40S-FP8", "llama-2-7b", 1, 128, 14), ("L40S-FP8", "llama-2-7b", 1, 2048, 73),
    ("A100-SXM4-80GB-FP16", "gpt-j-6b", 1, 128, 12), ("A100-SXM4-80GB-FP16", "gpt-j-6b", 1, 2048, 129),
    ("A100-SXM4-80GB-FP16", "llama-2-7b", 1, 128, 16), ("A100-SXM4-80GB-FP16", "llama-2-7b", 1, 2048, 133),
    ("A100-SXM4-80GB-FP16", "llama-2-70b", 4, 128, 47), ("A100-SXM4-80GB-FP16", "llama-2-70b", 4, 2048, 377),
    ("A100-SXM4-80GB-FP16", "falcon-180b", 8, 128, 61), ("A100-SXM4-80GB-FP16", "falcon-180b", 8, 2048, 509),
]
EFFICIENCIES = ("eta_compute", "eta_memory", "eta_prefill", "prefill_overhead_s_per_layer")


def half_of(rows) -> np.ndarray:
    """0 / 1 per row: rows alternate within each group of a table (a group: the rows of one GPU and model),
    starting with the other half in every second group, so each half holds short and long settings."""
    out, seen = [], {}
    for r in rows:
        g = (r[0], r[1])
        i = seen.setdefault(g, [len(seen), 0])
        out.append((i[0] + i[1]) % 2)
        i[1] += 1
    return np.array(out)


def servers(gpu_model_tp, eff, max_seqs: int = 1) -> inference.ServingParams:
    """One server per (gpu, model, TP) with efficiencies ``eff`` (a dict of EFFICIENCIES, traced or float)."""
    cols = list(zip(*[GPUS[g] + MODELS[m] + (t,) for g, m, t in gpu_model_tp]))
    peak, bw, nbytes, n, nl, kvh, hd, dm, tp = (np.array(c, np.float32) for c in cols)
    return inference.serving_params(peak, bw, n, nl, kvh, hd, dm, nbytes, tp, eff, max_seqs=max_seqs)


def booked_throughput(eff) -> jnp.ndarray:
    """Output tokens/s per GPU of every THROUGHPUT configuration, as the project books the batch."""
    rows = THROUGHPUT
    s = max(r[2] for r in rows)
    p = servers([(r[0], r[1], r[3]) for r in rows], eff, max_seqs=s)
    batch = np.array([r[2] for r in rows])
    isl = np.array([r[4] for r in rows], np.float32)
    osl = np.array([r[5] for r in rows], np.float32)
    live = np.arange(s)[None, :] < batch[:, None]
    srv = inference.ServerState(
        rem_tokens=jnp.asarray(np.where(live, (osl - 1)[:, None], 0.0), jnp.float32),
        ctx_tokens=jnp.asarray(np.where(live, (isl + 1)[:, None], 0.0), jnp.float32),
        status=jnp.asarray(np.where(live, inference.RUNNING, inference.FREE), jnp.int32),
        order=jnp.zeros(live.shape, jnp.int32), counter=jnp.zeros(len(rows), jnp.int32),
        bg_seqs=jnp.zeros(len(rows), jnp.int32), busy_s=jnp.zeros(len(rows)))
    sched = inference.batch_schedule(p, srv)
    decode = sched.sorted_done_s[jnp.arange(len(rows)), jnp.asarray(batch - 1)]
    prefill = inference.prefill_s(p, jnp.arange(len(rows)), jnp.asarray(isl), jnp.asarray(batch, jnp.float32))
    tp = np.array([r[3] for r in rows], np.float32)
    return batch * osl / (prefill + decode) / tp


def booked_first_token_ms(eff) -> jnp.ndarray:
    rows = FIRST_TOKEN
    p = servers([(r[0], r[1], r[2]) for r in rows], eff)
    return 1e3 * inference.prefill_s(p, jnp.arange(len(rows)), jnp.asarray([r[3] for r in rows], jnp.float32))


@jax.jit
def _errors(eff):
    thr = booked_throughput(eff)
    ttft = booked_first_token_ms(eff)
    return (thr, thr / jnp.asarray([r[-1] for r in THROUGHPUT], jnp.float32) - 1.0,
            ttft, ttft / jnp.asarray([r[-1] for r in FIRST_TOKEN], jnp.float32) - 1.0)


def mape(err, sel) -> float:
    return float(np.mean(np.abs(np.asarray(err)[sel])))


def masks():
    """Selections over THROUGHPUT and FIRST_TOKEN rows: single-GPU rows of each half, and multi-GPU rows."""
    tp1_t = np.array([r[3] == 1 for r in THROUGHPUT])
    tp1_f = np.array([r[2] == 1 for r in FIRST_TOKEN])
    h_t, h_f = half_of(THROUGHPUT), half_of(FIRST_TOKEN)
    return {"fit": (tp1_t & (h_t == 0), tp1_f & (h_f == 0)), "held_out": (tp1_t & (h_t == 1), tp1_f & (h_f == 1)),
            "all": (tp1_t, tp1_f), "multi_gpu": (~tp1_t, ~tp1_f)}


def evaluate(eff: dict) -> dict:
    thr, e_t, ttft, e_f = _errors({k: jnp.float32(v) for k, v in eff.items()})
    return {"throughput": np.asarray(thr), "throughput_err": np.asarray(e_t),
            "ttft_ms": np.asarray(ttft), "ttft_err": np.asarray(e_f)}


def fit(start: dict, sel, rounds: int = 8) -> dict:
    """Coordinate search on the fit half: each efficiency in turn over a multiplicative grid that narrows
    every round, minimising throughput MAPE + first-token MAPE. Deterministic."""
    eff = dict(start)
    bounds = {"eta_compute": (0.05, 0.9), "eta_memory": (0.05, 0.9), "eta_prefill": (0.05, 0.9),
              "prefill_overhead_s_per_layer": (1e-6, 1e-2)}

    def loss(e):
        r = evaluate(e)
        return mape(r["throughput_err"], sel[0]) + mape(r["ttft_err"], sel[1])
    best = loss(eff)
    span = 2.0
    for _ in range(rounds):
        for k in EFFICIENCIES:
            lo, hi = bounds[k]
            for f in np.geomspace(1 / span, span, 21):
                cand = dict(eff, **{k: float(np.clip(eff[k] * f, lo, hi))})
                v = loss(cand)
                if v < best - 1e-12:
                    best, eff = v, cand
        span = span ** 0.5
    return eff


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", action="store_true", help="refit the efficiencies on the fit half and report both")
    ap.add_argument("--out", default="results", help="folder for latency_validation.csv")
    args = ap.parse_args(argv)
    try:
        check_writable(args.out)
    except ConfigError as e:
        ap.error(str(e))
    inf = InferenceConfig()
    default = {k: getattr(inf, k) for k in EFFICIENCIES}
    sel = masks()
    res = evaluate(default)
    rows = []
    for i, r in enumerate(THROUGHPUT):
        rows.append(["throughput_tok_s_per_gpu", *r[:6], "tp1" if r[3] == 1 else "multi_gpu",
                     int(half_of(THROUGHPUT)[i]), r[6], f"{res['throughput'][i]:.1f}", f"{res['throughput_err'][i]:+.3f}"])
    for i, r in enumerate(FIRST_TOKEN):
        rows.append(["first_token_ms", r[0], r[1], 1, r[2], r[3], "", "tp1" if r[2] == 1 else "multi_gpu",
                     int(half_of(FIRST_TOKEN)[i]), r[4], f"{res['ttft_ms'][i]:.2f}", f"{res['ttft_err'][i]:+.3f}"])
    header = ["metric", "gpu", "model", "batch", "tp", "input_len", "output_len", "scope", "half", "measured",
              "booked", "rel_error"]
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "latency_validation.csv"), header, rows)
    print(f"source: {SOURCE}")
    print("  ".join(header))
    for r in rows:
        print("  ".join(str(x) for x in r))
    out = {"bench": "latency", "n": int(sel["all"][0].sum() + sel["all"][1].sum()),
           "throughput_mape": mape(res["throughput_err"], sel["all"][0]),
           "ttft_mape": mape(res["ttft_err"], sel["all"][1]),
           "n_throughput": int(sel["all"][0].sum()), "n_ttft": int(sel["all"][1].sum()),
           "held_out_throughput_mape": mape(res["throughput_err"], sel["held_out"][0]),
           "held_out_ttft_mape": mape(res["ttft_err"], sel["held_out"][1]),
           "tp_throughput_mape": mape(res["throughput_err"], sel["multi_gpu"][0]),
           "tp_ttft_mape": mape(res["ttft_err"], sel["multi_gpu"][1]),
           "efficiencies": default}
    if args.fit:
        fitted = fit(default, sel["fit"])
        r2 = evaluate(fitted)
        out["fitted"] = {**{k: round(v, 6) for k, v in fitted.items()},
                         "fit_throughput_mape": mape(r2["throughput_err"], sel["fit"][0]),
                         "fit_ttft_mape": mape(r2["ttft_err"], sel["fit"][1]),
                         "held_out_throughput_mape": mape(r2["throughput_err"], sel["held_out"][0]),
                         "held_out_ttft_mape": mape(r2["ttft_err"], sel["held_out"][1])}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
