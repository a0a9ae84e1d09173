"""The trainer: `python -m bertjax.train --config configs/bert_tiny.py --workdir runs/tiny`.

One loop for pretraining and fine-tuning; `config.task` picks the Task (bertjax/tasks) that gives
the model head, loss, metrics and data. Restarting with the same --workdir resumes exactly from the
latest checkpoint. Multi-host: jax.distributed.initialize runs automatically on TPU pods and SLURM,
or explicitly with --coordinator_address/--num_processes/--process_id.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import app, flags
from jax.experimental import multihost_utils
from ml_collections import config_flags

from bertjax import best as best_lib
from bertjax import checkpoint as ckpt_lib
from bertjax import config as config_lib
from bertjax import flops as flops_lib
from bertjax import host, metrics_log, optim, sharding, steps
from bertjax import model as model_lib
from bertjax import param_names
from bertjax import preemption as preemption_lib
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.model import ConfigError
from bertjax.tasks import base as tasks_base

PyTree = Any


class NonFiniteError(FloatingPointError):
    """Loss or gradients became NaN/Inf; the message names the step."""


def validate(config: ml_collections.ConfigDict, num_devices: int, process_count: int) -> tuple:
    """Every config error we can find before compiling anything; returns the mesh shape."""
    model_lib.validate_config(config.model)
    # Before optim's checks: 0 steps is the error to name, not a warmup that "exceeds" it.
    for name in ("batch_size", "num_train_steps", "log_every_steps", "checkpoint_every_steps"):
        if config[name] <= 0:
            raise ConfigError(f"config.{name} must be > 0, got {config[name]!r}")
    optim.validate_config(config.optimizer, config.num_train_steps)
    if config.eval_every_steps < 0:
        raise ConfigError(f"config.eval_every_steps must be >= 0, got {config.eval_every_steps}")
    if config.get("num_eval_batches", -1) == 0:
        for name in ("eval_metric", "early_stopping_patience"):
            if config.get(name):
                raise ConfigError(f"config.num_eval_batches=0 (no evaluation) but config.{name}="
                                  f"{config[name]!r} needs evaluations; unset one of them")
    shape = sharding.mesh_shape(config.mesh, num_devices)
    sharding.check_rules(config.mesh)
    dp = shape[0] * shape[1]
    if dp % process_count:
        # Each process reads its own rows; rows replicated over devices of several processes
        # (tensor parallelism across hosts) would have to be the same rows everywhere.
        raise ConfigError(
            f"the data-parallel size {dp} = config.mesh.data x config.mesh.fsdp (mesh "
            f"{dict(zip(sharding.AXES, shape))}) must be a multiple of the {process_count} "
            "processes: each process feeds its own rows of the batch, so config.mesh.tensor "
            "cannot span processes; keep tensor within a host")
    accum = config.optimizer.grad_accum_steps
    if config.batch_size % process_count:
        raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by the "
                          f"{process_count} processes")
    if config.batch_size % accum:
        raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by "
                          f"config.optimizer.grad_accum_steps={accum}")
    if (config.batch_size // accum) % dp:
        raise ConfigError(
            f"config.batch_size={config.batch_size} (micro-batch {config.batch_size // accum}) is "
            f"not divisible by the data-parallel size {dp} = config.mesh.data x config.mesh.fsdp "
            f"(mesh {dict(zip(sharding.AXES, shape))})")
    if config.get("init_from_use", "auto") not in best_lib.USES:
        raise ConfigError(f"config.init_from_use={config.init_from_use!r} is not one of "
                          f"{best_lib.USES}")
    seq = config.data.get("max_seq_length")
    if seq is not None and seq > config.model.max_position_embeddings:
        raise ConfigError(f"config.data.max_seq_length={seq} exceeds "
                          f"config.model.max_position_embeddings={config.model.max_position_embeddings}")
    return shape


def check_workdir(workdir: str, init_from: str) -> None:
    """Raises ConfigError unless workdir can hold this run: new, empty, of other files, or an
    earlier run's. A model directory (bertjax, Hugging Face, Google) is refused before anything is
    written there: the run's W/config.json would replace a Hugging Face config.json, and its
    checkpoints/ would make the model unreadable as a model. So is a config.json of something
    else: a run makes W/checkpoints/ before it writes W/config.json, so a config.json without
    checkpoints/ is no run's, and the run would overwrite it."""
    from bertjax import convert  # pylint: disable=import-outside-toplevel
    if init_from and os.path.exists(init_from) and os.path.exists(workdir) and os.path.samefile(
            init_from, workdir):
        raise ConfigError(f"config.init_from={init_from!r} is the workdir itself; give the run a "
                          "new --workdir (a run resumes from its own workdir without init_from)")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file; give a directory (new or a run's)")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:  # no permission, a read-only file system, a parent that is a file
        raise ConfigError(f"--workdir {workdir}: cannot create it ({e.strerror or e})") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir {workdir}: not writable")
    held = convert.held_format(workdir)
    if held not in (None, "workdir"):
        raise ConfigError(f"{workdir}: holds a {held} model, not a training run; pass it as "
                          "--config.init_from and give the run a new --workdir")
    if held is None and os.path.exists(ckpt_lib.config_path(workdir)):
        raise ConfigError(f"{ckpt_lib.config_path(workdir)} exists but {workdir} holds no run "
                          "(no checkpoints/): the run would overwrite that file; give the run a "
                          "new --workdir")


def _to_global(batch: dict, batch_sharding) -> dict:
    """Per-process numpy rows -> global jax.Arrays split over data x fsdp."""
    n = jax.process_count()
    return {k: jax.make_array_from_process_local_data(
        batch_sharding, np.asarray(v), (v.shape[0] * n,) + tuple(v.shape[1:]))
        for k, v in batch.items()}


def adopt_init_from_model(config: ml_collections.ConfigDict, explicit=(),
                          workdir: str | None = None) -> list[str]:
    """Sets config.model's ckpt_lib.INIT_FROM_FIELDS to those of config.init_from's model where
    the config leaves them at their BERT-base defaults and the command line did not name them
    (`explicit`: override keys such as "model.num_layers"). So configs/classify.py, whose model
    is BERT-base, fine-tunes a BERT-tiny or BERT-large checkpoint as it is; a shape field the
    user did set and that differs still fails in _load_init_from, naming the field.

    When `workdir` already holds a checkpoint the fields come from its own W/config.json
    instead: a resumed run is the run it was, whatever init_from holds now (or if it is gone).
    Returns the "model.<field>=value" changes made (also logged)."""
    if not config.get("init_from"):
        return []
    from bertjax import convert  # pylint: disable=import-outside-toplevel
    resumed = bool(workdir) and ckpt_lib.has_checkpoint(workdir)
    source = workdir if resumed else config.init_from
    use = config.get("init_from_use", "auto")
    try:
        src = convert.model_config_of(source)
        if not resumed:
            convert.resolve_use(source, use)  # e.g. "best" of a run that kept none: fail now
    except convert.ConvertError as e:
        if resumed:
            what = f"the run in {workdir}"
        else:
            what = f"config.init_from={config.init_from!r}"
            if use != "auto":
                what += f" (config.init_from_use={use!r})"
        raise ConfigError(f"{what}: {e}") from None
    default = config_lib.model()
    changed = []
    for name in ckpt_lib.INIT_FROM_FIELDS:
        value = src.get(name)
        if (f"model.{name}" in explicit or value is None or config.model.get(name) == value
                or config.model.get(name) != default.get(name)):
            continue
        config.model[name] = value
        changed.append(f"model.{name}={value!r}")
    if changed:
        logging.info("model fields taken from %s: %s", source, ", ".join(changed))
    return changed


def _load_init_from(path: str, task: tasks_base.Task, model_cfg, params: PyTree,
                    shardings: PyTree, use: str = "auto") -> tuple[PyTree, list[str]]:
    """Replaces task.pretrained_keys subtrees of `params` with those of a pretrained model.

    Subtrees the source never trained (extra["untrained"], e.g. the pooler of an imported
    BertForMaskedLM) keep this run's own, seeded initialisation. Returns (params, the subtrees
    that start untrained: those, and optional ones the source lacks)."""
    from bertjax import convert  # the interop helper's module
    # Of a training workdir, W/best/ when the run kept one (use="auto"), by the same rule as
    # predict, pretrained.load and the converter (bertjax.best.chosen_best_dir).
    src_cfg, src_params, _, extra = convert.load_any(path, with_extra=True, use=use)
    untrained = list(extra.get(param_names.UNTRAINED, ()))
    diffs = [f"model.{k}: {path} has {src_cfg.get(k)!r}, config has {model_cfg.get(k)!r}"
             for k in ckpt_lib.INIT_SHAPE_FIELDS if src_cfg.get(k) is not None
             and src_cfg.get(k) != model_cfg.get(k)]
    if diffs:
        raise ckpt_lib.CheckpointMismatchError(
            f"config.init_from={path!r} does not match config.model:\n  " + "\n  ".join(diffs))
    src = model_lib.layout_params(src_params, model_cfg)
    params = dict(params)
    for key in task.pretrained_keys:
        if key not in src:
            if key in task.optional_pretrained_keys:
                logging.info("init_from: %s has no %r subtree; keeping it fresh", path, key)
                untrained.append(key)
                continue
            raise ckpt_lib.CheckpointMismatchError(
                f"config.init_from={path!r} has no {key!r} parameters (has {sorted(src)})")
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params[key])
        try:
            jax.tree.map(lambda t, s: None if t.shape == np.shape(s) else (_ for _ in ()).throw(
                ValueError(f"{t.shape} vs {np.shape(s)}")), target, src[key])
        except ValueError as e:
            raise ckpt_lib.CheckpointMismatchError(
                f"config.init_from={path!r}: {key!r} parameters differ in structure/shape: {e}")
        fresh = params[key]
        params[key] = jax.tree.map(lambda s, t, sh: jax.device_put(np.asarray(s, t.dtype), sh),
                                   src[key], target, shardings[key])
        for name in untrained:  # "bert/pooler": keep the run's own initialisation
            top, _, sub = name.partition("/")
            if top == key and sub in fresh:
                params[key] = {**params[key], sub: fresh[sub]}
                logging.info("init_from: %s's %s was never trained; keeping a fresh one", path,
                             name)
    return params, untrained


