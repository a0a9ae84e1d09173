"""The pipeline end to end: prepare, cache, load, resume, shard across hosts, hold out eval."""

import json
import logging

import numpy as np
import pytest

from bertjax import config
from bertjax.data import pipeline
from bertjax.data import prepare

WORDS = ("the a of to and in is was for on with as by at from that this it be are or an not but "
         "cat dog bird fish tree house river stone cloud light night day sun moon star sea road "
         "play walk talk jump read write run sing look open").split()
PIECES = ["##s", "##ing", "##ed", "##er", "##ly"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS + PIECES
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    rng = np.random.default_rng(0)
    stems = ["play", "walk", "talk", "jump", "read", "look", "open"]
    for f in range(3):
        docs = []
        for _ in range(120):
            sents = []
            for _ in range(rng.integers(3, 12)):
                n = rng.integers(4, 14)
                words = [rng.choice(stems) + rng.choice(["ing", "ed", "s", ""]) if rng.random() < 0.2
                         else rng.choice(WORDS) for _ in range(n)]
                sents.append(" ".join(words).capitalize() + ".")
            docs.append("\n".join(sents))
        (d / f"part{f}.txt").write_text("\n\n".join(docs) + "\n")
    return d


def _cfg(corpus_dir, tmp_path, **kw):
    base = dict(corpus=str(corpus_dir / "part*.txt"), tokenizer=str(corpus_dir / "vocab.txt"),
                cache_dir=str(tmp_path / "cache"), max_seq_length=32, max_predictions_per_seq=5,
                eval_fraction=0.1, num_eval_examples=64, docs_per_shard=100, prefetch_batches=0)
    base.update(kw)
    return config.data(**base)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_config_errors_name_the_field(corpus_dir, tmp_path):
    with pytest.raises(prepare.DataConfigError, match="packing.*next_sentence"):
        prepare.validate(_cfg(corpus_dir, tmp_path, packing=True, next_sentence=True))
    with pytest.raises(prepare.DataConfigError, match="max_predictions_per_seq"):
        prepare.validate(_cfg(corpus_dir, tmp_path, max_predictions_per_seq=40))
    with pytest.raises(prepare.DataConfigError, match="masked_lm_prob"):
        prepare.validate(_cfg(corpus_dir, tmp_path, masked_lm_prob=1.5))
    with pytest.raises(prepare.DataConfigError, match="cache_dir"):
        prepare.cache_root(_cfg(corpus_dir, tmp_path, cache_dir=""), None)


def test_a_corpus_held_out_whole_says_so(corpus_dir, tmp_path):
    """One document that eval_fraction sends to evaluation: the error names eval_fraction."""
    (tmp_path / "one.txt").write_text("A cat sat. A dog ran.\n")
    with pytest.raises(prepare.DataConfigError, match=r"gave no training examples \(1 documents, "
                       r"1 of them held out for evaluation by config.data.eval_fraction=0.1"):
        prepare.prepare(_cfg(corpus_dir, tmp_path, corpus=str(tmp_path / "one.txt"),
                             eval_fraction=0.1))  # document 0 is held out at 0.1


def test_batches_shapes_and_cache_reuse(corpus_dir, tmp_path, caplog):
    cfg = _cfg(corpus_dir, tmp_path)
    data = pipeline.make_pretraining_data(cfg, seed=0, global_batch_size=8, workdir=None)
    b = next(data.train_iterator())
    S, P = 32, 5
    shapes = {"input_ids": (8, S), "token_type_ids": (8, S), "attention_mask": (8, S),
              "masked_lm_positions": (8, P), "masked_lm_ids": (8, P), "masked_lm_weights": (8, P),
              "next_sentence_labels": (8,)}
    assert {k: v.shape for k, v in b.items()} == shapes
    assert b["masked_lm_weights"].dtype == np.float32 and b["input_ids"].dtype == np.int32
    assert (b["input_ids"][:, 0] == data.tokenizer.token_to_id("[CLS]")).all()
    # token types: 0 up to and including the first [SEP], 1 after it, 0 on padding
    sep = data.tokenizer.token_to_id("[SEP]")
    for row, tt, am in zip(b["input_ids"], b["token_type_ids"], b["attention_mask"]):
        first = int(np.flatnonzero(row == sep)[0])
        assert (tt[:first + 1] == 0).all() and (tt[first + 1:] == am[first + 1:]).all()
    with caplog.at_level(logging.INFO):
        again = pipeline.make_pretraining_data(cfg, seed=0, global_batch_size=8, workdir=None)
    assert "reusing prepared shards at" in caplog.text
    assert again.prepared.directory == data.prepared.directory
    with open(f"{data.tokenizer_dir}/vocab.txt") as f:
        assert f.read().split("\n")[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_fresh_builds_are_identical(corpus_dir, tmp_path):
    a = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path / "a"), seed=3, global_batch_size=8,
                                       workdir=None)
    b = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path / "b"), seed=3, global_batch_size=8,
                                       workdir=None)
    for x, y in zip(_take(a.train_iterator(), 5), _take(b.train_iterator(), 5)):
        _same(x, y)
    c = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path / "a"), seed=4, global_batch_size=8,
                                       workdir=None)
    assert not np.array_equal(next(c.train_iterator())["input_ids"],
                              next(a.train_iterator())["input_ids"])


