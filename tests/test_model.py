"""Unit tests of bertjax.model: layouts, masks, attention paths, options. (HF parity: test_convert.py.)"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import config as config_lib
from bertjax import model as M

# Small, distinct dimensions so that a transposed or mis-reshaped weight cannot hide.
DIMS = dict(vocab_size=97, hidden_size=30, num_heads=3, intermediate_size=37, num_layers=3,
            max_position_embeddings=23, dropout_rate=0.1, attention_dropout_rate=0.1)


def _cfg(**kw):
    return config_lib.model(**{**DIMS, **kw})


def _batch(rng=0, b=3, s=13):
    r = np.random.default_rng(rng)
    ids = r.integers(5, DIMS["vocab_size"], (b, s)).astype(np.int32)
    types = (np.arange(s)[None] >= s // 2).astype(np.int32).repeat(b, 0)
    lengths = np.array([s, s - 4, 5][:b])
    mask = (np.arange(s)[None] < lengths[:, None]).astype(np.int32)
    return jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask)


def _init(cfg, positions=None):
    ids, types, mask = _batch()
    m = M.BertForPreTraining(cfg)
    params = m.init(jax.random.key(0), ids, types, mask, positions)["params"]
    return m, M.unbox(params)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


@pytest.mark.parametrize("field,value,needle", [
    ("num_heads", 7, "hidden_size=30 is not divisible by config.model.num_heads=7"),
    ("num_layers", 0, "config.model.num_layers"),
    ("dropout_rate", 1.5, "config.model.dropout_rate"),
    ("hidden_act", "swish", "config.model.hidden_act"),
    ("dtype", "float8", "config.model.dtype"),
    ("position_embedding", "rotary", "config.model.position_embedding"),
])
def test_validate_config_names_the_field(field, value, needle):
    with pytest.raises(M.ConfigError, match=needle.replace(".", r"\.")):
        M.validate_config(_cfg(**{field: value}))


def test_every_parameter_has_logical_axes():
    ids, types, mask = _batch()
    boxed = M.BertForPreTraining(_cfg()).init(jax.random.key(0), ids, types, mask)["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    for leaf in leaves:
        assert len(leaf.names) == leaf.value.ndim
    emb = boxed["bert"]["embeddings"]["word_embeddings"]["embedding"]
    assert emb.names == ("vocab", "embed")
    assert boxed["bert"]["encoder"]["layer_0"]["attention"]["qkv"]["kernel"].names == (
        "embed", None, "heads", "kv")
    assert boxed["bert"]["encoder"]["layer_1"]["intermediate"]["kernel"].names == ("embed", "mlp")


def test_parameter_shapes_follow_the_config():
    _, p = _init(_cfg())
    layer = p["bert"]["encoder"]["layer_2"]
    assert layer["attention"]["qkv"]["kernel"].shape == (30, 3, 3, 10)
    assert layer["attention"]["out"]["kernel"].shape == (3, 10, 30)
    assert layer["intermediate"]["kernel"].shape == (30, 37)
    assert p["mlm"]["bias"].shape == (97,)
    assert p["nsp"]["kernel"].shape == (30, 2)
    # BERT parameter count formula, checked on these dims.
    d, f, v, pos, L = 30, 37, 97, 23, 3
    per_layer = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
    embeddings = (v + pos + 2) * d + 2 * d
    heads = d * d + d + 2 * d + v + 2 * d + 2 + d * d + d  # mlm transform+LN+bias, nsp, pooler
    assert M.count_params(p) == embeddings + L * per_layer + heads


def test_scan_layout_gives_the_same_outputs_and_grads():
    ids, types, mask = _batch()
    pos = jnp.asarray([[1, 2, 3], [0, 4, 8], [0, 1, 2]], jnp.int32)
    cfg = _cfg()
    m, p = _init(cfg, pos)
    cfg_scan = _cfg(scan_layers=True)
    m_scan = M.BertForPreTraining(cfg_scan)
    p_scan = M.layout_params(p, cfg_scan)
    assert p_scan["bert"]["encoder"]["layers"]["layer"]["intermediate"]["kernel"].shape == (3, 30, 37)
    out = m.apply({"params": p}, ids, types, mask, pos, output_hidden_states=True)
    out_scan = m_scan.apply({"params": p_scan}, ids, types, mask, pos, output_hidden_states=True)
    for key in ("mlm_logits", "nsp_logits", "pooled_output", "sequence_output"):
        assert _rel(out_scan[key], out[key]) < 1e-6, key
    for a, b in zip(out_scan["hidden_states"], out["hidden_states"]):
        assert _rel(a, b) < 1e-6
    # And back: the canonical layout round-trips exactly.
    back = M.canonical_params(p_scan)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), back, p)


def test_remat_changes_nothing_numerically():
    """Both policies in one test, 2 layers, jitted grads: one plain compile shared by both."""
    ids, types, mask = _batch()
    pos = jnp.zeros((3, 2), jnp.int32)
    m, p = _init(_cfg(num_layers=2), pos)

    def grads(module):
        def loss(params):
            out = module.apply({"params": params}, ids, types, mask, pos, deterministic=False,
                               rngs={"dropout": jax.random.key(5)})
            return out["mlm_logits"].sum() + out["nsp_logits"].sum()
        return jax.jit(jax.grad(loss))(p)

    g = grads(m)
    for policy in ("full", "dots"):
        g_remat = grads(M.BertForPreTraining(_cfg(num_layers=2, remat_policy=policy)))
        # Recomputation may fuse and so round differently: a few float32 ulps of each gradient's
        # scale (a wrong remat is off by the values themselves).
        jax.tree.map(lambda a, b: np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=4 * np.finfo(np.float32).eps * float(np.abs(b).max()),
            err_msg=policy), g_remat, g)


def test_padding_does_not_change_real_positions():
    ids, types, mask = _batch(b=1, s=9)
    m, p = _init(_cfg())
    short = m.apply({"params": p}, ids, types, mask)
    pad = 6
    ids2 = jnp.pad(ids, ((0, 0), (0, pad)), constant_values=0)
    types2 = jnp.pad(types, ((0, 0), (0, pad)))
    mask2 = jnp.pad(mask, ((0, 0), (0, pad)))
    long = m.apply({"params": p}, ids2, types2, mask2)
    assert _rel(long["sequence_output"][:, :9], short["sequence_output"]) < 1e-6
    assert _rel(long["pooled_output"], short["pooled_output"]) < 1e-6
    assert np.all(np.isfinite(long["sequence_output"]))


def test_packed_sequences_equal_separate_runs():
    cfg = _cfg()
    m, p = _init(cfg)
    r = np.random.default_rng(3)
    a, b = r.integers(5, 97, 7), r.integers(5, 97, 5)
    ids = np.concatenate([a, b, [0, 0]])[None].astype(np.int32)
    seg = np.array([[1] * 7 + [2] * 5 + [0, 0]], np.int32)
    pos = np.array([list(range(7)) + list(range(5)) + [0, 0]], np.int32)
    packed = m.apply({"params": p}, ids, None, (seg > 0).astype(np.int32), segment_ids=seg,
                     position_ids=pos)["sequence_output"]
    alone_a = m.apply({"params": p}, a[None].astype(np.int32))["sequence_output"]
    alone_b = m.apply({"params": p}, b[None].astype(np.int32))["sequence_output"]
    assert _rel(packed[:, :7], alone_a) < 1e-5
    assert _rel(packed[:, 7:12], alone_b) < 1e-5


def test_mlm_at_positions_equals_all_positions_gathered():
    ids, types, mask = _batch()
    pos = jnp.asarray([[0, 3, 12], [1, 1, 5], [4, 2, 0]], jnp.int32)
    m, p = _init(_cfg(), pos)
    at = m.apply({"params": p}, ids, types, mask, pos)["mlm_logits"]
    full = m.apply({"params": p}, ids, types, mask, None)["mlm_logits"]
    assert full.shape == (3, 13, 97) and at.shape == (3, 3, 97)
    assert _rel(at, np.take_along_axis(np.asarray(full), np.asarray(pos)[..., None], 1)) < 1e-6


def test_attention_paths_agree():
    ids, types, mask = _batch()
    m, p = _init(_cfg())
    ref = m.apply({"params": p}, ids, types, mask)["sequence_output"]
    for impl in ("xla", "einsum"):
        out = M.BertForPreTraining(_cfg(attention_impl=impl)).apply(
            {"params": p}, ids, types, mask)["sequence_output"]
        assert _rel(out, ref) < 1e-5, impl


def _cudnn_on_cpu(monkeypatch):
    """Runs attention_impl="cudnn" on the CPU: XLA's kernel takes the same lengths arguments."""
    real = jax.nn.dot_product_attention

    def xla_instead(*args, implementation=None, **kw):
        if implementation == "cudnn":
            assert kw["mask"] is None and kw["query_seq_lengths"] is not None
            implementation = "xla"
        return real(*args, implementation=implementation, **kw)
    monkeypatch.setattr(jax.nn, "dot_product_attention", xla_instead)


