"""End to end on a tiny config: train, checkpoint, resume, evaluate, metrics.jsonl; guards."""

import json
import logging
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import _tiny
from bertjax import checkpoint as ckpt_lib
from bertjax import optim
from bertjax import preemption as preemption_lib
from bertjax import train
from bertjax.model import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return _tiny.write_corpus(str(root)), str(root / "cache")


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    summary = train.train_and_evaluate(_tiny.tiny_config(*corpus), workdir)
    return workdir, summary


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_train_writes_metrics_checkpoints_and_run_files(run):
    workdir, summary = run
    assert summary["step"] == 6 and not summary["preempted"]
    records = _records(workdir)
    train_steps = [r["step"] for r in records if "train/loss" in r]
    eval_steps = [r["step"] for r in records if "eval/loss" in r]
    assert train_steps == [2, 4, 6] and eval_steps == [3, 6]
    required = ["train/loss", "train/mlm_loss", "train/mlm_accuracy", "train/nsp_accuracy",
                "train/learning_rate", "train/grad_norm", "train/param_norm", "perf/steps_per_sec",
                "perf/tokens_per_sec", "perf/mfu"]
    for r in records:
        if "train/loss" in r:
            assert set(required) <= set(r), set(required) - set(r)
            assert np.isfinite(r["train/loss"]) and r["train/grad_norm"] > 0
            # The total loss is the sum of its two terms.
            assert r["train/loss"] == pytest.approx(r["train/mlm_loss"] + r["train/nsp_loss"],
                                                    rel=1e-5)
    final = [r for r in records if "eval/loss" in r][-1]
    assert final["eval/perplexity"] == pytest.approx(np.exp(final["eval/mlm_loss"]), rel=1e-6)
    assert 0.0 <= final["eval/nsp_accuracy"] <= 1.0
    assert summary["eval"] == {k: v for k, v in final.items() if k != "step"}
    # The rate of the update that made the logged step (update t uses lr(t), t from 0: warmup
    # 1e-3 * t / 2, then BERT's 1e-3 * (1 - t / 6)), not the mean over the logging window.
    logged = {r["step"]: r["train/learning_rate"] for r in records if "train/loss" in r}
    assert logged == pytest.approx({2: 5e-4, 4: 5e-4, 6: 1e-3 / 6})
    ckpts = ckpt_lib.Checkpointer(workdir)
    assert ckpts.all_steps() == [2, 4, 6]  # max_to_keep=3
    ckpts.close()
    assert os.path.exists(os.path.join(workdir, "tokenizer", "vocab.txt"))
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["hidden_size"] == 32


def test_restore_params_and_resume_continue(run, corpus):
    workdir, _ = run
    model_cfg, params, tok_dir, extra = ckpt_lib.restore_params(workdir)
    assert model_cfg.hidden_size == 32 and extra["step"] == 6 and extra["task"] == "pretraining"
    assert params["bert"]["embeddings"]["word_embeddings"]["embedding"].shape == (128, 32)
    assert "layer_1" in params["bert"]["encoder"] and "mlm" in params and "nsp" in params
    assert os.path.exists(os.path.join(tok_dir, "vocab.txt"))
    _, params4, _, _ = ckpt_lib.restore_params(workdir, step=4)
    assert not np.array_equal(params4["nsp"]["kernel"], params["nsp"]["kernel"])
    # Asking for more steps continues from step 6; the earlier records are kept.
    summary = train.train_and_evaluate(_tiny.tiny_config(*corpus, num_train_steps=8), workdir)
    assert summary["step"] == 8
    steps = [r["step"] for r in _records(workdir) if "train/loss" in r]
    assert steps == [2, 4, 6, 8]
    # The config that trained steps 1-6 is kept beside the new one.
    with open(os.path.join(workdir, "config.before-step-6.json")) as f:
        assert json.load(f)["num_train_steps"] == 6
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["num_train_steps"] == 8
    # TensorBoard is told to hide whatever an earlier attempt logged after the checkpoint.
    purges = [e.step for e in _events(os.path.join(workdir, "tensorboard"))
              if e.HasField("session_log") and e.session_log.status == e.session_log.START]
    assert purges == [1, 7]  # the first attempt (from scratch) and the resume at step 6


