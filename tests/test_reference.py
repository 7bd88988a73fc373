"""The float32 JAX kernel against the float64 NumPy reference on random configurations and states."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxsim import channel, env, prng
from jaxsim import reference as ref
from jaxsim.config import InferenceConfig, RadioConfig, SimConfig, TopologyConfig
from jaxsim.params import make_params

from conftest import tiny_config

RTOL = 1e-5


def _configs():
    base = SimConfig()
    yield "default", base
    yield "integer_proportional_activity", base.replace(
        radio=RadioConfig(allocator="proportional", integer_rbs=True, interference="activity",
                          shannon_gap_db=3.0, max_se_bps_hz=5.5))
    yield "equal_no_interference", base.replace(radio=RadioConfig(allocator="equal", interference="none"),
                                                topology=TopologyConfig(n_cells=4, users_per_cell=5))
    # small KV memory: b_max of a few sequences, so tasks queue and wait
    hw = tuple(dataclasses.replace(h, mem_bytes=7.4e9) if h.name == "L40S" else h for h in base.hardware)
    yield "queueing", base.replace(hardware=hw, inference=InferenceConfig(max_server_seqs=48))
    yield "refusals", tiny_config(inference=InferenceConfig(max_server_seqs=4))
    yield "prefill_stall", base.replace(inference=InferenceConfig(prefill_stall=True))
    # more entries than one packed int32 sort takes: the ranked path of batch_schedule
    yield "unpacked_sort", base.replace(inference=InferenceConfig(max_server_seqs=257))


def _states(p, n_ep, n_steps, seed):
    def one(k):
        _, s = env.reset(k, p)

        def body(s, k):
            a = jax.random.randint(k, (p.n_users,), 0, p.n_actions)
            _, s, _, _, _ = env.step(k, s, a, p)
            return s, None
        return jax.lax.scan(body, s, jax.random.split(k, n_steps))[0]
    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), n_ep))


def _np(x):
    a = np.asarray(x)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _close(got, want, what, floor=0.0):
    """Relative error <= RTOL, relative to max(|want|, floor)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.maximum(np.abs(want), max(floor, 1e-6 * max(np.abs(want).max(), 1e-30)))
    err = np.abs(got - want) / scale
    assert err.max() <= RTOL, f"{what}: max relative error {err.max():.3g}"


@pytest.mark.parametrize("name,cfg", list(_configs()), ids=[n for n, _ in _configs()])
def test_slot_matches_reference(name, cfg):
    p = make_params(cfg)
    pn = ref.to_numpy(p)
    states = _states(p, 12, 15, seed=hash(name) % 1000)
    act = jax.random.randint(jax.random.PRNGKey(7), (12, p.n_users), 0, p.n_actions)
    new_srv, info = jax.jit(jax.vmap(lambda s, a: env.evaluate(p, s, a)))(states, act)   # one program, as users run it
    sv = states.servers
    srv = {"rem": _np(sv.rem_tokens), "ctx": _np(sv.ctx_tokens), "status": _np(sv.status),
           "order": _np(sv.order), "counter": _np(sv.counter), "bg": _np(sv.bg_seqs),
           "busy": _np(sv.busy_s)}
    args = [_np(x) for x in (states.assoc, states.active, states.task_type, states.prompt_tokens, states.output_tokens)]
    ul, dl = ref.radio_delays(pn, *args, _np(states.dl_rate_rb_bps), _np(states.ul_rate_rb_bps))
    rinfo, rsrv = ref.serve_slot(pn, srv, *args, _np(act), ul, dl)
    for k in rinfo:
        _close(info[k], rinfo[k], k)
    np.testing.assert_array_equal(np.asarray(new_srv.status), rsrv["status"])
    # carried token counts are differences of large numbers: compare to at least 10 tokens
    _close(new_srv.rem_tokens, rsrv["rem"], "remaining tokens", floor=10.0)
    _close(new_srv.ctx_tokens, rsrv["ctx"], "context tokens", floor=10.0)
    # busy time is the end of a step less the slot: compare to the slot length
    _close(new_srv.busy_s, rsrv["busy"], "busy time", floor=float(p.slot_s))
    if name == "queueing":
        assert (rinfo["wait_s"] > 0).any(), "the queueing configuration must make tasks wait"
    if name == "refusals":
        assert rinfo["refused"].any(), "the refusal configuration must refuse tasks"


@pytest.mark.parametrize("interference", ["full", "activity", "none"])
def test_channel_matches_reference(interference):
    cfg = SimConfig().replace(radio=RadioConfig(interference=interference, shannon_gap_db=1.0))
    p = make_params(cfg)
    pn = ref.to_numpy(p)
    keys = jax.random.split(jax.random.PRNGKey(3), 6)
    xy, gain, assoc, u, fading = jax.jit(jax.vmap(lambda k: (          # one program, as users run it
        channel.drop_users(k, p), *channel.large_scale(k, p, channel.drop_users(k, p))[:2],
        prng.uniform(k, (2, p.n_users, p.n_cells), 1e-7, 1.0 - 1e-7),   # replay the kernel's draws in the reference
        channel.rayleigh_fading(k, p))))(keys)
    rgain, rassoc = ref.large_scale(pn, _np(xy), _np(u[:, 0]), np.asarray(jax.scipy.special.ndtri(u[:, 1]), np.float64))
    _close(gain, rgain, "long-term gain")
    np.testing.assert_array_equal(np.asarray(assoc), rassoc)
    active = jax.random.uniform(jax.random.PRNGKey(4), (6, p.n_users)) < 0.3
    dl, ul = jax.jit(jax.vmap(lambda g, a, f, act: env.slot_rates(p, g, a, act, f)))(gain, assoc, fading, active)
    rdl, rul = ref.slot_rates(pn, _np(gain), _np(assoc), _np(active), _np(fading))
    _close(dl, rdl, "downlink rate")
    _close(ul, rul, "uplink rate")


def test_drop_geometry():
    p = make_params(SimConfig())
    xy = np.asarray(jax.vmap(lambda k: channel.drop_users(k, p))(jax.random.split(jax.random.PRNGKey(0), 200)))
    bs = np.asarray(p.bs_xy_m)
    cell = np.repeat(np.arange(p.n_cells), p.users_per_cell)
    d = np.linalg.norm(xy - bs[cell][None], axis=-1)
    assert d.min() >= 10.0 - 1e-3
    assert d.max() <= 200 / np.sqrt(3) + 1e-3         # inside the hexagon's circumcircle
    # hexagon, not disk: the apothem bounds the distance along the flat sides' normals (0, 60, ... degrees)
    off = xy - bs[cell][None]
    for k in range(6):
        n = np.array([np.cos(k * np.pi / 3), np.sin(k * np.pi / 3)])
        assert (off @ n).max() <= 100.0 + 1e-3
