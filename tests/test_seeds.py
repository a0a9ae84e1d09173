"""bertjax.seeds on a stubbed trainer: preemption, reruns of finished seeds, which metric wins."""

import json
import logging
import os
import types

import pytest

from bertjax import seeds, train
from configs import classify as classify_config


def fake_trainer(monkeypatch, outcomes):
    """train_and_evaluate replaced: outcomes[seed] = (summary, {step: eval metrics}) written to
    the run's metrics.jsonl. -> the seeds trained, in order."""
    calls = []

    def fake_train(cfg, workdir):
        calls.append(cfg.seed)
        summary, logged = outcomes[cfg.seed]
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
            for step, metrics in logged.items():
                f.write(json.dumps({"step": step, **{f"eval/{k}": v
                                                     for k, v in metrics.items()}}) + "\n")
        return {"preempted": False, "eval": {}, "train": {}, **summary}
    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    return calls


def test_seeds_stop_at_sigterm_and_write_no_result(tmp_path, monkeypatch, caplog):
    calls = fake_trainer(monkeypatch, {
        1: ({"step": 4, "eval": {"eval/accuracy": 0.6}}, {4: {"accuracy": 0.6}}),
        2: ({"step": 2, "preempted": True, "eval": {"eval/accuracy": 0.1}}, {2: {"accuracy": 0.1}}),
        3: ({"step": 4, "eval": {"eval/accuracy": 0.7}}, {4: {"accuracy": 0.7}})})
    cfg = classify_config.get_config("single")
    cfg.eval_metric = ""
    with caplog.at_level(logging.INFO):
        assert seeds.run_seeds(cfg, str(tmp_path), [1, 2, 3]) is None
    assert calls == [1, 2]  # no seed after the preempted one
    assert not (tmp_path / "seeds.json").exists()
    assert "Rerun the same command to resume" in caplog.text


def test_seeds_rerun_of_finished_runs_reads_metrics_jsonl(tmp_path, monkeypatch):
    """A finished run resumed evaluates nothing (summary["eval"] == {}); without eval_metric
    the value is the last step's, from W/seed_<s>/metrics.jsonl."""
    fake_trainer(monkeypatch, {s: ({"step": 4}, {2: {"loss": 9.0}, 4: {"loss": 0.1 * s}})
                               for s in (1, 2, 3)})
    cfg = classify_config.get_config("single")
    cfg.eval_metric = ""
    result = seeds.run_seeds(cfg, str(tmp_path), [1, 2, 3], metric="loss")
    assert result["metric"] == "eval/loss" and result["median"] == pytest.approx(0.2)
    with pytest.raises(seeds.ConfigError, match="'f1' is not among the eval metrics"):
        seeds.run_seeds(cfg, str(tmp_path), [1], metric="f1")


def test_seeds_metric_flag_wins_over_eval_metric(tmp_path, monkeypatch):
    """--metric is compared at the best checkpoint that config.eval_metric picked."""
    best = {"step": 2, "metric": "eval/matthews", "value": 0.3}
    fake_trainer(monkeypatch, {1: ({"step": 4, "best": best},
                                   {2: {"matthews": 0.3, "accuracy": 0.8},
                                    4: {"matthews": 0.1, "accuracy": 0.9}})})
    cfg = classify_config.get_config("single")
    cfg.eval_metric = "matthews"
    result = seeds.run_seeds(cfg, str(tmp_path), [1], metric="accuracy")
    assert result["metric"] == "eval/accuracy" and result["values"] == {"1": 0.8}
    assert seeds.run_seeds(cfg, str(tmp_path), [1])["values"] == {"1": 0.3}


def test_seeds_main_sets_up_the_process_like_train(monkeypatch):
    class SetUp(Exception):
        pass

    def fake_setup(*args):
        raise SetUp(args)
    monkeypatch.setattr(train, "setup_process", fake_setup)
    for name in ("_COORDINATOR", "_NUM_PROCESSES", "_PROCESS_ID"):  # flags unparsed here
        monkeypatch.setattr(train, name, types.SimpleNamespace(value=None))
    with pytest.raises(SetUp):
        seeds.main(["seeds"])


@pytest.fixture
def seeds_main(monkeypatch):
    """-> main(seeds_flag, metric="") with the trainer's flags stubbed (unparsed here)."""
    monkeypatch.setattr(train, "setup_process", lambda *args: None)
    monkeypatch.setattr(train, "adopt_init_from_model", lambda *args: None)
    monkeypatch.setattr(seeds.config_flags, "get_override_values", lambda flag: {})
    for name in ("_COORDINATOR", "_NUM_PROCESSES", "_PROCESS_ID"):
        monkeypatch.setattr(train, name, types.SimpleNamespace(value=None))
    cfg = classify_config.get_config("single")
    cfg.eval_metric = ""

    def main(workdir, seeds_flag):
        monkeypatch.setattr(train, "_CONFIG", types.SimpleNamespace(value=cfg))
        monkeypatch.setattr(train, "_WORKDIR", types.SimpleNamespace(value=workdir))
        monkeypatch.setattr(seeds, "_SEEDS", types.SimpleNamespace(value=seeds_flag))
        monkeypatch.setattr(seeds, "_METRIC", types.SimpleNamespace(value=""))
        seeds.main(["seeds"])
    return main


@pytest.mark.parametrize("flag, message", [
    ("a,1", "seeds must be comma-separated integers, got 'a,1'"),
    ("1,2,1", "seeds must be distinct integers, got '1,2,1'"),
    (" , ", "no seeds given: pass --seeds 1,2,3"),  # was "must be distinct integers"
])
def test_bad_seeds_flag_is_a_message_not_a_traceback(tmp_path, seeds_main, capsys, flag, message):
    with pytest.raises(SystemExit) as e:
        seeds_main(str(tmp_path), flag)
    assert e.value.code == 2 and f"error: {message}" in capsys.readouterr().err


def test_a_failing_seed_is_named_and_the_finished_ones_kept(tmp_path, seeds_main, monkeypatch,
                                                            capsys):
    calls = fake_trainer(monkeypatch, {1: ({"step": 4}, {4: {"accuracy": 0.6}})})
    fake_train = train.train_and_evaluate

    def failing_train(cfg, workdir):
        if cfg.seed == 2:
            raise seeds.ConfigError("config.num_train_steps must be > 0, got 0")
        return fake_train(cfg, workdir)
    monkeypatch.setattr(train, "train_and_evaluate", failing_train)
    with pytest.raises(SystemExit) as e:
        seeds_main(str(tmp_path), "1,2,3")
    err = capsys.readouterr().err
    assert e.value.code == 2 and calls == [1]
    assert "error: config.num_train_steps must be > 0, got 0" in err
    assert f"in seed 2 ({tmp_path}/seed_2); seeds 1 finished" in err
    assert (tmp_path / "seed_1" / "metrics.jsonl").exists()
    assert not (tmp_path / "seeds.json").exists()
