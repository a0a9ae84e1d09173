"""Two local processes (jax.distributed.initialize on 127.0.0.1, one CPU device each) train the
tiny config to the same result as one process."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import _tiny
from bertjax import checkpoint as ckpt_lib
from bertjax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = dict(num_train_steps=4, eval_every_steps=0, checkpoint_every_steps=4)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(l)["train/loss"] for l in f if "train/loss" in l]


def test_two_processes_match_one(tmp_path):
    corpus = _tiny.write_corpus(str(tmp_path / "corpus"))
    cache = str(tmp_path / "cache")
    config = _tiny.tiny_config(corpus, cache, **TOP)
    config.optimizer.eps = 1e-3  # see test_sharding.py
    one = str(tmp_path / "one")
    train.train_and_evaluate(config, one)

    two = str(tmp_path / "two")
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen(
        [sys.executable, "-m", "bertjax.train", "--config", "configs/bert_tiny.py:smoke",
         "--workdir", two, "--config.progress_bar=False", "--config.optimizer.eps=1e-3",
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"]
        + _tiny.cli_overrides(corpus, cache, **TOP),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]

    np.testing.assert_allclose(_losses(two)[0], _losses(one)[0], rtol=1e-5)
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=2e-3)
    _, params_one, _, _ = ckpt_lib.restore_params(one)
    _, params_two, _, extra = ckpt_lib.restore_params(two)
    assert extra["step"] == 4
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params_one),
                            jax.tree.leaves(params_two)):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4, err_msg=jax.tree_util.keystr(path))

    # The two-process run resumes in one process: the same global batches follow.
    more = dict(TOP, num_train_steps=6, log_every_steps=1)
    for workdir in (one, two):
        config = _tiny.tiny_config(corpus, cache, **more)
        config.optimizer.eps = 1e-3
        assert train.train_and_evaluate(config, workdir)["step"] == 6
    np.testing.assert_allclose(_losses(two)[-2:], _losses(one)[-2:], rtol=2e-3)


def test_launcher_forwards_sigterm_and_waits_for_its_trainers(tmp_path):
    """SIGTERM to launch/local_multiprocess.sh alone (not its process group) reaches both
    trainers: each checkpoints the same step and exits 0, and the launcher waits for them."""
    import signal
    import time
    corpus = _tiny.write_corpus(str(tmp_path / "corpus"))
    workdir, log = str(tmp_path / "run"), tmp_path / "launcher.log"
    top = dict(num_train_steps=10_000, eval_every_steps=0, checkpoint_every_steps=2)
    env = dict(os.environ, PORT=str(_free_port()), XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=1")
    sink = open(log, "w")
    proc = subprocess.Popen(
        ["bash", "launch/local_multiprocess.sh", "2", "--config", "configs/bert_tiny.py:smoke",
         "--workdir", workdir, "--config.progress_bar=False",
         "--config.preemption_check_every_steps=1"]
        + _tiny.cli_overrides(corpus, str(tmp_path / "cache"), **top),
        cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        start_new_session=True)  # its own group, so the cleanup below reaches stray trainers
    try:
        first = os.path.join(workdir, "checkpoints", "2")
        deadline = time.time() + 240
        while not os.path.isdir(first) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)  # the launcher's pid only
        proc.wait(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # trainers left running if forwarding failed
        except ProcessLookupError:
            pass
        sink.close()
    out = log.read_text()
    assert proc.returncode == 0, out[-3000:]
    lines = [l for l in out.splitlines() if "preempted at step" in l]  # one per trainer
    assert len(lines) == 2, out[-3000:]
    steps = {int(l.split("preempted at step ")[1].split(";")[0]) for l in lines}
    ckpts = ckpt_lib.Checkpointer(workdir)
    assert steps == {ckpts.latest_step()} and ckpts.latest_step() < 10_000
    ckpts.close()


@pytest.mark.parametrize("script, args", [
    ("local_multiprocess.sh", []),  # was "$1: unbound variable"
    ("local_multiprocess.sh", ["--config", "configs/bert_tiny.py:smoke"]),  # N forgotten
    ("local_multiprocess.sh", ["abc"]),  # was "abc: unbound variable"
    ("local_multiprocess.sh", ["0", "--config", "configs/bert_tiny.py:smoke"]),  # was: exit 0
    ("tpu_pod.sh", ["my-tpu"]),  # was "$2: unbound variable"
])
def test_launch_scripts_print_their_usage_on_missing_or_bad_arguments(script, args):
    proc = subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("Usage: "), proc.stderr
