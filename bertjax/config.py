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
    # auto | xla | cudnn (jax.nn.dot_product_attention) | einsum. cudnn takes the padding as
    # sequence lengths: masks must be right-padded (bertjax's pipelines' are), else NaN outputs
    # (and a NaN loss for the batch).
    c.attention_impl = "auto"
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


def optimizer(**overrides) -> ml_collections.ConfigDict:
    """AdamW as google-research/bert's optimization.py has it (see bertjax/optim.py)."""
    c = ml_collections.ConfigDict()
    c.name = "adamw"  # adamw (decoupled weight decay, as BERT's AdamWeightDecay) | lamb.
    c.learning_rate = 1e-4  # Peak rate: warmup's end point (polynomial decays it from step 0).
    c.schedule = "polynomial"  # BERT's lr*(1-t/T) from t=0 | linear (peak at warmup to 0) | cosine | constant | rsqrt.
    c.warmup_steps = 10000  # Linear warmup from 0 over this many updates.
    c.b1 = 0.9  # Adam beta1.
    c.b2 = 0.999  # Adam beta2.
    c.eps = 1e-6  # Adam epsilon (BERT's 1e-6, not 1e-8).
    c.bias_correction = False  # BERT's AdamWeightDecay has none; True: textbook Adam / torch AdamW.
    c.weight_decay = 0.01  # Decoupled weight decay; never on LayerNorm params or biases.
    c.grad_clip_norm = 1.0  # Clip the global gradient norm to this; 0 disables clipping.
    c.grad_accum_steps = 1  # Micro-batches per update (lax.scan inside the step): one step = one update.
    c.warmup_proportion = 0.0  # > 0: warmup = this fraction of num_train_steps (overrides warmup_steps).
    c.layerwise_lr_decay = 1.0  # d in (0, 1]: layer i of L learns at lr * d^(L-i), embeddings d^(L+1).
    c.freeze_embeddings = False  # True: the embedding parameters are never updated.
    c.freeze_layers = 0  # The lowest N encoder layers are never updated (0 = none).
    c.update(overrides)
    return c


# Logical parameter/activation axis -> mesh axes (t5x-style; see bertjax/sharding.py).
LOGICAL_AXIS_RULES = (
    ("batch", ("data", "fsdp")),  # Examples split over data-parallel and FSDP devices.
    ("embed", "fsdp"),  # Hidden dim of weights: ZeRO-3-style parameter sharding.
    ("embed_out", "tensor"),  # Output dim of the [D, D] pooler / MLM transform.
    ("mlp", "tensor"),  # Feed-forward width: Megatron-style tensor parallelism.
    ("heads", "tensor"),  # Attention heads: tensor parallelism.
    ("vocab", "tensor"),  # Vocabulary rows of the (tied) word embeddings.
    ("kv", None),  # Per-head dim: replicated.
    ("layers", None),  # Stacked-layer axis under scan_layers: replicated.
    ("length", None),  # Sequence axis of activations: replicated.
    ("act_embed", None),  # Hidden dim of activations: whole on each device (weights use "embed").
)


def mesh(**overrides) -> ml_collections.ConfigDict:
    """Device mesh sizes; -1 on one axis takes the remaining devices. Default: pure data parallel."""
    c = ml_collections.ConfigDict()
    c.data = -1  # Data-parallel axis: batch split, parameters replicated.
    c.fsdp = 1  # Fully-sharded data parallel: batch and parameters (embed dim) split.
    c.tensor = 1  # Tensor parallel: mlp / heads / vocab dims split.
    c.logical_axis_rules = LOGICAL_AXIS_RULES  # The rule table above; override with care.
    c.update(overrides)
    return c


def pretraining(size: str = "tiny") -> ml_collections.ConfigDict:
    """A full pretraining run config (MLM + NSP); configs/bert_*.py start from this."""
    c = ml_collections.ConfigDict()
    c.task = "pretraining"  # A name registered in bertjax/tasks (bertjax.tasks.base.get_task).
    c.seed = 0  # Seeds parameter init, dropout and the data pipeline.
    c.batch_size = 256  # Global batch (all hosts, all micro-batches) per update.
    c.num_train_steps = 1_000_000  # Optimizer updates; the decaying schedules reach 0 here.
    c.log_every_steps = 100  # Fetch metrics to the host, print and write metrics.jsonl.
    c.eval_every_steps = 10_000  # Held-out evaluation period (and always at the end); 0 = only at the end.
    c.num_eval_batches = -1  # Evaluate on at most this many eval batches; -1 = all, 0 = no eval.
    c.checkpoint_every_steps = 10_000  # Orbax checkpoint period (and always at the end).
    c.max_to_keep = 3  # Checkpoints kept in W/checkpoints (older ones are deleted).
    c.init_from = ""  # A bertjax workdir / model dir or an HF / Google BERT dir to start from.
    c.init_from_use = "auto"  # Of a workdir init_from: auto (W/best/ if kept) | best | latest.
    c.skip_nonfinite = False  # True: skip updates with NaN/Inf; False: stop the run, naming the step.
    c.preemption_check_every_steps = 10  # How often hosts agree on a SIGTERM (a tiny all-gather).
    c.progress_bar = True  # A tqdm bar on the console (step, loss, tokens/s, ETA).
    c.model = model_of_size(size)  # The encoder (bertjax.config.model); heads come from the task.
    c.data = data()  # Data pipeline (bertjax/data/pipeline.py).
    c.optimizer = optimizer()  # bertjax.optim.
    c.mesh = mesh()  # bertjax.sharding.
    return c


