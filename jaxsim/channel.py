"""Radio channel: user drop, association, 3GPP TR 38.901 UMi path loss, shadowing,
Rayleigh block fading, downlink/uplink SINR per RB and Shannon rate.

All functions are pure and work on one episode; vmap adds the episode axis.
Linear gains are power ratios; distances in m; powers in W unless named _dbm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import prng
from .params import EnvParams

N_DROP_CANDIDATES = 8  # rejection sampling for the minimum distance: first valid of 8 draws


def breakpoint_umi_m(fc_ghz, h_bs_m, h_ut_m):
    """TR 38.901 Table 7.4.1-1 note 1: d'BP = 4 h'_BS h'_UT fc / c with h' = h - 1 m (UMi), m."""
    return 4.0 * (h_bs_m - 1.0) * (h_ut_m - 1.0) * fc_ghz * 1e9 / 299_792_458.0


def pathloss_umi_db(d2d_m, d3d_m, fc_ghz, h_bs_m, h_ut_m):
    """TR 38.901 Table 7.4.1-1 UMi street canyon: (PL_LOS, PL_NLOS) in dB. LOS: PL1 (21 log10 d) up to the
    breakpoint d'BP, PL2 (40 log10 d) beyond it; NLOS: max(PL_LOS, PL'_NLOS)."""
    d_bp = breakpoint_umi_m(fc_ghz, h_bs_m, h_ut_m)
    fc_db = 20.0 * jnp.log10(fc_ghz)
    pl1 = 32.4 + 21.0 * jnp.log10(d3d_m) + fc_db
    pl2 = 32.4 + 40.0 * jnp.log10(d3d_m) + fc_db - 9.5 * jnp.log10(jnp.maximum(d_bp ** 2 + (h_bs_m - h_ut_m) ** 2,
                                                                               1e-6))
    pl_los = jnp.where(d2d_m <= d_bp, pl1, pl2)
    pl_nlos_p = 35.3 * jnp.log10(d3d_m) + 22.4 + 21.3 * jnp.log10(fc_ghz) - 0.3 * (h_ut_m - 1.5)
    return pl_los, jnp.maximum(pl_los, pl_nlos_p)


def los_probability_umi(d2d_m):
    """TR 38.901 Table 7.4.2-1 UMi: 1 within 18 m, else 18/d + exp(-d/36)(1 - 18/d)."""
    d = jnp.maximum(d2d_m, 1e-3)
    p = 18.0 / d + jnp.exp(-d / 36.0) * (1.0 - 18.0 / d)
    return jnp.where(d2d_m <= 18.0, 1.0, p)


def drop_users(key, params: EnvParams):
    """Users uniform in the hexagon of each cell (min distance to its BS), [U, 2] in m, cell-major."""
    m, upc, k = params.n_cells, params.users_per_cell, N_DROP_CANDIDATES
    r = prng.uniform(key, (m, upc, k, 3))             # one draw: triangle, then (u, v)
    tri = jnp.floor(r[..., 0] * 6.0)
    uv = r[..., 1:]
    flip = uv.sum(-1, keepdims=True) > 1.0
    uv = jnp.where(flip, 1.0 - uv[..., ::-1], uv)
    ang0 = jnp.pi / 6 + tri * (jnp.pi / 3)           # hexagon vertices at 30 + 60 k degrees
    v0 = jnp.stack([jnp.cos(ang0), jnp.sin(ang0)], -1) * params.cell_radius_m
    v1 = jnp.stack([jnp.cos(ang0 + jnp.pi / 3), jnp.sin(ang0 + jnp.pi / 3)], -1) * params.cell_radius_m
    off = uv[..., :1] * v0 + uv[..., 1:] * v1        # [M, upc, K, 2]
    ok = jnp.linalg.norm(off, axis=-1) >= params.min_dist_m
    first = jnp.argmax(ok, axis=-1)                  # first valid candidate (0 if none)
    off = jnp.take_along_axis(off, first[..., None, None], axis=2)[:, :, 0]
    return (params.bs_xy_m[:, None, :] + off).reshape(m * upc, 2)


def large_scale(key, params: EnvParams, ue_xy_m):
    """Per-episode link state: LOS draw and shadowing for every user-BS pair.

    Returns (long-term gain [U, M] linear, association [U] int, d2d [U, M] m).
    Association is to the BS with the largest long-term gain.
    """
    d2d = jnp.linalg.norm(ue_xy_m[:, None, :] - params.bs_xy_m[None, :, :], axis=-1)
    d3d = jnp.sqrt(d2d ** 2 + (params.h_bs_m - params.h_ut_m) ** 2)
    pl_los, pl_nlos = pathloss_umi_db(d2d, d3d, params.carrier_ghz, params.h_bs_m, params.h_ut_m)
    u = prng.uniform(key, (2, *d2d.shape), 1e-7, 1.0 - 1e-7)   # one draw
    los = u[0] < los_probability_umi(d2d)
    sigma = jnp.where(los, params.shadow_los_db, params.shadow_nlos_db)
    loss_db = jnp.where(los, pl_los, pl_nlos) + sigma * jax.scipy.special.ndtri(u[1])
    gain = 10.0 ** (-loss_db / 10.0)
    return gain, jnp.argmax(gain, axis=1).astype(jnp.int32), d2d


@jax.named_scope("fading")
def rayleigh_fading(key, params: EnvParams):
    """|h|^2 ~ Exp(1) per user, BS and RB for one slot: [U, M, K] (inverse CDF of one uniform draw).

    -log(1 - u): u is a multiple of 2^-23 in [0, 1), so 1 - u is exact and this is -log1p(-u) to
    the last ulp, at half the cost on XLA:CPU.
    """
    return -jnp.log(1.0 - prng.uniform(key, (params.n_users, params.n_cells, params.n_rb)))


def interference_activity(params: EnvParams, cell_busy):
    """a(m') in {0,1} per cell: whether cell m' transmits on an RB this slot, [M]."""
    if params.interference == "full":
        return jnp.ones((params.n_cells,), jnp.float32)
    if params.interference == "none":
        return jnp.zeros((params.n_cells,), jnp.float32)
    return cell_busy.astype(jnp.float32)  # "activity"


def sinr_per_rb(params: EnvParams, gain, assoc, fading, cell_busy):
    """Downlink and uplink SINR per user per RB, ([U, K], [U, K]) linear.

    Downlink: serving BS power per RB over the other cells' (active) BS power plus UE noise.
    Uplink: UE power per RB (constant PSD over the band) at the serving BS; each other active
    cell contributes the mean interference of its users (a random user of that cell on the
    RB); BS noise figure.
    """
    m_n = params.n_cells
    own = jax.nn.one_hot(assoc, m_n)                        # [U, M]
    act = interference_activity(params, cell_busy)          # [M]
    # Sums over the (few) cells are written out: XLA:CPU runs a reduce over the small middle axis
    # of [U, M, K] about 3x slower than these adds, and the adds fuse with the fading draw.
    g = [gain[:, m, None] * fading[:, m, :] for m in range(m_n)]            # M x [U, K]
    other = (1.0 - own) * act[None, :]                      # [U, M]: BS m interferes at user u
    sig = sum(own[:, m, None] * g[m] for m in range(m_n))                  # [U, K]
    dl_int = sum(other[:, m, None] * g[m] for m in range(m_n))
    dl = params.bs_power_rb_w * sig / (params.bs_power_rb_w * dl_int + params.noise_rb_ue_w)
    # Uplink interference at BS n: the mean gain to n of each other active cell's users, summed
    # over those cells, = sum_u c[u, n] g[u, n, k] with c[u, n] = a(m_u) [m_u != n] / |cell m_u|.
    n_in_cell = jnp.maximum(own.sum(0), 1.0)
    c = (act[:, None] * (1.0 - jnp.eye(m_n)))[assoc] / n_in_cell[assoc][:, None]   # [U, M]
    ul_int_at_bs = jnp.stack([jnp.sum(c[:, m, None] * g[m], axis=0) for m in range(m_n)])   # [M, K]
    ul_int = ul_int_at_bs[assoc]                            # [U, K] at the serving BS
    ul = params.ue_power_rb_w * sig / (params.ue_power_rb_w * ul_int + params.noise_rb_bs_w)
    return dl, ul


def rate_per_rb_bps(params: EnvParams, sinr):
    """Shannon rate of one RB, bit/s: W log2(1 + SINR / gap), capped at W * max_se."""
    se = jnp.log1p(sinr / params.gap_lin) / jnp.log(2.0)   # log1p: accurate at low SINR
    return params.rb_hz * jnp.minimum(se, params.max_se)


def effective_sinr_db(params: EnvParams, mean_rate_bps):
    """The SINR whose Shannon rate equals the mean per-RB rate (what the link delivers), dB."""
    se = mean_rate_bps / params.rb_hz
    return 10.0 * jnp.log10(jnp.maximum(params.gap_lin * (2.0 ** se - 1.0), 1e-12))
