"""NumPy float64 reference of the per-slot physics and delays.

Written plainly (explicit loops over cells, servers and users; episodes as the
leading axis of every array), independent of JAX, for tests and the
kernel-versus-reference benchmark. Random draws are inputs, so the kernel's
draws can be replayed here; :func:`simulate` draws its own with NumPy for the
benchmark.
"""

from __future__ import annotations

import jax
import numpy as np

from .params import EnvParams

FREE, RUNNING, QUEUED = 0, 1, 2


def to_numpy(params: EnvParams) -> EnvParams:
    """The same params with float64 NumPy leaves."""
    def conv(x):
        a = np.asarray(x)
        return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a
    return jax.tree.map(conv, params)


# ---------------------------------------------------------------- channel
def pathloss_umi_db(d2d, d3d, fc_ghz, h_bs, h_ut):
    d_bp = 4 * (h_bs - 1) * (h_ut - 1) * fc_ghz * 1e9 / 299_792_458.0
    pl1 = 32.4 + 21 * np.log10(d3d) + 20 * np.log10(fc_ghz)
    pl2 = 32.4 + 40 * np.log10(d3d) + 20 * np.log10(fc_ghz) - 9.5 * np.log10(max(d_bp ** 2 + (h_bs - h_ut) ** 2, 1e-6))
    pl_los = np.where(d2d <= d_bp, pl1, pl2)
    pl_nlos = np.maximum(pl_los, 35.3 * np.log10(d3d) + 22.4 + 21.3 * np.log10(fc_ghz) - 0.3 * (h_ut - 1.5))
    return pl_los, pl_nlos


def los_probability(d2d):
    d = np.maximum(d2d, 1e-3)
    return np.where(d2d <= 18, 1.0, 18 / d + np.exp(-d / 36) * (1 - 18 / d))


def large_scale(p: EnvParams, ue_xy, los_u, shadow_z):
    """ue_xy [E, U, 2]; los_u, shadow_z [E, U, M] uniform / standard-normal draws -> gain, assoc."""
    d2d = np.linalg.norm(ue_xy[:, :, None, :] - p.bs_xy_m[None, None], axis=-1)
    d3d = np.sqrt(d2d ** 2 + (p.h_bs_m - p.h_ut_m) ** 2)
    pl_los, pl_nlos = pathloss_umi_db(d2d, d3d, float(p.carrier_ghz), float(p.h_bs_m), float(p.h_ut_m))
    los = los_u < los_probability(d2d)
    loss = np.where(los, pl_los + p.shadow_los_db * shadow_z, pl_nlos + p.shadow_nlos_db * shadow_z)
    gain = 10 ** (-loss / 10)
    return gain, gain.argmax(-1)


def sinr_per_rb(p: EnvParams, gain, assoc, fading, busy):
    """gain [E, U, M], assoc [E, U], fading [E, U, M, K], busy [E, M] -> (dl, ul) [E, U, K]."""
    e_n, u_n, m_n, k_n = fading.shape
    g = gain[..., None] * fading
    act = {"full": np.ones((e_n, m_n)), "none": np.zeros((e_n, m_n))}.get(p.interference, busy.astype(float))
    dl = np.zeros((e_n, u_n, k_n))
    ul = np.zeros((e_n, u_n, k_n))
    ei = np.arange(e_n)
    # mean gain from the users of cell a to BS b: [E, M, M, K]
    g_from = np.zeros((e_n, m_n, m_n, k_n))
    for a in range(m_n):
        in_a = assoc == a
        cnt = np.maximum(in_a.sum(1), 1)
        g_from[:, a] = (g * in_a[:, :, None, None]).sum(1) / cnt[:, None, None]
    for u in range(u_n):
        m = assoc[:, u]
        sig = g[ei, u, m]                                   # [E, K]
        dl_i = np.zeros((e_n, k_n))
        ul_i = np.zeros((e_n, k_n))
        for o in range(m_n):
            other = (m != o)[:, None] * act[:, o][:, None]
            dl_i += other * g[:, u, o]
            ul_i += other * g_from[ei, o, m]
        dl[:, u] = p.bs_power_rb_w * sig / (p.bs_power_rb_w * dl_i + p.noise_rb_ue_w)
        ul[:, u] = p.ue_power_rb_w * sig / (p.ue_power_rb_w * ul_i + p.noise_rb_bs_w)
    return dl, ul


