"""scripts/validate_latency: the booked delays recomputed token by token, the errors recomputed from its CSV,
and the targets of the server model on the cited measurements."""

import csv
import json

import numpy as np
import pytest

from jaxsim.config import InferenceConfig
from scripts import validate_latency as V


def _loop_throughput(row, eff):
    """Output tokens/s per GPU of a static batch, written out step by step: all B prompts prefilled together
    (per-layer overhead + max(FLOPs / F_prefill, weight read)), then OSL - 1 decode steps, each the weight
    matmuls at batch B plus the KV read of every sequence's context at mid-step."""
    gpu, model, b, tp, isl, osl, _ = row
    peak, bw, nbytes = V.GPUS[gpu]
    n, nl, kvh, hd, dm = V.MODELS[model]
    f_dec, f_pre, bw = peak * tp * eff["eta_compute"], peak * tp * eff["eta_prefill"], bw * tp * eff["eta_memory"]
    w, kv = n * nbytes, 2 * nl * kvh * hd * nbytes
    t = nl * eff["prefill_overhead_s_per_layer"] + max(b * (2 * n * isl + 2 * nl * isl ** 2 * dm) / f_pre, w / bw)
    for k in range(osl - 1):
        ctx = isl + 1 + k + 0.5
        t += max(2 * n * b / f_dec, w / bw) + b * ctx * kv / bw
    return b * osl / t / tp


def test_booked_throughput_equals_a_token_loop():
    eff = {k: getattr(InferenceConfig(), k) for k in V.EFFICIENCIES}
    got = V.evaluate(eff)["throughput"]
    for i in (0, 3, 7, 17, 23, 9):              # short and long, single and multi-GPU, three GPUs
        assert got[i] == pytest.approx(_loop_throughput(V.THROUGHPUT[i], eff), rel=2e-4), V.THROUGHPUT[i]


def test_halves_hold_both_lengths_of_every_model():
    for rows, g_len in ((V.THROUGHPUT, 4), (V.FIRST_TOKEN, 3)):
        half = V.half_of(rows)
        for h in (0, 1):
            lens = {r[g_len] for r, x in zip(rows, half) if x == h}
            assert {128, 2048} <= lens
        assert abs(int(half.sum()) - len(rows) / 2) <= 2


def test_validation_report_targets_and_errors(tmp_path):
    res = V.main(["--out", str(tmp_path)])
    with open(tmp_path / "latency_validation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(V.THROUGHPUT) + len(V.FIRST_TOKEN)
    # at least eight configurations of each kind, over several models, GPUs, batches and lengths
    tp1 = [r for r in rows if r["scope"] == "tp1"]
    thr = [r for r in tp1 if r["metric"] == "throughput_tok_s_per_gpu"]
    ttft = [r for r in tp1 if r["metric"] == "first_token_ms"]
    assert len(thr) >= 8 and len(ttft) >= 8 and res["n"] == len(thr) + len(ttft)
    assert len({r["model"] for r in thr}) >= 2 and len({r["gpu"] for r in thr}) >= 3
    assert len({r["batch"] for r in thr}) >= 5 and len({(r["input_len"], r["output_len"]) for r in thr}) == 4
    # the MAPEs recomputed from the CSV's measured and booked values
    def mape(sel):
        return np.mean([abs(float(r["booked"]) / float(r["measured"]) - 1) for r in sel])
    assert res["throughput_mape"] == pytest.approx(mape(thr), abs=2e-3)
    assert res["ttft_mape"] == pytest.approx(mape(ttft), abs=2e-3)
    held = [r for r in thr if r["half"] == "1"]
    assert res["held_out_throughput_mape"] == pytest.approx(mape(held), abs=2e-3)
    # the targets with the default efficiencies, on all single-GPU rows and on the held-out half
    assert res["throughput_mape"] <= 0.10 and res["held_out_throughput_mape"] <= 0.10
    assert res["ttft_mape"] <= 0.20 and res["held_out_ttft_mape"] <= 0.20
    assert json.loads(json.dumps(res))["bench"] == "latency"


def test_unwritable_out_is_refused_before_any_compute(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        V.main(["--out", str(blocker / "sub")])
    assert e.value.code == 2
    assert "is not a writable directory" in capsys.readouterr().err
