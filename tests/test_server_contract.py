"""The contract between the booked delays and the carried server state.

With no later arrivals and the background held, every task's server entry is freed in the slot its booked
completion falls in (the slot length anywhere in its range, queues, prefill stalls longer than a slot), the
booked wait and completion equal a token-by-token simulation of the same server, and every task's delay parts
add up to its delay (a refused task's as its own part).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim import env, inference
from jaxsim.config import EpisodeConfig, InferenceConfig, SimConfig
from jaxsim.params import make_params
from scripts.tools import fuzz_configs

from conftest import tiny_config


# ---------------------------------------------------------------------- a token-by-token server
def token_simulation(p, v, running, busy_s, queue, bg, prefill_stall=False):
    """One server of ``p`` run step by step with no arrival and the background ``bg`` held.

    running: (tokens left to start, context) of the running sequences (a sequence with 0 left is in its last step,
    which ends at ``busy_s``); queue: (output tokens, prompt tokens) of the waiting ones, first in line first.
    At each slot boundary the waiters are admitted FIFO while the sequences that still have a step to start stay
    below min(b_max - bg, S); they join at the first step that starts after the boundary (after their prefills
    with ``prefill_stall``). A step of m own sequences costs its fixed part, the weight matmuls and all-reduces
    of m + bg sequences, plus attention over the batch's context at mid-step. Returns (completion of each running sequence, (admission slot,
    completion) of each waiter), s from the slot's start."""
    f = lambda x: float(np.asarray(x)[v])  # noqa: E731
    n_par, flops, w_bytes, bw, kv, fixed, tp_fixed, comm = (
        f(x) for x in (p.srv_n_params, p.srv_flops, p.srv_weight_bytes, p.srv_bw, p.srv_kv_s_per_token,
                       p.srv_step_fixed_s, p.srv_tp_fixed_s, p.srv_comm_s_per_token))
    slot, cap_all = float(p.slot_s), min(int(np.asarray(p.srv_b_max)[v]) - bg, p.max_seqs)

    def prefill(prompt):
        return float(inference.prefill_s(p, jnp.int32(v), jnp.float32(prompt)))
    seqs = [{"left": float(r), "ctx": float(c), "done": None, "adm": 0} for r, c in running]
    seqs += [{"left": float(r), "ctx": float(c), "done": None, "adm": None} for r, c in queue]
    run = list(range(len(running)))
    waiting = list(range(len(running), len(seqs)))
    for i in run:
        if seqs[i]["left"] == 0:
            seqs[i]["done"] = busy_s
    run = [i for i in run if seqs[i]["left"] > 0]
    t_free, k = busy_s, 0
    while run or waiting:
        if run and t_free < k * slot:            # a step starts before the next boundary
            m = len(run)
            ctx = sum(seqs[i]["ctx"] for i in run) + bg * float(p.bg_context) + m / 2
            t_free += (fixed + tp_fixed + max(2 * n_par * (m + bg) / flops, w_bytes / bw) + (m + bg) * comm
                       + ctx * kv)
            for i in run:
                seqs[i]["left"] -= 1
                seqs[i]["ctx"] += 1
                if seqs[i]["left"] == 0:
                    seqs[i]["done"] = t_free
            run = [i for i in run if seqs[i]["left"] > 0]
            continue
        cap = cap_all - len(run)
        new, waiting = waiting[:max(cap, 0)], waiting[max(cap, 0):]
        for i in new:
            seqs[i]["adm"] = k
        run += new
        if new:
            t_free = max(t_free, k * slot) + (sum(prefill(seqs[i]["ctx"]) for i in new) if prefill_stall else 0.0)
        k += 1
        assert k < 1_000_000, "the simulated queue does not drain"
    return ([seqs[i]["done"] for i in range(len(running))],
            [(seqs[i]["adm"], seqs[i]["done"]) for i in range(len(running), len(seqs))])


# ---------------------------------------------------------------------- kernel pieces, jitted once
@jax.jit
def _enqueue(p, srv, server, valid, out_tokens, prompt_tokens):
    return inference.enqueue(p, srv, server, valid, out_tokens, prompt_tokens)


@jax.jit
def _book_and_advance(p, srv, server, entry, accepted):
    srv, sched, _ = inference.admit_and_schedule(p, srv)
    wait, done = inference.book(p, srv, sched, server, entry, accepted)
    return wait, done, inference.advance(p, srv, sched)


