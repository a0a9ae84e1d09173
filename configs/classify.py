"""Fine-tune BERT to classify texts (or text pairs) from local CSV / TSV / JSONL files.

    python -m bertjax.train --config configs/classify.py \
        --config.init_from=/path/to/bert_dir_or_run --workdir runs/classify \
        --config.data.train=train.csv --config.data.validation=dev.csv \
        [--config.data.text_pair_column=text_b]
    python -m bertjax.train --config configs/classify.py:regression ...   # or :multilabel

Variants: get_config("single") (default), get_config("regression") (num_labels 1, Pearson/Spearman),
get_config("multilabel") (sigmoid per class, "a|b" labels). Labels are read from the train file
(sorted) and written to W/labels.json. Expected: on SST-2-sized data with BERT-base, 3 epochs at
batch 32 and lr 2e-5 (~20 min on one A100) reach ~92-93% dev accuracy (Devlin et al. 2018).
"""

from bertjax.tasks import classification, finetune_data


def get_config(arg: str = "single"):
    if arg not in ("single", "regression", "multilabel"):
        raise ValueError(f"configs/classify.py takes 'single', 'regression' or 'multilabel', "
                         f"got {arg!r}")
    c = finetune_data.run_config()
    c.task = "classification"  # bertjax/tasks/classification.py.
    c.classification = classification.options(kind=arg)  # single | regression | multilabel.
    if arg == "regression":
        c.classification.metrics = ("pearson", "spearman")
    elif arg == "multilabel":
        c.classification.metrics = ("f1_micro", "f1_macro", "subset_accuracy")
    return c
