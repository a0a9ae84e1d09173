"""Fine-tune BERT on one GLUE task from TFDS (glue/<task>; prepared beforehand, never downloaded).

    python -m bertjax.train --config configs/glue.py:task=cola --config.init_from=/path/to/bert \
        --workdir runs/glue/cola
    python -m bertjax.glue --init_from /path/to/bert --workdir runs/glue     # all nine + table

Tasks: cola sst2 mrpc qqp mnli qnli rte wnli stsb. The recipe is BERT's (Devlin et al. 2018,
sec 4.1): batch 32, lr 2e-5, 3 epochs, 10% linear warmup, dev metric picks the best checkpoint.
Expected with BERT-base (~1 h for all nine small tasks, ~4 h each MNLI / QQP on one A100), dev set:
CoLA MCC ~57, SST-2 ~92.7, MRPC F1 ~89, STS-B Pearson ~89, QQP acc ~91, MNLI-m/mm ~84.4/84.6,
QNLI ~91.5, RTE ~66, WNLI ~56 (majority class).
"""

import ml_collections

from bertjax.tasks import classification, finetune_data

# name: (text columns, metrics (the first picks the best checkpoint), kind, train examples,
#        extra dev splits evaluated after training)
TASKS = {
    "cola": (("sentence",), ("matthews", "accuracy"), "single", 8551, ()),
    "sst2": (("sentence",), ("accuracy",), "single", 67349, ()),
    "mrpc": (("sentence1", "sentence2"), ("f1", "accuracy"), "single", 3668, ()),
    "qqp": (("question1", "question2"), ("f1", "accuracy"), "single", 363846, ()),
    "mnli": (("premise", "hypothesis"), ("accuracy",), "single", 392702,
             ("validation_mismatched",)),
    "qnli": (("question", "sentence"), ("accuracy",), "single", 104743, ()),
    "rte": (("sentence1", "sentence2"), ("accuracy",), "single", 2490, ()),
    "wnli": (("sentence1", "sentence2"), ("accuracy",), "single", 635, ()),
    "stsb": (("sentence1", "sentence2"), ("pearson", "spearman"), "regression", 5749, ()),
}


def get_config(arg: str = "task=cola"):
    name = arg.split("=", 1)[1] if arg.startswith("task=") else arg
    if name not in TASKS:
        raise ValueError(f"configs/glue.py: unknown GLUE task {name!r} (have: {sorted(TASKS)}); "
                         "use configs/glue.py:task=<name>")
    columns, metrics, kind, train_size, extra_splits = TASKS[name]
    c = finetune_data.run_config()
    c.task = "classification"  # bertjax/tasks/classification.py.
    c.classification = classification.options(kind=kind)  # single | regression (STS-B).
    c.classification.metrics = metrics  # GLUE's official metric(s) of this task.
    c.glue_task = name  # Which GLUE task this is (read by bertjax.glue for the table).
    c.extra_eval_splits = extra_splits  # Dev splits also scored after training (MNLI mismatched).
    c.data.tfds_name = f"glue/{name}"  # TFDS dataset.
    c.data.validation_split = "validation_matched" if name == "mnli" else "validation"
    c.data.text_column = columns[0]  # First text.
    c.data.text_pair_column = columns[1] if len(columns) > 1 else ""  # Second text of a pair.
    c.data.max_seq_length = 128  # BERT's GLUE sequence length.
    c.batch_size = 32  # BERT's.
    # num_train_steps is a FieldReference and the two periods below are formulas of it, so they
    # follow --config.num_train_steps=N (computed once from the default, a short run would evaluate
    # and checkpoint only at its end); setting a period yourself replaces its formula.
    c.num_train_steps = ml_collections.FieldReference(int(train_size / 32 * 3))  # 3 epochs,
    # rounded down as run_classifier.py does.
    c.optimizer.learning_rate = 2e-5  # From BERT's grid {5e-5, 3e-5, 2e-5}.
    c.optimizer.warmup_proportion = 0.1  # 10% of the updates.
    c.eval_every_steps = (c.get_ref("num_train_steps") + 5) // 6  # Twice per epoch: ceil(N / 6).
    c.checkpoint_every_steps = c.get_ref("eval_every_steps") + 0  # At each evaluation (+ 0: its
    # own reference, so setting checkpoint_every_steps leaves eval_every_steps alone).
    c.eval_metric = metrics[0]  # Dev metric picking W/best/.
    return c
