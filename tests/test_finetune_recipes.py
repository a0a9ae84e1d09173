"""Fine-tuning recipes in bertjax.optim: warmup proportion, layer-wise lr decay, frozen parameters."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bertjax import config as config_lib
from bertjax import model as model_lib
from bertjax import optim
from bertjax.model import ConfigError
from configs import glue as glue_config
from configs import squad as squad_config

L = 3


@functools.lru_cache(maxsize=None)
def tiny_params(scan_layers: bool):
    """BertForPreTraining's parameter tree with random numpy values (no model compile needed)."""
    cfg = config_lib.model(vocab_size=41, hidden_size=30, num_heads=3, intermediate_size=37,
                           num_layers=L, max_position_embeddings=13, scan_layers=scan_layers)
    module = model_lib.BertForPreTraining(cfg)
    ids = jnp.ones((2, 7), jnp.int32)
    shapes = jax.eval_shape(lambda k: model_lib.unbox(module.init(k, ids, ids, ids)["params"]),
                            jax.random.key(0))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), shapes)


def opt_cfg(**kw):
    base = dict(name="adamw", learning_rate=1e-2, schedule="constant", warmup_steps=0,
                weight_decay=0.01, grad_clip_norm=1.0)
    base.update(kw)
    return config_lib.optimizer(**base)


def run_updates(params, tx, n=2, seed=1):
    """n updates with random gradients -> final params."""
    rng = np.random.default_rng(seed)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    state = tx.init(params)
    for _ in range(n):
        grads = jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params)
        params, state = step(params, state, grads)
    return jax.device_get(params)


def layer_leaves(params, i):
    """Leaves of encoder layer i, whatever the layout."""
    enc = params["bert"]["encoder"]
    if "layers" in enc:
        return [x[i] for x in jax.tree.leaves(enc["layers"])]
    return jax.tree.leaves(enc[f"layer_{i}"])


