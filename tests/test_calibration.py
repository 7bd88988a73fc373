"""The roofline calibration end to end on a tiny GGUF model written by the test; its fitted efficiencies
and errors recomputed here, independently, from the measured times it saved."""

import csv
import json
import math

import numpy as np

from icl.llm import write_gguf
from jaxsim.config import InferenceConfig
from scripts.tools import calibrate_roofline

from test_llm_weights import LLAMA, hf_params, tok_meta

L = 16          # --prompt-len


def predicted(stage, b, res, eff):
    """docs/model.md's server model for the tiny model (f32 weights and KV), written out here."""
    n, c = res["n_params"], LLAMA
    f, bw = res["peak_flops"], res["mem_bw_bytes_s"]
    if stage == "prefill":
        return c.n_layers * eff["prefill_overhead_s_per_layer"] + max(
            b * (2 * n * L + 2 * c.n_layers * L * L * c.dim) / (f * eff["eta_prefill"]), 4 * n / (bw * eff["eta_memory"]))
    heads = c.n_kv_heads if eff["attention_heads"] == "kv" else c.dim // c.head_dim
    attn_per_token = 2 * c.n_layers * heads * c.head_dim * 4
    return c.n_layers * eff["step_overhead_s_per_layer"] + max(2 * n * b / (f * eff["eta_compute"]),
                                                               4 * n / (bw * eff["eta_memory"])) + \
        b * L * attn_per_token / (bw * eff["eta_attention"])


def test_calibration_fits_and_errors_match_an_independent_computation(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, LLAMA, hf_params(LLAMA), tok_meta())
    out = tmp_path / "cal"
    res = calibrate_roofline.main(["--model", str(path), "--out", str(out), "--quick", "--reps", "1",
                                   "--prompt-len", str(L)])
    with open(out / "calibration.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2      # 2 efficiency sets x 2 batch sizes x (prefill, decode)
    measured = {(r["stage"], int(r["batch"])): float(r["measured_s"]) for r in rows if r["efficiencies"] == "design"}
    assert all(t > 0 for t in measured.values())

    # fitted: eta_prefill from the prefill times, eta_memory from the decode steps (geometric means of the
    # compute-bound / memory-bound time at eta 1 over the measured time), no per-layer overhead
    n, c = res["n_params"], LLAMA
    kv_per_token = 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4

    def geo(vals):
        return math.exp(np.mean(np.log(vals)))
    eta_p = geo([b * (2 * n * L + 2 * c.n_layers * L * L * c.dim) / res["peak_flops"] / measured[("prefill", b)]
                 for b in (1, 4)])
    eta_m = geo([(4 * n + b * L * kv_per_token) / res["mem_bw_bytes_s"] / measured[("decode_step", b)] for b in (1, 4)])
    np.testing.assert_allclose([res["fitted"]["eta_prefill"], res["fitted"]["eta_memory"]], [eta_p, eta_m], rtol=1e-4)
    assert res["fitted"]["prefill_overhead_s_per_layer"] == 0.0
    inf = InferenceConfig()
    assert res["design"]["eta_compute"] == inf.eta_compute and res["design"]["eta_prefill"] == inf.eta_prefill
    for label in ("design", "fitted"):
        eff = res[label]
        errs = [abs(predicted(s, b, res, eff) / measured[(s, b)] - 1) for (s, b) in measured]
        np.testing.assert_allclose(res[label]["mean_abs_rel_error"], np.mean(errs), rtol=1e-4)
        np.testing.assert_allclose(res[label]["max_abs_rel_error"], np.max(errs), rtol=1e-4)
        for r in (r for r in rows if r["efficiencies"] == label):
            p = predicted(r["stage"], int(r["batch"]), res, eff)
            np.testing.assert_allclose(float(r["predicted_s"]), p, rtol=1e-5)
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["fitted"] == res["fitted"] and len(saved["rows"]) == 8
