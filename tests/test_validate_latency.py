"""scripts/tools/validate_latency: the booked delays recomputed token by token, the errors recomputed from its CSV,
the project's data and its coverage, a user's data from docs/model.md's example, bad input, and the fit."""

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxsim.config import InferenceConfig, SimConfig
from scripts.tools import validate_latency as V

ROOT = Path(__file__).resolve().parent.parent


def _loop(row, h, m, inf):
    """(throughput per GPU, first token ms, ms per output token) of a static batch, written out step by step:
    B prompts prefilled together, then OSL - 1 decode steps of B sequences at mid-step context; tensor
    parallelism as two ring all-reduces per layer of a pass plus fixed per-layer costs."""
    g = lambda k: getattr(inf, k) if getattr(h, k) is None else getattr(h, k)   # noqa: E731
    n, b, isl, osl = row["n_gpus"], row["batch"], row["input_tokens"], row["output_tokens"]
    nl, dm = m.n_layers, m.d_model
    w = m.n_params * m.bytes_per_weight
    kv = 2 * nl * m.n_kv_heads * m.head_dim * m.bytes_per_kv
    bw = h.mem_bw_bytes_s * n
    comm = 0.0 if n == 1 else nl * 2 * (2 * (n - 1) / n) * dm * m.bytes_per_activation / h.link_bw_bytes_s
    sync = 0.0 if n == 1 else nl * (inf.tp_sync_s_per_layer + 2 * 2 * (n - 1) * h.link_latency_s)
    pre = (nl * inf.prefill_overhead_s_per_layer + sync + b * isl * comm
           + max(b * (2 * m.n_params * isl + 2 * nl * isl ** 2 * dm) / (h.peak_flops * n * g("eta_prefill")),
                 w / (bw * g("eta_memory"))))
    dec = 0.0
    for k in range(osl - 1):
        ctx = b * (isl + 1 + k + 0.5)
        dec += (nl * inf.step_overhead_s_per_layer + sync + b * comm
                + max(2 * m.n_params * b / (h.peak_flops * n * g("eta_compute")), w / (bw * g("eta_memory")))
                + ctx * kv / (bw * g("eta_attention")))
    return b * osl / (pre + dec) / n, 1e3 * pre, 1e3 * dec / max(osl - 1, 1)


@pytest.fixture(scope="module")
def project():
    hw, models, engines = V.read_catalog(V.DEFAULT_CATALOG)
    rows = V.read_rows(V.DEFAULT_DATA, hw, models, engines)
    return hw, models, rows, engines


def test_booked_equals_a_token_loop(project):
    hw, models, rows, engines = project
    t = V.table(rows, hw, models, engines)
    got = V.book(t, V.shipped(hw))
    picked = [i for i, r in enumerate(rows) if r["output_tokens"] <= 256][::23]
    # and a row whose engine's catalog cost is 0 (gpt-fast's TP sync): a value, not an absent field
    picked.append(next(i for i, r in enumerate(rows) if r["engine"] == "gpt-fast" and r["n_gpus"] > 1))
    assert engines["gpt-fast"].tp_sync_s_per_layer == 0
    assert len({rows[i]["n_gpus"] for i in picked}) >= 3 and len({rows[i]["hardware"] for i in picked}) >= 3
    assert len({rows[i]["engine"] for i in picked}) >= 3
    for i in picked:
        r = rows[i]
        # the row's engine's fixed costs in [inference]'s place, as a scenario's action naming it gets them
        inf = SimConfig(engines=(engines[r["engine"]],)).inference_for(
            dataclasses.replace(SimConfig().actions[0], engine=r["engine"]))
        assert inf.step_overhead_s_per_layer == engines[r["engine"]].step_overhead_s_per_layer
        want = _loop(r, hw[r["hardware"]], models[r["model"]], inf)
        for k, x in zip(V.METRICS, want):
            assert got[k][i] == pytest.approx(x, rel=2e-4), (k, r)


