"""The same fine-tuning run over several seeds, with the median dev metric: `python -m bertjax.seeds`.

    python -m bertjax.seeds --config configs/glue.py:task=rte --config.init_from=/path/to/bert \
        --workdir runs/rte_seeds --seeds 1,2,3,4,5

Small dev sets (RTE, MRPC, CoLA, STS-B) swing by points between seeds (Devlin et al. 2018 and
Dodge et al. 2020 report restarts); the median is the number to quote. Each seed runs in
W/seed_<s> (rerunning resumes), with config.seed = s. The metric compared is --metric when given,
else config.eval_metric, else accuracy; each seed's value is read from its W/seed_<s>/metrics.jsonl
at its best checkpoint's step (the one config.eval_metric picked) when it has one, else at its last
step. Prints a table and writes W/seeds.json: {"metric", "seeds", "values": {seed: v}, "median",
"mean", "std"}.

SIGTERM (preemption) stops the running seed at a checkpoint and the command at once, status 0: no
later seed starts and seeds.json is not written. Rerun the same command to resume: finished seeds
return at once.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
from typing import Sequence

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from bertjax import best as best_lib
from bertjax import metrics_log, train
from bertjax.model import ConfigError


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError("no seeds given: pass --seeds 1,2,3 (or set config.seeds)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct integers, got {text!r}")
    return seeds


def run_seeds(config: ml_collections.ConfigDict, workdir: str, seeds: Sequence[int],
              metric: str = "") -> dict | None:
    """train_and_evaluate once per seed in workdir/seed_<s>; -> the W/seeds.json dict, or None
    when SIGTERM stopped a seed (checkpointed; nothing written; a rerun resumes)."""
    name = metric or config.get("eval_metric", "") or "accuracy"  # the explicit --metric wins
    key = name if name.startswith("eval/") else "eval/" + name
    values = {}
    for i, seed in enumerate(seeds):
        run_cfg = ml_collections.ConfigDict(config.to_dict())
        run_cfg.seed = int(seed)
        run_dir = os.path.join(workdir, f"seed_{seed}")
        try:
            summary = train.train_and_evaluate(run_cfg, run_dir)
        except train.user_errors() as e:
            done = ",".join(map(str, seeds[:i]))
            e.add_note(f"in seed {seed} ({run_dir})" + (
                f"; seeds {done} finished, and a rerun returns them at once" if done else ""))
            raise
        if summary.get("preempted"):
            logging.info("seeds: SIGTERM during seed %d (checkpointed in %s); not started: %s; "
                         "seeds.json not written. Rerun the same command to resume.", seed,
                         run_dir, ",".join(map(str, seeds[i + 1:])) or "none")
            return None
        best = summary.get("best") or best_lib.read_best(run_dir)
        if best and best.get("metric") == key:
            values[seed] = float(best["value"])
            continue
        # From metrics.jsonl, not summary["eval"]: a finished run resumed evaluates nothing.
        step = best["step"] if best else summary["step"]
        found = metrics_log.eval_metrics_at(run_dir, step)
        if key[len("eval/"):] not in found:
            raise ConfigError(f"metric {name!r} is not among the eval metrics {sorted(found)} "
                              f"of seed {seed} at step {step} ({run_dir}/metrics.jsonl)")
        values[seed] = float(found[key[len("eval/"):]])
    vals = list(values.values())
    result = {"metric": key, "seeds": list(seeds), "values": {str(s): v for s, v in values.items()},
              "median": statistics.median(vals), "mean": statistics.fmean(vals),
              "std": statistics.pstdev(vals)}
    if jax.process_index() == 0:  # multi-host: one writer per shared workdir
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "seeds.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


def format_result(result: dict) -> str:
    lines = [f"seed  {result['metric']}"]
    lines += [f"{s:>4}  {v:.4f}" for s, v in result["values"].items()]
    lines.append(f"median {result['median']:.4f}  (mean {result['mean']:.4f} +- "
                 f"{result['std']:.4f})")
    return "\n".join(lines)


# --config and --workdir (W: one run per seed in W/seed_<s>) are the trainer's flags.
_SEEDS = flags.DEFINE_string("seeds", "", "Comma-separated seeds (default: config.seeds).")
_METRIC = flags.DEFINE_string("metric", "", "Eval metric to compare; wins over "
                              "config.eval_metric (default: eval_metric, else accuracy).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train.setup_process(train._COORDINATOR.value, train._NUM_PROCESSES.value,  # pylint: disable=protected-access
                        train._PROCESS_ID.value)  # pylint: disable=protected-access
    config = train._CONFIG.value  # pylint: disable=protected-access
    try:  # a bad --seeds, config, data or checkpoint: its message, not a traceback
        seeds = parse_seeds(_SEEDS.value or config.get("seeds", "") or "")
        train.adopt_init_from_model(config,
                                    config_flags.get_override_values(flags.FLAGS["config"]))
        result = run_seeds(config, train._WORKDIR.value, seeds,  # pylint: disable=protected-access
                           _METRIC.value)
    except train.user_errors() as e:
        print("\n".join([f"error: {e}", *getattr(e, "__notes__", [])]), file=sys.stderr)
        sys.exit(2)
    if result is not None:
        print(format_result(result))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