def test_resume_equals_uninterrupted_stream(corpus_dir, tmp_path):
    data = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=1, global_batch_size=8,
                                          workdir=None)
    steps = data.steps_per_epoch
    total = steps + 6  # crosses an epoch boundary
    reference = _take(data.train_iterator(), total)
    for k in (0, 3, 7, steps - 1, steps + 2):
        it = data.train_iterator()
        _take(it, k)
        state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
        fresh = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=1,
                                               global_batch_size=8, workdir=None).train_iterator()
        fresh.set_state(state)
        for got, want in zip(_take(fresh, total - k), reference[k:]):
            _same(got, want)


def test_a_position_resumes_under_another_process_count(corpus_dir, tmp_path):
    """Global batch t is the same examples under any layout: one process's saved position,
    restored by two processes, gives them the two halves of the batch one process reads next."""
    one = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=1, global_batch_size=8,
                                         workdir=None).train_iterator()
    _take(one, 3)
    state = one.get_state()
    halves = []
    for p in range(2):
        it = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=1, global_batch_size=8,
                                            workdir=None, process_index=p,
                                            process_count=2).train_iterator()
        it.set_state(state)
        halves.append(next(it))
    whole = next(one)
    _same(whole, {k: np.concatenate([h[k] for h in halves]) for k in whole})


def test_epochs_reshuffle_and_dynamic_masks(corpus_dir, tmp_path):
    for dynamic in (True, False):
        data = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path, dynamic_masking=dynamic),
                                              seed=2, global_batch_size=8, workdir=None)
        f = data.train_batches()
        steps = data.steps_per_epoch
        idx0, _ = f.record_indices(0)
        epochs = [np.concatenate([f.record_indices(e * steps + k)[0] for k in range(steps)])
                  for e in (0, 1)]
        assert len(set(epochs[0])) == steps * 8  # no record twice in an epoch
        assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
        # the same record in epoch 0 and epoch 1: identical tokens, mask fresh iff dynamic
        rec = int(idx0[0])
        t1 = steps + int(np.flatnonzero(epochs[1] == rec)[0]) // 8 if rec in epochs[1] else None
        if t1 is None:
            continue
        row1 = int(np.flatnonzero(f.record_indices(t1)[0] == rec)[0])
        b0, b1 = f(0), f(t1)
        assert np.array_equal(b0["attention_mask"][0], b1["attention_mask"][row1])
        same_mask = np.array_equal(b0["masked_lm_positions"][0], b1["masked_lm_positions"][row1])
        assert same_mask != dynamic or b0["masked_lm_weights"][0].sum() == 1


