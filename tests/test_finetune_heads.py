"""Fine-tuning heads: shapes, parameter keys, logical axes, encoder transfer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import config as config_lib
from bertjax import model as model_lib
from bertjax.tasks import heads

CFG = config_lib.model(vocab_size=97, hidden_size=30, num_layers=2, num_heads=3,
                       intermediate_size=37, max_position_embeddings=23)


def _ids(b=2, s=11):
    return jax.random.randint(jax.random.PRNGKey(1), (b, s), 0, 97)


@pytest.mark.parametrize("module, shapes", [
    (heads.BertForSequenceClassification(CFG, num_labels=5), {"logits": (2, 5)}),
    (heads.BertForSequenceClassification(CFG, num_labels=1), {"logits": (2, 1)}),
    (heads.BertForTokenClassification(CFG, num_labels=7), {"logits": (2, 11, 7)}),
    (heads.BertForQuestionAnswering(CFG), {"start_logits": (2, 11), "end_logits": (2, 11)}),
])
def test_head_shapes_keys_and_axes(module, shapes):
    ids = _ids()
    variables = module.init(jax.random.PRNGKey(0), ids)
    params = variables["params"]
    head = "qa_outputs" if isinstance(module, heads.BertForQuestionAnswering) else "classifier"
    assert set(params) == {"bert", head}
    kernel = params[head]["kernel"]
    assert isinstance(kernel, nn.LogicallyPartitioned) and kernel.names == ("embed", None)
    out = module.apply(variables, ids)
    for key, shape in shapes.items():
        assert out[key].shape == shape and out[key].dtype == jnp.float32


def test_classifier_uses_the_pooled_output():
    module = heads.BertForSequenceClassification(CFG, num_labels=3)
    ids = _ids()
    params = model_lib.unbox(module.init(jax.random.PRNGKey(0), ids)["params"])
    out = module.apply({"params": params}, ids)
    pooled = model_lib.BertModel(CFG).apply({"params": params["bert"]}, ids)["pooled_output"]
    want = pooled @ params["classifier"]["kernel"] + params["classifier"]["bias"]
    np.testing.assert_allclose(out["logits"], want, rtol=1e-5, atol=1e-5)


def test_dropout_only_when_training():
    module = heads.BertForSequenceClassification(CFG, num_labels=3, classifier_dropout=0.5)
    ids = _ids()
    variables = module.init(jax.random.PRNGKey(0), ids)
    a = module.apply(variables, ids)["logits"]
    b = module.apply(variables, ids)["logits"]
    c = module.apply(variables, ids, deterministic=False,
                     rngs={"dropout": jax.random.PRNGKey(3)})["logits"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_transfer_encoder_from_pretraining_params():
    ids = _ids()
    pre = model_lib.unbox(model_lib.BertForPreTraining(CFG).init(jax.random.PRNGKey(5), ids)["params"])
    task = heads.BertForTokenClassification(CFG, num_labels=4)
    fresh = heads.init_head_model(task, 11, jax.random.PRNGKey(0))
    merged = heads.transfer_encoder(fresh, pre)
    assert set(merged) == {"bert", "classifier"}
    np.testing.assert_array_equal(
        merged["bert"]["encoder"]["layer_1"]["output"]["kernel"],
        pre["bert"]["encoder"]["layer_1"]["output"]["kernel"])
    np.testing.assert_array_equal(merged["classifier"]["kernel"], fresh["classifier"]["kernel"])
    # Works from the scanned layout too.
    scanned_cfg = config_lib.model(**{**CFG.to_dict(), "scan_layers": True})
    scanned = model_lib.layout_params(pre, scanned_cfg)
    assert "layers" in scanned["bert"]["encoder"]
    merged = heads.transfer_encoder(fresh, scanned)
    np.testing.assert_array_equal(
        merged["bert"]["encoder"]["layer_1"]["output"]["kernel"],
        pre["bert"]["encoder"]["layer_1"]["output"]["kernel"])


def test_transfer_encoder_names_missing_and_mismatched_weights():
    ids = _ids()
    pre = model_lib.unbox(model_lib.BertForPreTraining(CFG).init(jax.random.PRNGKey(5), ids)["params"])
    task = heads.BertForSequenceClassification(CFG, num_labels=2)
    fresh = heads.init_head_model(task, 11, jax.random.PRNGKey(0))
    broken = jax.tree.map(lambda x: x, pre)
    del broken["bert"]["pooler"]
    with pytest.raises(heads.EncoderMismatchError, match="bert/pooler/bias is missing"):
        heads.transfer_encoder(fresh, broken)
    other = config_lib.model(vocab_size=97, hidden_size=30, num_layers=2, num_heads=3,
                             intermediate_size=41, max_position_embeddings=23)
    pre2 = model_lib.unbox(model_lib.BertForPreTraining(other).init(jax.random.PRNGKey(5), ids)["params"])
    with pytest.raises(heads.EncoderMismatchError,
                       match=r"bert/encoder/layer_0/intermediate/bias has shape \(41,\)"):
        heads.transfer_encoder(fresh, pre2)


def _zero_gradient_subtrees(loss, params):
    """The "top" / "top/sub" subtrees of params whose gradient of `loss` is exactly zero."""
    grads = jax.jit(jax.grad(loss))(params)
    zero = lambda tree: all(not np.any(np.asarray(g)) for g in jax.tree.leaves(tree))  # noqa: E731
    out = {top for top in grads if zero(grads[top])}
    out |= {f"{top}/{sub}" for top in grads if top not in out and isinstance(grads[top], dict)
            for sub in grads[top] if zero(grads[top][sub])}
    return sorted(out)


@pytest.mark.parametrize("task_name, module", [
    ("classification", heads.BertForSequenceClassification(CFG, num_labels=3)),
    ("tagging", heads.BertForTokenClassification(CFG, num_labels=4)),
    ("span_qa", heads.BertForQuestionAnswering(CFG)),
])
def test_a_task_declares_exactly_the_params_its_head_never_reads(task_name, module):
    """The trainer records a task's unused subtrees as never trained (the pooler of a tagger
    fine-tuned from an MLM-only model); the declaration must match the gradients."""
    from bertjax.tasks import base
    ids = _ids()
    params = model_lib.unbox(module.init(jax.random.PRNGKey(0), ids)["params"])
    loss = lambda p: sum(jnp.sum(jnp.sin(v)) for v in module.apply({"params": p}, ids).values())
    declared = base.get_task(task_name).unused_param_paths
    assert _zero_gradient_subtrees(loss, params) == sorted(declared)


@pytest.mark.parametrize("next_sentence", [True, False])
def test_pretraining_declares_the_pooler_and_nsp_unused_only_without_nsp(next_sentence):
    from bertjax.tasks import base
    cfg = config_lib.pretraining("tiny")
    cfg.model = CFG
    cfg.data.next_sentence = next_sentence
    task = base.get_task("pretraining")(cfg)
    model = task.build_model(CFG)
    batch = task.dummy_batch(2, 11)
    batch["input_ids"] = np.asarray(_ids())
    batch["masked_lm_positions"][:] = np.arange(batch["masked_lm_positions"].shape[1]) % 11
    batch["masked_lm_weights"][:] = 1.0
    params = model_lib.unbox(task.init_params(model, jax.random.PRNGKey(0), batch))
    loss = lambda p: sum(task.loss_fn(model, p, batch, jax.random.PRNGKey(1), True)[0].values())
    assert _zero_gradient_subtrees(loss, params) == sorted(task.unused_params())
    assert bool(task.unused_params()) is not next_sentence
