"""Start llama.cpp's OpenAI-compatible server (llama-cpp-python's, the ``serve`` extra) on a GGUF of this
machine, for the endpoint backend (``icl.llm.endpoint``): ``with LlamaServer("qwen2.5-coder-1.5b") as url: ...``.

The server loads one model; its requests are answered one at a time, and the previous prompt's key/value
cache is reused for the longest common token prefix (so a prompt's branches, sent in order, cost their own
tokens only after the first).
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time

from .registry import resolve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """A llama_cpp.server process on ``model`` (a registered name or .gguf path), served as ``model``'s name at
    http://127.0.0.1:PORT/v1; ``start`` returns once it answers /v1/models."""

    def __init__(self, model: str, port: int | None = None, threads: int | None = None, n_ctx: int = 4096,
                 timeout_s: float = 180.0):
        if importlib.util.find_spec("llama_cpp") is None:
            raise FileNotFoundError("llama.cpp's server is not installed: make install-serve "
                                    "(pip install -e '.[serve]' with the Makefile's CMAKE_ARGS)")
        self.model, self.path = str(model), resolve(model)[1]
        self.port = port or free_port()
        self.threads = threads or max(1, len(os.sched_getaffinity(0)))
        self.n_ctx, self.timeout_s = n_ctx, timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        import httpx
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.path), "--model_alias", self.model,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", str(self.threads),
             "--n_threads_batch", str(self.threads), "--n_ctx", str(self.n_ctx)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server on {self.model} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"llama_cpp.server on {self.model} did not answer within {self.timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
