"""The same fine-tuning run over several seeds, with the median dev metric: `python -m bertjax.seeds`.

    python -m bertjax.seeds --config configs/glue.py:task=rte --config.init_from=/path/to/bert \
        --workdir runs/rte_seeds --seeds 1,2,3,4,5

Small dev sets (RTE, MRPC, CoLA, STS-B) swing by points between seeds (Devlin et al. 2018 and
Dodge et al. 2020 report restarts); the median is the number to quote. Each seed runs in
W/seed_<s> (rerunning resumes), with config.seed = s. The metric is config.eval_metric at the
best checkpoint when set, else --metric (default accuracy) at the end. Prints a table and writes
W/seeds.json: {"metric", "seeds", "values": {seed: v}, "median", "mean", "std"}.
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Sequence

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from bertjax import train
from bertjax.model import ConfigError


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct integers, got {text!r}")
    return seeds


def run_seeds(config: ml_collections.ConfigDict, workdir: str, seeds: Sequence[int],
              metric: str = "") -> dict:
    """train_and_evaluate once per seed in workdir/seed_<s>; -> the W/seeds.json dict."""
    name = metric or config.get("eval_metric", "") or "accuracy"
    key = name if name.startswith("eval/") else "eval/" + name
    values = {}
    for seed in seeds:
        run_cfg = ml_collections.ConfigDict(config.to_dict())
        run_cfg.seed = int(seed)
        summary = train.train_and_evaluate(run_cfg, os.path.join(workdir, f"seed_{seed}"))
        best = summary.get("best")
        if best and best.get("metric") == key:
            values[seed] = float(best["value"])
        elif key in summary["eval"]:
            values[seed] = float(summary["eval"][key])
        else:
            raise ConfigError(f"metric {name!r} is not among the eval metrics "
                              f"{sorted(summary['eval'])} of seed {seed}")
    vals = list(values.values())
    result = {"metric": key, "seeds": list(seeds), "values": {str(s): v for s, v in values.items()},
              "median": statistics.median(vals), "mean": statistics.fmean(vals),
              "std": statistics.pstdev(vals)}
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
_METRIC = flags.DEFINE_string("metric", "", "Eval metric to compare (default: eval_metric).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = train._CONFIG.value  # pylint: disable=protected-access
    train.adopt_init_from_model(config, config_flags.get_override_values(flags.FLAGS["config"]))
    seeds = parse_seeds(_SEEDS.value or config.get("seeds", "") or "")
    print(format_result(run_seeds(config, train._WORKDIR.value, seeds,  # pylint: disable=protected-access
                                  _METRIC.value)))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
