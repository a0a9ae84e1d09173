"""All of GLUE from one checkpoint: `python -m bertjax.glue`.

    python -m bertjax.glue --init_from /path/to/bert --workdir runs/glue \
        [--tasks cola,sst2,mrpc,stsb,qqp,mnli,qnli,rte,wnli] [--config.num_train_steps=100 ...]

Each task fine-tunes from --init_from with configs/glue.py:task=<name> in W/<task> (rerunning
resumes), the --config.x=v overrides applied to every task. The model shape fields come from the
checkpoint, so any BERT size works without overrides. Scores are those of each task's best dev
checkpoint (its first metric); MNLI's mismatched dev set is scored with the same params.

The table (W/glue.md, W/glue.csv and W/glue.json, also printed) covers every task finished in W:
a rerun with --tasks replaces those tasks' rows and keeps the others. It has GLUE's usual columns,
scores x100:
CoLA (MCC), SST-2 (acc), MRPC (F1/acc), STS-B (Pearson/Spearman), QQP (F1/acc), MNLI-m, MNLI-mm,
QNLI, RTE, WNLI (acc). Score: GLUE's convention -- a task with two metrics counts as their mean
(MNLI as the mean of m and mm), then the unweighted mean over the tasks in the table.

SIGTERM (preemption) stops the running task at a checkpoint and the command at once, status 0: no
later task starts and the half-trained task gets no row. Rerun the same command to resume: the
finished tasks return at once and the table is written when the last task finishes.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import sys
from typing import Any

import ml_collections

from bertjax import best as best_lib
from bertjax import checkpoint as ckpt_lib
from bertjax import metrics_log
from configs import glue as glue_config

# (column, task, metric names) in GLUE's order; two metrics are shown "a/b".
COLUMNS = (
    ("CoLA", "cola", ("matthews",)),
    ("SST-2", "sst2", ("accuracy",)),
    ("MRPC", "mrpc", ("f1", "accuracy")),
    ("STS-B", "stsb", ("pearson", "spearman")),
    ("QQP", "qqp", ("f1", "accuracy")),
    ("MNLI-m", "mnli", ("accuracy",)),
    ("MNLI-mm", "mnli", ("validation_mismatched/accuracy",)),
    ("QNLI", "qnli", ("accuracy",)),
    ("RTE", "rte", ("accuracy",)),
    ("WNLI", "wnli", ("accuracy",)),
)


def apply_override(config: ml_collections.ConfigDict, dotted: str, text: str) -> None:
    """config.<dotted> = text parsed as the field's type; an unknown field is an error naming it."""
    parts = dotted.split(".")
    target = config
    for i, part in enumerate(parts[:-1]):
        if part not in target or not isinstance(target[part], ml_collections.ConfigDict):
            raise ValueError(f"--config.{dotted}: no field config.{'.'.join(parts[:i + 1])}")
        target = target[part]
    leaf = parts[-1]
    if leaf not in target:
        raise ValueError(f"--config.{dotted}: no field config.{dotted}")
    old = target[leaf]
    if isinstance(old, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--config.{dotted}={text!r}: expected true or false")
        value: Any = text.lower() in ("true", "1")
    elif isinstance(old, (int, float)):
        kind = type(old)
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"--config.{dotted}={text!r}: expected "
                             f"{'an integer' if kind is int else 'a number'}") from None
    elif isinstance(old, (tuple, list)):
        value = tuple(x.strip() for x in text.split(",") if x.strip())
    elif old is None:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
    else:
        value = text
    target[leaf] = value


def source_model_config(path: str) -> ml_collections.ConfigDict:
    """The model config of an init_from checkpoint (bertjax workdir / dir, HF, Google)."""
    from bertjax import convert  # pylint: disable=import-outside-toplevel
    return convert.model_config_of(path)


