"""pretrained.load(...).embed(...): loads every format, pools over real tokens only, batches."""

import json
import os
import subprocess
import sys
import types

import ml_collections
import numpy as np
import pytest
import torch
import transformers

from bertjax import config as config_lib
from bertjax import convert
from bertjax import pretrained
from bertjax.data import tokenizer as tokenizer_lib
from conftest import SENTENCES

TEXTS = ["the quick brown fox", "Café naïve 東京!", "", "a lazy dog sleeps in the warm sun " * 3]


@pytest.fixture(scope="module")
def bert(hf_pretraining_dir):
    return pretrained.load(str(hf_pretraining_dir))


def _hf_reference(hf_dir, ids):
    model = transformers.BertModel.from_pretrained(str(hf_dir)).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.last_hidden_state[0].numpy(), out.pooler_output[0].numpy()


def test_embed_matches_transformers(bert, hf_pretraining_dir):
    ids = bert.tokenize([TEXTS[1]])[0]
    assert ids[0] == bert.tokenizer.token_to_id("[CLS]")
    assert ids[-1] == bert.tokenizer.token_to_id("[SEP]")
    hidden, pooled = _hf_reference(hf_pretraining_dir, ids)
    expected = {"mean": hidden.mean(0), "max": hidden.max(0), "cls": hidden[0], "pooler": pooled}
    for pooling, ref in expected.items():
        got = bert.embed([TEXTS[0], TEXTS[1]], pooling=pooling, normalize=False)
        assert got.shape == (2, 30) and got.dtype == np.float32
        np.testing.assert_allclose(got[1], ref, rtol=1e-4, atol=1e-5, err_msg=pooling)
    states = bert.encode([TEXTS[1]])[0]
    assert states.shape == (len(ids), 30)
    np.testing.assert_allclose(states, hidden, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls", "pooler"])
def test_padding_does_not_change_a_vector(bert, pooling):
    alone = bert.embed([TEXTS[0]], pooling=pooling)
    with_long = bert.embed([TEXTS[0], TEXTS[3]], pooling=pooling)
    np.testing.assert_allclose(with_long[0], alone[0], atol=1e-5)
    assert not np.allclose(with_long[1], alone[0], atol=1e-3)


def test_normalize_empty_string_and_truncation(bert):
    unit = bert.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1.0, rtol=1e-5)
    raw = bert.embed(TEXTS, normalize=False)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=-1, keepdims=True), rtol=1e-5)
    assert bert.tokenize([""])[0] == [bert.tokenizer.token_to_id("[CLS]"),
                                      bert.tokenizer.token_to_id("[SEP]")]
    assert np.all(np.isfinite(raw[2])) and np.linalg.norm(raw[2]) > 0
    # Longer than max_position_embeddings=41: truncated by default, keeping the final [SEP].
    very_long = "the quick brown fox jumps over the lazy dog " * 20
    ids = bert.tokenize([very_long])[0]
    assert len(ids) == 41 and ids[-1] == bert.tokenizer.token_to_id("[SEP]")
    assert np.all(np.isfinite(bert.embed([very_long])))
    cut = bert.tokenize([very_long], max_length=8)[0]
    assert cut == ids[:7] + ids[-1:]
    # Truncated text == the text whose tokens are exactly the kept ones.
    short = bert.tokenizer.decode(cut[1:-1])
    assert bert.tokenize([short])[0] == cut
    np.testing.assert_allclose(bert.embed([very_long], max_length=8), bert.embed([short]),
                               atol=1e-5)
    with pytest.raises(ValueError, match="max_length"):
        bert.embed(["x"], max_length=42)
    with pytest.raises(ValueError, match="pooling"):
        bert.embed(["x"], pooling="sum")
    # Arguments of the wrong type are named, not read as something else ("no" as true).
    with pytest.raises(TypeError, match="normalize must be True or False, got 'no'"):
        bert.embed(["x"], normalize="no")
    with pytest.raises(TypeError, match="batch_size must be an int, got 2.0"):
        bert.embed(["x"], batch_size=2.0)
    with pytest.raises(TypeError, match="max_length must be an int, got '8'"):
        bert.encode(["x"], max_length="8")
    assert bert.embed(["x"], batch_size=np.int64(2), normalize=np.bool_(False)).shape == (1, 30)


