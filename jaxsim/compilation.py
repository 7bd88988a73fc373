"""JAX compilation bookkeeping: the persistent compilation cache and a count of compiles.

``use_persistent_cache()`` points JAX's own persistent compilation cache at a folder (``$JAX_COMPILATION_CACHE_DIR``,
else ``~/.cache/genai-edge-lab/jax``; ``$GENAI_EDGE_LAB_JAX_CACHE=off`` turns it off), so a second run of the same program loads its executables instead of
compiling them. ``compile_counts()`` reports how many XLA compiles and persistent-cache hits this process has
had so far (from ``jax.monitoring`` events), so runs can say how many compiles they did.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax

_COUNTS = {"compiles": 0, "compile_s": 0.0, "cache_hits": 0}
_LOCK = threading.Lock()
_LISTENING = False


def _on_duration(name: str, secs: float, **_):
    if name == "/jax/core/compile/backend_compile_duration":
        with _LOCK:
            _COUNTS["compiles"] += 1
            _COUNTS["compile_s"] += float(secs)


def _on_event(name: str, **_):
    if name == "/jax/compilation_cache/cache_hits":
        with _LOCK:
            _COUNTS["cache_hits"] += 1


def count_compiles() -> None:
    """Start counting (idempotent); ``compile_counts`` then reports compiles since this first call."""
    global _LISTENING
    if not _LISTENING:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _LISTENING = True


def compile_counts() -> dict:
    """{"compiles": XLA compiles not served by the cache, "compile_s": seconds in compiling and loading, "cache_hits": executables loaded from
    the persistent cache} since ``count_compiles`` was first called."""
    with _LOCK:
        c = dict(_COUNTS)
    c["compiles"] = max(c["compiles"] - c["cache_hits"], 0)    # a cache hit is reported as a (short) compile too
    return c


def default_cache_dir() -> Path:
    env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "genai-edge-lab" / "jax"


def use_persistent_cache(path: str | os.PathLike | None = None, min_compile_s: float = 0.5) -> Path | None:
    """Enable JAX's persistent compilation cache in ``path`` (default ``default_cache_dir()``) for every program
    that took at least ``min_compile_s`` to compile; starts the compile count too. Returns the folder, or None
    when ``$GENAI_EDGE_LAB_JAX_CACHE`` is ``off`` (nothing written; every program compiled in the process)."""
    if os.environ.get("GENAI_EDGE_LAB_JAX_CACHE", "").lower() == "off":
        count_compiles()
        return None
    folder = Path(path) if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    count_compiles()
    return folder
