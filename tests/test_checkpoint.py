"""The workdir checkpoint wrapper: what a reader is told when a saved step cannot be restored."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from bertjax import checkpoint as ckpt_lib
from bertjax import config as config_lib
from bertjax import convert


def _state(value):
    return {"params": {"bert": {"w": np.full((3, 5), value, np.float32)}}, "step": np.int32(value)}


def _saved_run(workdir, steps=(1, 2)):
    """A workdir whose W/checkpoints holds `steps`, each a tiny state, and its W/config.json."""
    checkpointer = ckpt_lib.Checkpointer(workdir, async_save=False)
    for step in steps:
        checkpointer.manager.save(step, args=ckpt_lib.ocp.args.Composite(
            state=ckpt_lib.ocp.args.StandardSave(_state(step))))
    checkpointer.close()
    with open(ckpt_lib.config_path(workdir), "w") as f:
        json.dump({"task": "pretraining", "model": config_lib.model().to_dict()}, f)
    return os.path.join(workdir, "checkpoints")


def _restore(workdir, step):
    checkpointer = ckpt_lib.Checkpointer(workdir)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=one),
                          _state(0))
    try:
        return ckpt_lib.restore_or_explain(checkpointer, step, target, None, workdir)
    finally:
        checkpointer.close()


# A failed TensorStore read leaves others in flight that call back into the asyncio loop Orbax
# has closed ("Event loop is closed", printed by the thread, not raised): upstream noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["state/manifest.ocdbt", "state/d", "state"])
def test_a_damaged_step_names_its_directory_and_the_step_before_it(tmp_path, damage):
    """Resuming (restore_or_explain) and reading params (restore_params: init_from, convert,
    pretrained.load, predict) both say which step is damaged and which one is left, instead of
    Orbax's traceback (a pytree structure error, a KeyError, or TensorStore's NOT_FOUND)."""
    workdir = str(tmp_path)
    checkpoints = _saved_run(workdir)
    step_dir = os.path.join(checkpoints, "2")
    target = os.path.join(step_dir, damage)
    if damage == "state/d":  # the array data, with the metadata intact
        for name in os.listdir(target):
            os.remove(os.path.join(target, name))
    elif os.path.isdir(target):
        shutil.rmtree(target)
    else:
        os.remove(target)
    message = rf"{step_dir}: the checkpoint of step 2 is damaged .* use step 1, the latest before"
    with pytest.raises(ckpt_lib.DamagedCheckpointError, match=message):
        _restore(workdir, 2)
    with pytest.raises(ckpt_lib.DamagedCheckpointError, match=message):
        ckpt_lib.restore_params(workdir)
    with pytest.raises(convert.ConvertError, match=message) as raised:
        convert.load_any(workdir)
    assert "tensorstore_spec" not in str(raised.value)
    # The step before it is intact and still restores.
    assert int(_restore(workdir, 1)["step"]) == 1


def test_the_only_saved_step_damaged_says_the_run_must_start_over(tmp_path):
    checkpoints = _saved_run(str(tmp_path), steps=(3,))
    shutil.rmtree(os.path.join(checkpoints, "3", "state"))
    with pytest.raises(ckpt_lib.DamagedCheckpointError,
                       match=r"3/state is missing\); it is the run's only saved step"):
        _restore(str(tmp_path), 3)


def test_resuming_under_an_optimizer_with_another_state_names_the_changed_fields(tmp_path):
    """Clipping turned off drops a part of optax's state: Orbax's "tree structures do not
    match ... pass partial_restore=True" becomes a mismatch naming optimizer.grad_clip_norm."""
    from bertjax import optim
    workdir = str(tmp_path)
    params = {"bert": {"w": np.ones((3, 5), np.float32)}}
    run_opt = config_lib.optimizer(warmup_steps=2)
    new_opt = config_lib.optimizer(warmup_steps=2, grad_clip_norm=0.0)
    checkpointer = ckpt_lib.Checkpointer(workdir, async_save=False)
    state = {"params": params, "opt_state": optim.make_optimizer(run_opt, 10).init(params)}
    checkpointer.manager.save(4, args=ckpt_lib.ocp.args.Composite(
        state=ckpt_lib.ocp.args.StandardSave(state)))
    checkpointer.close()
    with open(ckpt_lib.config_path(workdir), "w") as f:
        json.dump({"task": "pretraining", "optimizer": run_opt.to_dict()}, f)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=one),
        {"params": params, "opt_state": optim.make_optimizer(new_opt, 10).init(params)})
    checkpointer = ckpt_lib.Checkpointer(workdir)
    try:
        with pytest.raises(ckpt_lib.CheckpointMismatchError,
                           match=r"\(step 4\) holds optimizer state of another structure .*"
                                 r"optimizer.grad_clip_norm: run 1.0 -> config 0.0.*"
                                 rf"--config.init_from={workdir}"):
            ckpt_lib.restore_or_explain(checkpointer, 4, target, None, workdir, new_opt)
        with pytest.raises(ckpt_lib.CheckpointMismatchError) as raised:  # no optimizer change
            ckpt_lib.restore_or_explain(checkpointer, 4, target, None, workdir)
        assert "training state of another structure" in str(raised.value)
        assert "opt_state" in str(raised.value)  # Orbax's lines that name the differing keys
        assert "partial_restore" not in str(raised.value)
    finally:
        checkpointer.close()


