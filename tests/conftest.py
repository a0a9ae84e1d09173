"""Shared fixtures: a tiny trained tokenizer and a random transformers BertForPreTraining dir."""

import os

os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow (slow, unneeded).
os.environ.setdefault("USE_FLAX", "0")

# Compile XLA:CPU programs with LLVM at -O0 and XLA:CPU's elemental emitter for fusions instead
# of its newer MLIR fusion emitters: the suite compiles hundreds of tiny programs whose run time is
# negligible; -O0 cuts compile time ~25%, and the elemental emitter a further ~30% (a tiny
# classifier's train step: 4.7-5.2 s -> 3.1-3.7 s). Every comparison in the tests is either within
# one build (resume is bit-exact against a run with the same flags) or against a peer at a
# tolerance far above float reassociation. Subprocesses inherit them; flags set by a caller are kept.
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

# One persistent XLA compilation cache per test session, inherited by every subprocess the tests
# start (`python -m bertjax.train` runs for resume, multi-process, 8-device): they compile the same
# tiny steps again and again. A fresh directory each session, so no stale entry can hide a bug;
# a cache hit loads the very executable a compile would produce, so numerics are unchanged (the
# bit-exact resume tests compare a compiled run with cache-loaded ones).
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_JIT_CACHE = tempfile.mkdtemp(prefix="bertjax-test-jit-cache-")
atexit.register(shutil.rmtree, _JIT_CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _JIT_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # tiny models compile fast
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

import jax  # noqa: E402
import pytest  # noqa: E402

# In case jax was imported before this file (the env vars above are read at import).
jax.config.update("jax_compilation_cache_dir", _JIT_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A lazy dog sleeps in the warm afternoon sun.",
    "Café, naïve and résumé carry accents; 東京 and 北京 are cities.",
    "Birds sing, rivers flow, and the quick fox runs home!",
]

# Odd, distinct dimensions so that a transposed or misplaced tensor cannot go unnoticed.
TINY_HF = dict(vocab_size=101, hidden_size=30, num_attention_heads=3, intermediate_size=37,
               num_hidden_layers=3, max_position_embeddings=41, type_vocab_size=2)


def randomize(torch_model, seed):
    """Adds noise to every parameter (LayerNorm ones/zeros and zero biases would hide mix-ups)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in torch_model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return torch_model.eval()


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from bertjax.data import tokenizer as tokenizer_lib
    out = tmp_path_factory.mktemp("tokenizer_uncased")
    tokenizer_lib.train_wordpiece(iter(SENTENCES * 2), vocab_size=101, lowercase=True,
                                  out_dir=str(out))
    return out


@pytest.fixture(scope="session")
def hf_pretraining_dir(tmp_path_factory, tiny_tokenizer_dir):
    """A saved random transformers.BertForPreTraining (safetensors) with vocab.txt, tokenizer."""
    import shutil
    import torch
    import transformers
    torch.manual_seed(0)
    model = randomize(transformers.BertForPreTraining(
        transformers.BertConfig(hidden_act="gelu", **TINY_HF)), seed=1)
    out = tmp_path_factory.mktemp("hf_pretraining")
    model.save_pretrained(str(out))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_tokenizer_dir / name, out / name)
    return out


# Modules whose tests run whole trainings in subprocesses (a minute or more each). They go first,
# whole modules at a time (their module-scoped fixtures are set up once): started last, one of
# them would leave the other xdist worker idle at the end of the suite.
HEAVY_FIRST = ("test_multiprocess.py", "test_sharding.py", "test_resume.py", "test_bench.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)
    items.sort(key=rank)  # stable: every module keeps its own order