def test_batches_larger_than_batch_size_and_bucketed_compiles(bert):
    texts = [" ".join(SENTENCES[i % 2].split()[: 1 + i % 5]) for i in range(8)]
    assert max(len(ids) for ids in bert.tokenize(texts)) <= 16
    big = bert.embed(texts, batch_size=64)
    small = bert.embed(texts, batch_size=3)
    assert big.shape == small.shape == (8, 30)
    np.testing.assert_allclose(small, big, atol=1e-5)
    singles = np.concatenate([bert.embed([t]) for t in texts])
    np.testing.assert_allclose(singles, big, atol=1e-5)
    # Every text fits the 16-token bucket: batches of 1..3 rows all use the shape [3, 16].
    before = bert._pool._cache_size()
    for n in range(1, 9):
        for pooling in ("cls", "max"):
            bert.embed(texts[:n], pooling=pooling, batch_size=3)
    assert bert._pool._cache_size() == before  # all compiled above already


def test_load_every_format(tmp_path, bert, hf_pretraining_dir, monkeypatch):
    """bertjax, HF (with and without heads), workdir; Google: test_convert::test_google_*."""
    reference = bert.embed(TEXTS)
    bert.save(str(tmp_path / "bj"))
    again = pretrained.load(str(tmp_path / "bj"))
    assert isinstance(again.model, type(bert.model)) and set(again.params) == {"bert", "mlm", "nsp"}
    np.testing.assert_array_equal(again.embed(TEXTS), reference)

    convert.to_huggingface(bert.config, {"bert": bert.params["bert"]}, bert.tokenizer,
                           str(tmp_path / "hf_bare"))
    bare = pretrained.load(str(tmp_path / "hf_bare"))
    assert set(bare.params) == {"bert"} and type(bare.model).__name__ == "BertModel"
    np.testing.assert_array_equal(bare.embed(TEXTS), reference)

    scanned = ml_collections.ConfigDict(bert.config.to_dict())
    scanned.scan_layers = True
    fake = types.ModuleType("bertjax.checkpoint")
    fake.restore_params = lambda workdir, step=None: (
        scanned, bert.params, str(hf_pretraining_dir), {})
    monkeypatch.setitem(sys.modules, "bertjax.checkpoint", fake)
    import bertjax
    monkeypatch.setattr(bertjax, "checkpoint", fake, raising=False)
    (tmp_path / "workdir" / "checkpoints").mkdir(parents=True)
    from_workdir = pretrained.load(str(tmp_path / "workdir"))
    np.testing.assert_allclose(from_workdir.embed(TEXTS), reference, atol=1e-5)


def test_init_random_tiny_model_with_trained_tokenizer(tmp_path):
    tok = tokenizer_lib.train_wordpiece(iter(SENTENCES), vocab_size=80, lowercase=True,
                                        out_dir=str(tmp_path / "tok"))
    cfg = config_lib.model(hidden_size=24, num_layers=2, num_heads=2, intermediate_size=29,
                           max_position_embeddings=32, scan_layers=True)
    bert = pretrained.init_random(cfg, tok, seed=0)
    assert bert.config.vocab_size == tok.get_vocab_size()
    assert "layer_1" in bert.params["bert"]["encoder"]  # canonical layout even when scanned
    vectors = bert.embed(SENTENCES + [""])
    assert vectors.shape == (5, 24) and np.all(np.isfinite(vectors))
    bare = pretrained.init_random(cfg, tok, seed=0, heads=False)
    assert set(bare.params) == {"bert"}
    np.testing.assert_allclose(bare.embed(SENTENCES), vectors[:4], atol=1e-5)
    with pytest.raises(convert.ConvertError, match="nowhere: no such file"):
        pretrained.load(str(tmp_path / "nowhere"))


