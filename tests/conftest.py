import dataclasses
import os
import tempfile

import pytest

# the persistent compilation cache of the scripts under test goes to a folder of this test session, not ~/.cache
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="genai-edge-lab-jax-"))

from jaxsim.config import EpisodeConfig, InferenceConfig, OracleConfig, SimConfig, TopologyConfig


def tiny_config(**kw) -> SimConfig:
    """A small scenario: 2 cells x 3 users, 6-slot episodes, 32 tracked sequences per server."""
    cfg = SimConfig(episode=EpisodeConfig(horizon=6), topology=TopologyConfig(n_cells=2, users_per_cell=3),
                    inference=InferenceConfig(max_server_seqs=32), oracle=OracleConfig(max_exhaustive_tasks=6, sweeps=1))
    return dataclasses.replace(cfg, **kw).validate() if kw else cfg.validate()


def pytest_collection_modifyitems(items):
    """Long tests first (stable otherwise): with pytest-xdist the other worker meanwhile runs the short ones."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture
def tiny():
    return tiny_config()
