"""Fine-tune BERT for extractive QA on SQuAD v1.1 (get_config("v1")) or v2.0 (get_config("v2")).

    python -m bertjax.train --config configs/squad.py:v1 --config.init_from=/path/to/bert \
        --workdir runs/squad1 [--config.data.train=train-v1.1.json --config.data.validation=dev-v1.1.json]

Data: TFDS "squad" / "squad/v2.0" (prepared beforehand; nothing is downloaded), or the official
JSON files, which replace TFDS as soon as config.data.train / validation is given. Expected with
BERT-base, 2 epochs at batch 32, lr 3e-5, S=384, stride 128 (~2 h on one A100): v1.1 dev EM ~81 /
F1 ~88; v2.0 dev F1 ~76 (Devlin et al. 2018).
"""

from bertjax.tasks import finetune_data, span_qa

TRAIN_QUESTIONS = {"v1": 87_599, "v2": 130_319}  # Training questions of SQuAD v1.1 / v2.0.


def get_config(arg: str = "v1"):
    if arg not in ("v1", "v2"):
        raise ValueError(f"configs/squad.py takes 'v1' or 'v2', got {arg!r}")
    c = finetune_data.run_config()
    c.task = "span_qa"  # bertjax/tasks/span_qa.py.
    c.squad = span_qa.options(version_2=arg == "v2")  # Windows and decoding.
    c.data.tfds_name = "squad" if arg == "v1" else "squad/v2.0"  # Unused when files are given.
    c.data.max_seq_length = 384  # BERT's SQuAD sequence length.
    # 2 epochs of questions at batch 32, rounded down as run_squad.py does: 5474 (v1), 8144 (v2).
    c.num_train_steps = int(TRAIN_QUESTIONS[arg] / 32 * 2)
    c.optimizer.learning_rate = 3e-5  # BERT's SQuAD learning rate.
    c.optimizer.warmup_proportion = 0.1  # 10% of whatever num_train_steps is: 547 / 814.
    return c