def _still_untrained(started: list[str], unused: tuple[str, ...]) -> list[str]:
    """The subtrees of `started` (untrained at step 0) that the task's loss never reads."""
    within = lambda name, tree: name == tree or name.startswith(tree + "/")
    return sorted({name for name in started if any(within(name, u) for u in unused)}
                  | {u for u in unused if any(within(u, name) for name in started)})


def _host_global(tree: PyTree) -> PyTree:
    """Global jax.Arrays or per-process numpy rows -> numpy of the whole global batch."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def _predict_step(task, model, abstract_params, dummy, param_sh, batch_in, batch_sharding):
    """task.predict_fn jitted like eval_step (outputs split along the batch), or None."""
    def predict(params, batch):
        return task.predict_fn(model, params, batch)
    if jax.eval_shape(predict, abstract_params, dummy) is None:
        return None
    return jax.jit(predict, in_shardings=(param_sh, batch_in), out_shardings=batch_sharding)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains config.num_train_steps updates (resuming from workdir), evaluates, returns a summary.

    Returns {"step", "preempted": bool, "eval": final eval metrics, "train": last logged train
    metrics}, plus "best": {"step", "metric", "value"} when config.eval_metric is set (params in
    W/best/, see bertjax/best.py) and "early_stopped": True when patience ran out. A rerun of a
    run that stopped early returns at once, without training (unless a larger patience lifts it).
    """
    workdir = os.path.abspath(workdir)
    validate(config, jax.device_count(), jax.process_count())
    if config.data.get("tokenizer"):  # a resumed run whose tokenizer moved reads W/tokenizer/
        config.data.tokenizer = ckpt_lib.tokenizer_for_resume(workdir, config.data.tokenizer)
    task_cls = tasks_base.get_task(config.task)
    task = task_cls(config)
    task.validate(config)
    best_lib.validate(config, task.eval_metric_names())  # now, not at the first evaluation
    check_workdir(workdir, config.init_from)  # creates it: after every config check
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.rules(config.mesh)
    primary = jax.process_index() == 0

    checkpointer = ckpt_lib.Checkpointer(workdir, max_to_keep=config.max_to_keep)
    latest = checkpointer.latest_step()
    if latest is not None:
        ckpt_lib.check_compatible(workdir, config)
    data = task.data(config, workdir, jax.process_index(), jax.process_count())
    if latest is not None:  # every process, so none goes on alone into the step's collectives
        ckpt_lib.check_same_tokenizer(workdir, data.tokenizer_dir, config.data)
    # Pretraining refused this before preparing its data (prepare.check_fits_model); a
    # fine-tuning tokenizer is checked here, once loaded.
    vocab = tokenizer_lib.num_ids(data.tokenizer) if data.tokenizer is not None else 0
    if vocab > config.model.vocab_size:
        raise ConfigError(f"the tokenizer has {vocab} tokens but config.model.vocab_size="
                          f"{config.model.vocab_size}; set config.model.vocab_size >= {vocab}")
    if config.num_eval_batches != 0:
        data.check_eval()  # now, not at the first evaluation hours later
    train_iter = data.train_iterator()

    model = task.build_model(config.model)
    tx = optim.make_optimizer(config.optimizer, config.num_train_steps)
    lr_schedule = optim.learning_rate_schedule(config.optimizer, config.num_train_steps)
    seq_len = int(config.data.get("max_seq_length", 128))
    dummy = task.dummy_batch(config.batch_size, seq_len)
    init_key, base_key = jax.random.split(jax.random.key(config.seed))
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    built = steps.build_steps(config, task, model, tx, mesh, rules, dummy, init_key)
    abstract, state_sh, param_sh, batch_in = (built.abstract, built.state_sh, built.param_sh,
                                              built.batch_in)
    train_step = built.train_step
    if latest is not None:
        target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              abstract, state_sh)
        state = ckpt_lib.restore_or_explain(checkpointer, latest, target, train_iter, workdir,
                                            config.optimizer)
        logging.info("resumed from %s step %d", checkpointer.directory, latest)
    else:
        state = built.init(init_key, dummy)
        started_untrained = list(state.params)  # from scratch: every subtree
        if config.init_from:
            params, started_untrained = _load_init_from(
                config.init_from, task, config.model, state.params, param_sh,
                config.get("init_from_use", "auto"))
            state = state.replace(params=params, opt_state=jax.jit(
                tx.init, out_shardings=state_sh.opt_state)(params))
    # Subtrees that will leave this run untrained (e.g. the pooler of an MLM-only run), recorded
    # in the workdir so that its readers (pretrained.embed, export) know; a resumed run keeps the
    # record its first start made.
    untrained = (ckpt_lib.read_untrained(workdir) if latest is not None
                 else _still_untrained(started_untrained, task.unused_params()))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        eval_step = jax.jit(functools.partial(steps.eval_step, task=task, model=model),
                            in_shardings=(param_sh, batch_in), out_shardings=replicated)
        accumulate = jax.jit(steps.accumulate)
        predict_step = _predict_step(task, model, abstract.params, dummy, param_sh, batch_in,
                                     batch_sharding)
        tracker = best_lib.BestTracker(config, workdir, data.tokenizer,
                                       {"task": config.task, param_names.UNTRAINED: untrained})

        step = int(jax.device_get(state.step))
        log = metrics_log.MetricsLog(workdir, config.num_train_steps, start_step=step,
                                     progress=primary and config.progress_bar)
        flops_per_step = flops_lib.step_flops(
            config.model, config.batch_size, seq_len,
            int(config.data.get("max_predictions_per_seq", seq_len)),
            bool(config.data.get("next_sentence", False)))
        peak = flops_lib.peak_flops(dtype=config.model.dtype)
        preemption = preemption_lib.Preemption(config.get("preemption_check_every_steps", 10))

        def evaluate() -> dict[str, float]:
            if config.num_eval_batches == 0:
                return {}
            total, predictions, used = None, [], []
            for i, batch in enumerate(data.eval_batches()):
                if 0 <= config.num_eval_batches <= i:
                    break
                global_batch = _to_global(batch, batch_sharding)
                total = accumulate(total, eval_step(state.params, global_batch))
                if predict_step is not None:  # prediction-based metrics (F1, MCC, EM, ...)
                    predictions.append(_host_global(predict_step(state.params, global_batch)))
                    used.append(_host_global(batch))
            if total is None:
                return {}
            results = task.finalize_metrics(steps.finalize(total))
            if predictions:
                results.update(task.evaluate_predictions(predictions, used))
            return results

        def check_finite(total) -> None:
            if total is None:
                return
            bad = int(jax.device_get(total["nonfinite_step"]))
            if bad != steps.NO_NONFINITE and not config.skip_nonfinite:
                raise NonFiniteError(
                    f"loss or gradients are NaN/Inf at step {bad} (the update producing step {bad});"
                    f" stopping without checkpointing it. Lower config.optimizer.learning_rate, "
                    f"check the data, or set config.skip_nonfinite=True.")

        saved = {"step": step}

        def save(at_step: int, total) -> None:
            if saved["step"] == at_step:  # e.g. SIGTERM right after a periodic checkpoint
                return
            check_finite(total)
            checkpointer.save(at_step, state, train_iter)
            saved["step"] = at_step

        summary = {"step": step, "preempted": False, "eval": {}, "train": {}}
        stopped = tracker.stopped(step)  # an early stop is final: see bertjax/best.py
        if stopped is not None:
            summary["early_stopped"] = True
            log.print(f"early stopped at step {stopped} ({tracker.metric} not improved for "
                      f"{tracker.bad_evals} evaluations): not training further; raise "
                      f"config.early_stopping_patience (or set it to 0) to train on")
        if stopped is None and step < config.num_train_steps:
            # Only now, with the checkpoint restored (or the run started) under this config and
            # about to train, does W/config.json / tokenizer/ change: a rejected config, or a
            # rerun of a finished run that trains nothing, leaves the run's record as it was.
            ckpt_lib.write_run_files(workdir, config, data.tokenizer_dir, step, untrained)
        total, window_start, window_steps, compiled = None, None, 0, None
        try:
            while stopped is None and step < config.num_train_steps:
                batch = _to_global(next(train_iter), batch_sharding)
                state, metrics = train_step(state, batch, base_key)
                total = accumulate(total, metrics)
                step += 1
                window_steps += 1
                log.advance()
                if compiled is None:  # after the first step: compiled once, start the clock
                    jax.block_until_ready(state.step)
                    compiled = train_step._cache_size()
                    window_start, window_steps = time.perf_counter(), 0
                elif train_step._cache_size() != compiled:
                    raise RuntimeError(f"train_step recompiled at step {step}: the batch or state "
                                       "changed shape, dtype or sharding")
                last = step == config.num_train_steps
                if step % config.log_every_steps == 0 or last:
                    check_finite(total)
                    scalars = steps.finalize(total)
                    total = None
                    train = {f"train/{k}": v for k, v in task.finalize_metrics(scalars).items()}
                    # The rate of the latest applied update (optax counts from 0), not a window
                    # mean: what a plot of the schedule should show. Skipped (non-finite) steps
                    # leave the schedule's count behind the step.
                    applied = int(optim.applied_updates(state.opt_state))
                    train["train/learning_rate"] = float(lr_schedule(max(applied - 1, 0)))
                    elapsed = time.perf_counter() - window_start
                    perf = {}
                    if window_steps and elapsed > 0:  # none when only the compiling step ran
                        sps = window_steps / elapsed
                        perf = {"perf/steps_per_sec": sps,
                                "perf/tokens_per_sec": sps * config.batch_size * seq_len,
                                "perf/mfu": flops_lib.mfu(flops_per_step, sps, peak)}
                    window_start, window_steps = time.perf_counter(), 0
                    log.write(step, {**train, **perf})
                    summary["train"] = {**train, **perf}
                if step % config.checkpoint_every_steps == 0 or last:
                    save(step, total)
                if (config.eval_every_steps and step % config.eval_every_steps == 0) or last:
                    eval_start = time.perf_counter()
                    results = {f"eval/{k}": v for k, v in evaluate().items()}
                    if results:  # none with num_eval_batches=0
                        log.write(step, results)
                        log.print(f"step {step}: " + ", ".join(
                            f"{k}={v:.4g}" for k, v in sorted(results.items())))
                    summary["eval"] = results
                    window_start += time.perf_counter() - eval_start  # eval time is not training
                    if tracker.update(step, results, lambda: state.params):
                        summary["early_stopped"] = True  # recorded in W/best.json: final
                        if step % config.checkpoint_every_steps and not last:  # not saved yet
                            save(step, total)  # early stopping: the last state stays resumable
                        break
                if not last and preemption.agreed(step):
                    save(step, total)
                    checkpointer.wait()
                    why = (f"{preemption.name} received" if preemption.name
                           else "another process was signalled")
                    log.print(f"{why}: checkpointed step {step} in {checkpointer.directory}; "
                              f"exiting cleanly (rerun to resume)")
                    summary["preempted"] = True
                    break
        finally:
            checkpointer.close()
            log.close()
            preemption.restore()
        summary["step"] = step
        if tracker.enabled:
            summary["best"] = tracker.summary()
        return summary


