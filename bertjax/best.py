"""Best-checkpoint selection and early stopping on one dev metric (used by bertjax/train.py).

    config.eval_metric = "matthews"      # a logged eval metric, with or without "eval/"
    config.eval_metric_mode = "max"      # max | min
    config.early_stopping_patience = 3   # evaluations without improvement before stopping; 0 = off

Each time the metric improves, the params are written to W/best/ (a bertjax model directory,
`convert.save_bertjax`: loadable by `pretrained.load`, `predict` and `config.init_from`) and
W/best.json records {"step", "metric", "value", "mode", "evaluations_since"}. A resumed run reads
W/best.json back, so the best-so-far and the patience count survive restarts.

When patience runs out W/best.json also records "early_stopped": <step>, and the stop is final: a
rerun returns the run's summary without training, whatever num_train_steps says (the stop is about
the metric, not the budget). The one way on is a patience the recorded count has not reached
(a larger config.early_stopping_patience, or 0 = off): training then resumes from the latest
checkpoint. A smaller patience the count already reaches stops the rerun where it stands.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
from typing import Any, Callable, Iterable

import flax.linen as nn
import jax
import ml_collections
from jax.experimental import multihost_utils

from bertjax.model import ConfigError

BEST_DIR = "best"
BEST_FILE = "best.json"
MODES = ("max", "min")


USES = ("auto", "best", "latest")  # which of a workdir's checkpoints its readers load


def chosen_best_dir(workdir: str, use: str = "auto") -> str | None:
    """W/best/ when `use` picks it ("best", or "auto" with a best checkpoint kept), else None:
    the latest step in W/checkpoints. Every reader of a workdir (predict, pretrained.load, the
    converter) chooses by this one rule."""
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    path = os.path.join(workdir, BEST_DIR)
    kept = os.path.exists(os.path.join(path, "bertjax.json"))
    if use == "best" and not kept:
        raise FileNotFoundError(f"{path} holds no best checkpoint: the run kept none "
                                "(config.eval_metric unset, or no evaluation yet); use 'latest'")
    return path if kept and use != "latest" else None


def read_best(workdir: str) -> dict | None:
    path = os.path.join(workdir, BEST_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def metric_name(config: ml_collections.ConfigDict) -> str:
    """config.eval_metric without its optional "eval/" prefix ("" when unset)."""
    return (config.get("eval_metric", "") or "").removeprefix("eval/")


def validate(config: ml_collections.ConfigDict,
             metric_names: Iterable[str] | None = None) -> None:
    """metric_names: what an evaluation logs (the task's eval_metric_names; without "eval/"),
    for config.eval_metric to be among them now rather than at the first evaluation."""
    metric = metric_name(config)
    if metric and metric_names is not None and metric not in metric_names:
        close = (difflib.get_close_matches(metric, list(metric_names), n=1)
                 or sorted(n for n in metric_names if n.endswith("_" + metric)))  # f1: entity_f1
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config.eval_metric={config.eval_metric!r} is not among the eval "
                          f"metrics of this config {sorted(metric_names)}{hint}")
    mode = config.get("eval_metric_mode", "max")
    if mode not in MODES:
        raise ConfigError(f"config.eval_metric_mode={mode!r} is not one of {MODES}")
    if config.get("early_stopping_patience", 0) < 0:
        raise ConfigError("config.early_stopping_patience must be >= 0, got "
                          f"{config.early_stopping_patience!r}")
    if config.get("early_stopping_patience", 0) > 0 and not config.get("eval_metric", ""):
        raise ConfigError("config.early_stopping_patience > 0 needs config.eval_metric")


def _host_params(params) -> dict:
    if jax.process_count() == 1:
        return jax.device_get(params)
    return multihost_utils.process_allgather(params, tiled=True)


class BestTracker:
    """Follows config.eval_metric over evaluations; keeps the best params in W/best/."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str,
                 tokenizer: Any = None, extra: dict | None = None):
        validate(config)
        metric = metric_name(config)
        self.metric = "eval/" + metric if metric else ""
        self.mode = config.get("eval_metric_mode", "max")
        self.patience = int(config.get("early_stopping_patience", 0))
        self.model_cfg, self.workdir = config.model, workdir
        self.tokenizer, self.extra = tokenizer, dict(extra or {})
        self.best = read_best(workdir) if self.metric else None
        if self.best is not None and self.best.get("metric") != self.metric:
            self.best = None  # another metric was followed before: start over
        self.bad_evals = int(self.best.pop("evaluations_since", 0)) if self.best else 0
        self.stopped_at = self.best.pop("early_stopped", None) if self.best else None
        if self.stopped_at is not None and not self._exhausted():
            logging.info("the early stop at step %d is lifted: config.early_stopping_patience=%d "
                         "> %d evaluations without improvement", self.stopped_at, self.patience,
                         self.bad_evals)
            self.stopped_at = None

    def _exhausted(self) -> bool:
        return bool(self.patience) and self.bad_evals >= self.patience

    def stopped(self, step: int) -> int | None:
        """Before training on from `step`: the step the run stopped early at, or None to train.

        A stop recorded in W/best.json holds while the current patience is exhausted (see the
        module docstring); an exhausted count with no recorded stop (a smaller patience now)
        stops here, at `step`, and records it."""
        if not self._exhausted():
            return None
        if self.stopped_at is None:
            self.stopped_at = int(step)
            self._write()
        return self.stopped_at

    @property
    def enabled(self) -> bool:
        return bool(self.metric)

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        old = float(self.best["value"])
        return value > old if self.mode == "max" else value < old

    def update(self, step: int, results: dict[str, float],
               params_fn: Callable[[], Any]) -> bool:
        """After an evaluation: saves W/best/ if improved; returns True when training should stop.

        params_fn: -> the current params (called only on an improvement).
        """
        if not self.enabled:
            return False
        if self.metric not in results:
            raise ConfigError(f"config.eval_metric={self.metric[len('eval/'):]!r} is not among "
                              f"the eval metrics {sorted(k[len('eval/'):] for k in results)}")
        value = float(results[self.metric])
        if self._better(value):
            self.bad_evals = 0
            self.best = {"step": int(step), "metric": self.metric, "value": value,
                         "mode": self.mode}
            params = _host_params(params_fn())
            if jax.process_index() == 0:
                from bertjax import convert  # pylint: disable=import-outside-toplevel
                # No logical-axis rules: save_bertjax traces the model to check shapes, and the
                # trainer's mesh constraints do not apply to host arrays.
                with nn.logical_axis_rules(()):
                    convert.save_bertjax(self.model_cfg, params, self.tokenizer,
                                         os.path.join(self.workdir, BEST_DIR),
                                         extra={**self.extra, "best": self.best})
        else:
            self.bad_evals += 1
        stop = self._exhausted()
        if stop:
            self.stopped_at = int(step)
        self._write()
        if stop:
            logging.info("early stopping at step %d: %s has not improved on %.4g (step %d) for "
                         "%d evaluations", step, self.metric, self.best["value"],
                         self.best["step"], self.bad_evals)
            return True
        return False

    def _write(self) -> None:
        if jax.process_index() != 0 or self.best is None:
            return
        path = os.path.join(self.workdir, BEST_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            record = {**self.best, "evaluations_since": self.bad_evals}
            if self.stopped_at is not None:
                record["early_stopped"] = self.stopped_at
            json.dump(record, f, indent=1)
        os.replace(path + ".tmp", path)

    def summary(self) -> dict | None:
        return None if self.best is None else {k: self.best[k] for k in ("step", "metric",
                                                                         "value")}