def test_cudnn_path_takes_lengths_and_matches_the_mask(monkeypatch):
    _cudnn_on_cpu(monkeypatch)
    ids, types, mask = _batch()
    mask = mask.at[2].set(0)  # an all-padding row, as in a batch's filler
    m, p = _init(_cfg())
    ref = m.apply({"params": p}, ids, types, mask)
    for deterministic in (True, False):  # False: attention dropout takes the einsum path
        out = M.BertForPreTraining(_cfg(attention_impl="cudnn")).apply(
            {"params": p}, ids, types, mask, deterministic=deterministic,
            rngs={"dropout": jax.random.key(1)})
        real = np.asarray(mask, bool)[..., None]
        assert np.all(np.isfinite(out["sequence_output"]))
        if deterministic:
            assert _rel(np.where(real, out["sequence_output"], 0),
                        np.where(real, ref["sequence_output"], 0)) < 1e-5
            assert _rel(out["pooled_output"][:2], ref["pooled_output"][:2]) < 1e-5
    lengths, right_padded = M.attention_padding(_cfg(attention_impl="cudnn"), mask)
    np.testing.assert_array_equal(lengths, [13, 9, 1])
    assert right_padded.tolist() == [True, True, True]


def test_cudnn_path_poisons_a_mask_that_is_not_right_padded(monkeypatch):
    _cudnn_on_cpu(monkeypatch)
    ids, types, mask = _batch()
    left = mask.at[1].set(mask[1][::-1])  # left-padded: lengths cannot describe it
    m = M.BertForPreTraining(_cfg(attention_impl="cudnn"))
    _, p = _init(_cfg())
    out = np.asarray(m.apply({"params": p}, ids, types, left)["sequence_output"])
    assert np.all(np.isnan(out[1])) and np.all(np.isfinite(out[[0, 2]]))