def test_two_hosts_are_disjoint_and_cover(corpus_dir, tmp_path):
    hosts = [pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=5, global_batch_size=8,
                                            workdir=None, process_index=p, process_count=2)
             for p in range(2)]
    steps = hosts[0].steps_per_epoch
    seen = [np.concatenate([h.train_batches().record_indices(t)[0] for t in range(steps)])
            for h in hosts]
    assert not set(seen[0]) & set(seen[1])
    n = hosts[0].num_train
    assert len(set(seen[0]) | set(seen[1])) == steps * 8 >= n - 7
    # the batches themselves: host p's batch t is rows [4p, 4p+4) of the 1-host global batch
    single = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=5, global_batch_size=8,
                                            workdir=None)
    g = _take(single.train_iterator(), 3)
    parts = [_take(h.train_iterator(), 3) for h in hosts]
    for t in range(3):
        for k in g[t]:
            np.testing.assert_array_equal(np.concatenate([parts[0][t][k], parts[1][t][k]]), g[t][k])


def test_eval_is_held_out_finite_and_fixed(corpus_dir, tmp_path):
    data = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=0, global_batch_size=8,
                                          workdir=None)
    ev = data.eval_batches()
    assert 0 < len(ev) <= 64 // 8
    again = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path), seed=0, global_batch_size=8,
                                           workdir=None).eval_batches()
    for x, y in zip(ev, again):
        _same(x, y)
    meta = data.prepared.meta["stats"]
    assert meta["eval_documents"] > 0 and meta["train_documents"] > 0
    # no held-out document index is a training document: the split is the hash rule
    n_docs = meta["documents"]
    held = [d for d in range(n_docs) if prepare.is_eval_document(d, 0.1)]
    assert len(held) == meta["eval_documents"]
    # and no eval example's text appears among training examples
    import grain
    train = set(grain.sources.ArrayRecordDataSource(data.prepared.train_paths).__getitems__(
        list(range(data.num_train))))
    evals = grain.sources.ArrayRecordDataSource(data.prepared.eval_paths)
    assert not train & set(evals.__getitems__(list(range(len(evals)))))


def test_packing_batches(corpus_dir, tmp_path):
    cfg = _cfg(corpus_dir, tmp_path, next_sentence=False, packing=True, short_seq_prob=0.5)
    data = pipeline.make_pretraining_data(cfg, seed=0, global_batch_size=8, workdir=None)
    b = next(data.train_iterator())
    assert "next_sentence_labels" not in b
    cls = data.tokenizer.token_to_id("[CLS]")
    for row, seg, pos, am in zip(b["input_ids"], b["segment_ids"], b["position_ids"],
                                 b["attention_mask"]):
        n = am.sum()
        starts = np.flatnonzero(row[:n] == cls)
        assert len(starts) >= 1 and starts[0] == 0
        assert seg[:n].max() == len(starts) and (seg[n:] == 0).all()
        for s, e in zip(starts, list(starts[1:]) + [n]):
            np.testing.assert_array_equal(pos[s:e], np.arange(e - s))
    assert (b["attention_mask"].sum(1) > 16).mean() > 0.5  # rows are well filled


