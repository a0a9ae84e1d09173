"""BERT-Medium (L8/H512/A8) pretrained with MLM+NSP, BERT's recipe (Devlin et al. 2018, appendix A.2).

Command (a TPU pod slice; see launch/tpu_pod.sh):

  python -m bertjax.train --config configs/bert_medium.py --workdir gs://BUCKET/runs/bert_medium \
      --config.data.corpus='tfds:wikipedia/20230601.en:text'

Phase 1 of BERT: 900k steps at sequence 128, then phase 2 (variant "phase2"): 100k steps at 512,
initialised from phase 1 (--config.init_from=gs://BUCKET/runs/bert_medium).
Expected runtime: not measured on an accelerator for this size (bert_base and bert_large were, on
an H100); estimate it from the perf/mfu and perf/steps_per_sec lines of the first minutes of a run.
Expected result: MLM accuracy rising towards the ~0.6-0.7 range and NSP accuracy > 0.95 on
held-out Wikipedia, as reported for BERT; the exact value depends on the corpus.

Variants (`--config configs/bert_medium.py:VARIANT`): phase2 (sequence 512), lamb (LAMB, batch 4096).
"""

from bertjax import config as config_lib


def get_config(arg: str | None = None):
    return config_lib.bert_recipe("medium", arg)  # every field is commented in bertjax/config.py
