"""Two primitives of the BERT model written for speed on CPU hosts, with autodiff's numbers.

  Dropout       inverted dropout whose random bits are a keyed hash of the element index
                (`hash_bits`), not threefry: ~3x cheaper on XLA:CPU, and identical under any
                sharding (a pure function of key and index).
  tied_decoder  the MLM head's tied word-embedding decoder with a hand-written VJP: no transpose
                of the [..., V] cotangent and no column reduction for the bias gradient.

docs/PERFORMANCE.md has the measurements; tests/test_ops.py checks both against the plain forms.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def _fmix32(h: Array) -> Array:
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit with p ~ 1/2."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def hash_bits(key: Array, shape: tuple[int, ...]) -> Array:
    """uint32 random bits of `shape`: a keyed hash of each element's index (counter-based).

    Two words drawn from `key` (threefry) seed two rounds of MurmurHash3's finaliser applied to
    the flat element index: ~12 integer operations per word against threefry's ~100, and, being
    a pure function of (key, index), the same numbers under any sharding. Good enough for
    dropout masks (tests/test_ops.py checks rates and independence); not for cryptography.
    Indices wrap past 2^32 elements per call.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride = (stride * shape[axis]) % (1 << 32)
    h = _fmix32(index * jnp.uint32(0x9E3779B9) + seed[0])
    return _fmix32(h ^ seed[1])


class Dropout(nn.Module):
    """Inverted dropout with flax's nn.Dropout semantics and cheaper randomness.

    Random bits come from `hash_bits` (not threefry, which made dropout ~12% of a BERT-Mini
    step on CPU), 16 per element: each 32-bit word feeds two elements (its low and high
    halves). An element is dropped when its 16 bits fall below round(rate * 2^16), so the
    effective rate is that over 2^16 (0.1 -> 0.100006), and kept elements are scaled by its
    complement: the expectation is exact. Odd last dimensions use 32 bits per element.
    """
    rate: float

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        if deterministic or self.rate == 0.0:
            return x
        key = self.make_rng("dropout")
        threshold = int(round(self.rate * 65536))
        if x.ndim and x.shape[-1] % 2 == 0:
            bits = hash_bits(key, x.shape[:-1] + (1, x.shape[-1] // 2))
            # [..., 2, D/2]: the low halves for the first D/2 elements, the high halves for the
            # rest (a broadcast shift fuses into the consumer; a concatenate does not on CPU).
            shifts = jnp.array([[0], [16]], jnp.uint32)
            r16 = ((bits >> shifts) & 0xFFFF).reshape(x.shape)
        else:
            r16 = hash_bits(key, x.shape) >> 16
        scale = jnp.asarray(65536.0 / (65536 - threshold), x.dtype)
        return jnp.where(r16 >= threshold, x * scale, jnp.zeros((), x.dtype))


@jax.custom_vjp
def tied_decoder(x: Array, table: Array, bias: Array) -> Array:
    """x [..., D] (compute dtype) @ table [V, D]^T + bias [V] -> float32 logits [..., V].

    The same numbers as autodiff of the einsum, with the backward pass written so XLA:CPU needs no
    transpose of the [..., V] cotangent (the largest array of a small BERT's step) and no slow
    column reduction: d_table = dlogits^T x and d_bias = 1^T dlogits are both plain matmuls.
    """
    return _tied_decoder_fwd(x, table, bias)[0]


def _tied_decoder_fwd(x, table, bias):
    logits = jnp.einsum("...D,VD->...V", x, table.astype(x.dtype))
    return logits.astype(jnp.float32) + bias, (x, table)


def _tied_decoder_bwd(res, g):
    x, table = res
    d = x.shape[-1]
    rows_x = x.reshape(-1, d)
    rows_g = g.reshape(-1, g.shape[-1])
    d_bias = jnp.ones((1, rows_g.shape[0]), jnp.float32) @ rows_g
    gc = rows_g.astype(x.dtype)
    d_x = (gc @ table.astype(x.dtype)).reshape(x.shape)
    d_table = jnp.einsum("MV,MD->VD", gc, rows_x, preferred_element_type=jnp.float32)
    return d_x, d_table.astype(table.dtype), d_bias[0]


tied_decoder.defvjp(_tied_decoder_fwd, _tied_decoder_bwd)
