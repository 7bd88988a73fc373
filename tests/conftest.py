import dataclasses
import os

import pytest

# no persistent compilation cache in the test process nor in the scripts it starts: the suite tests results, and a
# cache in a fresh folder only served the scripts the tests start (it cost writing every executable out).
os.environ["GENAI_EDGE_LAB_JAX_CACHE"] = "off"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

from jaxsim.config import EpisodeConfig, InferenceConfig, OracleConfig, SimConfig, TopologyConfig


def tiny_config(**kw) -> SimConfig:
    """A small scenario: 2 cells x 3 users, 6-slot episodes, 32 tracked sequences per server."""
    cfg = SimConfig(episode=EpisodeConfig(horizon=6), topology=TopologyConfig(n_cells=2, users_per_cell=3),
                    inference=InferenceConfig(max_server_seqs=32), oracle=OracleConfig(max_exhaustive_tasks=6, sweeps=1))
    return dataclasses.replace(cfg, **kw).validate() if kw else cfg.validate()


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