def rate_per_rb(p: EnvParams, sinr):
    return p.rb_hz * np.minimum(np.log2(1 + sinr / p.gap_lin), p.max_se)


def effective_sinr_db(p: EnvParams, rate):
    return 10 * np.log10(np.maximum(p.gap_lin * (2 ** (rate / p.rb_hz) - 1), 1e-12))


# ---------------------------------------------------------------- allocation
def allocate_rbs(p: EnvParams, assoc, active, bits, rate):
    """RBs per user [E, U] (continuous shares, or whole RBs by largest remainder)."""
    if p.allocator == "equal":
        w = np.ones(bits.shape)
    elif p.allocator == "proportional":
        w = bits / np.maximum(rate, 1e-9)
    else:
        w = np.sqrt(bits / np.maximum(rate, 1e-9))
    w = np.where(active, np.maximum(w, 1e-30), 0.0)
    n = np.zeros(bits.shape)
    for m in range(p.n_cells):
        in_m = (assoc == m) & active                                   # [E, U]
        share = np.where(in_m, w, 0) / np.maximum(np.where(in_m, w, 0).sum(1, keepdims=True), 1e-30)
        n = np.where(in_m, p.n_rb * share, n)
        if not p.integer_rbs:
            continue
        for e in np.flatnonzero(in_m.any(1) & (in_m.sum(1) <= p.n_rb)):
            users = np.flatnonzero(in_m[e])
            spare = p.n_rb - len(users)
            x = spare * share[e, users]
            base = np.floor(x)
            left = int(round(spare - base.sum()))
            order = sorted(range(len(users)), key=lambda i: (-(x[i] - base[i]), users[i]))
            extra = np.zeros(len(users))
            extra[order[:left]] = 1
            n[e, users] = 1 + base + extra
    return n


def transfer_time(bits, n_rb, rate):
    return np.where(bits > 0, bits / np.maximum(n_rb * rate, 1e-9), 0.0)


# ---------------------------------------------------------------- servers
def step_base(p: EnvParams, v, b):
    """One decode step of server v with b sequences without its attention, s: fixed costs (per-layer overhead,
    tensor-parallel sync), weight matmuls, all-reduces of b tokens."""
    matmuls = np.maximum(2 * p.srv_n_params[v] * b / p.srv_flops[v], p.srv_weight_bytes[v] / p.srv_bw[v])
    return p.srv_step_fixed_s[v] + p.srv_tp_fixed_s[v] + matmuls + b * p.srv_comm_s_per_token[v]


def step_time(p: EnvParams, v, b, ctx_total):
    """Roofline decode step of server v with b sequences holding ctx_total context tokens, s."""
    return step_base(p, v, b) + ctx_total * p.srv_kv_s_per_token[v]


def prefill_time(p: EnvParams, v, prompt):
    """First-token time of a prompt on server v (v and prompt broadcast), s."""
    flops = 2 * p.srv_n_params[v] * prompt + p.prefill_attention * 2 * p.srv_n_layers[v] * prompt ** 2 * p.srv_d_model[v]
    return (p.srv_prefill_overhead_s[v] + p.srv_tp_fixed_s[v] + prompt * p.srv_comm_s_per_token[v]
            + np.maximum(flops / p.srv_prefill_flops[v], p.srv_weight_bytes[v] / p.srv_bw[v]))


