"""Training workdirs: their files, and Orbax checkpoints of the training state in them.

Workdir layout:
  W/config.json    the full run config as JSON (written at start; compared on resume)
  W/tokenizer/     vocab.txt + tokenizer.json of the run
  W/checkpoints/   one directory per step, items "state" (TrainState: step, params, opt_state) and
                   "data" (the grain iterator state, one JSON file per process)

Saves are asynchronous: arrays are copied off the devices, then written by a background thread
while training continues. Restores take the target shardings, so a checkpoint written on one mesh
restores onto any other.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from typing import Any

import grain.checkpoint as grain_ckpt
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from bertjax import model as model_lib
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.param_names import UNTRAINED

PyTree = Any
# Model fields that change the parameter tree's shapes or layout: a mismatch cannot be resumed.
SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "position_embedding",
                "pre_layer_norm", "scan_layers")
# The model fields a run takes from config.init_from's model: those that shape the parameters
# (scan_layers is a layout, converted on load) and hidden_act.
INIT_SHAPE_FIELDS = tuple(f for f in SHAPE_FIELDS if f != "scan_layers")
INIT_FROM_FIELDS = INIT_SHAPE_FIELDS + ("hidden_act",)

# Task fields that decide what a saved head's outputs mean (softmax classes, sigmoid labels or a
# regression value); a run resumed with another value would train on silently.
HEAD_FIELDS = ("classification.kind",)


class CheckpointMismatchError(ValueError):
    """The run config does not match the checkpoint in the workdir; the message names fields."""


class NoCheckpointError(FileNotFoundError):
    """A training workdir whose run has not saved a checkpoint (yet): nothing to load from it."""


class DamagedCheckpointError(ValueError):
    """A saved step whose files are missing or unreadable; the message names the step directory."""


def _orbax_reason(error: Exception, lines: int = 1) -> str:
    """The first `lines` lines of an Orbax/TensorStore error, without TensorStore's
    multi-kilobyte spec."""
    text = str(error).split(" [tensorstore_spec")[0].strip()
    return "\n".join(line[:300] for line in text.splitlines()[:lines])


def _structure_diff(error: Exception) -> str:
    """Orbax's tree-structure mismatch, the keys that differ included, without its advice to pass
    partial_restore (no flag of ours)."""
    return "\n".join(line for line in _orbax_reason(error, lines=12).splitlines()
                     if "partial_restore" not in line)


def _missing_file(step_dir: str) -> str | None:
    """The first of a saved step's own files that is missing, or None."""
    for name in ("state", os.path.join("state", "_METADATA")):
        if not os.path.exists(os.path.join(step_dir, name)):
            return os.path.join(step_dir, name)
    return None


# What Orbax and TensorStore say when a step's files are gone or cut short (a KeyError 'Item
# "state" was not found in the checkpoint', a ValueError "NOT_FOUND: ... does not exist",
# "DATA_LOSS: ...").
_DAMAGE_SIGNS = ("NOT_FOUND", "DATA_LOSS", "was not found in the checkpoint")
# Of the OSErrors, those that say a file is gone; not a full disk, too many open files or a
# permission, which deleting the step would not mend.
_GONE = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def is_damage(checkpoints_dir: str, step: int, error: Exception) -> bool:
    """Whether `error`, raised restoring `step`, comes from missing or unreadable files (rather
    than, say, a bug or another device layout): only then is the step called damaged, whose
    advice is to delete it."""
    return (_missing_file(os.path.join(checkpoints_dir, str(step))) is not None
            or isinstance(error, _GONE)
            or any(sign in _orbax_reason(error) for sign in _DAMAGE_SIGNS))


def raise_unreadable(checkpoints_dir: str, step: int, error: Exception) -> None:
    """Raises, for `error` from restoring `step`: DamagedCheckpointError (from `error`) when it
    comes from missing or unreadable files (is_damage), else `error` itself, unchanged."""
    if is_damage(checkpoints_dir, step, error):
        raise damaged(checkpoints_dir, step, error) from error
    raise error


