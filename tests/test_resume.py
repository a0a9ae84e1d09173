"""Exact resume: kill -9, SIGTERM or SIGINT a `python -m bertjax.train` run, restart it, and get parameters
bit-identical to an uninterrupted run; plus a negative control showing the comparison can fail."""

import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import _tiny
from bertjax import checkpoint as ckpt_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return _tiny.write_corpus(str(root)), str(root / "cache")


def _command(corpus, workdir, **top):
    top = dict(num_train_steps=STEPS, checkpoint_every_steps=10, log_every_steps=10,
               eval_every_steps=0, **top)
    return ([sys.executable, "-m", "bertjax.train", "--config", "configs/bert_tiny.py:smoke",
             "--workdir", workdir, "--config.progress_bar=False"]
            + _tiny.cli_overrides(*corpus, **top))


def _env():
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1")


def _run(corpus, workdir, **top):
    proc = subprocess.run(_command(corpus, workdir, **top), cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _start_and_signal(corpus, workdir, sig):
    """Starts a run, waits for its first finished checkpoint, sends `sig`; returns the process."""
    proc = subprocess.Popen(_command(corpus, workdir), cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = os.path.join(workdir, "checkpoints", "10")
    deadline = time.time() + 240
    while not os.path.isdir(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc, out + err


def _params(workdir):
    model_cfg, params, _, extra = ckpt_lib.restore_params(workdir)
    assert extra["step"] == STEPS
    return params


def _assert_identical(a, b):
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for (path, x), y in zip(flat_a, flat_b):
        assert np.array_equal(x, y), jax.tree_util.keystr(path)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    _run(corpus, workdir)
    return _params(workdir)


def test_kill_9_then_resume_is_bit_identical(corpus, reference, tmp_path):
    workdir = str(tmp_path / "killed")
    proc, _ = _start_and_signal(corpus, workdir, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL  # it really died mid-run
    ckpts = ckpt_lib.Checkpointer(workdir)
    survived = ckpts.latest_step()
    ckpts.close()
    assert survived is not None and survived < STEPS
    backup = str(tmp_path / "backup")
    shutil.copytree(workdir, backup)
    _run(corpus, workdir)
    _assert_identical(reference, _params(workdir))

    # Negative control: the same resume with another seed (dropout keys and data order) differs,
    # so the comparison above can fail.
    _run(corpus, backup, seed=1)
    params = _params(backup)
    assert not all(np.array_equal(x, y) for x, y in
                   zip(jax.tree.leaves(reference), jax.tree.leaves(params)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_exits_0_and_resumes_exactly(corpus, reference, tmp_path, sig):
    """SIGTERM (a preemption) and SIGINT (Ctrl-C) alike."""
    workdir = str(tmp_path / "preempted")
    proc, output = _start_and_signal(corpus, workdir, sig)
    assert proc.returncode == 0, output[-3000:]
    line = [l for l in output.splitlines() if f"{sig.name} received: checkpointed step" in l]
    assert line, output[-3000:]
    step = int(line[0].split("checkpointed step ")[1].split()[0])
    ckpts = ckpt_lib.Checkpointer(workdir)
    assert ckpts.latest_step() == step and 10 <= step < STEPS
    ckpts.close()
    _run(corpus, workdir)
    _assert_identical(reference, _params(workdir))