def test_a_resume_whose_changed_corpus_trained_another_vocabulary_says_so(tmp_path):
    workdir, trained = tmp_path / "run", tmp_path / "cache" / "tokenizer-new"
    for directory, words in ((workdir / "tokenizer", "cat dog"), (trained, "cat bird")):
        directory.mkdir(parents=True)
        (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", *words.split()]))
    run_data = config_lib.pretraining("tiny").data
    run_data.corpus = "old/*.txt"
    (workdir / "config.json").write_text(json.dumps({"data": run_data.to_dict()}))
    data = config_lib.pretraining("tiny").data
    data.corpus = "new/*.txt"
    with pytest.raises(ckpt_lib.CheckpointMismatchError,
                       match=r"data.corpus: run 'old/\*.txt' -> config 'new/\*.txt'.* add "
                             rf"--config.data.tokenizer={workdir / 'tokenizer'}"):
        ckpt_lib.check_same_tokenizer(str(workdir), str(trained), data)
    ckpt_lib.check_same_tokenizer(str(workdir), str(workdir / "tokenizer"), data)  # the way on


def test_a_restore_error_that_is_no_missing_file_is_not_called_damage(tmp_path, monkeypatch):
    """The advice for a damaged step is to delete it: an error that does not come from missing or
    unreadable files (a bug, another device layout) is raised as it is, and the step is kept."""
    workdir = str(tmp_path)
    _saved_run(workdir)

    def broken(*args, **kwargs):
        raise TypeError("an unrelated failure")
    monkeypatch.setattr(ckpt_lib.Checkpointer, "restore", broken)
    with pytest.raises(TypeError, match="an unrelated failure"):
        _restore(workdir, 2)
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "2", "state"))


def test_resuming_with_another_step_count_says_the_schedule_follows_it(tmp_path, caplog):
    """Extending a run is allowed, but its learning-rate schedule is reshaped: a warning names
    the changed field and what it does; an unchanged config warns of nothing."""
    config = config_lib.pretraining("tiny")
    with open(ckpt_lib.config_path(str(tmp_path)), "w") as f:
        f.write(config.to_json_best_effort())
    with caplog.at_level("WARNING"):
        ckpt_lib.check_compatible(str(tmp_path), config)
    assert not caplog.records
    config.num_train_steps += 100
    with caplog.at_level("WARNING"):
        ckpt_lib.check_compatible(str(tmp_path), config)
    [record] = caplog.records
    assert (f"num_train_steps: run {config.num_train_steps - 100} -> config "
            f"{config.num_train_steps}") in record.getMessage()
    assert "schedule follows the new step count" in record.getMessage()


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   OSError(24, "Too many open files"),
                                   ValueError("a bug: not found")])
def test_errors_that_deleting_the_step_would_not_mend_are_raised_as_they_are(tmp_path,
                                                                            monkeypatch, error):
    """A permission, a full table of open files or an unrelated 'not found' is no damage: the
    error comes through unchanged, in restore_params too, with no advice to delete the step."""
    workdir = str(tmp_path)
    _saved_run(workdir)

    def failing(*args, **kwargs):
        raise error
    monkeypatch.setattr(ckpt_lib.ocp.Checkpointer, "restore", failing)
    with pytest.raises(type(error)) as raised:
        ckpt_lib.restore_params(workdir)
    assert raised.value is error
    assert not ckpt_lib.is_damage(os.path.join(workdir, "checkpoints"), 2, error)
