"""Fine-tune BERT for token classification (NER / POS) from JSONL word and tag lists.

    python -m bertjax.train --config configs/tagging.py --config.init_from=/path/to/bert \
        --workdir runs/ner --config.data.train=train.jsonl --config.data.validation=dev.jsonl

Rows: {"tokens": ["John", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}.
Each word's tag sits on its first WordPiece. Expected: CoNLL-2003 with BERT-base, 4 epochs at
batch 32, lr 5e-5 (~30 min on one A100) reaches ~95% dev entity F1 (Devlin et al. 2018: 96.4).

Metrics: eval/entity_f1 (with precision, recall) scores BIO/IOB2 entities, for NER. POS tags have
no B-/I- prefixes, so their entity F1 is always 0: for POS read eval/word_accuracy.
"""

from bertjax.tasks import finetune_data, tagging


def get_config(arg: str = ""):
    del arg
    c = finetune_data.run_config()
    c.task = "tagging"  # bertjax/tasks/tagging.py.
    c.tagging = tagging.options()  # Head dropout, fill label for truncated words.
    c.data.text_column = "tokens"  # Field with the word list.
    c.data.label_column = "tags"  # Field with one tag per word.
    c.optimizer.learning_rate = 5e-5  # BERT's NER learning rate.
    return c