def server_slot(p: EnvParams, v, rem, ctx, run, bg, busy, stall):
    """One slot of server v's running batch (episodes vectorised): rem, ctx [E, S] of the running entries ``run``,
    background bg [E], ``busy`` [E] s until a new step may start, ``stall`` [E] extra prefill time before decoding.

    Returns (done [E, S] completion times from the slot's start, inf where not running; rem, ctx, run after the
    slot; busy after it). Phase by phase in sorted order; the step in progress at the slot's end is counted as
    taken and its remaining time carried as busy."""
    e_n, s_n = rem.shape
    n = run.sum(1)
    c_bg = bg * p.bg_context                                            # background context, stationary
    srt = np.argsort(np.where(run, rem, np.inf), 1, kind="stable")
    r_sorted = np.take_along_axis(np.where(run, rem, 0.0), srt, 1)
    c_sorted = np.take_along_axis(np.where(run, ctx, 0.0), srt, 1)
    kv = p.srv_kv_s_per_token[v]
    c_suffix = np.cumsum(c_sorted[:, ::-1], 1)[:, ::-1]                # context of sorted entries j..S-1
    t0 = busy + stall                                                   # the decode timeline starts here
    t, r_prev = t0.copy(), np.zeros(e_n)
    t_sorted = np.full((e_n, s_n), np.inf)
    n_c = np.zeros(e_n)                                                 # steps taken, the one in progress included
    end_c = t0.copy()                                                   # when the last of them ends
    for j in range(s_n):
        live = j < n
        m = n - j                                                       # own sequences still running
        base = step_base(p, v, m + bg)
        c0 = c_suffix[:, j] + m * r_prev + c_bg                         # batch context at the phase's start

        def elapsed(x):
            # x steps into the phase, each charged at its mid-step context (the token's KV is being written)
            return x * base + kv * (x * c0 + m * x * x / 2)
        length = r_sorted[:, j] - r_prev
        t_new = t + elapsed(length)
        inside = live & (t <= p.slot_s) & (p.slot_s < t_new)
        # the steps in the slot: elapsed(x) = slot - t, a quadratic in x (the textbook root)
        qa, qb, qc = kv * m / 2, base + kv * c0, -(p.slot_s - t)
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.where(qa > 0, (-qb + np.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa), -qc / qb)
            x0 = np.floor(np.where(inside, root, 0.0))
            x = np.where(t + elapsed(x0) >= p.slot_s, x0, x0 + 1)      # the first step not ended before the slot's end
        n_c = np.where(inside, r_prev + x, n_c)
        end_c = np.where(inside, t + elapsed(x), end_c)
        t = np.where(live, t_new, t)
        t_sorted[:, j] = np.where(live, np.where(r_sorted[:, j] == 0, busy, t), np.inf)
        r_prev = np.where(live, r_sorted[:, j], r_prev)
    done = np.full((e_n, s_n), np.inf)
    np.put_along_axis(done, srt, t_sorted, 1)
    fin = run & ((done <= p.slot_s) | ((rem <= n_c[:, None]) & (end_c <= p.slot_s)[:, None]))
    go = run & ~fin
    rem = np.where(go, np.maximum(rem - n_c[:, None], 0), np.where(fin, 0, rem))
    ctx = np.where(go, ctx + n_c[:, None], np.where(fin, 0, ctx))
    busy = np.where(go.any(1), np.maximum(end_c - p.slot_s, 0.0), 0.0)
    return done, rem, ctx, go, busy


def admit(p: EnvParams, v, status, order, rem, bg):
    """FIFO admission on server v ([E, S] status and order, changed in place): up to min(b_max - bg, S) running,
    a running sequence with no token left (its last one in progress) not counted. Returns the admitted mask."""
    st = status[:, v]
    staying = (st == RUNNING) & (rem[:, v] > 0)
    cap = np.minimum(p.srv_b_max[v] - bg[:, v], p.max_seqs) - staying.sum(1)
    key = np.where(st == QUEUED, order[:, v], np.iinfo(np.int32).max)
    rank = np.argsort(np.argsort(key, 1, kind="stable"), 1, kind="stable")
    admitted = (st == QUEUED) & (rank < cap[:, None])
    st[admitted] = RUNNING
    order[:, v] = np.where(st == QUEUED, rank - np.maximum(cap, 0)[:, None], order[:, v])
    return admitted


