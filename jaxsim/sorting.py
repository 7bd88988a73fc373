"""Ranks and stable argsort along the last axis from single-operand int32 sorts, and the n-th True of a row by
bit counts (no cumulative sum, which XLA:CPU runs as a slow reduce-window).

XLA:CPU sorts one int32 operand with a fast built-in comparison, but ``jnp.argsort`` (two operands,
keys and indices) and float sorts (NaN-aware comparator) go through a generic comparator call per
comparison, several times slower. Every key here is first mapped to an int32 with the same order
(:func:`int32_sort_key`), so only fast sorts run; the results equal ``jnp.argsort``'s (stable,
``-0.0 == 0.0``, NaN last) exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_MAX_PACKED_N = 46340          # n * n must fit in int32 for the (rank, index) packing


def int32_sort_key(x):
    """int32 keys ordered as `x` along any axis: ints as they are, floats by value.

    Floats: the IEEE bit pattern read as int32 is ordered for non-negative values; negative ones
    get their 31 low bits flipped. -0.0 is taken as 0.0 and every NaN as +NaN (above +inf), as
    ``jnp.sort`` does.
    """
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
        x = jnp.where(x == 0.0, jnp.float32(0.0), jnp.where(jnp.isnan(x), jnp.float32(jnp.nan), x))
        i = jax.lax.bitcast_convert_type(x, jnp.int32)
        return jnp.where(i < 0, i ^ jnp.int32(0x7FFFFFFF), i)
    return x.astype(jnp.int32)


def sort_int32(key):
    """``jnp.sort`` of int32 keys along the last axis, as XLA's unstable sort (equal ints are
    indistinguishable, so stability buys nothing; the unstable sort is about 13% faster on XLA:CPU)."""
    return jax.lax.sort(key, dimension=key.ndim - 1, is_stable=False)


def float32_from_sort_key(key):
    """Inverse of :func:`int32_sort_key` for float32 values (e.g. to read a sorted key array back)."""
    return jax.lax.bitcast_convert_type(jnp.where(key < 0, key ^ jnp.int32(0x7FFFFFFF), key), jnp.float32)


def count_below(sorted_keys, queries):
    """For each query, how many of its row's sorted keys are strictly smaller (binary search)."""
    lead = sorted_keys.shape[:-1]
    a = sorted_keys.reshape(-1, sorted_keys.shape[-1])
    q = queries.reshape(-1, queries.shape[-1])
    f = jax.vmap(lambda a, q: jnp.searchsorted(a, q, side="left", method="scan_unrolled"))
    return f(a, q).astype(jnp.int32).reshape(*lead, queries.shape[-1])


def count_less(key):
    """c_i = #{j : key_j < key_i} along the last axis (int32 keys), [..., n] int32.

    Equals the stable rank of i wherever key_i is unique in its row.
    """
    return count_below(sort_int32(key), key)


def count_below_rows(a, rows, q, inclusive: bool = False):
    """#{k : a[rows_j, k] < q_j} (<= with `inclusive`) for each query j; every row of `a` [R, n]
    nondecreasing, `rows` and `q` of one shape, int32 result of that shape.

    Branchless binary search (binary lifting): ceil(log2(n + 1)) gathers of the queries' size,
    no [..., n] intermediate.
    """
    n = a.shape[-1]
    flat = a.reshape(-1)
    base = rows.astype(jnp.int32) * n
    cnt = jnp.zeros(q.shape, jnp.int32)
    step = 1 << (n.bit_length() - 1)              # largest power of two <= n
    while step >= 1:
        probe = cnt + step                        # is the answer at least probe?
        x = flat[base + jnp.minimum(probe, n) - 1]
        below = (x <= q) if inclusive else (x < q)
        cnt = jnp.where((probe <= n) & below, probe, cnt)
        step //= 2
    return cnt


def stable_argsort(x):
    """``jnp.argsort(x, axis=-1, stable=True)``, exactly, from two int32 sorts.

    Sorting the distinct packed keys count_less * n + index orders by value, then by index.
    """
    n = x.shape[-1]
    if n > _MAX_PACKED_N:
        return jnp.argsort(x, axis=-1, stable=True).astype(jnp.int32)
    idx = jnp.arange(n, dtype=jnp.int32)
    packed = count_less(int32_sort_key(x)) * n + idx
    return sort_int32(packed) % n


def nth_true_rows(mask, rows, n):
    """Index of the ``n``-th (0-based) True in row ``rows[j]`` of ``mask`` [R, S] for each query j (``rows`` and
    ``n`` of one shape, int32), S where the row has no more; and each row's count of Trues, [R].

    The rows are packed into 32-bit words and searched by population counts: one pass over the mask, then work of
    the queries' size (the word, then the bit by binary lifting) -- no cumulative sum over S.
    """
    r, s = mask.shape
    w = -(-s // 32)
    bits = jnp.pad(mask, ((0, 0), (0, 32 * w - s))).reshape(r, w, 32).astype(jnp.uint32)
    words = jnp.sum(bits << jnp.arange(32, dtype=jnp.uint32), -1, dtype=jnp.uint32)     # [R, W], disjoint bits
    pc = jax.lax.population_count(words).astype(jnp.int32)
    cum = jnp.cumsum(pc, -1)                                                            # [R, W] Trues up to word
    c = cum[rows]                                                                       # [..., W]
    k = jnp.sum(c <= n[..., None], -1)                                                  # the word holding it
    kk = jnp.minimum(k, w - 1)
    before = jnp.where(k > 0, jnp.take_along_axis(c, jnp.maximum(k - 1, 0)[..., None], -1)[..., 0], 0)
    word = words[rows, kk]
    left = n - before                                                                   # Trues to skip in it
    p = jnp.zeros_like(n)
    for step in (16, 8, 4, 2, 1):                  # the largest p with popcount(bits below p) <= left
        below = jax.lax.population_count(word & ((jnp.uint32(1) << (p + step).astype(jnp.uint32)) - 1))
        p = jnp.where(below.astype(jnp.int32) <= left, p + step, p)
    return jnp.where(k < w, kk * 32 + p, s).astype(jnp.int32), cum[:, -1]