def test_sentence_pairs_match_transformers(bert, hf_pretraining_dir):
    """A (text, text_pair) tuple is one input with token type 1 on the second segment, truncated
    longest-first: ids, type ids and hidden states are transformers' for the same pair."""
    reference = transformers.AutoTokenizer.from_pretrained(str(hf_pretraining_dir))
    model = transformers.BertModel.from_pretrained(str(hf_pretraining_dir)).eval()
    long = "the quick brown fox jumps over the lazy dog " * 3
    pairs = [("the quick brown fox", "a lazy dog sleeps in the sun"), (long, "a lazy dog"),
             ("Café naïve", "")]
    texts = pairs + ["the quick brown fox"]  # pairs and single texts mix in one call
    for max_length in (41, 12):
        states = bert.encode(texts, max_length=max_length, batch_size=2)
        cls = bert.embed(texts, pooling="cls", normalize=False, max_length=max_length)
        pooled = bert.embed(texts, pooling="pooler", normalize=False, max_length=max_length)
        for i, text in enumerate(texts):
            # A batch of one: transformers' tokenizer(a, "") would drop an empty text_pair.
            enc = reference([text], truncation=True, max_length=max_length, return_tensors="pt")
            assert bert.tokenize([text], max_length=max_length)[0] == enc["input_ids"][0].tolist()
            with torch.no_grad():
                out = model(**enc)
            hidden = out.last_hidden_state[0].numpy()
            if isinstance(text, tuple) and text[1]:
                assert enc["token_type_ids"][0].sum() > 0  # the reference does use type 1
            np.testing.assert_allclose(states[i], hidden, rtol=1e-4, atol=1e-5, err_msg=str(text))
            np.testing.assert_allclose(cls[i], hidden[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(pooled[i], out.pooler_output[0].numpy(), rtol=1e-4,
                                       atol=1e-5)


@pytest.mark.parametrize("bad, index, what", [
    (["fine", None], 1, "NoneType"), (["fine", "fine", 3], 2, "int"),
    ([("one text only",)], 0, "tuple"), ([["a", "list"]], 0, "list"),
    ([("a", 7)], 0, "tuple")])
def test_texts_that_are_neither_string_nor_pair_are_named(bert, bad, index, what):
    for call in (bert.embed, bert.encode, bert.tokenize):
        with pytest.raises(TypeError, match=rf"texts\[{index}\] must be a string or a \(text, "
                                            rf"text_pair\) tuple.*got {what}"):
            call(bad)
    with pytest.raises(ValueError, match="max_length=2 leaves no room for a pair"):
        bert.embed([("a", "b")], max_length=2)


_EIGHT_DEVICES = """
import json, sys
import jax
import numpy as np
from bertjax import pretrained
assert jax.local_device_count() == 8
bert = pretrained.load(sys.argv[1])
texts = json.loads(sys.argv[2])
out = {"mean": bert.embed(texts, batch_size=3).tolist(),
       "encode": [a.tolist() for a in bert.encode(texts, batch_size=64)]}
ids, types, mask = (np.zeros((8, 16), np.int32) for _ in range(3))
params = bert._encoder_params()
out["param_devices"] = len(jax.tree.leaves(params)[0].sharding.device_set)
out["row_shards"] = len(bert._run(bert._sequence, params, ids, types, mask).addressable_shards)
print("RESULT" + json.dumps(out))
"""


def test_embed_splits_batches_over_every_local_device(bert, hf_pretraining_dir):
    """8 simulated devices: rows split over all of them, vectors equal to one device's."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + " --xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES, str(hf_pretraining_dir),
                           json.dumps(TEXTS)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.split("RESULT")[-1])
    assert got["param_devices"] == 8 and got["row_shards"] == 8
    np.testing.assert_allclose(got["mean"], bert.embed(TEXTS), atol=1e-5)
    for a, b in zip(got["encode"], bert.encode(TEXTS)):
        np.testing.assert_allclose(a, b, atol=1e-4)
