import dataclasses
import os
import shutil
import tempfile

import pytest

# One persistent compilation cache for the session, in a fresh folder: shared by the xdist workers (they inherit
# the controller's environment), by the modules of a worker (whose executables are dropped after each module,
# see _free_executables) and by the scripts the tests start. Programs that compile in under 0.5 s are not
# written. Nothing persists past the session; GENAI_EDGE_LAB_TEST_JAX_CACHE=off compiles everything afresh.
_OWN_CACHE = False
if os.environ.get("GENAI_EDGE_LAB_TEST_JAX_CACHE", "").lower() == "off":
    os.environ["GENAI_EDGE_LAB_JAX_CACHE"] = "off"
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
else:
    if "GENAI_EDGE_LAB_TEST_JAX_CACHE_DIR" not in os.environ:          # the controller (or a run without xdist)
        os.environ["GENAI_EDGE_LAB_TEST_JAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="genai-edge-lab-test-jax-")
        _OWN_CACHE = True
    os.environ.pop("GENAI_EDGE_LAB_JAX_CACHE", None)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["GENAI_EDGE_LAB_TEST_JAX_CACHE_DIR"]
    from jaxsim.compilation import use_persistent_cache
    use_persistent_cache(os.environ["JAX_COMPILATION_CACHE_DIR"])

from jaxsim.config import EpisodeConfig, InferenceConfig, OracleConfig, SimConfig, TopologyConfig


def tiny_config(**kw) -> SimConfig:
    """A small scenario: 2 cells x 3 users, 6-slot episodes, 32 tracked sequences per server."""
    cfg = SimConfig(episode=EpisodeConfig(horizon=6), topology=TopologyConfig(n_cells=2, users_per_cell=3),
                    inference=InferenceConfig(max_server_seqs=32), oracle=OracleConfig(max_exhaustive_tasks=6, sweeps=1))
    return dataclasses.replace(cfg, **kw).validate() if kw else cfg.validate()


def pytest_unconfigure(config):
    """The session's compilation cache goes with the process that made it."""
    if _OWN_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ.get("GENAI_EDGE_LAB_TEST_JAX_CACHE_DIR", ""), ignore_errors=True)


def pytest_collection_modifyitems(items):
    """Long tests first (stable otherwise): with pytest-xdist the other worker meanwhile runs the short ones."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(autouse=True, scope="module")
def _free_executables():
    """Drop JAX's compiled executables after each test module. Each executable keeps memory mappings of its own,
    and a worker that compiles a few thousand programs passes the kernel's map limit (vm.max_map_count, 65530 by
    default); the next mmap then fails inside XLA and the worker dies with a segfault."""
    yield
    import gc

    import jax
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def tiny():
    return tiny_config()