def damaged(checkpoints_dir: str, step: int, error: Exception) -> DamagedCheckpointError:
    """The error for a step of W/checkpoints that Orbax could not read: names the step directory
    and the first missing file or Orbax's reason, and says how to go on from the steps before
    it, if any."""
    step_dir = os.path.join(checkpoints_dir, str(step))
    missing = _missing_file(step_dir)
    reason = (f"{missing} is missing" if missing
              else f"{type(error).__name__}: {_orbax_reason(error)}")
    earlier = sorted(int(n) for n in os.listdir(checkpoints_dir)
                     if n.isdigit() and int(n) < step) if os.path.isdir(checkpoints_dir) else []
    advice = (f"delete {step_dir} to use step {earlier[-1]}, the latest before it" if earlier
              else "it is the run's only saved step, so the run must start over")
    return DamagedCheckpointError(f"{step_dir}: the checkpoint of step {step} is damaged or "
                                  f"incomplete and cannot be restored ({reason}); {advice}")


def config_path(workdir: str) -> str:
    return os.path.join(workdir, "config.json")


def saved_config(workdir: str) -> dict | None:
    """W/config.json as a dict (the run's config as last written), or None when there is none."""
    path = config_path(workdir)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def untrained_path(workdir: str) -> str:
    return os.path.join(workdir, "untrained.json")


def read_untrained(workdir: str) -> list[str]:
    """The parameter subtrees W's run leaves untrained (W/untrained.json; [] if not recorded)."""
    path = untrained_path(workdir)
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            names = json.load(f)[UNTRAINED]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointMismatchError(f"{path} is unreadable ({e!r}): expected "
                                      f'{{"{UNTRAINED}": [subtree names]}}') from None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointMismatchError(f"{path}: {UNTRAINED!r} must be a list of subtree names, "
                                      f"got {names!r}")
    return names


def tokenizer_dir(workdir: str) -> str:
    return os.path.join(workdir, "tokenizer")


def has_checkpoint(workdir: str) -> bool:
    """Whether W/checkpoints holds at least one saved step."""
    directory = os.path.join(workdir, "checkpoints")
    return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def require_checkpoint(workdir: str) -> None:
    """Raises NoCheckpointError unless W/checkpoints holds a saved step.

    Checked before W/config.json: a run that failed before its first save may have left
    checkpoints/ without config.json, and "config.json is missing" would mislead.
    """
    if not has_checkpoint(workdir):
        raise NoCheckpointError(
            f"{workdir}: a training workdir with no checkpoint yet "
            f"({os.path.join(workdir, 'checkpoints')} holds no saved step; the run stopped before "
            "its first save). Train it (python -m bertjax.train --config ... --workdir "
            f"{workdir}), or use a workdir whose run saved a checkpoint.")