def test_loading_a_run_logs_no_orbax_warning(run, caplog):
    """pretrained.load of a workdir reads the "state" item only; Orbax used to warn twice that
    the "data" item (the iterator position) "could not be restored", and thrice about a
    read-only manager, none of it the user's concern."""
    from bertjax import pretrained
    with caplog.at_level(logging.WARNING):
        bert = pretrained.load(run[0], use="latest")
    assert bert.extra["step"] >= 6
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _events(directory):
    """Every Event in a directory's TensorBoard files (TFRecord framing: length, crc, data, crc)."""
    import struct
    from tensorboardX.proto import event_pb2
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            while header := f.read(12):
                (length,) = struct.unpack("<Q", header[:8])
                event = event_pb2.Event.FromString(f.read(length))
                f.read(4)
                yield event


def test_a_model_directory_is_refused_as_workdir_before_anything_is_written(corpus, tmp_path):
    """Training into a model dir overwrote a Hugging Face config.json and left checkpoints/ that
    made the model unreadable as one; init_from == workdir likewise."""
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match="hf/config.json exists but .* holds no run"):
        train.check_workdir(str(hf), "")  # a config.json of something else
    (hf / "model.safetensors").write_bytes(b"")
    config = _tiny.tiny_config(*corpus)
    with pytest.raises(ConfigError, match="hf: holds a huggingface model, not a training run"):
        train.train_and_evaluate(config, str(hf))
    config.init_from = str(hf)
    with pytest.raises(ConfigError, match="is the workdir itself"):
        train.train_and_evaluate(config, str(hf))
    assert sorted(os.listdir(hf)) == ["config.json", "model.safetensors"]
    assert (hf / "config.json").read_text() == '{"model_type": "bert"}'
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README").write_text("mine")
    train.check_workdir(str(tmp_path / "notes"), "")  # other files: allowed
    train.check_workdir(str(tmp_path / "new"), "")
    with pytest.raises(ConfigError, match="README is a file; give a directory"):
        train.check_workdir(str(tmp_path / "notes" / "README"), "")
    with pytest.raises(ConfigError, match="README/run: cannot create it"):
        train.check_workdir(str(tmp_path / "notes" / "README" / "run"), "")


def test_cli_reports_a_bad_input_without_a_traceback(tmp_path):
    """python -m bertjax.train prints a config / data / workdir error as one line, exit 2."""
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "bertjax.train", "--config", "configs/bert_tiny.py",
         "--workdir", str(tmp_path / "afile")], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: --workdir {tmp_path / 'afile'} is a file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_mismatched_config_names_the_fields(run, corpus):
    workdir, _ = run
    config = _tiny.tiny_config(*corpus, num_train_steps=10)
    config.model.hidden_size = 36
    config.model.num_heads = 3
    with pytest.raises(ckpt_lib.CheckpointMismatchError,
                       match=r"model.hidden_size: checkpoint 32 vs config 36(.|\n)*num_heads"):
        train.train_and_evaluate(config, workdir)


def test_nonfinite_stops_and_names_the_step(corpus, tmp_path):
    config = _tiny.tiny_config(*corpus, num_train_steps=8, checkpoint_every_steps=1,
                               log_every_steps=4)
    config.optimizer.learning_rate = 1e30
    config.optimizer.grad_clip_norm = 0.0
    with pytest.raises(train.NonFiniteError, match=r"NaN/Inf at step \d+") as err:
        train.train_and_evaluate(config, str(tmp_path))
    bad = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    ckpts = ckpt_lib.Checkpointer(str(tmp_path))
    saved = ckpts.all_steps()
    ckpts.close()
    assert saved and max(saved) < bad  # nothing at or after the bad step was checkpointed