def test_dropout_only_in_training():
    ids, types, mask = _batch()
    m, p = _init(_cfg())
    run = lambda det, seed: m.apply({"params": p}, ids, types, mask, deterministic=det,
                                    rngs={"dropout": jax.random.key(seed)})["pooled_output"]
    np.testing.assert_array_equal(run(True, 0), run(True, 1))
    np.testing.assert_array_equal(run(False, 7), run(False, 7))
    assert not np.allclose(run(False, 0), run(False, 1))


def test_bfloat16_compute_keeps_fp32_params_and_is_close():
    ids, types, mask = _batch()
    m, p = _init(_cfg(dropout_rate=0.0, attention_dropout_rate=0.0))
    bf = M.BertForPreTraining(_cfg(dtype="bfloat16"))
    p_bf = M.unbox(bf.init(jax.random.key(0), ids, types, mask)["params"])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p_bf))
    out = bf.apply({"params": p}, ids, types, mask)
    ref = m.apply({"params": p}, ids, types, mask)
    assert out["sequence_output"].dtype == jnp.bfloat16
    assert out["mlm_logits"].dtype == jnp.float32
    assert _rel(out["mlm_logits"], ref["mlm_logits"]) < 5e-2


def test_sinusoidal_positions_and_pre_layer_norm():
    table = M.sinusoidal_positions(50, 30)
    np.testing.assert_allclose(table[0, 0::2], 0.0)
    np.testing.assert_allclose(table[0, 1::2], 1.0)
    np.testing.assert_allclose(table[7, 4], np.sin(7 / 10000 ** (4 / 30)), rtol=1e-6)
    np.testing.assert_allclose(table[7, 5], np.cos(7 / 10000 ** (4 / 30)), rtol=1e-6)
    cfg = _cfg(position_embedding="sinusoidal", pre_layer_norm=True)
    m, p = _init(cfg)
    assert "position_embeddings" not in p["bert"]["embeddings"]
    assert "final_norm" in p["bert"]["encoder"]
    ids, types, mask = _batch()
    out = m.apply({"params": p}, ids, types, mask, output_hidden_states=True)
    # Pre-LN: the last hidden state is the final LayerNorm's output (unit variance per token).
    last = np.asarray(out["hidden_states"][-1])
    np.testing.assert_allclose(last.std(-1), 1.0, rtol=1e-3)
    np.testing.assert_array_equal(last, out["sequence_output"])


def test_sizes_table_matches_the_papers():
    base = config_lib.model_of_size("base")
    assert (base.num_layers, base.hidden_size, base.num_heads, base.intermediate_size) == (
        12, 768, 12, 3072)
    ids = jnp.zeros((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda: M.BertForPreTraining(base).init(jax.random.key(0), ids))
    n = M.count_params(shapes["params"])
    assert 109e6 < n < 111e6  # BERT-base with both pretraining heads: ~110M.


def test_gelu_is_pytorchs_exact_gelu_with_its_gradient():
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-10, 10, 4001), np.random.default_rng(0).normal(0, 3, 4000)])
    ref = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = torch.nn.functional.gelu(ref)  # PyTorch's default: the exact (erf) GELU
    out.sum().backward()
    xs = jnp.asarray(x, jnp.float32)
    y, grad = jax.vmap(jax.value_and_grad(M.gelu))(xs)
    np.testing.assert_allclose(y, out.detach().numpy(), atol=2e-6, rtol=1e-6)
    np.testing.assert_allclose(grad, ref.grad.numpy(), atol=2e-6, rtol=1e-6)
    assert M.ACTIVATIONS["gelu"] is M.gelu
    # bf16 in, bf16 out, within bf16 rounding of the float32 result.
    yb = M.gelu(xs.astype(jnp.bfloat16))
    assert yb.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(yb, np.float32), y, atol=3e-2, rtol=1e-2)
