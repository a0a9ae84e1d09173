"""BERT-Base (L12/H768/A12) pretrained with MLM+NSP, BERT's recipe (Devlin et al. 2018, appendix A.2).

Command (a TPU pod slice; see launch/tpu_pod.sh):

  python -m bertjax.train --config configs/bert_base.py --workdir gs://BUCKET/runs/bert_base \
      --config.data.corpus='tfds:wikipedia/20230601.en:text'

Phase 1 of BERT: 900k steps at sequence 128, then phase 2 (variant "phase2"): 100k steps at 512,
initialised from phase 1 (--config.init_from=gs://BUCKET/runs/bert_base).
Expected runtime: the train step alone, on one H200 (bf16, cuDNN attention, which needs
--config.model.attention_dropout_rate=0.0 and attention_impl=cudnn; docs/PERFORMANCE.md): 50.9 ms
at 256 x 128 (5032 seq/s), so phase 1 is ~13 h of steps; 54.9 ms at 64 x 512, so phase 2 at batch
256 is ~6 h (4x the batch-64 step).
Data loading, evaluation and checkpoints come on top: read perf/steps_per_sec and perf/mfu in the
first minutes of a run.
Expected result: MLM accuracy rising towards the ~0.6-0.7 range and NSP accuracy > 0.95 on
held-out Wikipedia, as reported for BERT; the exact value depends on the corpus.

Variants (`--config configs/bert_base.py:VARIANT`): phase2 (sequence 512), lamb (LAMB, batch 4096).
"""

from bertjax import config as config_lib


def get_config(arg: str | None = None):
    return config_lib.bert_recipe("base", arg)  # every field is commented in bertjax/config.py
