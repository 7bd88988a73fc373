"""The roofline calibration end to end on a tiny GGUF model written by the test; its fitted efficiencies
and errors recomputed here, independently, from the measured times it saved."""

import csv
import json
import math

import numpy as np

from icl.llm import write_gguf
from jaxsim.config import InferenceConfig
from scripts import calibrate_roofline

from test_llm_weights import LLAMA, hf_params, tok_meta

L = 16          # --prompt-len


def predicted(stage, b, res, eta_c, eta_m):
    """DESIGN.md §5's roofline for the tiny model (f32 weights and KV), written out here."""
    n, c = res["n_params"], LLAMA
    if stage == "prefill":
        return b * (2 * n * L + 2 * c.n_layers * L * L * c.dim) / (res["peak_flops"] * eta_c)
    kv_per_token = 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4
    return max(2 * n * b / (res["peak_flops"] * eta_c),
               (4 * n + b * L * kv_per_token) / (res["mem_bw_bytes_s"] * eta_m))


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

    # fitted: eta = geometric mean of (prediction at eta 1) / measured, per stage
    def fit(stage):
        ratios = [predicted(stage, b, res, 1.0, 1.0) / measured[(stage, b)] for b in (1, 4)]
        return math.exp(np.mean(np.log(ratios)))
    eta_c, eta_m = fit("prefill"), fit("decode_step")
    np.testing.assert_allclose([res["fitted"]["eta_compute"], res["fitted"]["eta_memory"]], [eta_c, eta_m], rtol=1e-4)
    inf = InferenceConfig()
    assert res["design"]["eta_compute"] == inf.eta_compute and res["design"]["eta_memory"] == inf.eta_memory
    for label in ("design", "fitted"):
        ec, em = res[label]["eta_compute"], res[label]["eta_memory"]
        errs = [abs(predicted(s, b, res, ec, em) / measured[(s, b)] - 1) for (s, b) in measured]
        np.testing.assert_allclose(res[label]["mean_abs_rel_error"], np.mean(errs), rtol=1e-4)
        np.testing.assert_allclose(res[label]["max_abs_rel_error"], np.max(errs), rtol=1e-4)
        for r in (r for r in rows if r["efficiencies"] == label):
            p = predicted(r["stage"], int(r["batch"]), res, ec, em)
            np.testing.assert_allclose(float(r["predicted_s"]), p, rtol=1e-5)
    # the prefill fit makes the fitted prefill errors' geometric mean exactly 1
    logs = [math.log(predicted("prefill", b, res, eta_c, eta_m) / measured[("prefill", b)]) for b in (1, 4)]
    assert abs(sum(logs)) < 1e-4
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["fitted"] == res["fitted"] and len(saved["rows"]) == 8
