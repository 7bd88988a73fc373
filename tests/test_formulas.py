"""Each formula of the system model against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim import allocation, channel, inference
from jaxsim.config import RadioConfig, SimConfig, max_resource_blocks
from jaxsim.params import make_params


def test_pathloss_umi_hand_values():
    # d2d 50 m and 150 m, BS 10 m, UE 1.5 m, 3.5 GHz (values worked out by hand from TR 38.901 Table 7.4.1-1)
    for d2d, los_db, nlos_db in ((50.0, 79.0896, 94.1807), (150.0, 88.9939, 110.8292)):
        d3d = math.sqrt(d2d ** 2 + 8.5 ** 2)
        pl_los, pl_nlos = channel.pathloss_umi_db(jnp.float32(d2d), jnp.float32(d3d), 3.5, 10.0, 1.5)
        assert float(pl_los) == pytest.approx(los_db, abs=2e-3)
        assert float(pl_nlos) == pytest.approx(nlos_db, abs=2e-3)


def test_pathloss_umi_los_breakpoint():
    """d'BP = 4 x 9 m x 0.5 m x 3.5 GHz / c = 210 m at the defaults; beyond it the LOS loss falls off as 40 log10 d:
    PL2 = 32.4 + 40 log10(d3D) + 20 log10(3.5) - 9.5 log10(210.14^2 + 8.5^2) (values by hand); the two slopes
    meet at the breakpoint to within 0.03 dB."""
    assert float(channel.breakpoint_umi_m(3.5, 10.0, 1.5)) == pytest.approx(210.14, abs=0.01)
    for d2d, want in ((209.0, 32.4 + 21 * math.log10(math.hypot(209.0, 8.5)) + 10.8814),
                      (300.0, 98.2386), (500.0, 107.1080)):
        d3d = math.hypot(d2d, 8.5)
        los, nlos = channel.pathloss_umi_db(jnp.float32(d2d), jnp.float32(d3d), 3.5, 10.0, 1.5)
        assert float(los) == pytest.approx(want, abs=3e-3), d2d
        assert float(nlos) >= float(los)
    below, _ = channel.pathloss_umi_db(jnp.float32(210.1), jnp.float32(math.hypot(210.1, 8.5)), 3.5, 10.0, 1.5)
    above, _ = channel.pathloss_umi_db(jnp.float32(210.2), jnp.float32(math.hypot(210.2, 8.5)), 3.5, 10.0, 1.5)
    assert abs(float(above) - float(below)) < 0.03
    # the NumPy reference agrees on both sides
    from jaxsim import reference
    d = np.array([50.0, 209.0, 300.0, 500.0])
    ref_los, ref_nlos = reference.pathloss_umi_db(d, np.hypot(d, 8.5), 3.5, 10.0, 1.5)
    los, nlos = channel.pathloss_umi_db(jnp.asarray(d, jnp.float32), jnp.asarray(np.hypot(d, 8.5), jnp.float32),
                                        3.5, 10.0, 1.5)
    np.testing.assert_allclose(np.asarray(los), ref_los, atol=2e-3)
    np.testing.assert_allclose(np.asarray(nlos), ref_nlos, atol=2e-3)


def test_los_probability_hand_values():
    p = channel.los_probability_umi(jnp.array([5.0, 18.0, 50.0, 150.0]))
    np.testing.assert_allclose(np.asarray(p), [1.0, 1.0, 0.519585, 0.133643], atol=1e-5)


def test_resource_grid_20mhz_30khz():
    assert max_resource_blocks(20, 30) == 51 and RadioConfig().resource_blocks == 51    # derived, not given
    assert RadioConfig().rb_bandwidth_hz == 360e3
    assert max_resource_blocks(100, 30) == 273 and max_resource_blocks(20, 15) == 106
    assert max_resource_blocks(400, 120) == 264 and max_resource_blocks(17, 30) is None


def test_capacity_at_0db_equals_bandwidth():
    p = make_params(SimConfig())
    assert float(channel.rate_per_rb_bps(p, jnp.float32(1.0))) == pytest.approx(360e3, rel=1e-6)
    # 51 RBs at 0 dB carry 51 x 360 kHz = 18.36 Mbit/s
    assert float(channel.rate_per_rb_bps(p, jnp.ones(51)).sum()) == pytest.approx(18.36e6, rel=1e-6)


def _alloc_params(allocator, integer=False):
    cfg = SimConfig()
    cfg = cfg.replace(radio=RadioConfig(allocator=allocator, integer_rbs=integer))
    return make_params(cfg)


def _transfers(seed, p_active):
    """Random association [24], active mask, bits and per-RB rates (bit/s) of 24 users in 3 cells."""
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.integers(0, 3, 24), jnp.int32), jnp.asarray(rng.random(24) < p_active),
            jnp.asarray(rng.uniform(1e3, 5e6, 24), jnp.float32), jnp.asarray(rng.uniform(1e5, 2e6, 24), jnp.float32))


def test_min_delay_beats_equal_and_is_optimal():
    assoc, active, bits, rate = _transfers(0, 0.7)
    total = {}
    for name in ("equal", "proportional", "min_delay"):
        n = allocation.allocate_rbs(_alloc_params(name), assoc, active, bits, rate)
        for m in range(3):   # every cell hands out exactly its 51 RBs
            sel = np.asarray(active & (assoc == m))
            if sel.any():
                assert float(np.asarray(n)[sel].sum()) == pytest.approx(51.0, rel=1e-5)
        t = np.asarray(allocation.transfer_time_s(bits, n, rate))[np.asarray(active)]
        total[name] = t.sum()
        if name == "proportional":   # equal transfer times inside a cell
            for m in range(3):
                sel = np.asarray(active & (assoc == m))
                tt = np.asarray(allocation.transfer_time_s(bits, n, rate))[sel]
                if tt.size:
                    np.testing.assert_allclose(tt, tt[0], rtol=1e-4)
        if name == "min_delay":      # KKT: b / (n^2 r) equal inside a cell
            g = np.asarray(bits / (n ** 2 * rate))
            for m in range(3):
                sel = np.asarray(active & (assoc == m))
                if sel.any():
                    np.testing.assert_allclose(g[sel], g[sel][0], rtol=1e-4)
    assert total["min_delay"] < total["equal"]
    assert total["min_delay"] < total["proportional"]


def test_integer_rbs_whole_and_complete():
    assoc, active, bits, rate = _transfers(1, 0.6)
    n = np.asarray(allocation.allocate_rbs(_alloc_params("min_delay", True), assoc, active, bits, rate))
    act = np.asarray(active)
    assert np.all(n[act] >= 1) and np.all(n[act] == np.round(n[act])) and np.all(n[~act] == 0)
    for m in range(3):
        sel = act & (np.asarray(assoc) == m)
        if sel.any():
            assert n[sel].sum() == 51


def _loop_completion(p, v, rem, ctx, bg):
    """Token-by-token simulation of one server's batch: completion time of each sequence. Every step costs
    its fixed part (per-layer overhead, tensor-parallel sync), the weight matmuls and all-reduces at the current
    batch size, plus attention over the batch's context at mid-step (each running sequence's prompt + tokens
    so far + 1/2; background sequences at bg_context)."""
    rem, ctx = list(rem), list(ctx)
    t, done = 0.0, [None] * len(rem)
    n_params, flops = float(p.srv_n_params[v]), float(p.srv_flops[v])
    w, kv, bw = float(p.srv_weight_bytes[v]), float(p.srv_kv_s_per_token[v]), float(p.srv_bw[v])
    fixed, comm = float(p.srv_step_fixed_s[v] + p.srv_tp_fixed_s[v]), float(p.srv_comm_s_per_token[v])
    while any(d is None for d in done):
        live = [i for i in range(len(rem)) if done[i] is None]
        b = len(live) + bg
        ctx_total = sum(ctx[i] + 0.5 for i in live) + bg * float(p.bg_context)
        t += fixed + max(2 * n_params * b / flops, w / bw) + b * comm + ctx_total * kv
        for i in live:
            rem[i] -= 1
            ctx[i] += 1
            if rem[i] <= 0:
                done[i] = t
    return done


def test_batched_completion_equals_loop_simulation():
    """The closed-form phase sums (growing context, shrinking batch) equal a token-by-token loop."""
    p = make_params(SimConfig())
    s = p.max_seqs
    rng = np.random.default_rng(2)
    for v, bg in ((4, 300), (0, 0)):                 # the 70B cloud server under load; an idle edge server
        n = 12
        rem = rng.integers(1, 400, n).astype(np.float32)
        rem[3] = rem[5]                              # a tie finishes together
        ctx = rng.integers(50, 2000, n).astype(np.float32)
        status = np.zeros((p.n_servers, s), np.int32)
        r = np.zeros((p.n_servers, s), np.float32)
        c = np.zeros((p.n_servers, s), np.float32)
        idx = rng.choice(s, n, replace=False)
        status[v, idx], r[v, idx], c[v, idx] = inference.RUNNING, rem, ctx
        bgv = np.zeros(p.n_servers, np.int32)
        bgv[v] = bg
        srv = inference.ServerState(jnp.asarray(r), jnp.asarray(c), jnp.asarray(status),
                                    jnp.zeros_like(jnp.asarray(status)), jnp.zeros(p.n_servers, jnp.int32),
                                    jnp.asarray(bgv), jnp.zeros(p.n_servers))
        sched = inference.batch_schedule(p, srv)
        want = _loop_completion(p, v, rem, ctx, bg)
        done = inference.completion_s(sched, jnp.full(n, v), jnp.asarray(rem))
        np.testing.assert_allclose(np.asarray(done), want, rtol=1e-5)
        # carried state after one slot: finished sequences leave, survivors took the steps that fit in the slot
        after = inference.advance(p, srv, sched)
        slot = float(p.slot_s)
        for i, w in zip(idx, want):
            assert int(after.status[v, i]) == (inference.FREE if w <= slot else inference.RUNNING)
        live = [k for k, w in enumerate(want) if w > slot]
        if live:
            k = live[0]
            took = rem[k] - float(after.rem_tokens[v, idx[k]])
            assert float(after.ctx_tokens[v, idx[k]]) == pytest.approx(ctx[k] + took, rel=1e-5)
            # the steps taken are those that ended within the slot and the one in progress at its end, whose
            # remaining time the server carries as busy_s
            done_before = _loop_completion(p, v, [min(x, took - 1) for x in rem], ctx, bg)
            assert max(done_before) <= slot * (1 + 1e-5)
            in_progress = _loop_completion(p, v, [min(x, took) for x in rem], ctx, bg)
            assert max(in_progress) > slot
            assert float(after.busy_s[v]) == pytest.approx(max(in_progress) - slot, rel=1e-4, abs=1e-6)


def test_decode_steps_closed_form_and_inverse():
    """decode_steps_s sums the steps at mid-step context; steps_within_s inverts it."""
    p = make_params(SimConfig())
    v = jnp.int32(1)
    b, c0, grow = 37.0, 37 * 900.0, 5.0
    n = 613.0
    loop = sum(float(inference.decode_step_s(p, jnp.float32(b), jnp.float32((c0 + grow * (k + 0.5)) / b), v))
               for k in range(int(n)))
    got = float(inference.decode_steps_s(p, jnp.float32(b), jnp.float32(c0), jnp.float32(grow), jnp.float32(n), v))
    assert got == pytest.approx(loop, rel=1e-5)
    base = inference.step_base_s(p, jnp.float32(b), v)
    kv = inference.kv_read_s_per_token(p, v)
    for x in (0.0, 0.25, 17.5, 613.0):
        t = inference.decode_steps_s(p, jnp.float32(b), jnp.float32(c0), jnp.float32(grow), jnp.float32(x), v)
        assert float(inference.steps_within_s(base, kv, jnp.float32(c0), jnp.float32(grow), t)) == \
            pytest.approx(x, rel=1e-5, abs=1e-4)


def test_roofline_decode_step_regimes():
    """The decode step and prefill written out by hand from docs/model.md for the default servers (the
    efficiencies read from the config, so the test holds whatever values are shipped)."""
    cfg = SimConfig()
    p, inf = make_params(cfg), cfg.inference
    l40s, h100 = cfg.hw("L40S"), cfg.hw("H100-SXM")
    em = l40s.eta_memory or inf.eta_memory
    ep = l40s.eta_prefill or inf.eta_prefill
    ec8 = h100.eta_compute or inf.eta_compute
    ea = l40s.eta_attention or inf.eta_attention
    attn = (lambda m: 2 * m.n_layers * (m.n_kv_heads if inf.attention_heads == "kv" else m.d_model // m.head_dim)
            * m.head_dim * 2)                               # bytes read per context token
    m3, m70 = cfg.model("llama-3.2-3b"), cfg.model("llama-3.1-70b")
    # edge 3B on L40S, 4 sequences of 1024 tokens: fixed per-layer cost + the weight read bounds the matmuls,
    # then attention over 4 x 1024 context tokens
    t = float(inference.decode_step_s(p, jnp.float32(4.0), jnp.float32(1024.0))[0])
    want = 28 * inf.step_overhead_s_per_layer + 3.21e9 * 2 / (864e9 * em) + 4 * 1024 * attn(m3) / (864e9 * ea)
    assert t == pytest.approx(want, rel=1e-5)
    # 70B over 8 H100 at 1024 sequences and no context: fixed costs (per layer: overhead, sync and 2 all-reduces
    # of 2 x 7 ring hops), compute term 2 N b / (8 F eta_c), and 2 ring all-reduces of 1024 tokens per layer
    t = float(inference.decode_step_s(p, jnp.float32(1024.0), jnp.float32(0.0))[4])
    fixed = 80 * (inf.step_overhead_s_per_layer + inf.tp_sync_s_per_layer + 2 * 2 * 7 * h100.link_latency_s)
    comm = 80 * 2 * (2 * 7 / 8) * 1024 * 8192 * 2 / h100.link_bw_bytes_s
    assert t == pytest.approx(fixed + 2 * 70.6e9 * 1024 / (8 * 989e12 * ec8) + comm, rel=1e-5)
    # prefill of 2000 tokens on the edge 3B: compute bound, plus 28 layers' fixed overhead
    pf = float(inference.prefill_s(p, 0, jnp.float32(2000.0)))
    want = 28 * inf.prefill_overhead_s_per_layer + (2 * 3.21e9 * 2000 + 2 * 28 * 2000 ** 2 * 3072) / (362e12 * ep)
    assert pf == pytest.approx(want, rel=1e-5)
    # a 10-token prompt is bound by reading the weights once
    pf = float(inference.prefill_s(p, 0, jnp.float32(10.0)))
    assert pf == pytest.approx(28 * inf.prefill_overhead_s_per_layer + 3.21e9 * 2 / (864e9 * em), rel=1e-5)
    assert m70.n_heads == 64 and m3.n_heads == 24


def test_bg_walk_bounded():
    p = make_params(SimConfig())
    bg = p.srv_bg_max
    for i in range(20):
        bg = inference.bg_walk(jax.random.PRNGKey(i), p, bg)
        assert np.all(np.asarray(bg) >= 0) and np.all(np.asarray(bg) <= np.asarray(p.srv_bg_max))


def test_prefill_stall_delays_the_batch_by_the_slots_prefills():
    """With inference.prefill_stall, the prompts admitted in a slot are prefilled before their server's batch
    decodes: every task admitted there finishes later by the other admitted prompts' prefill times (its own is
    booked as prefill_s either way); without the option nothing changes."""
    from jaxsim import env
    from jaxsim.config import InferenceConfig
    base = SimConfig()
    p_off, p_on = make_params(base), make_params(base.replace(inference=InferenceConfig(prefill_stall=True)))
    _, state = jax.jit(env.reset)(jax.random.PRNGKey(5), p_off)
    state = state.replace(active=jnp.ones_like(state.active))
    action = jnp.ones(p_off.n_users, jnp.int32)                    # every task to the one cloud_small server
    evaluate = jax.jit(env.evaluate)
    _, off = evaluate(p_off, state, action)
    _, on = evaluate(p_on, state, action)
    pre = np.asarray(off["prefill_s"], np.float64)
    assert not np.asarray(off["wait_s"]).any() and not np.asarray(off["refused"]).any()
    np.testing.assert_allclose(np.asarray(on["prefill_s"]), pre, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(on["delay_s"]) - np.asarray(off["delay_s"]), pre.sum() - pre,
                               rtol=1e-3, atol=2e-5)