def test_skip_nonfinite_keeps_params_finite(corpus, tmp_path):
    config = _tiny.tiny_config(*corpus, num_train_steps=4, log_every_steps=4, eval_every_steps=0,
                               checkpoint_every_steps=4, skip_nonfinite=True)
    config.optimizer.learning_rate = 1e30
    config.optimizer.grad_clip_norm = 0.0
    summary = train.train_and_evaluate(config, str(tmp_path))
    skipped = summary["train"]["train/skipped_updates"]
    assert skipped >= 1
    _, params, _, _ = ckpt_lib.restore_params(str(tmp_path))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
    # The logged rate is that of the latest update applied, behind the step by the skipped ones.
    schedule = optim.learning_rate_schedule(config.optimizer, config.num_train_steps)
    applied = 4 - int(skipped)
    assert summary["train"]["train/learning_rate"] == pytest.approx(
        float(schedule(max(applied - 1, 0))))
    assert float(schedule(max(applied - 1, 0))) != pytest.approx(float(schedule(3)))


@pytest.mark.parametrize("field,value,message", [
    ("model.num_heads", 3, r"hidden_size=32 is not divisible by config.model.num_heads=3"),
    ("batch_size", 7, r"config.batch_size=7 .*grad_accum_steps=2"),
    ("optimizer.schedule", "cosin", r"config.optimizer.schedule='cosin' is not one of"),
    ("mesh.data", 3, r"config.mesh .* needs 3 devices"),
])
def test_config_errors_name_the_field(corpus, tmp_path, field, value, message):
    config = _tiny.tiny_config(*corpus)
    config.optimizer.grad_accum_steps = 2
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))  # failed before any work


@pytest.mark.parametrize("given", [True, False])
def test_a_vocabulary_larger_than_the_model_is_refused_before_the_corpus_is_prepared(
        run, corpus, tmp_path, given):
    """A given tokenizer of 128 ids, or a vocabulary of config.data.vocab_size=128 to train, for
    a model of 64 embedding rows: refused naming both numbers and the field before the corpus
    is tokenized into shards (and before a vocabulary is trained on it)."""
    from bertjax.data import prepare
    config = _tiny.tiny_config(corpus[0], str(tmp_path / "cache"))
    config.model.vocab_size = 64
    if given:
        config.data.tokenizer = os.path.join(run[0], "tokenizer")
        message = (r"config.data.tokenizer=.* has 128 ids but config.model.vocab_size=64.*"
                   r"set config.model.vocab_size >= 128")
    else:
        message = (r"config.data.vocab_size=128 \(the vocabulary to train\) exceeds "
                   r"config.model.vocab_size=64")
    with pytest.raises(prepare.DataConfigError, match=message):
        train.train_and_evaluate(config, str(tmp_path / "w"))
    made = os.listdir(tmp_path / "cache") if os.path.isdir(tmp_path / "cache") else []
    assert not [name for name in made if name.startswith(("shards-", ".tmp-"))], made
    assert given or not made  # no vocabulary trained either


def test_no_held_out_examples_fails_before_training_unless_eval_is_off(corpus, tmp_path):
    from bertjax.data import prepare
    config = _tiny.tiny_config(*corpus, num_train_steps=2, checkpoint_every_steps=1)
    config.data.eval_fraction = 1e-4  # 60 documents: none held out
    with pytest.raises(prepare.DataConfigError, match=r"gave 0 eval examples.*eval_fraction"):
        train.train_and_evaluate(config, str(tmp_path / "a"))
    assert not ckpt_lib.has_checkpoint(str(tmp_path / "a"))  # failed before the first step
    config.num_eval_batches = 0
    config.log_every_steps = 1
    summary = train.train_and_evaluate(config, str(tmp_path / "b"))
    assert summary["step"] == 2 and summary["eval"] == {}
    records = _records(str(tmp_path / "b"))
    assert [r["step"] for r in records] == [1, 2]  # no empty evaluation rows
    # Step 1 compiled: no timed steps, so no throughput rather than a throughput of 0.
    assert "perf/tokens_per_sec" not in records[0] and records[1]["perf/tokens_per_sec"] > 0


