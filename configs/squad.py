"""Fine-tune BERT for extractive QA on SQuAD v1.1 (get_config("v1")) or v2.0 (get_config("v2")).

    python -m bertjax.train --config configs/squad.py:v1 --config.init_from=/path/to/bert \
        --workdir runs/squad1 [--config.data.train=train-v1.1.json --config.data.validation=dev-v1.1.json]

Data: TFDS "squad" / "squad/v2.0" (prepared beforehand; nothing is downloaded), or the official
JSON files, which replace TFDS as soon as config.data.train / validation is given. Expected with
BERT-base, 2 epochs at batch 32, lr 3e-5, S=384, stride 128 (~2 h on one A100): v1.1 dev EM ~81 /
F1 ~88; v2.0 dev F1 ~76 (Devlin et al. 2018).
"""

from bertjax.tasks import finetune_data, span_qa


def get_config(arg: str = "v1"):
    if arg not in ("v1", "v2"):
        raise ValueError(f"configs/squad.py takes 'v1' or 'v2', got {arg!r}")
    c = finetune_data.run_config()
    c.task = "span_qa"  # bertjax/tasks/span_qa.py.
    c.squad = span_qa.options(version_2=arg == "v2")  # Windows and decoding.
    c.data.tfds_name = "squad" if arg == "v1" else "squad/v2.0"  # Unused when files are given.
    c.data.max_seq_length = 384  # BERT's SQuAD sequence length.
    c.num_train_steps = 5500  # ~2 epochs of 88k questions at batch 32.
    c.optimizer.learning_rate = 3e-5  # BERT's SQuAD learning rate.
    c.optimizer.warmup_steps = 550  # 10%.
    return c