def test_whole_word_masking_through_pipeline(corpus_dir, tmp_path):
    data = pipeline.make_pretraining_data(_cfg(corpus_dir, tmp_path, whole_word_masking=True,
                                               max_predictions_per_seq=10), seed=0,
                                          global_batch_size=8, workdir=None)
    tok = data.tokenizer
    specials = {tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")}
    n_pieces = 0
    for b in _take(data.train_iterator(), 10):
        for ids, pos, w, labels in zip(b["input_ids"], b["masked_lm_positions"],
                                       b["masked_lm_weights"], b["masked_lm_ids"]):
            chosen = set(pos[w > 0].tolist())
            for p, label in zip(pos[w > 0], labels[w > 0]):
                if tok.id_to_token(int(label)).startswith("##"):
                    n_pieces += 1
                    # masked only with the piece before it (unless truncation cut the word's start)
                    assert p - 1 in chosen or int(ids[p - 1]) in specials
    assert n_pieces > 10


def test_trained_tokenizer_is_cached(corpus_dir, tmp_path, caplog):
    cfg = _cfg(corpus_dir, tmp_path, tokenizer="", vocab_size=120)
    data = pipeline.make_pretraining_data(cfg, seed=0, global_batch_size=8, workdir=str(tmp_path))
    assert data.tokenizer.get_vocab_size() <= 120
    assert data.tokenizer_dir.startswith(str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO):
        pipeline.make_pretraining_data(cfg, seed=0, global_batch_size=8, workdir=str(tmp_path))
    assert "reusing trained vocabulary" in caplog.text and "reusing prepared shards" in caplog.text
    # Reading lines as sentences changes the examples, not the words: the vocabulary is reused.
    caplog.clear()
    cfg.split_lines = False
    with caplog.at_level(logging.INFO):
        again = pipeline.make_pretraining_data(cfg, seed=0, global_batch_size=8,
                                               workdir=str(tmp_path))
    assert "reusing trained vocabulary" in caplog.text
    assert "reusing prepared shards" not in caplog.text
    assert again.tokenizer_dir == data.tokenizer_dir


@pytest.mark.parametrize("interrupted", ["vocabulary", "shards"])
def test_an_interrupted_preparation_leaves_no_temporary_directory(corpus_dir, tmp_path,
                                                                   monkeypatch, interrupted):
    """Ctrl-C while `prepare` trains the vocabulary (.tmp-tok-*) or writes the shards
    (.tmp-shards-*): the exception goes on, the half-built directory is gone."""
    from bertjax.data import examples
    from bertjax.data import tokenizer as tokenizer_lib

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    if interrupted == "vocabulary":
        monkeypatch.setattr(tokenizer_lib, "train_wordpiece", interrupt)
    else:
        monkeypatch.setattr(examples, "shard_examples", interrupt)
    cfg = _cfg(corpus_dir, tmp_path, tokenizer="", vocab_size=120)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare(cfg)
    left = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert not [name for name in left if name.startswith(".tmp-")], left
    assert len(left) == (0 if interrupted == "vocabulary" else 1)  # the published vocabulary


def test_prepare_command_reads_a_config_variant_like_train(corpus_dir, tmp_path, capsys):
    """`--config FILE.py:VARIANT` is get_config(VARIANT), as in `python -m bertjax.train`."""
    from bertjax.data import __main__ as data_main
    data_main.main(["prepare", "--config", "configs/bert_tiny.py:smoke", "--workdir",
                    str(tmp_path / "w"), "--corpus", str(corpus_dir / "part*.txt"),
                    "--tokenizer", str(corpus_dir / "vocab.txt")])
    printed = json.loads(capsys.readouterr().out)
    with open(f"{printed['shards']}/meta.json") as f:
        fields = json.load(f)["fields"]
    assert fields["max_seq_length"] == 32  # smoke's, not the default variant's 128
    with pytest.raises(prepare.DataConfigError, match="bert_tiny.py:nope.*no variant 'nope'"):
        data_main.load_config_file("configs/bert_tiny.py:nope")
    with pytest.raises(prepare.DataConfigError,
                       match="--config configs/missing.py:smoke: no such config file"):
        data_main.load_config_file("configs/missing.py:smoke")
    assert data_main.load_config_file("configs/bert_tiny.py").data.max_seq_length == 128


def test_prepare_command_refuses_a_vocabulary_larger_than_the_configs_model(corpus_dir, tmp_path,
                                                                             capsys):
    """With --config, the model's vocab_size is known: a larger vocabulary is refused before
    anything is prepared."""
    from bertjax.data import __main__ as data_main
    with pytest.raises(SystemExit) as exit_info:
        data_main.main(["prepare", "--config", "configs/bert_tiny.py:smoke", "--workdir",
                        str(tmp_path / "w"), "--corpus", str(corpus_dir / "part*.txt"),
                        "--set", "vocab_size=600"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "config.data.vocab_size=600" in err and "config.model.vocab_size=512" in err, err
    assert not (tmp_path / "w" / "data").exists() or not list((tmp_path / "w" / "data").iterdir())


def test_prepare_command_reports_a_corpus_that_matches_nothing_without_a_traceback(tmp_path,
                                                                                     capsys):
    from bertjax.data import __main__ as data_main
    with pytest.raises(SystemExit) as exit_info:
        data_main.main(["prepare", "--workdir", str(tmp_path), "--corpus",
                        str(tmp_path / "nothing*.txt")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing*.txt" in err, err


def test_a_vocabulary_without_mask_is_refused_by_name_before_the_cache_is_touched(
        corpus_dir, tmp_path, capsys):
    from bertjax.data import __main__ as data_main
    lines = (corpus_dir / "vocab.txt").read_text().splitlines()
    nomask = tmp_path / "nomask.txt"
    nomask.write_text("\n".join(t for t in lines if t != "[MASK]") + "\n")
    cfg = _cfg(corpus_dir, tmp_path, tokenizer=str(nomask))
    with pytest.raises(prepare.DataConfigError,
                       match=r"config\.data\.tokenizer=.*nomask\.txt.*lacks.*\[MASK\]"):
        prepare.prepare(cfg)
    assert not list((tmp_path / "cache").glob("*tokenizer-*"))  # nothing copied into the cache
    with pytest.raises(SystemExit) as exit_info:
        data_main.main(["prepare", "--corpus", cfg.corpus, "--tokenizer", str(nomask),
                        "--cache-dir", cfg.cache_dir])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(f"error: --tokenizer {nomask}: ") and "[MASK]" in err, err


def test_prepare_set_reads_values_as_the_field_type_and_names_the_flag_on_a_mismatch(capsys):
    import argparse
    from bertjax.data import __main__ as data_main

    def data_config(*items):
        cfg, model_vocab_size = data_main._data_config(argparse.Namespace(
            config=None, corpus=None, tokenizer=None, cache_dir=None, set=list(items)))
        assert model_vocab_size is None  # no --config, no model
        return cfg
    cfg = data_config("next_sentence=False", "packing=true", "max_seq_length=64",
                      "eval_fraction=0.5", "masked_lm_prob=1", "corpus=a b*.txt")
    assert (cfg.next_sentence, cfg.packing, cfg.max_seq_length) == (False, True, 64)
    assert (cfg.eval_fraction, cfg.masked_lm_prob, cfg.corpus) == (0.5, 1.0, "a b*.txt")
    for item in ("max_seq_length=32.0", "next_sentence=maybe", "eval_fraction=x"):
        with pytest.raises(SystemExit) as exit_info:
            data_main.main(["prepare", "--set", item])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith(f"error: --set {item}: "), err


def test_nsp_balance_is_recorded_and_a_skewed_corpus_is_warned_about(corpus_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        balanced = prepare.prepare(_cfg(corpus_dir, tmp_path / "a"))
    # Documents of 3-12 sentences: the reference's rule leaves ~60% random (the last chunk of a
    # document is often one sentence), within what is not warned about.
    assert 0.45 < balanced.meta["nsp_random_fraction"]["train"] < 0.7
    assert "NSP pairs: " in caplog.text and "far from" not in caplog.text
    # One sentence per document: google-research/bert's rule gives every pair a random B.
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "c.txt").write_text("\n\n".join(
        " ".join(WORDS[i:i + 12]).capitalize() + "." for i in range(40)) + "\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        skewed = prepare.prepare(_cfg(corpus_dir, tmp_path / "b",
                                      corpus=str(tmp_path / "one" / "c.txt")))
    assert skewed.meta["nsp_random_fraction"]["train"] == 1.0
    assert "NSP pairs: 100.0% with a random B" in caplog.text and "split_lines" in caplog.text


def test_tokens_dropped_by_nsp_truncation_are_reported(corpus_dir, tmp_path, caplog):
    (tmp_path / "long").mkdir()  # one long line with no sentence end: one pair, the rest dropped
    (tmp_path / "long" / "c.txt").write_text(" ".join(WORDS * 20) + "\n\n" + "\n\n".join(
        " ".join(WORDS[i:i + 12]).capitalize() + "." for i in range(20)) + "\n")
    with caplog.at_level(logging.INFO):
        prepared = prepare.prepare(_cfg(corpus_dir, tmp_path, corpus=str(tmp_path / "long" / "c.txt")))
    stats = prepared.meta["stats"]
    assert stats["truncated_tokens"] > len(WORDS) * 20 - 32
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
               and "truncating" in r.getMessage()]
    share = f"{stats['truncated_tokens'] / stats['tokens']:.1%}"
    assert warning and f"dropped {stats['truncated_tokens']} of {stats['tokens']}" in warning[0]
    assert share in warning[0] and "next_sentence=False" in warning[0]