@jax.jit
def _next_slot(p, srv):
    srv, sched, _ = inference.admit_and_schedule(p, srv)
    return inference.advance(p, srv, sched)


def _server_lists(srv, v):
    """Running (left, context) and waiting (output, prompt) sequences of server v, waiters in FIFO order."""
    st, rem, ctx, order = (np.asarray(x)[v] for x in (srv.status, srv.rem_tokens, srv.ctx_tokens, srv.order))
    running = [(rem[i], ctx[i]) for i in np.flatnonzero(st == inference.RUNNING)]
    q = np.flatnonzero(st == inference.QUEUED)
    return running, [(rem[i], ctx[i]) for i in q[np.argsort(order[q])]]


def _freed_slots(p, srv, server, entry, n_slots):
    """Slot index (0: the decision slot) at whose end each (server, entry) is free, carrying the state slot by
    slot with no arrival; -1 when not within ``n_slots``."""
    got = np.full(len(entry), -1)
    for k in range(n_slots):
        free = np.asarray(srv.status)[server, entry] == inference.FREE
        got = np.where((got < 0) & free, k, got)
        if (got >= 0).all():
            break
        srv = _next_slot(p, srv)
    return got


def _expect_slot(done_s, slot_s):
    """The slot (0-based) whose end frees an entry completing at done_s: done in ((k - 1) T, k T] -> k - 1."""
    return int(math.ceil(done_s / slot_s - 1e-9)) - 1


# ---------------------------------------------------------------------- the reproductions
def _one_task_on(cfg, action, out_tokens, prompt_tokens=200.0, n_tasks=1):
    """The default drop with ``n_tasks`` tasks of users of one cell (the first users of the most populated one)."""
    p = make_params(cfg)
    key = jax.random.PRNGKey(0)
    _, state = jax.jit(env.reset)(key, p)
    u = p.n_users
    assoc = np.asarray(state.assoc)
    users = np.flatnonzero(assoc == np.bincount(assoc).argmax())[:n_tasks]
    assert len(users) == n_tasks
    active = jnp.zeros((u,), bool).at[jnp.asarray(users)].set(True)
    state = state.replace(active=active, output_tokens=jnp.full((u,), out_tokens, jnp.float32),
                          prompt_tokens=jnp.full((u,), prompt_tokens, jnp.float32),
                          task_type=jnp.zeros((u,), jnp.int32))
    return p, state, jnp.full((u,), action, jnp.int32)


_evaluate = jax.jit(env.evaluate)


def _held_background(cfg):
    return cfg.replace(actions=tuple(dataclasses.replace(a, bg_step_seqs=0) for a in cfg.actions))


def test_small_slots_free_the_entry_in_the_slot_of_its_booked_completion():
    """A 300-token task on the default 70B server: slots of 1 s, 0.02 s and 0.015 s (today's reproductions) and
    slots on both sides of one decode step."""
    base = _held_background(SimConfig())
    p, state, action = _one_task_on(base.validate(), 2, 300.0)
    step_s = float(_evaluate(p, state, action)[1]["decode_s"].sum()) / 300
    assert 0.01 < step_s < 0.1
    for slot in (1.0, 0.02, 0.015, 0.5 * step_s, 0.97 * step_s, 1.03 * step_s, 0.55 * step_s + step_s, 2.2 * step_s):
        cfg = base.replace(episode=EpisodeConfig(slot_s=slot, horizon=5)).validate()
        p, state, action = _one_task_on(cfg, 2, 300.0)
        srv, info = _evaluate(p, state, action)
        u = np.flatnonzero(np.asarray(info["mask"]))
        booked = float((info["wait_s"] + info["decode_s"])[u[0]])
        assert booked == pytest.approx(300 * step_s, rel=0.02)      # the slot length does not change the booking
        want = _expect_slot(booked, slot)
        got = _freed_slots(p, srv, np.asarray(info["server"])[u], np.asarray(info["entry"])[u], want + 3)
        assert got[0] == want, f"slot {slot:.4g} s: freed at the end of slot {got[0]}, booked in slot {want}"


def _queue_config(mem_edge=7.4e9, max_seqs=48, **inference_kw):
    """The reference test's queueing configuration: an edge L40S with KV memory for a few sequences."""
    base = SimConfig()
    hw = tuple(dataclasses.replace(h, mem_bytes=mem_edge) if h.name == "L40S" else h for h in base.hardware)
    return base.replace(hardware=hw, inference=InferenceConfig(max_server_seqs=max_seqs, **inference_kw)).validate()