# -- command line -------------------------------------------------------------------------------

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, config.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-process without TPU/SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


class _QuietOrbax(logging.Filter):
    """Orbax logs every save step at INFO; keep its warnings, drop the chatter."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or "orbax" not in record.pathname


def setup_process(coordinator_address: str | None = None, num_processes: int | None = None,
                  process_id: int | None = None) -> None:
    """What a command that trains does first (bertjax.train, .glue, .seeds), before JAX starts
    its CPU client: host.tune_malloc, INFO logging without Orbax's per-save lines, and
    jax.distributed.initialize (explicit arguments, else automatic on TPU pods and SLURM jobs).
    Calling it again adds no second filter."""
    host.tune_malloc()
    logging.getLogger().setLevel(logging.INFO)
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietOrbax())
    if coordinator_address:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "," in os.environ.get(
            "TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()


def user_errors() -> tuple[type[Exception], ...]:
    """The errors that report a bad input (config, data, tokenizer, checkpoint, workdir), each
    with a message naming what and where: train, glue and seeds print them without a traceback."""
    # pylint: disable=import-outside-toplevel
    from bertjax.data.corpus import CorpusError
    from bertjax.data.prepare import DataConfigError
    from bertjax.data.tokenizer import TokenizerError
    from bertjax.param_names import ConvertError
    from bertjax.tasks.heads import EncoderMismatchError
    from bertjax.tasks.sources import DataError
    return (ConfigError, CorpusError, DataConfigError, DataError, TokenizerError, ConvertError,
            EncoderMismatchError, ckpt_lib.CheckpointMismatchError,
            ckpt_lib.DamagedCheckpointError)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_process(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    config = _CONFIG.value
    try:
        adopt_init_from_model(config, config_flags.get_override_values(flags.FLAGS["config"]),
                              _WORKDIR.value)
        summary = train_and_evaluate(config, _WORKDIR.value)
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if summary["preempted"]:
        logging.info("preempted at step %d; exiting with status 0", summary["step"])


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
