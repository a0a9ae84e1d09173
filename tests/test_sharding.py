"""Mesh construction, the rule table, and a 2x2x2 (data, fsdp, tensor) run on 8 simulated CPU
devices that matches the one-device run and restores a one-device checkpoint onto the new mesh."""

import json
import os
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

import _tiny
from bertjax import checkpoint as ckpt_lib
from bertjax import config as config_lib
from bertjax import sharding, train
from bertjax.model import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mesh_shape_fills_and_checks():
    assert sharding.mesh_shape(config_lib.mesh(), 8) == (8, 1, 1)
    assert sharding.mesh_shape(config_lib.mesh(fsdp=2, tensor=2), 8) == (2, 2, 2)
    with pytest.raises(ConfigError, match="needs 4 devices, but 8"):
        sharding.mesh_shape(config_lib.mesh(data=2, fsdp=2, tensor=1), 8)
    with pytest.raises(ConfigError, match="at most one"):
        sharding.mesh_shape(config_lib.mesh(data=-1, fsdp=-1), 8)
    with pytest.raises(ConfigError, match="do not divide"):
        sharding.mesh_shape(config_lib.mesh(tensor=3), 8)


_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
import jax, numpy as np
import _tiny
from bertjax import checkpoint as ckpt_lib, train
assert jax.device_count() == 8
corpus, cache, fresh, resumed = sys.argv[2:6]
def config(**kw):
    c = _tiny.tiny_config(corpus, cache, **kw)
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 2, 2
    c.optimizer.eps = 1e-3
    return c
# Instrument the jitted train step: shardings of the word embeddings and the compile count.
seen = {}
_jit = jax.jit
def spy(fn, **kw):
    jitted = _jit(fn, **kw)
    if getattr(fn, "func", None) is not None and fn.func.__name__ == "train_step":
        def call(state, *a):
            out = jitted(state, *a)
            emb = out[0].params["bert"]["embeddings"]["word_embeddings"]["embedding"]
            seen["spec"] = [list(x) if isinstance(x, tuple) else x for x in emb.sharding.spec]
            seen["cache"] = jitted._cache_size()
            return out
        call._cache_size = jitted._cache_size
        return call
    return jitted
train.jax.jit = spy
summary = train.train_and_evaluate(config(), fresh)
summary_resumed = train.train_and_evaluate(config(), resumed)  # from a 1-device checkpoint
_, params, _, _ = ckpt_lib.restore_params(resumed)
np.savez(os.path.join(resumed, "final.npz"), **{
    "/".join(str(k.key) for k in path): x
    for path, x in jax.tree_util.tree_leaves_with_path(params)})
print("RESULT" + json.dumps({"seen": seen, "eval": summary["eval"]}))
"""


def test_eight_devices_match_one_device_and_restore_across_meshes(tmp_path):
    corpus = _tiny.write_corpus(str(tmp_path / "corpus"))
    cache = str(tmp_path / "cache")
    one = str(tmp_path / "one")
    # eps 1e-3: Adam's first updates are ~lr * sign(g), which turns float-reordering noise in
    # near-zero gradients into lr-sized differences; a larger eps keeps the runs comparable.
    config = _tiny.tiny_config(corpus, cache)
    config.optimizer.eps = 1e-3
    summary = train.train_and_evaluate(config, one)
    # A copy of the one-device run stopped at step 4: the 8-device process resumes it.
    resumed = str(tmp_path / "resumed")
    shutil.copytree(one, resumed)
    shutil.rmtree(os.path.join(resumed, "checkpoints", "6"))
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, ROOT, corpus, cache,
                           str(tmp_path / "eight"), resumed],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.split("RESULT")[-1])
    assert result["seen"]["spec"] == ["tensor", "fsdp"]  # ("vocab", "embed") by the rule table
    assert result["seen"]["cache"] == 1  # one compilation for all steps
    # The first window (lr 0 then 0.5 * peak) agrees to float noise; later steps drift apart
    # (~1e-4 relative by step 6; see the report: not yet explained beyond Adam amplifying
    # reduction-order noise), so they are held to 2e-3.
    for k, v in summary["eval"].items():
        if k != "eval/perplexity":  # exp() of mlm_loss: amplifies the drift
            assert result["eval"][k] == pytest.approx(v, rel=2e-3, abs=2e-3), k
    with open(os.path.join(one, "metrics.jsonl")) as f:
        one_losses = [json.loads(l)["train/loss"] for l in f if "train/loss" in l]
    with open(os.path.join(tmp_path / "eight", "metrics.jsonl")) as f:
        eight_losses = [json.loads(l)["train/loss"] for l in f if "train/loss" in l]
    np.testing.assert_allclose(eight_losses[0], one_losses[0], rtol=1e-5)
    np.testing.assert_allclose(eight_losses, one_losses, rtol=2e-3)
    _, reference, _, _ = ckpt_lib.restore_params(one)
    final = np.load(os.path.join(resumed, "final.npz"))
    import jax
    for path, x in jax.tree_util.tree_leaves_with_path(reference):
        name = "/".join(str(k.key) for k in path)
        np.testing.assert_allclose(final[name], x, rtol=1e-3, atol=1e-3, err_msg=name)