def check_compatible(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Compares the run config with W/config.json; raises naming every differing shape field."""
    path = config_path(workdir)
    saved = saved_config(workdir)
    if saved is None:
        return
    diffs = []
    if saved.get("task") != config.task:
        diffs.append(f"task: checkpoint {saved.get('task')!r} vs config {config.task!r}")
    saved_model = saved.get("model", {})
    for name in SHAPE_FIELDS + ("hidden_act",):  # hidden_act: same shapes, another function
        if name in saved_model and saved_model[name] != config.model.get(name):
            diffs.append(f"model.{name}: checkpoint {saved_model[name]!r} vs config "
                         f"{config.model.get(name)!r}")
    for dotted in HEAD_FIELDS:
        section, name = dotted.split(".")
        before = saved.get(section, {}).get(name)
        now = config[section].get(name) if section in config else None
        if before is not None and before != now:
            diffs.append(f"{dotted}: checkpoint {before!r} vs config {now!r}")
    if diffs:
        raise CheckpointMismatchError(
            f"the config does not match the run in {workdir} ({path}):\n  " + "\n  ".join(diffs)
            + "\nUse a new --workdir, or the checkpoint's settings.")
    _warn_optimizer_changes(saved.get("optimizer", {}), config.optimizer, path)
    for name, effect in RUN_FIELDS.items():  # extending a run is normal, but should be seen
        if name in saved and name in config and saved[name] != config[name]:
            logging.warning("resuming with %s: run %r -> config %r (%s): %s", name, saved[name],
                            config[name], path, effect)


# Top-level fields a resumed run may change, and what the change does to its remaining steps.
RUN_FIELDS = {
    "num_train_steps": "the learning-rate schedule follows the new step count",
    "batch_size": "each step from here reads a batch of the new size, so the rest of the data "
                  "stream is cut differently from the run's",
}


# Fields added to config.optimizer since runs were first saved, with the behaviour such runs had.
_OPTIMIZER_BEFORE = {"bias_correction": True}


def _optimizer_changes(saved: dict, opt_cfg: ml_collections.ConfigDict) -> list[str]:
    """"optimizer.<field>: run <before> -> config <now>" for each field the config changes."""
    changed = []
    for name in sorted(opt_cfg.keys()):
        before = saved.get(name, _OPTIMIZER_BEFORE.get(name))
        now = opt_cfg[name]
        if before is not None and before != (list(now) if isinstance(now, tuple) else now):
            changed.append(f"optimizer.{name}: run {before!r} -> config {now!r}")
    return changed


def _warn_optimizer_changes(saved: dict, opt_cfg: ml_collections.ConfigDict, path: str) -> None:
    """A resumed run keeps its optimizer state whatever config.optimizer says now, but a changed
    update rule (a new default after an upgrade, say) changes the trajectory: say so."""
    changed = _optimizer_changes(saved, opt_cfg)
    if changed:
        logging.warning("resuming with another optimizer than the run's (%s): %s", path,
                        "; ".join(changed))


def restore_or_explain(checkpointer: "Checkpointer", step: int, target: PyTree,
                       data_iterator: Any, workdir: str,
                       opt_cfg: ml_collections.ConfigDict | None = None) -> PyTree:
    """checkpointer.restore, with a mismatch of parameter shapes (e.g. a head of another size or
    kind than the checkpoint's) or of the training state's structure (an optimizer whose state
    has other parts: lamb for adamw, clipping turned off, frozen layers) raised as
    CheckpointMismatchError naming the workdir, the step and the changed config.optimizer
    fields (opt_cfg: the config's), and a step whose files are missing or unreadable as
    DamagedCheckpointError."""
    try:
        return checkpointer.restore(step, target, data_iterator)
    except (KeyError, OSError, TypeError, ValueError) as e:  # Orbax's, for missing/unreadable files
        error = e
    intact = not _missing_file(os.path.join(checkpointer.directory, str(step)))
    if intact and "tree structures do not match" in str(error):
        saved = saved_config(workdir) if opt_cfg is not None else None
        changes = _optimizer_changes(saved.get("optimizer", {}), opt_cfg) if saved else []
        what = (f"optimizer state of another structure than this config's optimizer keeps "
                f"({'; '.join(changes)})" if changes else
                f"training state of another structure than this config makes "
                f"({_structure_diff(error)})")
        raise CheckpointMismatchError(
            f"the checkpoint in {workdir} (step {step}) holds {what}, so the run cannot resume "
            f"under it. Resume with the run's settings ({config_path(workdir)}), or start a new "
            f"--workdir with --config.init_from={workdir} to train its weights under the new "
            "ones (its W/best/ when it kept one; --config.init_from_use=latest for this "
            "step).") from None
    if isinstance(error, ValueError) and "shape" in _orbax_reason(error) and intact:
        raise CheckpointMismatchError(
            f"the checkpoint in {workdir} (step {step}) does not fit this config's model: "
            f"{error}\nUse a new --workdir, or the settings the run was made with "
            f"({config_path(workdir)}).") from None
    raise_unreadable(checkpointer.directory, step, error)


def tokenizer_for_resume(workdir: str, given: str) -> str:
    """The tokenizer path a run in `workdir` reads: `given` (config.data.tokenizer), unless that
    path is gone and the workdir holds a checkpoint and the run's copy W/tokenizer/ (written by
    write_run_files from the tokenizer the run trained with): that copy, with a warning naming
    both. A fresh run gets `given` back whatever it is (a missing path stays an error where it
    is read), and a path that is there is compared with the copy by check_same_tokenizer."""
    copy = tokenizer_dir(workdir)
    if (not given or os.path.exists(os.path.expanduser(given)) or not has_checkpoint(workdir)
            or not tokenizer_lib.holds_tokenizer(copy)):
        return given
    logging.warning("config.data.tokenizer=%r does not exist (moved or deleted): resuming with "
                    "%s, the copy of the tokenizer this run was trained with", given, copy)
    return copy


# config.data fields that decide the vocabulary a run trains or reads.
VOCAB_FIELDS = ("tokenizer", "corpus", "vocab_size", "lowercase")


def check_same_tokenizer(workdir: str, tokenizer_src: str | None,
                         data_cfg: ml_collections.ConfigDict | None = None) -> None:
    """A resumed run must keep its vocabulary: token ids in the checkpoint refer to it.

    data_cfg: the config's data section; the error names the VOCAB_FIELDS it changes (a changed
    corpus trains a new vocabulary) and how to go on with the run's own."""
    if not tokenizer_src:
        return
    mine = os.path.join(tokenizer_dir(workdir), "vocab.txt")
    new = os.path.join(tokenizer_src, "vocab.txt")
    if os.path.abspath(mine) == os.path.abspath(new) or not (
            os.path.exists(mine) and os.path.exists(new)):
        return
    with open(mine, "rb") as a, open(new, "rb") as b:
        if a.read() == b.read():
            return
    saved = (saved_config(workdir) or {}).get("data", {}) if data_cfg is not None else {}
    changes = [f"data.{k}: run {saved[k]!r} -> config {data_cfg[k]!r}" for k in VOCAB_FIELDS
               if k in saved and k in data_cfg and saved[k] != data_cfg[k]]
    why = f" (the config changes {'; '.join(changes)})" if changes else ""
    raise CheckpointMismatchError(
        f"{mine} differs from this run's vocabulary {new}{why}: the run in {workdir} was made "
        "with the first, and its embeddings are indexed by it. To go on with the run's "
        f"vocabulary, add --config.data.tokenizer={tokenizer_dir(workdir)}; or use a new "
        "--workdir.")


def write_run_files(workdir: str, config: ml_collections.ConfigDict, tokenizer_src: str | None,
                    step: int = 0, untrained: list[str] | None = None):
    """W/config.json, W/untrained.json (the parameter subtrees the run leaves untrained) and
    W/tokenizer/ (primary process only). The trainer calls it once the run's checkpoint restored
    under `config` (check_compatible, check_same_tokenizer passed).

    A resumed run (step > 0) whose config changed keeps the old file as
    W/config.before-step-<step>.json: the record of what trained the steps before."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    path = config_path(workdir)
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if step and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if old != text:
            os.replace(path, os.path.join(workdir, f"config.before-step-{step}.json"))
    for target, content in ((path, text),
                            (untrained_path(workdir), json.dumps({UNTRAINED: untrained or []}))):
        tmp = target + ".tmp"
        with open(tmp, "w") as f:
            f.write(content)
        os.replace(tmp, target)
    if tokenizer_src and os.path.abspath(tokenizer_src) != os.path.abspath(tokenizer_dir(workdir)):
        os.makedirs(tokenizer_dir(workdir), exist_ok=True)
        for name in ("vocab.txt", "tokenizer.json"):
            src = os.path.join(tokenizer_src, name)
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(tokenizer_dir(workdir), name))


class Checkpointer:
    """Save / restore (state, data iterator) under W/checkpoints."""

    def __init__(self, workdir: str, max_to_keep: int | None = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "data"),
                                             options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: PyTree, data_iterator: Any) -> None:
        """Starts an asynchronous save of `state` and the iterator's current position."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain_ckpt.CheckpointSave(data_iterator)), force=True)

    def restore(self, step: int, abstract_state: PyTree, data_iterator: Any | None) -> PyTree:
        """abstract_state: jax.ShapeDtypeStruct leaves with the target shardings.

        Sets `data_iterator`'s state (when given) and returns the restored state.
        """
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        data_dir = os.path.join(self.directory, str(step), "data")
        own = os.path.join(data_dir, f"process_{jax.process_index()}-of-{jax.process_count()}.json")
        other_layout = data_iterator is not None and not os.path.exists(own)
        if data_iterator is not None and not other_layout:
            items["data"] = grain_ckpt.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        if other_layout:
            _restore_position_from_other_layout(data_dir, data_iterator)
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _restore_position_from_other_layout(data_dir: str, data_iterator: Any) -> None:
    """Resumes the data stream of a run saved by another number of processes.

    Every process saved the same position, the next *global* batch number (see
    bertjax/data/pipeline.py and finetune_data.py: global batch t is the same examples whatever
    the process count, each process taking its slice), so process 0's file of the saved layout
    serves every process of the new one."""
    saved = sorted(glob.glob(os.path.join(data_dir, "process_0-of-*.json")))
    if not saved:
        raise CheckpointMismatchError(f"{data_dir}: no data iterator state to resume from")
    with open(saved[0], encoding="utf-8") as f:
        state = json.load(f)
    logging.info("resuming the data stream saved as %s by another number of processes "
                 "(this run: %d)", os.path.basename(saved[0]), jax.process_count())
    data_iterator.set_state(state)
    if hasattr(data_iterator, "start_prefetch"):
        data_iterator.start_prefetch()


def _load_run_config(workdir: str) -> dict:
    run = saved_config(workdir)
    if run is None:
        raise FileNotFoundError(f"{config_path(workdir)} not found: {workdir} is not a bertjax "
                                "training workdir")
    return run


def restore_params(workdir: str, step: int | None = None
                   ) -> tuple[ml_collections.ConfigDict, dict, str, dict]:
    """(model_cfg, canonical params as numpy, tokenizer_dir, extra) of a training workdir.

    Loads the latest (or the given) step's parameters only, without the optimizer state.
    extra: {"task": ..., "step": ..., "config": the full run config dict, "untrained": the
    subtrees the run left untrained}.
    Raises NoCheckpointError for a workdir with no saved step.
    """
    require_checkpoint(workdir)
    run = _load_run_config(workdir)
    directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    steps = sorted(ocp.utils.checkpoint_steps(directory))  # finalized steps, as the manager's
    step = steps[-1] if step is None and steps else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {directory} (have {steps})")
    # A Checkpointer on the one step directory, told what both saved items are, reads "state"
    # only and logs nothing: a read-only CheckpointManager warned thrice that it is read-only,
    # and twice that the "data" item (the iterator position) "could not be restored".
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler(
            state=ocp.PyTreeCheckpointHandler(), data=grain_ckpt.CheckpointHandler())) as reader:
        step_dir = os.path.join(directory, str(step))
        try:
            meta = reader.metadata(step_dir).item_metadata["state"]
            param_meta = getattr(meta, "tree", meta)["params"]
            item = {"params": jax.tree.map(lambda m: 0, param_meta)}
            restore_args = {"params": jax.tree.map(
                lambda m: ocp.RestoreArgs(restore_type=np.ndarray), param_meta)}
            restored = reader.restore(step_dir, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                             partial_restore=True)))
        except (KeyError, OSError, TypeError, ValueError) as e:  # missing or unreadable files
            raise_unreadable(directory, step, e)
    params = model_lib.canonical_params(restored["state"]["params"])
    model_cfg = ml_collections.ConfigDict(run["model"])
    extra = {"task": run.get("task"), "step": int(step), "config": run,
             UNTRAINED: read_untrained(workdir)}
    return model_cfg, params, tokenizer_dir(workdir), extra
