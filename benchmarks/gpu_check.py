"""On a GPU: does the cuDNN fused attention path compute what the XLA path does?

    python benchmarks/gpu_check.py

Two checks, each on fresh random inputs with padding (sequences of 512, 300, 128 and 1 tokens):
1. jax.nn.dot_product_attention with implementation="cudnn" and "xla" in bf16, and the
   einsum path, against a float32 XLA reference: ||out - ref|| / ||ref|| of the outputs and of
   the gradients wrt q, k, v.
   cuDNN is run both with the [B, 1, S, S] mask and with the sequence lengths the model passes.
2. A 2-layer BERT-base-width BertForPreTraining in bf16, attention_impl cudnn (lengths) vs xla
   vs einsum, same parameters: relative difference of the MLM logits and of the loss gradient
   (a NaN from a padded row leaking into real ones would fail it).
bf16 operands land between 1e-3 and 1e-2 against a float32 reference; cudnn must be no further
from the reference than XLA's own bf16 path (within 2x). Prints one line per quantity and exits
non-zero when a check fails.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bertjax import config as config_lib  # noqa: E402
from bertjax import model as model_lib  # noqa: E402

LENGTHS = (512, 300, 128, 1)


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def attention_check(seed: int) -> bool:
    b, s, n, h = len(LENGTHS), 512, 16, 64
    ks = jax.random.split(jax.random.key(seed), 4)
    q, k, v, w = (jax.random.normal(key, (b, s, n, h), jnp.float32) for key in ks)
    keep = jnp.arange(s)[None] < jnp.asarray(LENGTHS)[:, None]
    mask = model_lib.make_attention_mask(keep.astype(jnp.int32))
    valid = np.asarray(keep)[:, :, None, None]  # compare real query rows only

    def loss(impl, q, k, v):
        if impl == "einsum":
            logits = jnp.einsum("BTNH,BSNH->BNTS", q, k) / jnp.sqrt(h).astype(q.dtype)
            logits = jnp.where(mask, logits.astype(jnp.float32), jnp.finfo(jnp.float32).min)
            out = jnp.einsum("BNTS,BSNH->BTNH", jax.nn.softmax(logits, -1).astype(q.dtype), v)
        elif impl == "cudnn_lengths":  # the model's cuDNN path: padding as lengths, no mask
            lengths = jnp.asarray(LENGTHS, jnp.int32)
            out = jax.nn.dot_product_attention(q, k, v, query_seq_lengths=lengths,
                                               key_value_seq_lengths=lengths,
                                               implementation="cudnn")
        else:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=impl)
        return jnp.sum(jnp.where(valid, out.astype(jnp.float32) * w, 0.0)), out

    def run(impl, dtype):
        f = jax.jit(jax.value_and_grad(lambda *a: loss(impl, *a), argnums=(0, 1, 2),
                                       has_aux=True))
        (_, out), grads = f(*(x.astype(dtype) for x in (q, k, v)))
        return [np.where(valid, np.asarray(out, np.float32), 0.0)] + [
            np.asarray(g, np.float32) for g in grads]

    ref = run("xla", jnp.float32)
    errors = {impl: [rel(a, r) for a, r in zip(run(impl, jnp.bfloat16), ref)]
              for impl in ("xla", "einsum", "cudnn", "cudnn_lengths")}
    ok = True
    for i, name in enumerate(("out", "dq", "dk", "dv")):
        e = {impl: errs[i] for impl, errs in errors.items()}
        good = all(e[c] < 2e-2 and e[c] <= 2 * max(e["xla"], 1e-3)
                   for c in ("cudnn", "cudnn_lengths"))
        ok &= good
        print(f"attention bf16 {name}: rel err vs fp32  xla {e['xla']:.2e}  einsum "
              f"{e['einsum']:.2e}  cudnn mask {e['cudnn']:.2e}  cudnn lengths "
              f"{e['cudnn_lengths']:.2e}  {'ok' if good else 'FAIL'}")
    return ok


def model_check(seed: int) -> bool:
    cfg = config_lib.model_of_size("base", num_layers=2, dtype="bfloat16", dropout_rate=0.0,
                                   attention_dropout_rate=0.0)
    r = np.random.default_rng(seed)
    b, s = len(LENGTHS), 512
    keep = (np.arange(s)[None] < np.asarray(LENGTHS)[:, None]).astype(np.int32)
    inputs = dict(input_ids=jnp.asarray(r.integers(1000, cfg.vocab_size, (b, s)) * keep),
                  token_type_ids=jnp.zeros((b, s), jnp.int32), attention_mask=jnp.asarray(keep),
                  masked_lm_positions=jnp.asarray(np.sort(r.choice(np.arange(1, 120), (b, 20)))))
    # Only real positions count: padded rows' states differ by design between the paths (the
    # mask path lets a padded query attend to itself; cuDNN's lengths skip it).
    real = jnp.asarray(np.take_along_axis(keep, np.asarray(inputs["masked_lm_positions"]), 1))
    params = None
    results = {}
    for impl in ("xla", "einsum", "cudnn"):
        cfg.attention_impl = impl
        model = model_lib.BertForPreTraining(cfg)
        if params is None:
            params = model_lib.unbox(jax.jit(lambda k: model.init(k, **inputs))(
                jax.random.key(seed))["params"])

        def loss(p, model=model):
            out = model.apply({"params": p}, **inputs)
            logits = jnp.where(real[..., None], out["mlm_logits"], 0.0)
            return jnp.mean(logits ** 2), logits

        (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        results[impl] = (np.asarray(logits), np.concatenate(
            [np.ravel(np.asarray(g, np.float32)) for g in jax.tree.leaves(grads)]))
    ok = True
    for i, name in enumerate(("mlm logits", "loss gradient")):
        d_e = rel(results["einsum"][i], results["xla"][i])
        d_c = rel(results["cudnn"][i], results["xla"][i])
        good = d_c < 2e-2
        ok &= good
        print(f"2-layer BERT-base bf16 {name}: rel diff vs xla  einsum {d_e:.2e}  cudnn "
              f"{d_c:.2e}  {'ok' if good else 'FAIL'}")
    return ok


def main() -> int:
    print("devices:", jax.devices())
    seed = int.from_bytes(os.urandom(4), "little")
    print("seed:", seed)
    ok = attention_check(seed) & model_check(seed)
    print("gpu_check:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