def task_config(name: str, init_from: str, overrides: list[tuple[str, str]],
                source_cfg: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    config = glue_config.get_config(f"task={name}")
    config.init_from = init_from
    if source_cfg is not None:
        for field in ckpt_lib.INIT_FROM_FIELDS:
            if source_cfg.get(field) is not None:
                config.model[field] = source_cfg[field]
    for dotted, text in overrides:
        apply_override(config, dotted, text)
    return config


def evaluate_split(workdir: str, split: str) -> dict[str, float]:
    """Metrics of a finished run's params (best, else latest) on another dev split."""
    from bertjax import predict  # pylint: disable=import-outside-toplevel
    run = predict.load_run(workdir)
    run.config.data.update(validation_split=split, train_split="",
                           tokenizer=ckpt_lib.tokenizer_dir(workdir))
    run.config.init_from = ""
    data = run.task.data(run.config, None, 0, 1)
    batches = data.eval_batches()
    return run.task.evaluate_predictions(run.predict_batches(batches), batches)


def run_task(name: str, workdir: str, init_from: str, overrides: list[tuple[str, str]],
             source_cfg=None) -> dict[str, float] | None:
    """Fine-tunes one task in workdir; -> its dev metrics at the best (else last) checkpoint, or
    None when SIGTERM stopped it (checkpointed: a rerun resumes it)."""
    from bertjax import train  # pylint: disable=import-outside-toplevel
    config = task_config(name, init_from, overrides, source_cfg)
    summary = train.train_and_evaluate(config, workdir)
    if summary["preempted"]:
        return None
    best = summary.get("best") or best_lib.read_best(workdir)
    # From W/metrics.jsonl, not summary["eval"]: a finished run resumed evaluates nothing.
    results = metrics_log.eval_metrics_at(workdir, best["step"] if best else summary["step"])
    for split in config.extra_eval_splits:
        for k, v in evaluate_split(workdir, split).items():
            results[f"{split}/{k}"] = v
    return results


def table(results: dict[str, dict[str, float]]) -> tuple[list[str], list[str], float | None]:
    """-> (column names, cell texts, GLUE score) over the tasks in `results`, scores x100."""
    names, cells, task_scores = [], [], {}
    for column, task, metrics in COLUMNS:
        if task not in results:
            continue
        values = [100.0 * results[task][m] for m in metrics if m in results[task]]
        if len(values) != len(metrics):
            continue
        names.append(column)
        cells.append("/".join(f"{v:.1f}" for v in values))
        task_scores.setdefault(task, []).append(sum(values) / len(values))
    score = None
    if task_scores:
        per_task = [sum(v) / len(v) for v in task_scores.values()]
        score = sum(per_task) / len(per_task)
    return names, cells, score


def read_results(workdir: str) -> dict[str, dict[str, float]]:
    """W/glue.json: {task: dev metrics} of the tasks finished in W so far ({} before the first)."""
    path = os.path.join(workdir, "glue.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_tables(results: dict[str, dict[str, float]], workdir: str) -> tuple[str, str]:
    names, cells, score = table(results)
    names, cells = names + ["Score"], cells + ["" if score is None else f"{score:.1f}"]
    md = ("| " + " | ".join(names) + " |\n| " + " | ".join("---" for _ in names) + " |\n| "
          + " | ".join(cells) + " |\n")
    csv = ",".join(names) + "\n" + ",".join(cells) + "\n"
    import jax  # pylint: disable=import-outside-toplevel
    if jax.process_index() != 0:  # multi-host: one writer per shared workdir
        return md, csv
    with open(os.path.join(workdir, "glue.md"), "w", encoding="utf-8") as f:
        f.write(md)
    with open(os.path.join(workdir, "glue.csv"), "w", encoding="utf-8") as f:
        f.write(csv)
    with open(os.path.join(workdir, "glue.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    return md, csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bertjax.glue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init_from", required=True, help="the pretrained checkpoint")
    parser.add_argument("--workdir", required=True, help="W: one run per task in W/<task>")
    parser.add_argument("--tasks", default=",".join(glue_config.TASKS),
                        help="comma-separated GLUE tasks")
    parser.add_argument("--coordinator_address", default=None,
                        help="host:port of process 0 (multi-process without TPU/SLURM)")
    parser.add_argument("--num_processes", type=int, default=None, help="number of processes")
    parser.add_argument("--process_id", type=int, default=None, help="this process's index")
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if not item.startswith("--config.") or "=" not in item:
            parser.error(f"unexpected argument {item!r} (overrides look like --config.x.y=v)")
        dotted, text = item[len("--config."):].split("=", 1)
        overrides.append((dotted, text))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        parser.error("--tasks: no task given")
    unknown = [t for t in tasks if t not in glue_config.TASKS]
    if unknown:
        parser.error(f"--tasks: unknown GLUE task(s) {unknown} (have: {sorted(glue_config.TASKS)})")
    try:
        for t in tasks:  # fail on a bad override before any training
            task_config(t, args.init_from, overrides)
    except ValueError as e:
        parser.error(str(e))
    from bertjax import train  # pylint: disable=import-outside-toplevel
    train.setup_process(args.coordinator_address, args.num_processes, args.process_id)
    try:  # a bad --init_from, data, config or workdir: its message, not a traceback
        source_cfg = source_model_config(args.init_from)
    except train.user_errors() as e:
        print(f"error: --init_from: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    results = read_results(args.workdir)  # tasks finished by earlier runs keep their rows
    for i, t in enumerate(tasks):
        logging.info("GLUE %s -> %s", t, os.path.join(args.workdir, t))
        try:
            scores = run_task(t, os.path.join(args.workdir, t), args.init_from, overrides,
                              source_cfg)
        except train.user_errors() as e:
            print(f"error: GLUE {t}: {e}" + (f" (the table of the tasks finished so far is in "
                                              f"{args.workdir}/glue.md)" if results else ""),
                  file=sys.stderr)
            return 2
        if scores is None:
            if results.pop(t, None) is not None:  # its old row no longer describes W/<task>
                write_tables(results, args.workdir)
            logging.info("GLUE: SIGTERM during %s (checkpointed in %s); not started: %s. "
                         "Rerun the same command to resume.", t, os.path.join(args.workdir, t),
                         ",".join(tasks[i + 1:]) or "none")
            return 0
        results[t] = scores
        md, _ = write_tables(results, args.workdir)  # the table so far, in case a task fails
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