def test_sigint_requests_a_checkpoint_and_a_second_one_kills():
    """Ctrl-C is handled like SIGTERM (checkpoint at the next check, exit cleanly); after it, the
    default action is back so a second Ctrl-C kills at once. restore() puts the handlers back."""
    import signal
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    preemption = preemption_lib.Preemption(1)
    try:
        assert not preemption.agreed(1)
        signal.raise_signal(signal.SIGINT)  # before the fix: KeyboardInterrupt
        assert preemption.agreed(1) and preemption.name == "SIGINT"
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) == preemption._handler
    finally:
        preemption.restore()
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_mlm_only_run_records_its_pooler_and_nsp_head_as_untrained(run, corpus, tmp_path):
    """Without NSP nothing reads the pooler or the NSP head: the workdir says so, and its readers
    refuse the pooler's vectors and leave both out of an export."""
    from safetensors.numpy import load_file
    from bertjax import convert, pretrained
    assert ckpt_lib.read_untrained(run[0]) == []  # MLM + NSP trains everything
    assert ckpt_lib.restore_params(run[0])[3]["untrained"] == []
    workdir = str(tmp_path / "mlm_only")
    config = _tiny.tiny_config(*corpus, num_train_steps=2, checkpoint_every_steps=2,
                               num_eval_batches=0)
    config.data.next_sentence = False
    train.train_and_evaluate(config, workdir)
    assert ckpt_lib.read_untrained(workdir) == ["bert/pooler", "nsp"]
    config.num_train_steps = 3  # a resumed run keeps its first start's record
    train.train_and_evaluate(config, workdir)
    assert ckpt_lib.read_untrained(workdir) == ["bert/pooler", "nsp"]

    with pytest.raises(convert.ConvertError, match="holds no best checkpoint"):
        pretrained.load(workdir, use="best")
    bert = pretrained.load(workdir)
    with pytest.raises(ValueError, match="pooler was never trained.*MLM-only pretraining"):
        bert.embed(["the cat sat"], pooling="pooler")
    assert np.all(np.isfinite(bert.embed(["the cat sat"], pooling="cls")))
    hf = str(tmp_path / "hf")
    assert convert.main([workdir, hf, "--to", "huggingface"]) == 0
    with open(os.path.join(hf, "config.json")) as f:
        assert json.load(f)["architectures"] == ["BertForMaskedLM"]
    exported = load_file(os.path.join(hf, "model.safetensors"))
    assert not any("pooler" in k or "seq_relationship" in k for k in exported)
    assert any(k.startswith("cls.predictions") for k in exported)


@pytest.mark.parametrize("started, unused, left", [
    (["bert", "mlm", "nsp"], ("bert/pooler", "nsp"), ["bert/pooler", "nsp"]),  # from scratch
    (["bert", "mlm", "nsp"], (), []),                      # MLM + NSP trains everything
    (["bert/pooler"], ("bert/pooler",), ["bert/pooler"]),  # a tagger from a BertForMaskedLM
    (["bert/pooler", "nsp"], (), []),                      # NSP pretraining from an MLM-only run
    ([], ("bert/pooler",), []),                            # a tagger from a trained pooler
])
def test_subtrees_stay_untrained_when_started_so_and_never_read(started, unused, left):
    assert train._still_untrained(started, unused) == left


def test_pretraining_from_init_from_keeps_its_vocabulary(run, tmp_path):
    """BERT's phase 2 on another corpus must not train a new vocabulary under the old
    embedding rows: init_from's tokenizer is used (and a different one given is refused)."""
    workdir, _ = run
    other = _tiny.write_corpus(str(tmp_path / "other"), num_docs=40, seed=7)
    config = _tiny.tiny_config(other, str(tmp_path / "cache"), num_train_steps=2,
                               init_from=workdir)
    train.train_and_evaluate(config, str(tmp_path / "phase2"))
    vocab = lambda w: open(os.path.join(w, "tokenizer", "vocab.txt")).read()  # noqa: E731
    assert vocab(str(tmp_path / "phase2")) == vocab(workdir)

    config = _tiny.tiny_config(other, str(tmp_path / "cache"), num_train_steps=2,
                               init_from=workdir)
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.txt").write_text(vocab(workdir).replace("[MASK]\n", "[MASK]\nzz\n"))
    config.data.tokenizer = str(tmp_path / "v")
    with pytest.raises(ConfigError, match="has another vocabulary than config.init_from's"):
        train.train_and_evaluate(config, str(tmp_path / "phase2b"))
