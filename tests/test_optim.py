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
