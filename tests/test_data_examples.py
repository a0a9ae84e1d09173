"""Example creation and masking: google-research/bert's rules, checked on thousands of examples."""

import numpy as np
import pytest

from bertjax.data import examples
from bertjax.data import masking

SP = examples.Specials(pad=0, unk=1, cls=2, sep=3, mask=4)
V = 97  # vocabulary size; ids >= 5 are words


def _docs(n_docs, rng, sentences=(3, 12), length=(4, 25)):
    """Documents of random sentences; sentence j of doc d starts with a marker of its own."""
    return [[rng.integers(5, V, size=rng.integers(*length)).astype(np.int32)
             for _ in range(rng.integers(*sentences))] for _ in range(n_docs)]


def _split(row):
    """[CLS] A [SEP] B [SEP] -> (A, B)."""
    assert row[0] == SP.cls and row[-1] == SP.sep
    seps = np.flatnonzero(row == SP.sep)
    assert len(seps) == 2
    return row[1:seps[0]], row[seps[0] + 1:-1]


def test_pair_examples_structure_and_nsp_rate():
    rng = np.random.default_rng(0)
    docs = _docs(400, rng)
    recs = examples.shard_examples(docs, list(range(len(docs))), seed=1, dupe_factor=3,
                                   max_seq_length=64, short_seq_prob=0.1, next_sentence=True,
                                   packing=False, specials=SP)
    assert len(recs) > 3000
    labels = np.array([r[0] for r in recs])
    assert set(labels) == {0, 1}
    assert 0.5 <= labels.mean() < 0.7  # a one-sentence chunk always gets a random B (as the reference)
    text = {d: np.concatenate(doc) for d, doc in enumerate(docs)}
    for rec in recs[:500]:
        row = rec[1:]
        assert len(row) <= 64
        a, b = _split(row)
        assert len(a) >= 1 and len(b) >= 1
        assert not np.isin(np.concatenate([a, b]), [SP.cls, SP.sep, SP.pad]).any()
    # an actual-next pair: A and B are both text of one document, B after A
    for rec in [r for r in recs if r[0] == 0][:200]:
        a, b = _split(rec[1:])
        assert any(0 <= t.tobytes().find(a.tobytes()) < t.tobytes().find(b.tobytes())
                   for t in text.values())


def test_nsp_rate_on_long_documents():
    rng = np.random.default_rng(1)
    # long documents and full targets: almost every chunk has >= 2 sentences, so the coin decides
    docs = _docs(100, rng, sentences=(200, 260), length=(8, 16))
    recs = examples.shard_examples(docs, list(range(100)), seed=2, dupe_factor=2, max_seq_length=128,
                                   short_seq_prob=0.0, next_sentence=True, packing=False, specials=SP)
    labels = np.array([r[0] for r in recs])
    assert len(labels) > 2000
    assert abs(labels.mean() - 0.5) < 0.02


