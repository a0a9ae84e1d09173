"""The benchmark and profiling commands run and report what they promise (no timing asserted)."""

import json
import os
import subprocess
import sys

import pytest

from bertjax import bench
from bertjax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny():
    c = config_lib.pretraining("tiny")
    c.model = config_lib.model(vocab_size=128, hidden_size=32, num_heads=2, intermediate_size=37,
                               num_layers=2, max_position_embeddings=32, dtype="float32")
    return c


@pytest.mark.parametrize("mode", ["train", "finetune", "inference"])
def test_bench_reports_every_figure(mode):
    result = bench.run(_tiny(), batch_size=4, seq_len=32, mode=mode, steps_n=5, warmup=1,
                       peers=[])
    for key in ("tokens_per_sec", "sequences_per_sec", "step_ms", "model_tflops_per_sec", "mfu"):
        assert result[key] > 0, key
    assert result["tokens_per_sec"] == pytest.approx(4 * 32 * 1e3 / result["step_ms"])
    assert result["masked_positions"] == 8  # 15% of 32, rounded up to a multiple of 4
    json.dumps(result)
    assert "bertjax" in bench.table(result)


def test_bench_refuses_fewer_than_five_steps():
    with pytest.raises(ValueError, match="--steps must be at least 5"):
        bench.run(_tiny(), 4, 32, "train", 3, 1, [])


def test_profile_step_groups_op_times_by_model_part():
    out = subprocess.run(
        [sys.executable, "benchmarks/profile_step.py", "--config", "configs/bert_tiny.py",
         "--config.model.dtype=float32", "--batch_size", "4", "--seq_len", "32", "--steps", "2",
         "--profile"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step ms: median" in out.stdout
    for part in ("fwd qkv", "bwd intermediate", "fwd mlm", "fwd dropout"):
        assert part in out.stdout, out.stdout