def test_project_data_cover_the_issue():
    with open(V.DEFAULT_DATA, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 80 and all(r["citation"].strip() for r in rows)
    engines = {r["source"].split("-v")[0].split("-blog")[0] for r in rows}
    assert len(engines) >= 3                                  # TensorRT-LLM, FasterTransformer, lmdeploy, gpt-fast
    assert len({r["hardware"] for r in rows}) >= 4
    assert {int(r["n_gpus"]) for r in rows} >= {1, 2, 4, 8}
    batches = {int(r["batch"]) for r in rows}
    assert min(batches) == 1 and max(batches) == 1024
    gqa = {r["model"].removesuffix("-fp8") for r in rows}
    assert {"mistral-7b", "llama-3-8b", "llama-3.1-8b", "llama-3.1-70b", "llama-2-70b"} <= gqa
    with open(ROOT / "data" / "serving" / "excluded.csv", newline="") as f:
        assert all(r["reason"].strip() for r in csv.DictReader(f))


def test_project_report_errors_and_held_out(tmp_path):
    res = V.main(["--out", str(tmp_path)])
    with open(tmp_path / "latency_validation.csv") as f:
        rows = list(csv.DictReader(f))
    for k in V.METRICS:
        sel = [r for r in rows if r["metric"] == k]
        assert res[f"{k}_mape"] == pytest.approx(np.mean([abs(float(r["rel_error"])) for r in sel]), abs=2e-3)
        assert res[f"held_out_{k}_mape"] == pytest.approx(
            np.mean([abs(float(r["held_out_rel_error"])) for r in sel]), abs=2e-3)
    tp1 = [r for r in rows if r["metric"] == "throughput" and r["n_gpus"] == "1"]
    assert res["tp1_throughput_mape"] == pytest.approx(np.mean([abs(float(r["rel_error"])) for r in tp1]), abs=2e-3)
    # what the shipped defaults reach in sample (docs/model.md); the issue's held-out targets (12% single-GPU,
    # 20% multi-GPU, 20% first token) are not all met yet: these bounds hold today's held-out figures
    assert res["tp1_throughput_mape"] <= 0.12 and res["tp_throughput_mape"] <= 0.15 and res["ttft_mape"] <= 0.16
    assert res["held_out_ttft_mape"] <= 0.20
    assert res["held_out_tp1_throughput_mape"] <= 0.18 and res["held_out_tp_throughput_mape"] <= 0.26
    assert len(res["held_out_per_source"]) == len(res["sources"]) >= 3
    # the test set: sources and models of its own (and two engines), never fitted; errors recomputed from its CSV
    with open(tmp_path / "latency_test.csv") as f:
        test = list(csv.DictReader(f))
    with open(V.DEFAULT_TEST) as f:
        cited = list(csv.DictReader(f))
    assert res["test_n"] == len(cited) == len(test) and all(r["citation"].strip() for r in cited)
    assert not set(res["test_per_source"]) & set(res["sources"])
    hw, models, engines = V.read_catalog(V.DEFAULT_CATALOG)
    fitted_engines = {r["engine"] for r in V.read_rows(V.DEFAULT_DATA, hw, models, engines)}
    assert {r["engine"] for r in test} - fitted_engines == {"vllm", "deepspeed-inference"}
    assert not {r["model"] for r in test} & {r["model"] for r in V.read_rows(V.DEFAULT_DATA, hw, models, engines)}
    assert res["test_throughput_mape"] == pytest.approx(np.mean([abs(float(r["rel_error"])) for r in test]), abs=2e-3)
    # what docs/model.md reports: vLLM's Qwen2.5 0.5B-14B within 8%, DeepSpeed's BLOOM-shaped 1.3B about 2x too fast
    assert res["test_per_source"]["qwen2.5-speed-vllm"]["throughput_mape"] <= 0.08
    bloom = [float(r["rel_error"]) for r in test if r["model"] == "bigcode-bloom-1.3b"]
    assert min(bloom) > 0.5


def test_the_test_set_enters_no_fit(tmp_path):
    a = V.main(["--out", str(tmp_path / "a"), "--no-held-out", "--fit"])
    b = V.main(["--out", str(tmp_path / "b"), "--no-held-out", "--fit", "--test-data", "none"])
    assert a["fitted"] == b["fitted"] and a["test_n"] > 0 and "test_n" not in b
    assert not (tmp_path / "b" / "latency_test.csv").exists()


def test_a_bad_test_set_is_refused_naming_its_flag(tmp_path, capsys):
    bad = tmp_path / "test.csv"
    bad.write_text(V.DEFAULT_TEST.read_text().replace("qwen2.5-3b", "qwen9-3b", 1))
    with pytest.raises(SystemExit) as e:
        V.main(["--out", str(tmp_path / "out"), "--test-data", str(bad)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--test-data test.csv line" in err and "qwen9-3b" in err


def _docs_example(tmp_path):
    text = (ROOT / "docs" / "model.md").read_text()
    part = text[text.index("#### Your own serving data"):]
    csv_text = re.search(r"```csv\n(.*?)```", part, re.S).group(1)
    toml_text = re.search(r"```toml\n(.*?)```", part, re.S).group(1)
    (tmp_path / "rows.csv").write_text(csv_text)
    (tmp_path / "specs.toml").write_text(toml_text)
    return tmp_path / "rows.csv", tmp_path / "specs.toml"


def test_the_docs_example_runs(tmp_path, capsys):
    data, cat = _docs_example(tmp_path)
    res = V.main(["--data", str(data), "--catalog", str(cat), "--out", str(tmp_path / "out")])
    assert res["n"] == 5 and res["n_throughput"] == 3 and res["n_ttft"] == 2
    assert {"throughput_mape", "ttft_mape", "tp1_throughput_mape", "tp_throughput_mape",
            "held_out_throughput_mape", "held_out_ttft_mape"} <= set(res)
    assert "tpot_mape" not in res                          # no row measured it
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 5


@pytest.mark.parametrize("edit, words", [
    (lambda c, t: (c.replace("A100-80GB,llama-2-7b,1,64", "B200,llama-2-7b,1,64"), t), ["line 2", "hardware", "B200"]),
    (lambda c, t: (c.replace("llama-2-70b,4", "llama-9,4"), t), ["line 4", "model", "llama-9"]),
    (lambda c, t: (c.replace(",input_tokens,", ",prompt_len,"), t), ["missing column", "input_tokens"]),
    (lambda c, t: (c.replace("1,64,128,128,3100", "1,6x,128,128,3100"), t), ["line 2", "batch", "6x"]),
    (lambda c, t: (c.replace("4,64,128,128,480,", "4,64,128,128,,"), t), ["line 4", "nothing measured"]),
    (lambda c, t: (c.replace(",8\n", ",-8\n"), t), ["line 6", "measured_first_token_ms"]),
    (lambda c, t: (c.replace("lab-b,,H100-80GB-FP8,llama-3-8b-fp8,2,", "lab-b,,H100-80GB-FP8,llama-3-8b-fp8,99,"), t),
     ["line 6", "n_gpus", "[1, 72]"]),
    (lambda c, t: (c, t.replace("head_dim = 128\nd_model = 8192", "head_dim = 128\nd_modl = 8192")),
     ["models[1].d_modl", "unknown field"]),
    (lambda c, t: (c, t.replace("peak_flops = 312e12", "peak_flops = -1.0")), ["hardware[0].peak_flops", "out of range"]),
    (lambda c, t: (c.replace("lab-a,my-engine,A100-80GB,llama-2-70b", "lab-a,vllm,A100-80GB,llama-2-70b"), t),
     ["line 4", "engine", "vllm", "my-engine"]),
    (lambda c, t: (c, t.replace("step_overhead_s_per_layer = 3e-5", "step_overhead_s_per_layer = 0.5")),
     ["engines[0].step_overhead_s_per_layer", "out of range"]),
    (lambda c, t: (c, t + "\n[[enignes]]\nname = \"x\"\n"), ["unknown table", "enignes"]),
])
def test_bad_user_data_is_refused_naming_row_and_column(tmp_path, capsys, edit, words):
    data, cat = _docs_example(tmp_path)
    c, t = edit(data.read_text(), cat.read_text())
    data.write_text(c)
    cat.write_text(t)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        V.main(["--data", str(data), "--catalog", str(cat), "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not (out / "latency_validation.csv").exists()


def test_fit_recovers_efficiencies_it_generated(project, tmp_path):
    """Rows whose measured values are the booking with known efficiencies, the same rows twice on two engines
    of different fixed costs: the fit from its data-free start finds a booking within 1% of them on every row,
    each engine's costs its own."""
    hw, models, rows, _ = project
    truth = dataclasses.replace(InferenceConfig(), eta_compute=0.45, eta_memory=0.7, eta_prefill=0.55,
                                eta_attention=0.5, step_overhead_s_per_layer=2e-5, tp_sync_s_per_layer=3e-5,
                                prefill_overhead_s_per_layer=5e-5)
    plain = {k: dataclasses.replace(h, eta_compute=None, eta_memory=None, eta_prefill=None, eta_attention=None)
             for k, h in hw.items()}
    picked = [dict(r) for r in rows if r["source"].startswith("trtllm-v0.8")]
    picked += [{**r, "engine": "slow"} for r in picked]
    t = V.table(picked, plain, models)
    assert t.engines == ["slow", "tensorrt-llm"]
    eff = {k: getattr(truth, k) for k in V.GLOBAL} | {"attention_heads": "kv", "slow.step_overhead_s_per_layer": 9e-5,
                                                       "slow.tp_sync_s_per_layer": 1e-4}
    booked = V.book(t, eff)
    for i, r in enumerate(picked):
        r["measured"] = {"measured_tokens_per_s_per_gpu": float(booked["throughput"][i])} if r["output_tokens"] > 1 \
            else {"measured_first_token_ms": float(booked["ttft"][i])}
    t = V.table(picked, plain, models)
    before = V.errors(t, V.book(t, {**V.START, "attention_heads": "kv"}))
    fitted = V.fit(t, {**V.START, "attention_heads": "kv"}, np.ones(len(picked), bool))
    after = V.errors(t, V.book(t, fitted))
    for k in ("throughput", "ttft"):
        assert np.nanmax(np.abs(before[k])) > 0.1
        assert np.nanmean(np.abs(after[k])) < 0.01, k
    assert fitted["slow.step_overhead_s_per_layer"] == pytest.approx(9e-5, rel=0.1)
    assert fitted["tensorrt-llm.step_overhead_s_per_layer"] == pytest.approx(2e-5, rel=0.2)


def test_held_out_reads_nothing_the_catalog_fitted(project):
    """The catalog's efficiencies and engine costs are the fit on every row: a left-one-out booking must not
    depend on them (else it would see its left-out rows)."""
    hw, models, rows, engines = project
    picked = [r for r in rows if r["source"] in ("trtllm-v0.5.0", "trtllm-v0.6.1", "gpt-fast")]
    start = {**V.START, "attention_heads": "kv"}
    a = V.held_out(V.table(picked, hw, models, engines), start)[0]
    odd_hw = {k: dataclasses.replace(h, eta_memory=0.11, eta_compute=0.12) for k, h in hw.items()}
    odd_eng = {k: dataclasses.replace(e, step_overhead_s_per_layer=9e-4) for k, e in engines.items()}
    b = V.held_out(V.table(picked, odd_hw, models, odd_eng), start)[0]
    for k in V.METRICS:
        np.testing.assert_array_equal(a[k], b[k])


def test_unwritable_out_is_refused_before_any_compute(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        V.main(["--out", str(blocker / "sub")])
    assert e.value.code == 2
    assert "is not a writable directory" in capsys.readouterr().err
