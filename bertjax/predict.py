"""Predictions of a fine-tuned run on a file: `python -m bertjax.predict`.

    python -m bertjax.predict --checkpoint runs/classify --input test.csv --output preds.jsonl

--checkpoint is a fine-tuning workdir (a pretraining run is refused): W/config.json gives the task
and its options, W/labels.json the label names, W/tokenizer/ the tokenizer; the params are W/best/
when the run kept a best checkpoint (config.eval_metric), else the latest step in W/checkpoints
(--use latest forces it).
The input is read like the run's training data (.csv / .tsv / .jsonl, SQuAD .json); the label
column may be absent. Bad rows stop with file:line (--on_bad_row=skip skips them with a warning).
One JSON line per usable input row (per question for QA), in input order:

  classification  {"line": n, "label": name, "probabilities": {name: p}}
  regression      {"line": n, "value": v}
  multi-label     {"line": n, "labels": [names], "probabilities": {name: p}}
  tagging         {"line": n, "words": [...], "labels": [...]}  (one label per word)
  span QA         {"id": ..., "answer": text, "score": s, "start": c, "end": c}  (char offsets)

--output's missing parent directories are created, and the place is checked writable, before any
work; the file appears only once every prediction is computed (written beside it, then renamed),
so a failed run leaves an earlier file as it was. Should it still fail to be written, the
predictions go to a file in the temporary directory, and the error says which.

Tagging labels every word, however long the text: a text longer than max_seq_length is read in
overlapping windows (half a window apart, as SQuAD contexts are with doc_stride), each word from
the window where it has the most context. A word the tokenizer turns into no WordPiece (only
control or zero-width characters; a blank word is a bad row) is never seen by the model, so its
label is null, with a warning: not "O", which would pass a guess off as a prediction. (Hugging Face's
token-classification pipeline reports only the tokens the model saw, so such words are absent
from its output; a null keeps the labels one to one with the input words.)

"line" is the row's line in the input (a CSV row's first line; a JSONL line), so rows skipped
with --on_bad_row=skip leave no doubt which prediction is whose. When the run's
config.data.id_column is set, each line also has "id": that column's value (a row without one is
a bad row). SQuAD questions are matched by their "id".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
from typing import Any, Iterable

import jax
import ml_collections
import numpy as np

from bertjax import best as best_lib
from bertjax import checkpoint as ckpt_lib
from bertjax import model as model_lib
from bertjax.model import ConfigError
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import base, finetune_data, readers


@dataclasses.dataclass
class Run:
    """A fine-tuned run ready to predict: its config, task (labels set), model, params, tokenizer."""
    config: ml_collections.ConfigDict
    task: base.Task
    model: Any
    params: dict  # in the layout config.model wants
    tokenizer: Any
    source: str  # where the params came from

    def __post_init__(self):
        self._predict = jax.jit(lambda p, b: self.task.predict_fn(self.model, p, b))

    def predict_batches(self, batches: Iterable[dict]) -> list[dict[str, np.ndarray]]:
        """task.predict_fn over padded batches -> host numpy outputs per batch."""
        keys = ("input_ids", "token_type_ids", "attention_mask")
        return [jax.device_get(self._predict(self.params, {k: b[k] for k in keys if k in b}))
                for b in batches]


def load_run(workdir: str, use: str = "auto") -> Run:
    """use: "auto" (W/best/ if present, else the latest checkpoint) | "best" | "latest"."""
    workdir = os.path.abspath(workdir)
    config = _run_config(workdir)
    task = _predicting_task(config, workdir)
    labels = finetune_data.read_labels(workdir)
    if labels is not None and hasattr(task, "set_labels"):
        task.set_labels(labels)
    best_dir = best_lib.chosen_best_dir(workdir, use)
    if best_dir is not None:
        from bertjax import convert  # pylint: disable=import-outside-toplevel
        model_cfg, params, _ = convert.load_bertjax(best_dir)
        source = best_dir
    else:
        model_cfg, params, _, extra = ckpt_lib.restore_params(workdir)
        source = f"{workdir}/checkpoints step {extra['step']}"
    model_cfg = ml_collections.ConfigDict(model_cfg.to_dict())
    model_cfg.scan_layers = bool(config.model.get("scan_layers", False))
    config.model = model_cfg
    tok = tokenizer_lib.load_tokenizer(ckpt_lib.tokenizer_dir(workdir),
                                       config.data.get("lowercase"))
    model = task.build_model(model_cfg)
    params = jax.tree.map(np.asarray, model_lib.layout_params(params, model_cfg))
    return Run(config, task, model, params, tok, source)


_KINDS = {"huggingface": "a Hugging Face model directory",
          "google": "a Google TF BERT checkpoint directory",
          "bertjax": "a bertjax model directory (bertjax.convert's output, or a run's W/best/)",
          "workdir": "a training workdir whose config.json is missing or names no task"}


def _run_config(workdir: str) -> ml_collections.ConfigDict:
    """W/config.json of a training run (it names the run's task); ConfigError naming the path and
    what it is (convert.detect_format's kinds) for anything else."""
    if not os.path.isdir(workdir):
        what = "is a file" if os.path.exists(workdir) else "does not exist"
        raise ConfigError(f"--checkpoint {workdir} {what}: it must be a fine-tuned task workdir "
                          "(python -m bertjax.train --workdir W)")
    path = ckpt_lib.config_path(workdir)
    raw = None
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the run config ({e})") from None
    if isinstance(raw, dict) and isinstance(raw.get("task"), str):
        return ml_collections.ConfigDict(raw)
    from bertjax import convert  # pylint: disable=import-outside-toplevel
    try:
        what = _KINDS[convert.detect_format(workdir)]
    except convert.ConvertError as e:  # no model files, or both a model and a run
        what = f"not a directory predict can read ({e})"
    raise ConfigError(f"--checkpoint {workdir} is {what}: bertjax.predict needs a fine-tuned "
                      "task workdir (W/config.json naming its task, W/labels.json, W/tokenizer/, "
                      "params in W/checkpoints or W/best/); fine-tune one first with "
                      "python -m bertjax.train --config configs/<task>.py --workdir W "
                      "--config.init_from=<this model>")


def _predicting_task(config: ml_collections.ConfigDict, workdir: str) -> base.Task:
    """The run's task, if it is one predict can read test files for (a fine-tuning task)."""
    try:
        task_cls = base.get_task(config.task)
    except ValueError as e:
        raise ConfigError(f"{ckpt_lib.config_path(workdir)}: {e}") from None
    if not hasattr(task_cls, "read_examples"):
        usable = [n for n in base.available_tasks()
                  if hasattr(base.get_task(n), "read_examples")]
        raise ConfigError(f"{workdir} is a {config.task!r} run: bertjax.predict works on "
                          f"fine-tuned runs (tasks {usable})")
    return task_cls(config)


def _source(run: Run, example: readers.Example) -> dict:
    """Where a prediction's row came from: its "line" in the input, and its "id" if configured."""
    out = {"line": readers.position(example.where)}
    if run.config.data.get("id_column"):
        out["id"] = example.uid
    return out


def _classification_rows(run: Run, examples: list[readers.Example], outputs) -> list[dict]:
    rows = _classification_outputs(run, outputs, len(examples))
    return [{**_source(run, e), **r} for e, r in zip(examples, rows)]


def _classification_outputs(run: Run, outputs, n: int) -> list[dict]:
    logits = np.concatenate([o["logits"] for o in outputs])[:n].astype(np.float64)
    kind, opts = run.task.kind, run.config.classification
    if kind == "regression":
        return [{"value": float(v)} for v in logits[:, 0]]
    names = run.task.labels.names
    if kind == "multilabel":
        probs = 1.0 / (1.0 + np.exp(-logits))
        return [{"labels": [names[j] for j in np.flatnonzero(p > opts.multilabel_threshold)],
                 "probabilities": dict(zip(names, map(float, p)))} for p in probs]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return [{"label": names[int(np.argmax(p))], "probabilities": dict(zip(names, map(float, p)))}
            for p in probs]


def _tagging_rows(run: Run, examples: list[readers.Example], batch_size: int) -> list[dict]:
    """Every word is predicted, long texts over overlapping windows (encode_windows)."""
    windows = run.task.encode_windows(run.tokenizer, examples)
    outputs = run.predict_batches(finetune_data.pad_batches(windows, batch_size))
    n = len(windows["input_ids"])
    pred = np.concatenate([o["pred"] for o in outputs])[:n] if outputs else np.zeros((0, 0))
    labels = run.task.window_word_labels(examples, windows, pred)
    unseen = [sum(l is None for l in line) for line in labels]
    if any(unseen):
        logging.warning("%d words (in %d lines) have no WordPiece (only characters "
                        "the tokenizer drops): their label is null", sum(unseen),
                        sum(map(bool, unseen)))
    return [{**_source(run, e), "words": list(e.text), "labels": l}
            for e, l in zip(examples, labels)]


def predict_file(run: Run, input_path: str, *, batch_size: int = 32,
                 on_bad_row: str = "error") -> list[dict]:
    """One dict per usable input row (see the module docstring for the fields)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    config = run.config
    config.data.update(test=input_path, tfds_name="", on_bad_row=on_bad_row)
    examples = run.task.read_examples("test", with_labels=False)
    if not examples:
        return []
    if config.task == "span_qa":
        windows = run.task.encode(run.tokenizer, examples)
        outputs = run.predict_batches(finetune_data.pad_batches(windows.arrays, batch_size))
        n = len(windows.arrays["input_ids"])
        starts = np.concatenate([o["start_logits"] for o in outputs])[:n]
        ends = np.concatenate([o["end_logits"] for o in outputs])[:n]
        answers = run.task.decode(examples, windows, starts, ends)
        return [{"id": e.uid, "answer": a.text, "score": float(a.score), "start": a.start_char,
                 "end": a.end_char} for e, a in zip(examples, answers)]
    if config.task == "tagging":
        return _tagging_rows(run, examples, batch_size)
    arrays = run.task.encode(run.tokenizer, examples)
    outputs = run.predict_batches(finetune_data.pad_batches(arrays, batch_size))
    if config.task == "classification":
        return _classification_rows(run, examples, outputs)
    raise ValueError(f"bertjax.predict does not know how to write predictions of task "
                     f"{config.task!r}")


class Output:
    """--output, made ready before any work so that computed predictions are never lost to it.

    Its missing parent directories are created (as bertjax.train makes --workdir and
    bertjax.convert its output directory), then a temporary file beside it is opened: that
    proves the place writable before the model is even loaded. `commit` writes the predictions
    there and renames it over the path, so a failed run never leaves a half-written file nor
    clobbers an earlier one. A path that exists and is no regular file (/dev/stdout, a FIFO) is
    written in place.
    """

    def __init__(self, path: str, input_path: str | None = None):
        self.path = path
        if os.path.isdir(path):
            raise ConfigError(f"--output {path} is a directory: give the predictions file's path")
        if input_path and os.path.exists(path) and os.path.exists(input_path) \
                and os.path.samefile(path, input_path):
            raise ConfigError(f"--output {path} is the --input file: give another path")
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:  # a parent that is a file, no permission, ...
            raise ConfigError(f"--output {path}: cannot create its directory {parent} "
                              f"({e.strerror or e})") from None
        self.in_place = os.path.exists(path) and not os.path.isfile(path)
        try:
            if self.in_place:
                self.tmp, self.file = path, open(path, "w", encoding="utf-8")
            else:
                fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                                                suffix=".tmp", dir=parent)
                self.file = os.fdopen(fd, "w", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--output {path}: cannot write there "
                              f"({e.strerror or e})") from None

    def commit(self, rows: list[dict]) -> None:
        """Writes rows, one JSON line each, to the path; OSError if that fails (then nothing
        at the path has changed, unless it is written in place)."""
        try:
            _write_rows(self.file, rows)
            self.file.close()
            if not self.in_place:
                # mkstemp's file is private (0600): give it the mode `open` would have.
                if os.path.exists(self.path):
                    mode = os.stat(self.path).st_mode & 0o7777
                else:
                    umask = os.umask(0)
                    os.umask(umask)
                    mode = 0o666 & ~umask
                os.chmod(self.tmp, mode)
                os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        self.file.close()
        if not self.in_place and os.path.exists(self.tmp):
            os.remove(self.tmp)


def _save_elsewhere(rows: list[dict]) -> str:
    """The predictions in a new file under the temporary directory: their last refuge when
    --output could not be written after they were computed."""
    fd, path = tempfile.mkstemp(prefix="bertjax_predictions_", suffix=".jsonl")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        _write_rows(f, rows)
    return path


def _write_rows(f, rows: list[dict]) -> None:
    """One JSON line per prediction, in order."""
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    import argparse  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(prog="python -m bertjax.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="fine-tuning workdir W")
    parser.add_argument("--input", required=True, help=".csv / .tsv / .jsonl / SQuAD .json")
    parser.add_argument("--output", required=True, help="predictions, one JSON per line")
    parser.add_argument("--use", default="auto", choices=best_lib.USES)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--on_bad_row", default="error", choices=("error", "skip"))
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be a positive integer, got {args.batch_size}")
    try:
        output = Output(args.output, args.input)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        run = load_run(args.checkpoint, args.use)
        rows = predict_file(run, args.input, batch_size=args.batch_size,
                            on_bad_row=args.on_bad_row)
    except (readers.DataError, ConfigError, FileNotFoundError,
            ckpt_lib.DamagedCheckpointError) as e:
        output.discard()
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BaseException:
        output.discard()
        raise
    try:
        output.commit(rows)
    except OSError as e:
        saved = _save_elsewhere(rows)
        print(f"error: cannot write --output {args.output} ({e.strerror or e}); the "
              f"{len(rows)} predictions are saved in {saved}", file=sys.stderr)
        return 1
    print(f"{len(rows)} predictions from {run.source} -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