def serve_slot(p: EnvParams, srv: dict, assoc, active, ttype, prompt, output, action, ul_s, dl_s):
    """Enqueue, admit, schedule and advance every server (episodes vectorised); per-task info [E, U].

    Booking: each entry's completion as the servers run on with no arrival and the background held, slot by slot
    (:func:`server_slot`, :func:`admit`) until every entry of the slot is done."""
    srv = {k: v.copy() for k, v in srv.items()}
    rem, ctxs, status, order, counter, bg, busy = (srv[k] for k in ("rem", "ctx", "status", "order", "counter", "bg",
                                                                      "busy"))
    e_n, u_n = assoc.shape
    s_n, v_n = p.max_seqs, p.n_servers
    ei = np.arange(e_n)
    server = p.act_server_base[action] + p.act_is_edge[action] * assoc        # [E, U]
    entry = np.full((e_n, u_n), -1)
    for u in range(u_n):                                  # FIFO by user index
        v = server[:, u]
        free = status[ei, v] == FREE                      # [E, S]
        ok = active[:, u] & free.any(1)
        i = free.argmax(1)
        e = ei[ok]
        rem[e, v[ok], i[ok]] = output[ok, u]
        ctxs[e, v[ok], i[ok]] = prompt[ok, u]
        status[e, v[ok], i[ok]] = QUEUED
        order[e, v[ok], i[ok]] = counter[e, v[ok]]
        counter[e, v[ok]] += 1
        entry[ok, u] = i[ok]

    def prefill_stall(v, admitted, ctx):
        # the option: the admitted prompts are prefilled one after the other before the batch decodes
        return p.prefill_stall * (prefill_time(p, v, ctx[:, v]) * admitted).sum(1)

    def run_slot(v, rem, ctxs, status, busy, stall):
        done, rem[:, v], ctxs[:, v], go, busy[:, v] = server_slot(p, v, rem[:, v], ctxs[:, v], status[:, v] == RUNNING,
                                                                  bg[:, v], busy[:, v], stall)
        status[:, v] = np.where(status[:, v] == RUNNING, np.where(go, RUNNING, FREE), status[:, v])
        return done

    booked_done = np.full((e_n, v_n, s_n), np.inf)
    admitted_at = np.zeros((e_n, v_n, s_n))
    for v in range(v_n):
        stall = prefill_stall(v, admit(p, v, status, order, rem, bg), ctxs)
        # the booking: a copy of the server run on until nothing waits, then the last slot's schedule
        sim = [x.copy() for x in (rem, ctxs, status, order, busy)]
        sim_stall, k = stall.copy(), 0
        while True:
            waiting = (sim[2][:, v] == QUEUED).any(1)
            running = sim[2][:, v] == RUNNING
            if not waiting.any():
                done = server_slot(p, v, sim[0][:, v], sim[1][:, v], running, bg[:, v], sim[4][:, v], sim_stall)[0]
                booked_done[:, v] = np.where(running, k * p.slot_s + done, booked_done[:, v])
                break
            done = run_slot(v, sim[0], sim[1], sim[2], sim[4], sim_stall)
            freed = running & (sim[2][:, v] == FREE)
            booked_done[:, v] = np.where(freed, k * p.slot_s + np.minimum(done, p.slot_s), booked_done[:, v])
            k += 1
            new = admit(p, v, sim[2], sim[3], sim[0], bg)
            admitted_at[:, v] = np.where(new, k, admitted_at[:, v])
            sim_stall = prefill_stall(v, new, sim[1])
        run_slot(v, rem, ctxs, status, busy, stall)
    # per-task delays
    budget, qmin = p.budget_s[ttype], p.min_quality[ttype]
    ul_bits = prompt * p.prompt_bits_per_token
    dl_bits = output * p.bits_per_output_token[ttype]
    cloud = ~p.act_is_edge[action]
    bh = cloud * (2 * p.backhaul_latency_s + (ul_bits + dl_bits) / p.backhaul_bps)
    pre = prefill_time(p, server, prompt)
    e2 = np.broadcast_to(ei[:, None], (e_n, u_n))
    i2 = np.maximum(entry, 0)
    refused = active & (entry < 0)
    wait = np.where(refused, 0.0, admitted_at[e2, server, i2] * p.slot_s)
    dec = np.where(refused, 0.0, booked_done[e2, server, i2] - wait - p.prefill_stall * pre)
    keep = lambda x: np.where(refused, 0.0, x)  # noqa: E731
    ul_s, bh, pre, dl_s = keep(ul_s), keep(bh), keep(pre), keep(dl_s)
    rej = np.where(refused, p.reject_factor * budget, 0.0)
    delay = ul_s + bh + wait + pre + dec + dl_s + rej
    q = np.where(refused, 0.0, p.quality[action, ttype])
    ok = (delay <= budget) & (q >= qmin)
    reward = q - p.w_delay * delay / budget - p.w_miss * ~ok
    z = lambda x: np.where(active, x, 0.0)  # noqa: E731
    info = {"delay_s": z(delay), "wait_s": z(wait), "decode_s": z(dec), "prefill_s": z(pre), "backhaul_s": z(bh),
            "uplink_s": z(ul_s), "downlink_s": z(dl_s), "refusal_s": z(rej), "quality": z(q), "success": active & ok,
            "reward": z(reward), "refused": refused}
    return info, srv