def test_queued_tasks_are_booked_as_the_queue_runs():
    """8 new 10-token tasks behind 8 queued ones on an edge server with 8 places: booked as a token-by-token
    simulation of the same FIFO queue runs them, and freed in the slot of their booked completion."""
    m = SimConfig().model("llama-3.2-3b")
    cfg = _queue_config(mem_edge=m.n_params * m.bytes_per_weight + 8.5 * m.kv_bytes_per_token * 1024)
    p = make_params(cfg)
    assert int(p.srv_b_max[0]) == 8
    v, s = 0, p.max_seqs
    rng = np.random.default_rng(0)
    rem = np.zeros((p.n_servers, s), np.float32)
    ctx = np.zeros_like(rem)
    status = np.zeros((p.n_servers, s), np.int32)
    order = np.zeros_like(status)
    rem[v, :16] = rng.integers(20, 400, 16)
    ctx[v, :16] = rng.integers(50, 3000, 16)
    status[v, :8] = inference.RUNNING
    status[v, 8:16], order[v, 8:16] = inference.QUEUED, np.arange(8)
    srv = inference.ServerState(jnp.asarray(rem), jnp.asarray(ctx), jnp.asarray(status), jnp.asarray(order),
                                jnp.zeros(p.n_servers, jnp.int32), jnp.zeros(p.n_servers, jnp.int32),
                                jnp.zeros(p.n_servers).at[v].set(0.004))
    u = 8
    server, valid = jnp.full((u,), v), jnp.ones((u,), bool)
    pre, entry, accepted = _enqueue(p, srv, server, valid, jnp.full((u,), 10.0), jnp.full((u,), 100.0))
    wait, done, after = _book_and_advance(p, pre, server, entry, accepted)
    running, queue = _server_lists(pre, v)
    _, want = token_simulation(p, v, running, 0.004, queue, 0)
    want = want[-u:]                                                    # the new tasks are last in line
    np.testing.assert_allclose(np.asarray(wait), [a * float(p.slot_s) for a, _ in want], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(done), [d for _, d in want], rtol=1e-4)
    got = _freed_slots(p, after, np.asarray(server), np.asarray(entry), 200)
    assert list(got) == [_expect_slot(float(d), float(p.slot_s)) for d in np.asarray(done)]


def test_background_rising_and_falling_past_the_cap():
    """A cloud server with places for 12 sequences and a background that rises to 10 and falls back: at every
    slot the new tasks' booking (background held from then on) equals the token-by-token simulation."""
    base = SimConfig()
    m = base.model("llama-3.1-8b")
    seq = m.kv_bytes_per_token * base.inference.kv_reserve_tokens
    small = dataclasses.replace(base.hw("H100-SXM"), name="H100-kv12", mem_bytes=m.n_params * m.bytes_per_weight + 12.5 * seq)
    hw = (*base.hardware, small)
    acts = tuple(dataclasses.replace(a, hardware="H100-kv12", bg_max_seqs=11, bg_step_seqs=0)
                 if a.name == "cloud_small" else a for a in base.actions)
    cfg = base.replace(hardware=hw, actions=acts, episode=EpisodeConfig(slot_s=0.5),
                       inference=InferenceConfig(max_server_seqs=24)).validate()
    p = make_params(cfg)
    v = p.n_cells                                                       # the cloud_small server
    assert int(p.srv_b_max[v]) == 12
    rng = np.random.default_rng(1)
    srv = inference.empty_servers(p, jnp.zeros(p.n_servers, jnp.int32))
    checked = 0
    for bg in (0, 4, 9, 10, 11, 7, 3, 0, 0):
        srv = srv.replace(bg_seqs=srv.bg_seqs.at[v].set(bg))
        u = int(rng.integers(3, 8))
        server = jnp.full((u,), v)
        out = jnp.asarray(rng.integers(40, 300, u), jnp.float32)
        pre, entry, accepted = _enqueue(p, srv, server, jnp.ones((u,), bool), out,
                                        jnp.asarray(rng.integers(20, 800, u), jnp.float32))
        wait, done, srv = _book_and_advance(p, pre, server, entry, accepted)
        running, queue = _server_lists(pre, v)
        _, want = token_simulation(p, v, running, float(pre.busy_s[v]), queue, bg)
        ok = np.asarray(accepted)
        want = want[len(want) - int(ok.sum()):]
        np.testing.assert_allclose(np.asarray(wait)[ok], [a * 0.5 for a, _ in want], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(done)[ok], [d for _, d in want], rtol=1e-4)
        checked += int((np.asarray(wait)[ok] > 0).sum())
    assert checked >= 5, "the background must make tasks wait"


