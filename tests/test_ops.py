"""bertjax.ops: the hashed dropout keeps its rate and independence; the tied decoder's
hand-written gradients equal autodiff's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import ops


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def test_dropout_rate_scale_and_independence():
    """The hash-based dropout keeps 1 - rate of the elements, preserves the mean, and its masks
    do not correlate across keys, neighbouring elements or the two halves of a random word."""
    x = jnp.ones((64, 96, 128), jnp.float32)
    drop = ops.Dropout(0.1)
    apply = jax.jit(lambda k: drop.apply({}, x, False, rngs={"dropout": k}))
    a, b = np.asarray(apply(jax.random.key(1))), np.asarray(apply(jax.random.key(2)))
    keep_a, keep_b = a > 0, b > 0
    n = keep_a.size
    assert abs(keep_a.mean() - 0.9) < 4 * np.sqrt(0.09 / n)
    assert abs(a.mean() - 1.0) < 0.01  # inverted dropout: the expectation is kept
    assert set(np.unique(a)) == {0.0, np.float32(65536 / (65536 - 6554))}
    # Independence: P(both kept) = 0.81 across keys, across neighbours, across the halves.
    tol = 5 * np.sqrt(0.81 * 0.19 / n) + 1e-3
    assert abs((keep_a & keep_b).mean() - 0.81) < tol
    assert abs((keep_a[..., 1:] & keep_a[..., :-1]).mean() - 0.81) < tol
    assert abs((keep_a[..., :64] & keep_a[..., 64:]).mean() - 0.81) < tol
    assert abs((keep_a[1:] & keep_a[:-1]).mean() - 0.81) < tol
    np.testing.assert_array_equal(a, np.asarray(apply(jax.random.key(1))))  # a function of the key
    # Odd last dimension (32 bits per element) and the deterministic pass-through.
    odd = drop.apply({}, jnp.ones((4000, 3)), False, rngs={"dropout": jax.random.key(0)})
    assert abs(float((odd > 0).mean()) - 0.9) < 0.02
    np.testing.assert_array_equal(drop.apply({}, x, True), x)


def test_hash_bits_are_uniform():
    bits = np.asarray(ops.hash_bits(jax.random.key(3), (256, 1024)))
    # Every bit position is set about half the time.
    ones = np.stack([(bits >> i) & 1 for i in range(32)]).reshape(32, -1).mean(1)
    assert np.all(np.abs(ones - 0.5) < 0.01), ones
    assert len(np.unique(bits)) > 0.99 * bits.size


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_tied_decoder_gradients_equal_autodiff(dtype):
    r = np.random.default_rng(0)
    x = jnp.asarray(r.normal(size=(3, 5, 30)), dtype)
    table = jnp.asarray(r.normal(size=(97, 30)), jnp.float32)
    bias = jnp.asarray(r.normal(size=(97,)), jnp.float32)
    w = jnp.asarray(r.normal(size=(3, 5, 97)), jnp.float32)

    def reference(x, table, bias):
        logits = jnp.einsum("...D,VD->...V", x, table.astype(x.dtype))
        return jnp.sum(w * jnp.tanh(logits.astype(jnp.float32) + bias))

    def ours(x, table, bias):
        return jnp.sum(w * jnp.tanh(ops.tied_decoder(x, table, bias)))

    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    want = jax.grad(reference, argnums=(0, 1, 2))(x, table, bias)
    got = jax.grad(ours, argnums=(0, 1, 2))(x, table, bias)
    assert float(ours(x, table, bias)) == pytest.approx(float(reference(x, table, bias)), rel=1e-6)
    for g, e in zip(got, want):
        assert g.dtype == e.dtype and g.shape == e.shape
        assert _rel(g, e) < tol