def radio_delays(p: EnvParams, assoc, active, ttype, prompt, output, dl_rate, ul_rate):
    ul_bits = prompt * p.prompt_bits_per_token
    dl_bits = output * p.bits_per_output_token[ttype]
    ul = transfer_time(ul_bits, allocate_rbs(p, assoc, active, ul_bits, ul_rate), ul_rate)
    dl = transfer_time(dl_bits, allocate_rbs(p, assoc, active, dl_bits, dl_rate), dl_rate)
    return ul, dl


def slot_rates(p: EnvParams, gain, assoc, active, fading):
    busy = np.zeros((assoc.shape[0], p.n_cells), bool)
    for m in range(p.n_cells):
        busy[:, m] = ((assoc == m) & active).any(1)
    dl, ul = sinr_per_rb(p, gain, assoc, fading, busy)
    return rate_per_rb(p, dl).mean(-1), rate_per_rb(p, ul).mean(-1)


def greedy_actions(p: EnvParams, load_seqs, active, assoc, ttype, prompt, output, dl_rate):
    """The greedy heuristic of baselines.heuristics, in NumPy: [E, U] actions."""
    n_cell = np.zeros_like(prompt)
    for m in range(p.n_cells):
        n_cell += (assoc == m) * ((assoc == m) & active).sum(1, keepdims=True)
    sinr = 10 ** (effective_sinr_db(p, dl_rate) / 10)
    rate = p.rb_hz * np.minimum(np.log2(1 + sinr / p.gap_lin), p.max_se)
    n_rb = p.n_rb / np.maximum(n_cell, 1)
    ul_bits = prompt * p.prompt_bits_per_token
    dl_bits = output * p.bits_per_output_token[ttype]
    best = np.full(prompt.shape, -np.inf)
    act = np.zeros(prompt.shape, np.int32)
    for a in range(p.n_actions):
        v = p.act_server_base[a]
        radio = (ul_bits + dl_bits) / np.maximum(n_rb * rate, 1e-9)
        bh = (not p.act_is_edge[a]) * (2 * p.backhaul_latency_s + (ul_bits + dl_bits) / p.backhaul_bps)
        pre = prefill_time(p, v, prompt)
        b = load_seqs[..., a] + 1
        step = step_time(p, v, b, b * p.bg_context)
        delay = radio + bh + pre + output * step
        q = p.quality[a][ttype]
        ok = (delay <= p.budget_s[ttype]) & (q >= p.min_quality[ttype])
        r = q - p.w_delay * delay / p.budget_s[ttype] - p.w_miss * ~ok
        act = np.where(r > best, a, act)
        best = np.maximum(r, best)
    return act


