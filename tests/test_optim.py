"""Schedules, the weight-decay mask and the AdamW / LAMB chains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bertjax import config as config_lib
from bertjax import optim
from bertjax.model import ConfigError


@pytest.mark.parametrize("schedule,expected", [
    # google-research/bert: warmup t / W, then 1 - t / T from step 0 (a step down at W).
    ("polynomial", {0: 0.0, 5: 0.5, 9: 0.9, 10: 0.9, 55: 0.45, 100: 0.0, 120: 0.0}),
    ("linear", {0: 0.0, 5: 0.5, 10: 1.0, 55: 0.5, 100: 0.0}),
    ("constant", {0: 0.0, 10: 1.0, 100: 1.0}),
    ("rsqrt", {5: 0.5, 10: 1.0, 40: 0.5}),
    ("cosine", {10: 1.0, 55: 0.5, 100: 0.0}),
])
def test_schedules(schedule, expected):
    cfg = config_lib.optimizer(learning_rate=1.0, warmup_steps=10, schedule=schedule)
    lr = optim.learning_rate_schedule(cfg, 100)
    for step, value in expected.items():
        assert float(lr(step)) == pytest.approx(value, abs=1e-6), step


def test_decay_mask_skips_biases_and_layer_norms():
    params = {"bert": {"embeddings": {"word_embeddings": {"embedding": 1},
                                      "layer_norm": {"scale": 1, "bias": 1}},
                       "pooler": {"kernel": 1, "bias": 1}},
              "mlm": {"bias": 1}}
    mask = optim.decay_mask(params)
    assert mask["bert"]["embeddings"]["word_embeddings"]["embedding"] is True
    assert mask["bert"]["pooler"]["kernel"] is True
    assert not mask["bert"]["embeddings"]["layer_norm"]["scale"]
    assert not mask["bert"]["pooler"]["bias"] and not mask["mlm"]["bias"]


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_zero_gradients_decay_only_weights(name):
    cfg = config_lib.optimizer(name=name, learning_rate=0.1, warmup_steps=0, schedule="constant",
                               weight_decay=0.5)
    tx = optim.make_optimizer(cfg, 10)
    params = {"dense": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.full((2,), 2.0)}}
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["dense"]["bias"], 2.0)
    if name == "adamw":  # decoupled: p - lr * wd * p
        np.testing.assert_allclose(new["dense"]["kernel"], 2.0 - 0.1 * 0.5 * 2.0, rtol=1e-6)
    else:  # LAMB's trust ratio scales the step to lr * |p|
        assert np.all(new["dense"]["kernel"] < 2.0)


def test_clipping_bounds_the_update_direction():
    cfg = config_lib.optimizer(name="adamw", learning_rate=1.0, warmup_steps=0,
                               schedule="constant", weight_decay=0.0, grad_clip_norm=1.0)
    tx = optim.make_optimizer(cfg, 10)
    params = {"w": jnp.zeros((4,))}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.full((4,), 100.0)}, state, params)
    mu = state[1][0].mu["w"]  # Adam's first moment saw the clipped gradient: norm 1
    np.testing.assert_allclose(np.linalg.norm(mu / 0.1), 1.0, rtol=1e-5)


def test_bad_optimizer_fields_are_named():
    with pytest.raises(ConfigError, match="config.optimizer.name='sgd'"):
        optim.make_optimizer(config_lib.optimizer(name="sgd"), 10)
    with pytest.raises(ConfigError, match="warmup_steps=20 exceeds config.num_train_steps=10"):
        optim.make_optimizer(config_lib.optimizer(warmup_steps=20), 10)


def _bert_adam_weight_decay(params, grads_seq, lr_of, wd=0.01, b1=0.9, b2=0.999, eps=1e-6,
                            clip=1.0):
    """google-research/bert optimization.py's update, written out in numpy (float64): global-norm
    clipping, then m, v without bias correction, decoupled decay on masked leaves, lr(t)."""
    p = {k: np.array(v, np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, grads in enumerate(grads_seq):
        norm = np.sqrt(sum(np.sum(np.square(g)) for g in grads.values()))
        scale = clip / max(norm, clip)  # tf.clip_by_global_norm
        for k in p:
            g = grads[k] * scale
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            update = m[k] / (np.sqrt(v[k]) + eps)
            if k != "bias":  # _do_use_weight_decay: LayerNorm and bias excluded
                update += wd * p[k]
            p[k] = p[k] - lr_of(t) * update
    return p


def test_defaults_are_berts_adam_weight_decay_and_polynomial_schedule():
    cfg = config_lib.optimizer(learning_rate=0.05, warmup_steps=3)
    total = 10
    tx = optim.make_optimizer(cfg, total)
    rng = np.random.default_rng(0)
    params = {"kernel": rng.normal(size=(5, 3)), "bias": rng.normal(size=(3,))}
    grads_seq = [{k: rng.normal(scale=0.7, size=v.shape) for k, v in params.items()}
                 for _ in range(6)]

    def lr_of(t):  # BERT's create_optimizer: warmup overrides polynomial_decay for t < W
        return 0.05 * t / 3 if t < 3 else 0.05 * (1 - t / total)
    expected = _bert_adam_weight_decay(params, grads_seq, lr_of)
    p = _apply(tx, params, grads_seq)
    for k in params:
        np.testing.assert_allclose(p[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
    moved = np.abs(expected["kernel"] - params["kernel"]).max()
    # Bias-corrected Adam would land elsewhere, by much more than the tolerance.
    tx_hf = optim.make_optimizer(config_lib.optimizer(learning_rate=0.05, warmup_steps=3,
                                                      bias_correction=True), total)
    q = _apply(tx_hf, params, grads_seq)
    assert np.abs(np.asarray(q["kernel"]) - expected["kernel"]).max() > 0.1 * moved


def _apply(tx, params, grads_seq):
    """params after tx's updates for each gradient of grads_seq, in float32."""
    p = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    state = tx.init(p)
    for grads in grads_seq:
        updates, state = tx.update({k: jnp.asarray(g, jnp.float32) for k, g in grads.items()},
                                   state, p)
        p = optax.apply_updates(p, updates)
    return p


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_the_state_layout_does_not_depend_on_bias_correction(name):
    """A checkpoint written under one setting restores under the other, and under the chain
    (clipping + optax.adamw / optax.lamb) that runs saved before the setting existed had."""
    params = {"w": jnp.zeros((4,)), "bias": jnp.zeros((2,))}
    layouts = [jax.tree.structure(optim.make_optimizer(
        config_lib.optimizer(name=name, bias_correction=flag, warmup_steps=0), 10).init(params))
        for flag in (False, True)]
    core = getattr(optax, name)(optax.linear_schedule(0.0, 1.0, 5), weight_decay=0.01,
                                mask=optim.decay_mask)
    before = jax.tree.structure(optax.chain(optax.clip_by_global_norm(1.0), core).init(params))
    assert layouts[0] == layouts[1] == before
