"""BERT-Medium (L8/H512/A8) pretrained with MLM+NSP, BERT's recipe (Devlin et al. 2018, appendix A.2).

Command (a TPU pod slice; see launch/tpu_pod.sh):

  python -m bertjax.train --config configs/bert_medium.py --workdir gs://BUCKET/runs/bert_medium \
      --config.data.corpus='tfds:wikipedia/20230601.en:text'

Phase 1 of BERT: 900k steps at sequence 128, then phase 2 (variant "phase2"): 100k steps at 512,
initialised from phase 1 (--config.init_from=gs://BUCKET/runs/bert_medium).
Expected runtime: not measured in this repository (no accelerator was available); estimate it from
the perf/mfu and perf/steps_per_sec lines of the first minutes of the run.
Expected result: MLM accuracy rising towards the ~0.6-0.7 range and NSP accuracy > 0.95 on
held-out Wikipedia, as reported for BERT; the exact value depends on the corpus.

Variants (`--config configs/bert_medium.py:VARIANT`): phase2 (sequence 512), lamb (LAMB, batch 4096).
"""

from bertjax import config as config_lib


def get_config(arg: str | None = None):
    c = config_lib.pretraining("medium")  # L8/H512/A8, F = 4H
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
    if arg == "phase2":
        c.data.max_seq_length = 512  # phase 2: full-length sequences
        c.data.max_predictions_per_seq = 80  # 15% of 512
        c.num_train_steps = 100_000  # the last 10% of BERT's steps
        c.optimizer.warmup_steps = 1_000  # short re-warmup
    elif arg == "lamb":
        c.optimizer.name = "lamb"  # You et al. 2019: large-batch BERT
        c.batch_size = 4096  # LAMB's large batch
        c.num_train_steps = 60_000  # fewer, larger steps
        c.optimizer.learning_rate = 2e-3  # LAMB's peak rate at 4k batch
        c.optimizer.warmup_steps = 2_000  # LAMB's warmup
    elif arg:
        raise ValueError(f"configs/bert_medium.py has no variant {arg!r} (have: phase2, lamb)")
    return c