def test_examples_are_a_pure_function_of_seed_and_document():
    rng = np.random.default_rng(2)
    docs = _docs(50, rng)
    kw = dict(seed=3, dupe_factor=1, max_seq_length=48, short_seq_prob=0.1, next_sentence=False,
              packing=False, specials=SP)
    a = examples.shard_examples(docs, list(range(50)), **kw)
    b = examples.shard_examples(docs, list(range(50)), **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    c = examples.shard_examples(docs, list(range(50)), **{**kw, "seed": 4})
    assert len(c) != len(a) or not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_single_examples_keep_every_token_in_order():
    rng = np.random.default_rng(3)
    docs = _docs(30, rng, length=(4, 70))  # some sentences longer than the room
    recs = examples.shard_examples(docs, list(range(30)), seed=5, dupe_factor=1, max_seq_length=32,
                                   short_seq_prob=0.0, next_sentence=False, packing=False, specials=SP)
    assert all(r[0] == examples.NO_LABEL and r[1] == SP.cls and r[-1] == SP.sep and len(r) - 1 <= 32
               for r in recs)
    got = np.concatenate([r[2:-1] for r in recs])
    assert np.array_equal(got, np.concatenate([np.concatenate(d) for d in docs]))


def test_truncate_seq_pair_trims_longer_side():
    rng = np.random.default_rng(0)
    a, b = np.arange(10), np.arange(100, 103)
    ta, tb = examples.truncate_seq_pair(a, b, 8, rng)
    assert len(ta) == 5 and np.array_equal(tb, b)
    assert np.array_equal(ta, a[a.tobytes().find(ta.tobytes()) // 8:][:5])  # a contiguous slice


def test_packing_fills_rows_and_keeps_examples():
    rng = np.random.default_rng(4)
    docs = _docs(60, rng, sentences=(1, 3), length=(3, 20))
    kw = dict(seed=6, dupe_factor=1, max_seq_length=64, short_seq_prob=0.0, next_sentence=False,
              specials=SP)
    plain = examples.shard_examples(docs, list(range(60)), packing=False, **kw)
    packed = examples.shard_examples(docs, list(range(60)), packing=True, **kw)
    assert len(packed) < len(plain) / 2
    assert all(len(r) - 1 <= 64 for r in packed)
    assert sorted(r[1:].tobytes() for r in plain) == sorted(
        seg.tobytes() for r in packed for seg in np.split(r[1:], np.flatnonzero(r[1:] == SP.sep)[:-1] + 1))


def _batch(B, S, rng, min_len=20):
    lens = rng.integers(min_len, S + 1, size=B)
    ids = rng.integers(5, V, size=(B, S)).astype(np.int32)
    att = np.arange(S)[None] < lens[:, None]
    ids[:, 0] = SP.cls
    mid = lens // 2
    ids[np.arange(B), mid] = SP.sep
    ids[np.arange(B), lens - 1] = SP.sep
    ids[~att] = SP.pad
    return ids, att.astype(np.int32)


def _mask(ids, att, keys, P, cont=None):
    return masking.mask_batch(ids, att, keys, vocab_size=V, cls_id=SP.cls, sep_id=SP.sep,
                              mask_id=SP.mask, max_predictions=P, masked_lm_prob=0.15,
                              is_continuation=cont)


def test_masking_statistics_on_a_large_batch():
    rng = np.random.default_rng(7)
    B, S = 4096, 128
    ids, att = _batch(B, S, rng, min_len=100)
    out = _mask(ids, att, masking.example_keys(0, np.arange(B), 0), P=S)  # P = S: never capped
    w = out["masked_lm_weights"].astype(bool)
    pos, lab = out["masked_lm_positions"], out["masked_lm_ids"]
    lens = att.sum(1)
    # num_to_predict = max(1, round(len * 0.15)), len counting [CLS]/[SEP]
    assert np.array_equal(w.sum(1), np.maximum(1, np.rint(lens * 0.15)))
    maskable = att.astype(bool) & (ids != SP.cls) & (ids != SP.sep)
    assert abs(w.sum() / maskable.sum() - 0.15) < 0.01
    chosen_ids = np.take_along_axis(ids, pos, 1)[w]
    assert np.array_equal(lab[w], chosen_ids)
    assert not np.isin(chosen_ids, [SP.cls, SP.sep, SP.pad]).any()
    # positions ascending and unique; padding positions are 0 with weight 0
    p = np.where(w, pos, S + np.arange(S))
    assert (np.diff(p, axis=1) > 0).all() and (pos[~w] == 0).all() and (lab[~w] == 0).all()
    new = np.take_along_axis(out["input_ids"], pos, 1)[w]
    frac_mask = (new == SP.mask).mean()
    frac_keep = (new == chosen_ids).mean()
    frac_rand = 1 - frac_mask - frac_keep
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_keep - 0.1 - 1 / V * 0.1) < 0.02
    assert abs(frac_rand - 0.1) < 0.02
    # nothing outside the chosen positions changes
    changed = out["input_ids"] != ids
    chosen = np.zeros_like(changed)
    np.put_along_axis(chosen, pos, w, 1)
    assert not (changed & ~chosen).any()


def test_masking_cap_and_determinism():
    rng = np.random.default_rng(8)
    ids, att = _batch(512, 64, rng)
    keys = masking.example_keys(5, np.arange(1000, 1512), 3)
    out = _mask(ids, att, keys, P=5)
    assert (out["masked_lm_weights"].sum(1) <= 5).all() and out["masked_lm_positions"].shape == (512, 5)
    # a row's mask depends only on its key: same rows in another order and batch give the same mask
    perm = rng.permutation(512)[:100]
    sub = _mask(ids[perm], att[perm], keys[perm], P=5)
    for k in out:
        assert np.array_equal(sub[k], out[k][perm])
    other_epoch = _mask(ids, att, masking.example_keys(5, np.arange(1000, 1512), 4), P=5)
    assert not np.array_equal(other_epoch["masked_lm_positions"], out["masked_lm_positions"])


def test_whole_word_masking_masks_whole_words():
    rng = np.random.default_rng(9)
    B, S = 2048, 96
    ids, att = _batch(B, S, rng, min_len=60)
    cont = np.zeros(V, bool)
    cont[60:] = True  # ids >= 60 are "##" pieces
    out = _mask(ids, att, masking.example_keys(1, np.arange(B), 0), P=S, cont=cont)
    w = out["masked_lm_weights"].astype(bool)
    chosen = np.zeros((B, S), bool)
    np.put_along_axis(chosen, out["masked_lm_positions"], w, 1)
    maskable = att.astype(bool) & (ids != SP.cls) & (ids != SP.sep)
    # A piece joins the word before it, across [SEP] too; one before any word starts one (Google).
    seen = np.zeros_like(maskable)
    seen[:, 1:] = np.logical_or.accumulate(maskable, axis=1)[:, :-1]
    start = maskable & (~cont[ids] | ~seen)
    word = np.maximum.accumulate(np.where(start, np.arange(S), 0), axis=1)
    for b in range(B):
        for wid in np.unique(word[b][maskable[b]]):
            members = maskable[b] & (word[b] == wid)
            assert chosen[b][members].all() or not chosen[b][members].any()
    # the count never exceeds num_to_predict and comes close to it
    k = np.maximum(1, np.rint(att.sum(1) * 0.15))
    assert (w.sum(1) <= k).all() and w.sum() / k.sum() > 0.97


def _google_words(tokens, cont, whole_word):
    """create_masked_lm_predictions' cand_indexes: [CLS]/[SEP] skipped; with whole-word masking
    a "##" piece joins the last word so far (across [SEP] too)."""
    words = []
    for i, t in enumerate(tokens):
        if t in (SP.cls, SP.sep):
            continue
        if whole_word and words and cont[t]:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def _google_select(words, k):
    """The reference's loop over the shuffled words: skip a word that would exceed k."""
    chosen = []
    for word in words:
        if len(chosen) >= k:
            break
        if len(chosen) + len(word) > k:
            continue
        chosen += word
    return sorted(chosen)


@pytest.mark.parametrize("whole_word", [False, True])
def test_selection_equals_google_given_the_same_word_order(whole_word):
    """Visiting the reference's words in bertjax's order (each word's draw is its first piece's
    uniform), google-research/bert's loop selects exactly bertjax's positions."""
    rng = np.random.default_rng(11)
    cont = np.zeros(V, bool)
    cont[60:] = True
    B, S = 512, 40
    ids, att = _batch(B, S, rng, min_len=8)
    keys = masking.example_keys(2, np.arange(B), 0)
    out = _mask(ids, att, keys, P=5, cont=cont if whole_word else None)
    score = masking.uniform(keys, S, 0)
    for b in range(B):
        tokens = list(ids[b, :att[b].sum()])
        words = sorted(_google_words(tokens, cont, whole_word), key=lambda w: (score[b, w[0]], w[0]))
        k = min(5, max(1, int(round(len(tokens) * 0.15))))
        got = sorted(int(p) for p, w in zip(out["masked_lm_positions"][b],
                                            out["masked_lm_weights"][b]) if w)
        assert got == _google_select(words, k), (b, tokens)


def test_tokens_dropped_by_truncation_are_counted_without_changing_the_examples():
    rng = np.random.default_rng(6)
    docs = [[rng.integers(5, V, size=500).astype(np.int32)]] + _docs(20, rng)
    kw = dict(max_seq_length=32, short_seq_prob=0.0, specials=SP)
    counts = {}
    recs = examples.pair_examples(docs, 0, np.random.default_rng(1), counts=counts, **kw)
    assert _same_records(recs, examples.pair_examples(docs, 0, np.random.default_rng(1), **kw))
    (rec,) = recs  # one sentence: one pair with a random B, the rest of the 500 tokens dropped
    a, _ = _split(rec[1:])
    assert rec[0] == 1 and counts["truncated_tokens"] == 500 - len(a) > 400
    for next_sentence, short in ((True, 0.1), (False, 0.3), (False, 0.0)):
        kw = dict(seed=3, dupe_factor=2, max_seq_length=48, short_seq_prob=short,
                  next_sentence=next_sentence, packing=False, specials=SP)
        counts = {}
        with_counts = examples.shard_examples(docs, list(range(len(docs))), counts=counts, **kw)
        assert _same_records(with_counts, examples.shard_examples(docs, list(range(len(docs))), **kw))
        if not next_sentence:  # MLM rows hold every token but those counted, each copy
            total = 2 * sum(len(s) for d in docs for s in d)
            assert sum(len(r) - 3 for r in with_counts) == total - counts.get("truncated_tokens", 0)
            assert (counts.get("truncated_tokens", 0) == 0) == (short == 0.0)


def _same_records(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
