"""The OpenAI-compatible client (icl.llm.endpoint) against a scripted in-process server: retries, errors, the
floor, the cache, bounded concurrency; and the ICL policy through it. The real llama.cpp server:
tests/test_serving.py."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from icl.llm.backend import FlaxBackend, as_backend
from icl.llm.endpoint import EndpointBackend, EndpointError, ResponseCache, check_endpoint


class Script:
    """What the fake server answers: ``fail`` a list of (status, body) served first, then completions whose
    top_logprobs give grade g the log-probability -(g + 1) x (1 + prompt length % 3), '7' left out."""

    def __init__(self):
        self.fail, self.bodies, self.in_flight, self.max_in_flight, self.delay_s = [], [], 0, 0, 0.0
        self.lock = threading.Lock()

    def answer(self, body):
        with self.lock:
            self.bodies.append(body)
            if self.fail:
                return self.fail.pop(0)
        k = 1 + len(body["prompt"]) % 3
        top = {str(g): -(g + 1.0) * k for g in range(10) if g != 7}
        top["\n"] = -50.0
        return 200, {"choices": [{"text": "0", "logprobs": {"top_logprobs": [top], "tokens": ["0"],
                                                              "token_logprobs": [-k]}}],
                     "usage": {"prompt_tokens": len(body["prompt"].split())}}


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
            time.sleep(script.delay_s)
            status, out = script.answer(body)
            with script.lock:
                script.in_flight -= 1
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()


def client(url, tmp_path, **kw):
    return EndpointBackend(url, "fake-model", cache_path=tmp_path / "cache.sqlite", backoff_s=0.01,
                           tokenizer=False, **kw)


GRADES = [str(g) for g in range(10)]


def test_grades_floor_and_usage(server, tmp_path):
    url, script = server
    be = client(url, tmp_path)
    lp = be.grade_logprobs(["a", "bb"], [[" x:", " yy:"], [" x:", " yy:"]], GRADES, prefix="P ")
    assert lp.shape == (2, 2, 10)
    k = 1 + len("P a x:") % 3
    expect = [-(g + 1.0) * k for g in range(10)]
    expect[7] = -50.0                                  # not among the top: the smallest returned
    assert np.allclose(lp[0, 0], expect)
    assert be.stats["floor_grades"] == 4 and be.stats["grade_slots"] == 40
    assert be.stats["prompt_tokens"] == sum(len(b["prompt"].split()) for b in script.bodies)
    assert all(b["max_tokens"] == 1 and b["logprobs"] == 10 and b["model"] == "fake-model" for b in script.bodies)
    assert be.info()["floor_share"] == 0.1


def test_retries_429_and_5xx_then_answers(server, tmp_path):
    url, script = server
    script.fail = [(429, {"error": {"message": "slow down"}}), (503, {"error": {"message": "busy"}})]
    be = client(url, tmp_path, max_in_flight=1)
    lp = be.grade_logprobs(["a"], [[" x:"]], GRADES)
    assert np.isfinite(lp).all() and len(script.bodies) == 3 and be.stats["requests"] == 1


def test_client_error_names_endpoint_model_and_message(server, tmp_path):
    url, script = server
    script.fail = [(400, {"error": {"message": "logprobs must be <= 5"}})]
    be = client(url, tmp_path, max_in_flight=1)
    with pytest.raises(EndpointError) as e:
        be.grade_logprobs(["a"], [[" x:"]], GRADES)
    msg = str(e.value)
    assert url in msg and "fake-model" in msg and "logprobs must be <= 5" in msg and "HTTP 400" in msg
    assert len(script.bodies) == 1                      # a client error is not retried


def test_unreachable_server_is_a_clear_error(tmp_path):
    be = EndpointBackend("http://127.0.0.1:9/v1", "m", cache_path=tmp_path / "c.sqlite", retries=1,
                         backoff_s=0.01, tokenizer=False)
    with pytest.raises(EndpointError, match=r"http://127.0.0.1:9/v1, model 'm': /completions failed after 2"):
        be.grade_logprobs(["a"], [[" x:"]], GRADES)


def test_cache_answers_a_rerun_and_concurrency_is_bounded(server, tmp_path):
    url, script = server
    script.delay_s = 0.05
    prompts = [f"task {i}" for i in range(12)]
    branches = [[" x:", " y:", " z:"]] * 12
    be = client(url, tmp_path, max_in_flight=3)
    first = be.grade_logprobs(prompts, branches, GRADES)
    assert len(script.bodies) == 36 and 2 <= script.max_in_flight <= 3
    again = client(url, tmp_path, max_in_flight=3)          # a new process would see the same file
    assert np.array_equal(again.grade_logprobs(prompts, branches, GRADES), first)
    assert len(script.bodies) == 36 and again.stats["cached"] == 36 and again.stats["requests"] == 0
    assert len(ResponseCache(tmp_path / "cache.sqlite")) == 36


def test_no_top_logprobs_and_bad_url(server, tmp_path):
    url, script = server
    script.fail = [(200, {"choices": [{"text": "3"}]})]
    with pytest.raises(EndpointError, match="no top_logprobs"):
        client(url, tmp_path, max_in_flight=1).grade_logprobs(["a"], [[" x:"]], GRADES)
    with pytest.raises(ValueError, match="--llm-endpoint = 'localhost:1': allowed an http"):
        check_endpoint("localhost:1")
    assert check_endpoint("http://h:1/v1/completions/") == "http://h:1/v1"


def test_echo_scores_the_candidate_and_refuses_a_misaligned_echo(server, tmp_path):
    url, script = server
    good = {"choices": [{"text": "Q: x edge.", "logprobs": {
        "tokens": ["Q", ":", " x", " edge", "."], "text_offset": [0, 1, 2, 4, 9],
        "token_logprobs": [None, -1.0, -2.0, -0.5, -0.1]}}]}
    bad = {"choices": [{"text": "Q: x edge.", "logprobs": {     # the completion's token missing: shifted
        "tokens": ["Q", ":", " x", " edge"], "text_offset": [0, 1, 2, 4],
        "token_logprobs": [None, -1.0, -2.0, -0.5]}}]}
    script.fail = [(200, good), (200, bad)]
    be = client(url, tmp_path, max_in_flight=1)
    assert be.score(["Q: x"], [" edge"])[0, 0] == -0.5
    assert script.bodies[0]["echo"] is True
    with pytest.raises(EndpointError, match="misaligned"):
        be.score(["Q: y"], [" edge"])


def test_icl_policy_through_an_endpoint_matches_its_flax_grades(server, tmp_path, tiny):
    """The policy asks the backend only through the interface: the same log-probabilities from either give the
    same decisions."""
    from icl.policy import ICLConfig, ICLPolicy
    from icl.pool import ExperiencePool
    from icl.prompt import BASE_FEATURES

    url, script = server
    be = client(url, tmp_path)
    A = len(tiny.actions)
    rng = np.random.default_rng(0)
    pool = ExperiencePool(len(BASE_FEATURES) + A, 64, 2.0)
    feats = rng.uniform(1, 100, (40, len(BASE_FEATURES) + A)).astype(np.float32)
    pool.add(feats, rng.integers(0, 2, 40), rng.integers(0, A, 40), rng.uniform(-1, 1, 40), np.zeros(40, int),
             np.zeros(40, int))

    class Recorded:                         # a stand-in Flax model answering what the endpoint answered
        name, n_params = "rec", 0
        tokenizer = None

        def encode(self, text, special=True):
            return [int(text)] if text.isdigit() else list(range(len(text.split())))

        def branch_logprobs(self, prompts, branches, targets, prefix="", max_rows=16):
            return be.grade_logprobs(prompts, branches, [str(t) for t in targets], prefix=prefix)

    icfg = ICLConfig(epsilon=0.0, shots=6)
    q_feats, q_types = feats[:10], np.zeros(10, int)
    via_end = ICLPolicy(tiny, icfg, lm=be, pool=pool)
    via_flax = ICLPolicy(tiny, icfg, lm=Recorded(), pool=pool)
    assert isinstance(via_flax.llm, FlaxBackend) and as_backend(be) is be
    a = via_end.choose(q_feats, q_types, via_end.select(q_feats, q_types), None)
    b = via_flax.choose(q_feats, q_types, via_flax.select(q_feats, q_types), None)
    assert np.array_equal(a, b)
    assert via_end.summary()["backend"]["backend"] == "endpoint"