def test_prefill_stall_longer_than_a_slot_is_carried_over():
    """Four maximal prompts admitted together stall the server for more than a slot: the carried state keeps the
    rest of the stall, and each task's entry is freed in the slot of its booked completion."""
    cfg = SimConfig(inference=InferenceConfig(prefill_stall=True)).validate()
    p, state, action = _one_task_on(cfg, 0, 40.0, prompt_tokens=16000.0, n_tasks=4)
    srv, info = _evaluate(p, state, action)
    u = np.flatnonzero(np.asarray(info["mask"]))
    server, entry = np.asarray(info["server"])[u], np.asarray(info["entry"])[u]
    assert len(set(server)) == 1                                       # one edge server
    v = int(server[0])
    stall = float(np.asarray(info["prefill_s"])[u].sum())
    assert stall > 1.5 * float(p.slot_s)
    assert float(srv.busy_s[v]) >= stall - float(p.slot_s) - 1e-6       # the rest of the stall, at least, carried
    done = np.asarray(info["wait_s"] + info["prefill_s"] + info["decode_s"])[u]
    assert (done > stall).all()
    got = _freed_slots(p, srv, server, entry, 20)
    assert list(got) == [_expect_slot(float(d), float(p.slot_s)) for d in done]
    # the same tasks with the token-by-token server (prompts prefilled before the batch decodes)
    _, want = token_simulation(p, v, [], 0.0, [(40.0, 16000.0)] * 4, 0, prefill_stall=True)
    np.testing.assert_allclose(done, [d for _, d in want], rtol=1e-4)


def test_refused_tasks_delay_parts_add_up():
    """A refused task is charged reject_factor x budget as its refusal part, and nothing else."""
    p = make_params(tiny_config(inference=InferenceConfig(max_server_seqs=2)))
    _, state = jax.jit(env.reset)(jax.random.PRNGKey(3), p)
    state = state.replace(active=jnp.ones((p.n_users,), bool))
    _, info = _evaluate(p, state, jnp.zeros((p.n_users,), jnp.int32))    # every task to its edge server
    info = jax.tree.map(np.asarray, info)
    refused = info["refused"]
    assert refused.any() and (~refused).any()
    parts = sum(info[k] for k in env.DELAY_PARTS)
    np.testing.assert_allclose(parts, info["delay_s"], rtol=1e-6)
    np.testing.assert_allclose(info["refusal_s"][refused],
                               float(p.reject_factor) * np.asarray(p.budget_s)[info["task_type"][refused]], rtol=1e-6)
    for k in env.DELAY_PARTS[:-1]:
        assert (info[k][refused] == 0).all(), k
    assert (info["refusal_s"][~refused] == 0).all()


# ---------------------------------------------------------------------- the whole contract, random configs
N_SLOTS = 200


def _contract(key, p):
    """Warm the servers up with a few random slots, decide one more, then carry the state with no arrival:
    booked completion (server timeline), the slot whose end frees each entry (-1: not within N_SLOTS), the
    tasks served, and the largest |sum of delay parts - delay| / delay of the decision slot."""
    k_reset, k_warm, k_act = jax.random.split(key, 3)
    _, state = env.reset(k_reset, p)

    def warm(s, k):
        a = jax.random.randint(k, (p.n_users,), 0, p.n_actions)
        return env.step(k, s, a, p)[1], None
    state = jax.lax.scan(warm, state, jax.random.split(k_warm, 4))[0]
    srv, info = env.evaluate(p, state, jax.random.randint(k_act, (p.n_users,), 0, p.n_actions))
    booked = info["wait_s"] + info["decode_s"] + (info["prefill_s"] if p.prefill_stall else 0.0)
    server, entry = info["server"], jnp.maximum(info["entry"], 0)
    idle = state.replace(active=jnp.zeros_like(state.active))

    def carry(c, k):
        srv, freed = c
        freed = jnp.where((freed < 0) & (srv.status[server, entry] == inference.FREE), k, freed)
        srv, _ = env.evaluate(p, idle.replace(servers=srv), jnp.zeros((p.n_users,), jnp.int32))
        return (srv, freed), None
    (_, freed), _ = jax.lax.scan(carry, (srv, jnp.full(server.shape, -1)), jnp.arange(N_SLOTS))
    parts = sum(info[k] for k in env.DELAY_PARTS)
    err = jnp.max(jnp.abs(parts - info["delay_s"]) / jnp.maximum(info["delay_s"], 1e-9))
    return booked, freed, info["mask"] & ~info["refused"], err


