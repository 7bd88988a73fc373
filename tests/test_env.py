"""Environment API, determinism, and sharded-versus-unsharded rollouts."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import greedy_policy, random_policy
from jaxsim import env
from jaxsim.params import make_params
from jaxsim.rollout import rollout


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reset_step_api(tiny):
    p = make_params(tiny)
    obs, state = jax.jit(env.reset)(jax.random.PRNGKey(0), p)
    u, a = p.n_users, p.n_actions
    assert obs.mask.shape == (u,) and obs.load_seqs.shape == (u, a)
    action = jnp.zeros((u,), jnp.int32)
    for t in range(p.horizon):
        obs, state, reward, done, info = jax.jit(env.step)(jax.random.PRNGKey(t + 1), state, action, p)
        assert bool(done) == (t == p.horizon - 1)
    for k in ("delay_s", *env.DELAY_PARTS, "quality", "success", "reward", "refused", "mask"):
        assert info[k].shape == (u,)
    m = np.asarray(info["mask"])
    parts = sum(np.asarray(info[k]) for k in env.DELAY_PARTS)
    ok = m & ~np.asarray(info["refused"])
    np.testing.assert_allclose(parts[ok], np.asarray(info["delay_s"])[ok], rtol=1e-5)


def test_same_seed_same_result_different_seed_differs(tiny):
    p = make_params(tiny)
    a = rollout(jax.random.PRNGKey(1), p, random_policy, None, 4)
    b = rollout(jax.random.PRNGKey(1), p, random_policy, None, 4)
    c = rollout(jax.random.PRNGKey(2), p, random_policy, None, 4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["delay_s"], c["delay_s"])


def test_chunking_does_not_change_results(tiny):
    p = make_params(tiny)
    a = rollout(jax.random.PRNGKey(3), p, greedy_policy, None, 6, chunk=6)
    b = rollout(jax.random.PRNGKey(3), p, greedy_policy, None, 6, chunk=2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_sub_batches_do_not_change_results(tiny):
    """A device's batch run as a loop over vmapped sub-batches (a CPU's, rollout.CPU_SUB_BATCH) gives the
    episodes of one vmap over the whole batch, bit for bit, a remainder batch included."""
    from jaxsim.rollout import _run_batch, episode_keys
    p, keys = make_params(tiny), episode_keys(jax.random.PRNGKey(4), 0, 5)
    whole = _run_batch(keys, p, greedy_policy, None, True)
    looped = _run_batch(keys, p, greedy_policy, None, True, sub_batch=2)
    for k in whole:
        np.testing.assert_array_equal(np.asarray(whole[k]), np.asarray(looped[k]))
    from jaxsim.rollout import rollout
    for bad in (0, -1, True, "all"):
        with pytest.raises(ValueError, match="sub_batch = .*allowed 'auto', None or an integer >= 1"):
            rollout(jax.random.PRNGKey(0), p, greedy_policy, None, 2, sub_batch=bad)


_SHARD_SCRIPT = """
import json, logging, sys, jax, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from conftest import tiny_config
from jaxsim.params import make_params
from jaxsim.rollout import rollout
from baselines import greedy_policy
compiled = []
class Seen(logging.Handler):
    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Finished XLA compilation of") and ("_run_local" in msg or "_batch" in msg):
            compiled.append(msg)
logging.getLogger("jax").addHandler(Seen())
jax.config.update("jax_log_compiles", True)
out = rollout(jax.random.PRNGKey(5), make_params(tiny_config()), greedy_policy, None, 6, chunk=8)
print(json.dumps({{"devices": jax.device_count(), "delay": out["delay_s"].tolist(), "reward": out["slot_reward"].tolist(),
                   "rollout_compiles": len(compiled)}}))
"""


def _run_devices(n):
    env_vars = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
    code = _SHARD_SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
    out = subprocess.run([sys.executable, "-c", code], env=env_vars, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_equals_unsharded():
    one, four = _run_devices(1), _run_devices(4)
    assert one["devices"] == 1 and four["devices"] == 4
    assert one["rollout_compiles"] == four["rollout_compiles"] == 1      # one program for the process's 4 devices
    np.testing.assert_array_equal(np.array(one["delay"]), np.array(four["delay"]))
    np.testing.assert_array_equal(np.array(one["reward"]), np.array(four["reward"]))
