"""The config schema: every field a run can set, with its default and a one-line meaning.

Config files in `configs/` start from `pretraining()` (or a task's own base) and override a few
fields. Library functions take only the sub-config they need (`config.model`, ...).
"""

from __future__ import annotations

import ml_collections


def model(**overrides) -> ml_collections.ConfigDict:
    """BERT-base by default (Devlin et al. 2018, table 1)."""
    c = ml_collections.ConfigDict()
    c.vocab_size = 30522  # WordPiece vocabulary size (uncased English BERT).
    c.hidden_size = 768  # D: width of every residual-stream vector.
    c.num_layers = 12  # L: number of Transformer layers.
    c.num_heads = 12  # A: attention heads; must divide hidden_size.
    c.intermediate_size = 3072  # F: feed-forward width (4 * D in BERT).
    c.max_position_embeddings = 512  # Longest sequence the position table covers.
    c.type_vocab_size = 2  # Token-type (segment A/B) vocabulary.
    c.dropout_rate = 0.1  # Dropout on embeddings and on each sub-layer's output.
    c.attention_dropout_rate = 0.1  # Dropout on attention probabilities.
    c.layer_norm_eps = 1e-12  # LayerNorm epsilon, as google-research/bert.
    c.initializer_range = 0.02  # Stddev of the truncated-normal weight init.
    c.hidden_act = "gelu"  # gelu (exact erf) | gelu_tanh (google-research/bert's) | relu.
    c.pre_layer_norm = False  # False: post-LN (BERT); True: pre-LN with a final LayerNorm.
    c.position_embedding = "learned"  # learned (BERT) | sinusoidal (Vaswani et al. 2017).
    c.dtype = "float32"  # Compute dtype: float32 | bfloat16 | float16; params stay float32.
    c.remat_policy = "none"  # Rematerialise each layer: none | full | dots | dots_all.
    c.scan_layers = False  # nn.scan over layers: compile time flat in num_layers.
    c.attention_impl = "auto"  # auto | xla | cudnn (jax.nn.dot_product_attention) | einsum.
    c.update(overrides)
    return c


# The BERT miniatures (Turc et al. 2019) and the two sizes of the BERT paper.
SIZES = {
    "tiny": dict(num_layers=2, hidden_size=128, num_heads=2),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4),
    "small": dict(num_layers=4, hidden_size=512, num_heads=8),
    "medium": dict(num_layers=8, hidden_size=512, num_heads=8),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12),
    "large": dict(num_layers=24, hidden_size=1024, num_heads=16),
}


def model_of_size(size: str, **overrides) -> ml_collections.ConfigDict:
    dims = dict(SIZES[size])
    dims["intermediate_size"] = 4 * dims["hidden_size"]
    dims.update(overrides)
    return model(**dims)
