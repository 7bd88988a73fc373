"""Threefry-2x32 random bits written as unrolled integer ops, bit-identical to ``jax.random``.

XLA:CPU lowers JAX's threefry primitive as a rolled five-iteration loop that neither fuses nor
vectorises (about 20 ns per 32-bit word on a 2-core CPU), which made the per-slot fading draw the
largest cost of a simulated slot. The same hash (Salmon et al., SC'11: 20 rounds, key schedule
every 4) written with plain ``jnp`` uint32 adds, rotations and xors fuses into one vectorised loop,
about 10x faster, and is elementwise, so it works unchanged under ``vmap``, ``jit`` and sharding.

For raw ``uint32[2]`` keys (``jax.random.PRNGKey``) under ``jax_threefry_partitionable`` (JAX's
default) :func:`bits`, :func:`uniform` and :func:`split` return exactly what ``jax.random.bits``,
``jax.random.uniform`` and ``jax.random.split`` return (tests/test_prng.py checks it); for typed
keys or the other partitioning mode they call ``jax.random`` itself, so results never depend on
which path ran.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 (20 rounds) of the counter pair (x0, x1) under key (k0, k1); all uint32.

    Returns the two output words; the same function as JAX's ``threefry2x32_p``.
    """
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):                       # 5 x 4 rounds, key injection after each 4
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _fast_path(key) -> bool:
    """Whether `key` is a raw threefry key and JAX draws in partitionable mode (what we replicate)."""
    return (not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.dtype == jnp.uint32
            and key.shape == (2,) and bool(jax.config.jax_threefry_partitionable))


def _hash_iota(key, n: int):
    """Both Threefry words of the counters 0..n-1 (high counter word 0), [n] uint32 each."""
    if n >= 2 ** 32:
        raise ValueError(f"{n} random words: allowed < 2**32")
    return threefry2x32(key[0], key[1], jnp.zeros((n,), jnp.uint32), jnp.arange(n, dtype=jnp.uint32))


def bits(key, shape):
    """Uniform random uint32 words of `shape`; equals ``jax.random.bits(key, shape)``."""
    if not _fast_path(key):
        return jax.random.bits(key, shape)
    b0, b1 = _hash_iota(key, math.prod(shape))
    return (b0 ^ b1).reshape(shape)


def uniform(key, shape, minval=0.0, maxval=1.0):
    """U[minval, maxval) float32 draws of `shape`; equals ``jax.random.uniform(key, shape, ...)``.

    The 23 high bits of a word fill the mantissa of a float in [1, 2), minus 1, then scaled.
    """
    if not _fast_path(key):
        return jax.random.uniform(key, shape, minval=minval, maxval=maxval)
    lo, hi = jnp.float32(minval), jnp.float32(maxval)
    mant = (bits(key, shape) >> np.uint32(9)) | np.uint32(0x3F800000)
    u01 = jax.lax.bitcast_convert_type(mant, jnp.float32) - jnp.float32(1.0)
    return jnp.maximum(lo, u01 * (hi - lo) + lo)


def split(key, num: int = 2):
    """`num` new keys, [num, 2] uint32; equals ``jax.random.split(key, num)``."""
    if not _fast_path(key):
        return jax.random.split(key, num)
    b0, b1 = _hash_iota(key, num)
    return jnp.stack([b0, b1], axis=-1)
