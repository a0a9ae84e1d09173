"""Every config file loads, passes validation and builds its model under jax.eval_shape (cheap)."""

import glob
import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from bertjax import model as model_lib
from bertjax import train
from bertjax.tasks import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The pretraining configs; task configs (classify, squad, ...) need data files: their own tests.
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "bert_*.py")))
SIZES = {"bert_tiny": (2, 128), "bert_mini": (4, 256), "bert_small": (4, 512),
         "bert_medium": (8, 512), "bert_base": (12, 768), "bert_large": (24, 1024)}


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _variants(module):
    doc = module.__doc__ or ""
    return [None] + [v for v in ("smoke", "phase2", "lamb") if v in doc]


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_loads_validates_and_builds(path):
    module = _load(path)
    assert "python -m bertjax.train --config configs/" in module.__doc__
    name = os.path.basename(path)[:-3]
    if name in SIZES:  # the pretraining configs (task configs belong to their own tests' owners)
        assert "Expected runtime" in module.__doc__ and "Expected result" in module.__doc__
    for variant in _variants(module):
        config = module.get_config(variant)
        train.validate(config, num_devices=1, process_count=1)
        task = base.get_task(config.task)(config)
        model = task.build_model(config.model)
        batch = task.dummy_batch(2, config.data.max_seq_length)
        params = jax.eval_shape(lambda k: task.init_params(model, k, batch), jax.random.key(0))
        emb = model_lib.unbox(params)["bert"]["embeddings"]["word_embeddings"]["embedding"]
        assert emb.shape == (config.model.vocab_size, config.model.hidden_size)
        if name in SIZES and variant is None:
            assert (config.model.num_layers, config.model.hidden_size) == SIZES[name]
    with pytest.raises(ValueError, match="no variant"):
        module.get_config("no-such-variant")


def test_unknown_field_fails_with_did_you_mean():
    proc = subprocess.run(
        [sys.executable, "-m", "bertjax.train", "--config", "configs/bert_tiny.py",
         "--workdir", "/nonexistent", "--config.optimizer.learning_rat=1e-3"],
        cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
        timeout=120)
    assert proc.returncode != 0
    assert "learning_rat" in proc.stderr and "Did you mean" in proc.stderr, proc.stderr[-2000:]


def test_zero_train_steps_is_named_before_the_warmup_that_exceeds_it():
    """It was 'warmup_steps=... exceeds config.num_train_steps=0' (configs/tagging.py warms up
    for a fixed number of steps)."""
    from bertjax.model import ConfigError
    config = _load(os.path.join(ROOT, "configs", "tagging.py")).get_config()
    config.num_train_steps = 0
    assert config.optimizer.warmup_steps > 0
    with pytest.raises(ConfigError, match=r"^config.num_train_steps must be > 0, got 0$"):
        train.validate(config, num_devices=1, process_count=1)
