"""The roofline calibration end to end on a tiny GGUF model written by the test."""

import json

from icl.llm import write_gguf
from scripts import calibrate_roofline

from test_llm_weights import LLAMA, hf_params, tok_meta


def test_calibration_writes_errors(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path, LLAMA, hf_params(LLAMA), tok_meta())
    out = tmp_path / "cal"
    res = calibrate_roofline.main(["--model", str(path), "--out", str(out), "--quick", "--reps", "1",
                                   "--prompt-len", "16"])
    assert res["peak_flops"] > 0 and res["mem_bw_bytes_s"] > 0
    for label in ("design", "fitted"):
        assert res[label]["mean_abs_rel_error"] >= 0 and res[label]["max_abs_rel_error"] >= res[label]["mean_abs_rel_error"]
    saved = json.loads((out / "calibration.json").read_text())
    assert len(saved["rows"]) == 2 * 2 * 2      # 2 efficiency sets x 2 batch sizes x (prefill, decode)
    assert (out / "calibration.csv").read_text().count("\n") == 9
