"""BERT-Mini (L4/H256/A4) pretrained with MLM+NSP, BERT's recipe (Devlin et al. 2018, appendix A.2).

Command (a TPU pod slice; see launch/tpu_pod.sh):

  python -m bertjax.train --config configs/bert_mini.py --workdir gs://BUCKET/runs/bert_mini \
      --config.data.corpus='tfds:wikipedia/20230601.en:text'

Phase 1 of BERT: 900k steps at sequence 128, then phase 2 (variant "phase2"): 100k steps at 512,
initialised from phase 1 (--config.init_from=gs://BUCKET/runs/bert_mini).
Expected runtime: on accelerators not measured for this size (bert_base and bert_large were, on an
H100); estimate it from perf/steps_per_sec in the first minutes. On a 2-core Xeon CPU (fp32,
batch 32, seq 128) one update takes ~1.4 s: `python -m bertjax.bench --config configs/bert_mini.py
--config.model.dtype=float32` (docs/PERFORMANCE.md).
Expected result: MLM accuracy rising towards the ~0.6-0.7 range and NSP accuracy > 0.95 on
held-out Wikipedia, as reported for BERT; the exact value depends on the corpus.

Variants (`--config configs/bert_mini.py:VARIANT`): phase2 (sequence 512), lamb (LAMB, batch 4096).
"""

from bertjax import config as config_lib


def get_config(arg: str | None = None):
    return config_lib.bert_recipe("mini", arg)  # every field is commented in bertjax/config.py
