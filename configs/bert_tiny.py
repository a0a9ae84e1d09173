"""BERT-Tiny (L2/H128/A2, Turc et al. 2019) pretrained with MLM+NSP on the builtin corpus, on CPU.

This is the README's quick start:

  python -m bertjax.train --config configs/bert_tiny.py --workdir runs/bert_tiny

Expected runtime: 2 min 38 s wall for `bash launch/quickstart.sh` from a fresh clone (virtualenv
  install from a warm pip cache, WordPiece training, data preparation, compilation, 400 steps in
  1 min 31 s at ~20k tokens/s, padded positions included), on a 2-core Intel Xeon @ 2.50GHz with
  no accelerator (2026-11-22).
Expected result (seed 0, 4,692 builtin documents on Python 3.11.7, google-research/bert's
  optimizer; two runs from scratch logged identical metrics at every step): train loss 7.83 (mean
  of steps 1-50) falling to 6.51 (steps 351-400); the final evaluation printed at step 400:
  eval/loss 6.251, eval/mlm_loss 5.69 (perplexity 297), eval/mlm_accuracy 0.117,
  eval/nsp_accuracy 0.75. Preparation warns that 73.8% of the NSP pairs have a random B (the
  builtin corpus is full of one-sentence docstrings), so 0.75 is NSP's majority baseline: a
  tiny model on ~1M words learns the MLM a little and NSP not at all; the point is a working
  pipeline and a falling loss, not a useful model.

Variants (`--config configs/bert_tiny.py:VARIANT`):
  smoke  a few steps at seq 32 with a 512-token vocab: checks a setup end to end in under a minute.

Every field of the schema is documented in bertjax/config.py; the overrides below say why.
"""

from bertjax import config as config_lib


def get_config(arg: str | None = None):
    c = config_lib.pretraining("tiny")  # L2 / H128 / A2, F512
    c.model.vocab_size = 8192  # = data.vocab_size: a WordPiece vocab trained on the corpus
    c.model.max_position_embeddings = 128  # nothing longer than data.max_seq_length is seen
    c.data.corpus = "builtin"  # Python's own docs: ships with every install, no download
    c.data.vocab_size = 8192  # a small vocab suits a ~1M-word corpus
    c.data.max_seq_length = 128  # S
    c.data.max_predictions_per_seq = 20  # P: 15% of 128 tokens
    c.data.num_eval_examples = 256  # At most this many held-out examples per evaluation.
    c.batch_size = 32  # global batch
    c.num_train_steps = 400  # ~1.8 passes over the corpus' ~7k examples
    c.log_every_steps = 50  # one metrics.jsonl line every 50 steps
    c.eval_every_steps = 200  # plus the final evaluation
    c.checkpoint_every_steps = 200  # and at the end
    # Small models take a high peak rate; BERT's optimizer (no bias correction) takes early steps
    # up to ~3x textbook Adam's, so half the 1e-3 that suits bias-corrected Adam here.
    c.optimizer.learning_rate = 5e-4
    c.optimizer.warmup_steps = 40  # 10% of training
    c.optimizer.weight_decay = 0.01  # BERT's
    if arg == "smoke":
        c.model.vocab_size = 512  # tiny vocab: preparation and the MLM head are instant
        c.data.vocab_size = 512  # trained on the corpus
        c.data.max_seq_length = 32  # short sequences
        c.data.max_predictions_per_seq = 5  # 15% of 32
        c.data.num_eval_examples = 64  # two eval batches
        c.num_train_steps = 20  # a few updates
        c.log_every_steps = 5  # four log lines
        c.eval_every_steps = 10  # two evaluations
        c.checkpoint_every_steps = 10  # two checkpoints
        c.optimizer.warmup_steps = 2  # short warmup
    elif arg:
        raise ValueError(f"configs/bert_tiny.py has no variant {arg!r} (have: smoke)")
    return c
