"""train_step: gradient accumulation is exact, non-finite updates are skipped or reported."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bertjax import config as config_lib
from bertjax import optim, steps
from bertjax.tasks import base

B, S, P, V = 8, 16, 3, 61


def _setup(accum, skip=False, lr=1e-2):
    config = config_lib.pretraining()
    config.model = config_lib.model(vocab_size=V, hidden_size=30, num_heads=3, intermediate_size=37,
                                    num_layers=2, max_position_embeddings=S, dropout_rate=0.0,
                                    attention_dropout_rate=0.0)
    config.data.max_predictions_per_seq = P
    config.optimizer = config_lib.optimizer(learning_rate=lr, warmup_steps=0, schedule="constant",
                                            grad_accum_steps=accum)
    task = base.get_task("pretraining")(config)
    model = task.build_model(config.model)
    tx = optim.make_optimizer(config.optimizer, 10)
    step = jax.jit(functools.partial(steps.train_step, task=task, model=model, tx=tx,
                                     grad_accum_steps=accum,
                                     skip_nonfinite=skip))
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(0, V, (B, S)).astype(np.int32),
             "token_type_ids": np.zeros((B, S), np.int32),
             "attention_mask": (np.arange(S)[None] < rng.integers(8, S + 1, (B, 1))).astype(np.int32),
             "masked_lm_positions": rng.integers(1, 8, (B, P)).astype(np.int32),
             "masked_lm_ids": rng.integers(0, V, (B, P)).astype(np.int32),
             # Varying masked counts per row: per-micro-batch averaging would be wrong.
             "masked_lm_weights": (rng.random((B, P)) < 0.6).astype(np.float32),
             "next_sentence_labels": rng.integers(0, 2, (B,)).astype(np.int32)}
    state = steps.init_state(jax.random.key(0), batch, task=task, model=model, tx=tx)
    return step, state, batch


def test_grad_accumulation_equals_full_batch():
    step1, state1, batch = _setup(1)
    step4, state4, _ = _setup(4)
    new1, m1 = step1(state1, batch, jax.random.key(1))
    new4, m4 = step4(state4, batch, jax.random.key(1))
    s1, s4 = steps.finalize(m1), steps.finalize(m4)
    assert s4["loss"] == pytest.approx(s1["loss"], rel=1e-5)
    assert s4["mlm_loss"] == pytest.approx(s1["mlm_loss"], rel=1e-5)
    assert s4["grad_norm"] == pytest.approx(s1["grad_norm"], rel=1e-4)
    for a, b in zip(jax.tree.leaves(new1.params), jax.tree.leaves(new4.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert int(new4.step) == 1


@pytest.mark.parametrize("skip", [True, False])
def test_nonfinite_update(skip):
    step, state, batch = _setup(1, skip=skip)
    weights = np.where(batch["masked_lm_weights"] > 0, np.inf, 0.0).astype(np.float32)
    batch = dict(batch, masked_lm_weights=weights)
    new, metrics = step(state, batch, jax.random.key(1))
    assert int(metrics["nonfinite_step"]) == 1  # names the step (the first update)
    finite = all(np.isfinite(x).all() for x in jax.tree.leaves(new.params))
    assert finite == skip
    if skip:
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
            np.testing.assert_array_equal(a, b)


def test_cross_entropy_and_hits_match_optax_and_argmax():
    import optax
    from bertjax.tasks import base
    r = np.random.default_rng(0)
    logits = jnp.asarray(r.normal(size=(4, 6, 50)) * 5, jnp.float32)
    labels = jnp.asarray(r.integers(0, 50, (4, 6)), jnp.int32)
    labels = labels.at[0].set(jnp.argmax(logits[0], -1))  # some hits for sure
    ce, hits = base.cross_entropy_and_hits(logits, labels)
    np.testing.assert_allclose(
        ce, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(hits, (jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    assert float(hits[0].min()) == 1.0
