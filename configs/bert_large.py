"""BERT-Large (L24/H1024/A16) pretrained with MLM+NSP, BERT's recipe (Devlin et al. 2018, appendix A.2).

Command (a TPU pod slice; see launch/tpu_pod.sh):

  python -m bertjax.train --config configs/bert_large.py --workdir gs://BUCKET/runs/bert_large \
      --config.data.corpus='tfds:wikipedia/20230601.en:text'

Phase 1 of BERT: 900k steps at sequence 128, then phase 2 (variant "phase2"): 100k steps at 512,
initialised from phase 1 (--config.init_from=gs://BUCKET/runs/bert_large).
Expected runtime: the train step alone, on one H200 (bf16; docs/PERFORMANCE.md): with cuDNN
attention, which needs --config.model.attention_dropout_rate=0.0 (attention_impl=cudnn), 147.4 ms
at 256 x 128 (1737 seq/s), so phase 1 is ~37 h of steps; with BERT's attention dropout 0.1 (the
default, einsum attention) 161.0 ms, ~40 h. 156.1 ms at 64 x 512 (cuDNN), so phase 2 at batch 256
is ~17 h (4x the batch-64 step).
Data loading, evaluation and checkpoints come on top: read perf/steps_per_sec and perf/mfu in the
first minutes of a run.
Expected result: MLM accuracy rising towards the ~0.6-0.7 range and NSP accuracy > 0.95 on
held-out Wikipedia, as reported for BERT; the exact value depends on the corpus.

Variants (`--config configs/bert_large.py:VARIANT`): phase2 (sequence 512), lamb (LAMB, batch 4096).
"""

from bertjax import config as config_lib


def get_config(arg: str | None = None):
    return config_lib.bert_recipe("large", arg)  # every field is commented in bertjax/config.py