def data(**overrides) -> ml_collections.ConfigDict:
    """Pretraining data: corpus -> tokenizer -> examples (google-research/bert semantics)."""
    c = ml_collections.ConfigDict()
    c.corpus = "builtin"  # builtin | a glob of text files | tfds:NAME[:VERSION]:FEATURE[:SPLIT].
    c.split_lines = True  # Split corpus lines into sentences; False: a line is one sentence (google-research/bert).
    c.tokenizer = ""  # vocab.txt / tokenizer.json / dir; "" trains a WordPiece vocab on the corpus.
    c.lowercase = True  # Lowercase + strip accents (uncased BERT); used when training a vocab.
    c.vocab_size = 30522  # Size of the vocabulary trained when tokenizer is "".
    c.cache_dir = ""  # Where prepared shards live; "" means WORKDIR/data.
    c.max_seq_length = 128  # S: tokens per example, [CLS] and [SEP]s included.
    c.max_predictions_per_seq = 20  # P: most masked positions per example.
    c.masked_lm_prob = 0.15  # Fraction of tokens masked (before the P cap).
    c.short_seq_prob = 0.1  # Probability of a shorter random target length.
    c.next_sentence = True  # NSP pairs (A, B); False: MLM only, one document per example.
    c.dynamic_masking = True  # True: a fresh mask each epoch (RoBERTa); False: fixed per example.
    c.dupe_factor = 1  # Copies of the corpus made at preparation, each with its own segmentation.
    c.whole_word_masking = False  # Mask all WordPiece pieces of a word together.
    c.packing = False  # Pack short examples into one row (MLM only; adds segment/position ids).
    c.eval_fraction = 0.01  # Fraction of documents held out for eval (by a hash of the doc index).
    c.num_eval_examples = 2048  # Most held-out examples eval_batches() uses.
    c.seed = 12345  # Seed of example creation (segmentation, NSP pairs) at preparation.
    c.docs_per_shard = 20000  # Documents per prepared shard; NSP random documents come from the same shard.
    c.max_line_bytes = 1_000_000  # Longer corpus lines are skipped and counted.
    c.worker_count = 0  # Grain worker processes for loading; 0 = in the main process.
    c.prefetch_batches = 2  # Batches prefetched by a background thread (0 = none).
    c.update(overrides)
    return c


def bert_recipe(size: str, variant: str | None = None) -> ml_collections.ConfigDict:
    """BERT's pretraining recipe (Devlin et al. 2018, appendix A.2) for a size of SIZES.

    Variants: None (phase 1: sequence 128), "phase2" (sequence 512, init_from phase 1),
    "lamb" (You et al. 2019: LAMB at batch 4096). configs/bert_<size>.py call this.
    """
    c = pretraining(size)  # the size's L/H/A with F = 4H
    c.model.vocab_size = 30522  # uncased English WordPiece (or a vocab trained by the pipeline)
    c.model.dtype = "bfloat16"  # bf16 compute, fp32 master weights
    c.data.vocab_size = 30522  # when the pipeline trains the vocabulary
    c.data.max_seq_length = 128  # phase 1: short sequences
    c.data.max_predictions_per_seq = 20  # 15% of 128
    c.batch_size = 256  # BERT's batch
    c.num_train_steps = 900_000  # phase 1 of 1M steps
    c.log_every_steps = 100  # metrics.jsonl / TensorBoard cadence
    c.eval_every_steps = 10_000  # held-out MLM/NSP evaluation
    c.checkpoint_every_steps = 5_000  # ~ every few minutes on a pod slice
    c.optimizer.learning_rate = 1e-4  # BERT's peak rate
    c.optimizer.warmup_steps = 10_000  # BERT's warmup
    c.mesh.data = -1  # pure data parallel across all devices
    if variant == "phase2":
        c.data.max_seq_length = 512  # phase 2: full-length sequences
        c.data.max_predictions_per_seq = 80  # 15% of 512
        c.num_train_steps = 100_000  # the last 10% of BERT's steps
        c.optimizer.warmup_steps = 1_000  # short re-warmup
    elif variant == "lamb":
        c.optimizer.name = "lamb"  # You et al. 2019: large-batch BERT
        c.optimizer.bias_correction = True  # LAMB as its paper has it (Algorithm 2)
        c.batch_size = 4096  # LAMB's large batch
        c.num_train_steps = 60_000  # fewer, larger steps
        c.optimizer.learning_rate = 2e-3  # LAMB's peak rate at 4k batch
        c.optimizer.warmup_steps = 2_000  # LAMB's warmup
    elif variant:
        raise ValueError(f"configs/bert_{size}.py has no variant {variant!r} (have: phase2, lamb)")
    return c