def simulate(p: EnvParams, n_episodes: int, seed: int = 0):
    """Whole episodes with greedy actions, NumPy draws; returns mean slot reward [E, H]."""
    rng = np.random.default_rng(seed)
    e_n, u_n, m_n = n_episodes, p.n_users, p.n_cells
    # drop: uniform in each cell's hexagon (rejection of the minimum distance)
    xy = np.zeros((e_n, u_n, 2))
    for u in range(u_n):
        cell = u // p.users_per_cell
        pts = np.zeros((e_n, 2))
        todo = np.ones(e_n, bool)
        while todo.any():
            k = rng.integers(0, 6, e_n)
            uv = rng.random((e_n, 2))
            flip = uv.sum(1) > 1
            uv[flip] = 1 - uv[flip][:, ::-1]
            a0 = np.pi / 6 + k * np.pi / 3
            v0 = np.stack([np.cos(a0), np.sin(a0)], 1) * p.cell_radius_m
            v1 = np.stack([np.cos(a0 + np.pi / 3), np.sin(a0 + np.pi / 3)], 1) * p.cell_radius_m
            off = uv[:, :1] * v0 + uv[:, 1:] * v1
            ok = todo & (np.linalg.norm(off, axis=1) >= p.min_dist_m)
            pts[ok] = off[ok]
            todo &= ~ok
        xy[:, u] = p.bs_xy_m[cell] + pts
    gain, assoc = large_scale(p, xy, rng.random((e_n, u_n, m_n)), rng.standard_normal((e_n, u_n, m_n)))
    v_n, s_n = p.n_servers, p.max_seqs
    srv = {"rem": np.zeros((e_n, v_n, s_n)), "ctx": np.zeros((e_n, v_n, s_n)),
           "status": np.zeros((e_n, v_n, s_n), np.int32), "order": np.zeros((e_n, v_n, s_n), np.int32),
           "counter": np.zeros((e_n, v_n), np.int32), "busy": np.zeros((e_n, v_n)),
           "bg": np.floor(rng.random((e_n, v_n)) * (p.srv_bg_max + 1)).astype(np.int32)}
    probs = np.exp(p.type_logits - p.type_logits.max())
    probs /= probs.sum()
    rewards = np.zeros((e_n, p.horizon))
    for t in range(p.horizon):
        active = rng.random((e_n, u_n)) < p.p_task
        ttype = rng.choice(len(probs), size=(e_n, u_n), p=probs)
        sig = p.token_sigma

        def tokens(mean):
            return np.round(np.clip(mean * np.exp(sig * rng.standard_normal((e_n, u_n)) - sig ** 2 / 2), 1, 8 * mean))
        prompt, output = tokens(p.prompt_tokens[ttype]), tokens(p.output_tokens[ttype])
        fading = rng.exponential(size=(e_n, u_n, m_n, p.n_rb))
        dl_rate, ul_rate = slot_rates(p, gain, assoc, active, fading)
        load_v = (srv["status"] != FREE).sum(-1) + srv["bg"]                     # [E, V]
        load = np.stack([np.take_along_axis(load_v, p.act_server_base[a] + p.act_is_edge[a] * assoc, 1)
                         for a in range(p.n_actions)], -1)
        action = greedy_actions(p, load, active, assoc, ttype, prompt, output, dl_rate)
        ul_s, dl_s = radio_delays(p, assoc, active, ttype, prompt, output, dl_rate, ul_rate)
        info, srv = serve_slot(p, srv, assoc, active, ttype, prompt, output, action, ul_s, dl_s)
        n = active.sum(1)
        rewards[:, t] = np.where(n > 0, (info["reward"] * active).sum(1) / np.maximum(n, 1), 0)
        step = rng.integers(-p.srv_bg_step, p.srv_bg_step + 1, size=(e_n, v_n))
        srv["bg"] = np.clip(srv["bg"] + step, 0, p.srv_bg_max)
    return rewards
