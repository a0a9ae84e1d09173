"""The benchmark and profiling commands run and report what they promise (no timing asserted)."""

import json
import os
import subprocess
import sys
import types

import pytest
from absl import app

from bertjax import bench
from bertjax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny():
    c = config_lib.pretraining("tiny")
    c.model = config_lib.model(vocab_size=128, hidden_size=32, num_heads=2, intermediate_size=37,
                               num_layers=2, max_position_embeddings=32, dtype="float32")
    return c


@pytest.mark.parametrize("mode", ["train", "finetune", "inference"])
def test_bench_reports_every_figure(mode, caplog):
    config = _tiny()
    if mode == "inference":  # a longer sequence than the model's positions: grown, and said so
        config.model.max_position_embeddings = 24
    result = bench.run(config, batch_size=4, seq_len=32, mode=mode, steps_n=5, warmup=1,
                       peers=[])
    assert result["max_position_embeddings"] == 32
    grown = [r for r in caplog.records if "max_position_embeddings=24" in r.getMessage()]
    assert len(grown) == (mode == "inference")
    for key in ("tokens_per_sec", "sequences_per_sec", "step_ms", "model_tflops_per_sec", "mfu"):
        assert result[key] > 0, key
    assert result["tokens_per_sec"] == pytest.approx(4 * 32 * 1e3 / result["step_ms"])
    assert result["step_ms_min"] <= result["step_ms"] <= result["step_ms_max"]
    assert result["masked_positions"] == 8  # 15% of 32, rounded up to a multiple of 4
    json.dumps(result)
    assert "bertjax" in bench.table(result)


def test_bench_refuses_fewer_than_five_steps():
    with pytest.raises(ValueError, match="--steps must be at least 5"):
        bench.run(_tiny(), 4, 32, "train", 3, 1, [])


@pytest.mark.parametrize("batch_size, seq_len, flag", [(4, 4, "--seq_len must be at least 6"),
                                                       (0, 32, "--batch_size must be at least 1")])
def test_bench_refuses_shapes_it_cannot_build_naming_the_flag(batch_size, seq_len, flag):
    with pytest.raises(ValueError, match=flag):
        bench.run(_tiny(), batch_size, seq_len, "train", 5, 1, [])
    # The minimum is enough: distinct masked positions between [CLS] and [SEP].
    batch = bench.synthetic_batch(_tiny().model, 2, bench.MIN_SEQ_LEN,
                                  bench.max_predictions(bench.MIN_SEQ_LEN))
    assert batch["masked_lm_positions"].min() >= 1
    assert batch["masked_lm_positions"].max() <= bench.MIN_SEQ_LEN - 2


def test_profile_step_groups_op_times_by_model_part_and_ab_tests_xla_options():
    out = subprocess.run(
        [sys.executable, "benchmarks/profile_step.py", "--config", "configs/bert_tiny.py",
         "--config.model.dtype=float32", "--batch_size", "4", "--seq_len", "32", "--steps", "2",
         "--profile", "--ab_options", '{"xla_cpu_enable_fast_math": false}'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step ms: median" in out.stdout
    for part in ("fwd qkv", "bwd intermediate", "fwd mlm", "fwd dropout"):
        assert part in out.stdout, out.stdout
    # The options' step is checked against the default one before the two are timed.
    assert "first-step metrics equal (rtol 1e-4): True" in out.stdout, out.stdout
    assert "default: median" in out.stdout and "options: median" in out.stdout, out.stdout


def _flags(config, **values):
    """bench.main's flag holders, without absl's flag registry."""
    values = {"config": config, "batch_size": 4, "seq_len": 32, "steps": 5, "warmup": 1,
              "mode": "train", "peers": "none", "torch_threads": 0, "rounds": 1, **values}
    return {k: types.SimpleNamespace(value=v) for k, v in values.items()}


def _classification():
    from bertjax.tasks import finetune_data
    c = finetune_data.run_config()
    c.task, c.model = "classification", _tiny().model
    return c


@pytest.mark.parametrize("make_config, values, message", [
    (_tiny, {"peers": "torch,bogus"}, r"--peers: unknown peer\(s\) \['bogus'\]"),
    (_tiny, {"rounds": 0}, "--rounds must be at least 1, got 0"),
    (_tiny, {"warmup": -1}, "--warmup must be at least 0"),
    (_classification, {}, "--mode train times the pretraining .* 'classification' config"),
])
def test_bench_command_refuses_bad_flags_in_one_line_before_building(make_config, values,
                                                                      message, monkeypatch):
    monkeypatch.setattr(bench, "run", lambda *a, **k: pytest.fail("ran despite a bad flag"))
    with pytest.raises(app.UsageError, match=message):
        bench.main(["bench"], _flags(make_config(), **values))


def test_interleaved_runners_take_turns_and_each_gets_its_steps():
    from bertjax import bench_peers
    calls, built = [], []

    def builder(name):
        def build():
            built.append(name)
            return lambda: calls.append(name)
        return build

    times = bench_peers.time_interleaved({"a": builder("a"), "b": builder("b")}, warmup=1,
                                         steps=5, rounds=3)
    assert built == ["a", "b"] and {k: len(v) for k, v in times.items()} == {"a": 5, "b": 5}
    # Warm-ups, then rounds of ceil(5 / 3) = 2 steps, the order reversed every other round.
    assert calls == ["a", "b"] + ["a"] * 2 + ["b"] * 2 + ["b"] * 2 + ["a"] * 2 + ["a", "b"]
    calls.clear(), built.clear()
    bench_peers.time_interleaved({"a": builder("a"), "b": builder("b")}, 1, 5, rounds=1)
    assert calls == ["a"] * 6 + ["b"] * 6 and built == ["a", "b"]


def test_bench_command_times_the_peers_in_the_same_run():
    env = {**os.environ, "USE_FLAX": "1", "USE_TORCH": "1"}  # conftest turns Flax models off
    out = subprocess.run(
        [sys.executable, "-m", "bertjax.bench", "--config", "configs/bert_tiny.py",
         "--config.model.vocab_size=211", "--config.model.hidden_size=32",
         "--config.model.num_heads=2", "--config.model.intermediate_size=37",
         "--config.model.num_layers=1", "--config.model.dtype=float32", "--batch_size", "4",
         "--seq_len", "32", "--steps", "5", "--rounds", "5", "--peers", "hf_flax,torch"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["peers"]) == {"hf_flax", "torch"} and result["rounds"] == 5
    assert result["peak_flops"] > 0 and 0 < result["mfu"]
    for peer in result["peers"].values():
        assert peer["bertjax_speedup"] == pytest.approx(
            result["tokens_per_sec"] / peer["tokens_per_sec"])
    assert "hf_flax" in out.stdout and "torch" in out.stdout
