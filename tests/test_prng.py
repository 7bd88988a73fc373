"""The unrolled threefry (jaxsim.prng) and the int32-sort helpers (jaxsim.sorting) against JAX's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsim import prng, sorting


@pytest.mark.parametrize("shape", [(1,), (7,), (3672,), (4, 24), (3, 8, 8, 3)])
def test_bits_and_uniform_equal_jax_random(shape):
    keys = jax.random.split(jax.random.PRNGKey(42), 16)
    got = jax.jit(jax.vmap(lambda k: prng.bits(k, shape)))(keys)
    np.testing.assert_array_equal(got, jax.vmap(lambda k: jax.random.bits(k, shape))(keys))
    for lo, hi in [(0.0, 1.0), (1e-7, 1.0 - 1e-7), (-2.0, 3.5)]:
        got = jax.jit(jax.vmap(lambda k: prng.uniform(k, shape, lo, hi)))(keys)
        want = jax.vmap(lambda k: jax.random.uniform(k, shape, minval=lo, maxval=hi))(keys)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("num", [2, 3, 4, 50])
def test_split_equals_jax_random(num):
    keys = jax.random.split(jax.random.PRNGKey(1), 8)
    np.testing.assert_array_equal(jax.vmap(lambda k: prng.split(k, num))(keys),
                                  jax.vmap(lambda k: jax.random.split(k, num))(keys))


def test_typed_keys_fall_back_to_jax_random():
    k = jax.random.key(3)
    np.testing.assert_array_equal(prng.uniform(k, (5,)), jax.random.uniform(k, (5,)))


def test_stable_argsort_equals_jnp_argsort():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, (50, 40)).astype(np.float32) * rng.choice([-1.0, 1.0], (50, 40)).astype(np.float32)
    x[0, :5] = [0.0, -0.0, np.nan, np.inf, -np.inf]
    x[1, :] = 3e38
    for a in (jnp.asarray(x), jnp.asarray(rng.integers(-5, 5, (50, 40)), jnp.int32)):
        np.testing.assert_array_equal(jax.jit(sorting.stable_argsort)(a), jnp.argsort(a, axis=-1, stable=True))


def test_sort_key_round_trip_and_order():
    x = jnp.asarray([-3e38, -1.5, -0.0, 0.0, 1e-30, 2.0, 3e38, jnp.inf], jnp.float32)
    k = sorting.int32_sort_key(x)
    assert bool(jnp.all(jnp.diff(k) >= 0))
    np.testing.assert_array_equal(sorting.float32_from_sort_key(k), jnp.where(x == 0, 0.0, x))


@pytest.mark.parametrize("n", [1, 5, 128])
def test_count_below_rows_equals_searchsorted(n):
    rng = np.random.default_rng(n)
    a = np.sort(rng.integers(0, 10, (4, n)), -1).astype(np.float32)
    a[1, n // 2:] = np.inf
    rows = rng.integers(0, 4, 300)
    q = rng.integers(-1, 12, 300).astype(np.float32)
    for inclusive, side in ((False, "left"), (True, "right")):
        got = sorting.count_below_rows(jnp.asarray(a), jnp.asarray(rows), jnp.asarray(q), inclusive=inclusive)
        want = [np.searchsorted(a[r], v, side=side) for r, v in zip(rows, q)]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("s", [1, 8, 32, 33, 128, 257])
def test_nth_true_rows_equals_the_cumulative_count_search(s):
    """The n-th True of a row by bit counts equals the first index whose running count of Trues exceeds n (S when the
    row has no more), on sparse, half and dense rows; the counts equal the rows' sums."""
    rng = np.random.default_rng(s)
    for density in (0.0, 0.05, 0.5, 0.95, 1.0):
        mask = jnp.asarray(rng.random((5, s)) < density)
        rows = jnp.asarray(rng.integers(0, 5, 64), jnp.int32)
        n = jnp.asarray(rng.integers(0, s + 2, 64), jnp.int32)
        idx, count = jax.jit(sorting.nth_true_rows)(mask, rows, n)
        want = sorting.count_below_rows(jnp.cumsum(mask, -1), rows, n, inclusive=True)
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_array_equal(count, mask.sum(-1))