_contract_batch = jax.jit(jax.vmap(_contract))


def _random_contract_configs(rng, group, n, slot_range=(5e-3, 5.0)):
    """Valid random configs of a fuzz shape group with a slot drawn log-uniform in ``slot_range`` s and the
    background held."""
    cfgs, _ = fuzz_configs.valid_configs(rng, group, n)
    out = []
    for c in cfgs:
        slot = float(np.exp(rng.uniform(*np.log(slot_range))))
        c = _held_background(c.replace(episode=EpisodeConfig(slot_s=slot, horizon=c.episode.horizon)))
        out.append(c.validate())
    return out


def _check_contract(cfgs, seed):
    ps = jax.tree.map(lambda *x: jnp.stack(x), *[make_params(c).replace(may_queue=True) for c in cfgs])
    booked, freed, served, err = jax.tree.map(np.asarray, _contract_batch(jax.random.split(jax.random.PRNGKey(seed),
                                                                                         len(cfgs)), ps))
    n_checked = n_later = 0
    for i, c in enumerate(cfgs):
        slot = c.episode.slot_s
        assert err[i] <= 1e-5, f"config {i}: delay parts do not add up ({err[i]:.3g})"
        for u in np.flatnonzero(served[i]):
            x = booked[i, u] / slot
            if abs(x - round(x)) < 1e-3:                  # on a slot boundary: float32 decides either way
                continue
            want = _expect_slot(booked[i, u], slot)
            if want >= N_SLOTS:                           # the last check sees the state after N_SLOTS - 1 carries
                assert freed[i, u] < 0, f"config {i}, task {u}: freed in slot {freed[i, u]}, booked in slot {want}"
                n_later += 1
                continue
            assert freed[i, u] == want, (f"config {i} (slot {slot:.4g} s), task {u}: booked {booked[i, u]:.6g} s "
                                         f"(slot {want}), freed at the end of slot {freed[i, u]}")
            n_checked += 1
    return n_checked, n_later


@pytest.mark.long
@pytest.mark.parametrize("g", range(len(fuzz_configs.GROUPS)))
def test_contract_on_random_configs(g):
    """Random valid configs of each fuzz shape group (every field drawn in its range, tight memory and heavy
    queues among them), small slots: every served task's entry is freed in the slot of its booked completion."""
    rng = np.random.default_rng(100 + g)
    group = fuzz_configs.GROUPS[g]
    users = group["topology"]["n_cells"] * group["topology"]["users_per_cell"]
    # the small group's draws (long prompts prefilled before decoding, 8 entries) book long delays: longer slots;
    # the others reach up to 50 s slots so that enough tasks of many-GPU servers (fixed per-layer TP costs) finish
    slots = (5e-3, 50.0) if users >= 8 else (0.05, 600.0)
    n_checked, _ = _check_contract(_random_contract_configs(rng, group, max(8, 96 // users), slots), seed=g)
    assert n_checked >= 10


@pytest.mark.long
def test_contract_under_heavy_queues_and_stalls():
    """The queueing configuration with every user sending (long waits), with and without the prefill stall."""
    cfgs = [_held_background(_queue_config(**kw).replace(
        episode=EpisodeConfig(slot_s=slot), traffic=dataclasses.replace(SimConfig().traffic, p_task=1.0))).validate()
        for slot in (0.05, 0.3, 1.7) for kw in ({}, {"prefill_stall": True})]
    groups = {}
    for c in cfgs:
        groups.setdefault(c.inference.prefill_stall, []).append(c)
    total = 0
    for k, cs in groups.items():
        n_checked, _ = _check_contract(cs, seed=7 + int(k))
        total += n_checked
    assert total >= 50