def same(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("scan_layers", [False, True])
def test_frozen_embeddings_and_lower_layers_are_bit_identical(scan_layers):
    params = tiny_params(scan_layers)
    cfg = opt_cfg(freeze_embeddings=True, freeze_layers=2)
    new = run_updates(params, optim.make_optimizer(cfg, 10))
    assert same(new["bert"]["embeddings"], params["bert"]["embeddings"])
    for i in (0, 1):
        assert same(layer_leaves(new, i), layer_leaves(params, i)), i
    # The top layer, the pooler and the heads do learn.
    assert not any(np.array_equal(a, b) for a, b in zip(layer_leaves(new, 2),
                                                          layer_leaves(params, 2)))
    assert not same(new["bert"]["pooler"], params["bert"]["pooler"])
    assert not same(new["nsp"], params["nsp"])


@pytest.mark.parametrize("scan_layers", [False, True])
def test_layerwise_lr_decay_scales_each_update(scan_layers):
    """One SGD-like update: BERT's first Adam step (no bias correction) moves every coordinate by
    lr * (1 - b1) / sqrt(1 - b2), no decay or clipping."""
    params = tiny_params(scan_layers)
    decay = 0.5
    lr = 1e-2 * (1 - 0.9) / (1 - 0.999) ** 0.5  # the step size of the first update
    cfg = opt_cfg(learning_rate=1e-2, weight_decay=0.0, grad_clip_norm=0.0,
                  layerwise_lr_decay=decay)
    new = run_updates(params, optim.make_optimizer(cfg, 10), n=1)

    def step_size(a, b):
        return np.median(np.abs(np.asarray(a) - np.asarray(b)))
    for i in range(L):
        got = np.median([step_size(a, b) for a, b in zip(layer_leaves(new, i),
                                                         layer_leaves(params, i))])
        np.testing.assert_allclose(got, lr * decay ** (L - i), rtol=1e-3)
    emb = step_size(new["bert"]["embeddings"]["word_embeddings"]["embedding"],
                    params["bert"]["embeddings"]["word_embeddings"]["embedding"])
    np.testing.assert_allclose(emb, lr * decay ** (L + 1), rtol=1e-3)
    for head in (new["bert"]["pooler"]["kernel"] - params["bert"]["pooler"]["kernel"],
                 new["nsp"]["kernel"] - params["nsp"]["kernel"]):
        np.testing.assert_allclose(np.median(np.abs(head)), lr, rtol=1e-3)


def test_update_scales_tree_and_layouts_agree():
    plain = tiny_params(False)
    scanned = tiny_params(True)
    cfg = opt_cfg(layerwise_lr_decay=0.8, freeze_layers=1)
    a = optim.update_scales(plain, cfg)
    b = optim.update_scales(scanned, cfg)
    assert [float(a["bert"]["encoder"][f"layer_{i}"]["output"]["kernel"]) for i in range(L)] == \
        pytest.approx([0.0, 0.8 ** 2, 0.8])
    assert b["bert"]["encoder"]["layers"]["layer"]["output"]["kernel"].shape == (L, 1, 1)
    np.testing.assert_allclose(b["bert"]["encoder"]["layers"]["layer"]["output"]["kernel"].ravel(),
                               [0.0, 0.8 ** 2, 0.8], rtol=1e-6)
    assert float(a["bert"]["embeddings"]["layer_norm"]["scale"]) == pytest.approx(0.8 ** 4)
    assert float(a["mlm"]["bias"]) == 1.0


def test_warmup_proportion_overrides_warmup_steps():
    cfg = opt_cfg(schedule="linear", warmup_steps=7, warmup_proportion=0.1, learning_rate=1.0)
    assert optim.warmup_steps(cfg, 200) == 20
    lr = optim.learning_rate_schedule(cfg, 200)
    assert float(lr(10)) == pytest.approx(0.5)
    assert float(lr(20)) == pytest.approx(1.0)
    assert optim.warmup_steps(opt_cfg(warmup_steps=7), 200) == 7
    # Rounded down, as google-research/bert does: int(235 * 0.1) = 23, not round()'s 24.
    assert optim.warmup_steps(cfg, 235) == 23


def test_recipe_step_counts_are_the_reference_scripts():
    """run_classifier.py / run_squad.py: int(N / batch * epochs) updates, int(10%) of them warmup."""
    rte = glue_config.get_config("task=rte")
    assert rte.num_train_steps == int(2490 / 32 * 3) == 233
    for version, steps, warmup in (("v1", 5474, 547), ("v2", 8144, 814)):
        c = squad_config.get_config(version)
        assert c.num_train_steps == int(squad_config.TRAIN_QUESTIONS[version] / 32 * 2) == steps
        assert optim.warmup_steps(c.optimizer, c.num_train_steps) == warmup


@pytest.mark.parametrize("field,value,message", [
    ("warmup_proportion", 1.5, "warmup_proportion"),
    ("layerwise_lr_decay", 0.0, "layerwise_lr_decay"),
    ("freeze_layers", -1, "freeze_layers"),
])
def test_bad_recipe_fields_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        optim.make_optimizer(opt_cfg(**{field: value}), 10)


def test_freezing_more_layers_than_the_model_has_is_an_error():
    params = tiny_params(False)
    with pytest.raises(ConfigError, match="freeze_layers=5 exceeds the model's 3 layers"):
        optim.update_scales(params, opt_cfg(freeze_layers=5))


def test_seeds_driver_runs_each_seed_and_reports_the_median(tmp_path, monkeypatch):
    """bertjax.seeds: one workdir and config.seed per seed, the best metric's median in seeds.json
    (train_and_evaluate replaced by a stub: the trainer is tested elsewhere)."""
    import json
    from bertjax import seeds, train
    from configs import classify as classify_config

    calls = []

    def fake_train(cfg, workdir):
        calls.append((cfg.seed, workdir))
        value = {1: 0.5, 2: 0.9, 3: 0.7}[cfg.seed]
        return {"eval": {"eval/matthews": value - 0.1},
                "best": {"step": 4, "metric": "eval/matthews", "value": value}}
    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    cfg = classify_config.get_config("single")
    cfg.eval_metric = "matthews"
    result = seeds.run_seeds(cfg, str(tmp_path), seeds.parse_seeds("1,2,3"))
    assert calls == [(s, str(tmp_path / f"seed_{s}")) for s in (1, 2, 3)]
    assert result["median"] == pytest.approx(0.7)
    saved = json.loads((tmp_path / "seeds.json").read_text())
    assert saved["values"] == {"1": 0.5, "2": 0.9, "3": 0.7} and saved["metric"] == "eval/matthews"
    assert "median 0.7000" in seeds.format_result(result)
    with pytest.raises(ConfigError, match="distinct"):
        seeds.parse_seeds("1,1")
