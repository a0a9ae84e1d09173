"""The peers timed by `python -m bertjax.bench`: Hugging Face Flax BERT and PyTorch BERT.

Each peer gets the identical model config, batch and objective as bertjax: MLM cross-entropy over
the masked positions (weighted by masked_lm_weights) plus NSP cross-entropy, AdamW with BERT's
hyper-parameters, dropout on, one jitted/compiled update per step. Peers are optional: they need
`pip install -r requirements-bench.txt` (transformers<5 still ships Flax BERT; torch CPU build).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable

import ml_collections
import numpy as np

HF_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


def available() -> dict[str, str]:
    """{peer name: reason it cannot run} for peers that are missing, else an empty reason."""
    out = {}
    try:
        import transformers  # noqa: F401
        from transformers import FlaxBertForPreTraining  # noqa: F401
        out["hf_flax"] = ""
    except Exception as e:  # ImportError, or transformers>=5 without Flax models.
        out["hf_flax"] = f"transformers with Flax BERT not importable ({type(e).__name__}: {e})"
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401,F811
        out["torch"] = ""
    except Exception as e:
        out["torch"] = f"torch/transformers not importable ({type(e).__name__}: {e})"
    return out


def hf_config(cfg: ml_collections.ConfigDict):
    from transformers import BertConfig
    return BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        hidden_act=HF_ACT[cfg.hidden_act], hidden_dropout_prob=cfg.dropout_rate,
        attention_probs_dropout_prob=cfg.attention_dropout_rate,
        max_position_embeddings=cfg.max_position_embeddings, type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.initializer_range, layer_norm_eps=cfg.layer_norm_eps)


def _dense_labels(batch: dict[str, np.ndarray]) -> np.ndarray:
    """[B, P] masked positions/ids/weights -> [B, S] labels with -100 where nothing is predicted."""
    labels = np.full(batch["input_ids"].shape, -100, np.int64)
    rows = np.arange(labels.shape[0])[:, None].repeat(batch["masked_lm_positions"].shape[1], 1)
    keep = batch["masked_lm_weights"] > 0
    labels[rows[keep], batch["masked_lm_positions"][keep]] = batch["masked_lm_ids"][keep]
    return labels


def time_steps(step: Callable[[], None], warmup: int, steps: int) -> list[float]:
    """Seconds per call of `step` (which must block until its work is done), after warm-up."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def time_interleaved(builders: dict[str, Callable[[], Callable[[], None]]], warmup: int,
                     steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each runner, timed in turns so that all see the same machine.

    builders: {name: a no-argument function that builds a runner and returns its `step`}.
    With rounds > 1 every runner is built and warmed up first; then each round times
    ceil(steps / rounds) steps of every runner in turn (the order reversed every other round):
    on a shared host whose speed drifts from minute to minute (other tenants, turbo), the
    ratios between runners then compare like with like. rounds == 1 times the runners one
    after another, each built just before its turn and dropped after it (least memory at once).
    """
    if rounds <= 1:
        out = {}
        for name, build in builders.items():
            out[name] = time_steps(build(), warmup, steps)
        return out
    runners = {}
    for name, build in builders.items():
        runners[name] = build()
        time_steps(runners[name], warmup, 0)
    per_round = -(-steps // rounds)
    out = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name] += time_steps(runners[name], 0, min(per_round, steps - len(out[name])))
    return out


def hf_flax_train(cfg, batch, opt_cfg, dtype: str) -> Callable[[], None]:
    """HF FlaxBertForPreTraining's full update (forward, backward, AdamW) as a blocking step."""
    import jax
    import jax.numpy as jnp
    import optax
    from transformers import FlaxBertForPreTraining

    # _do_init=False and a jitted init: the default initialises eagerly, compiling each of its
    # ~100 ops on its own (~25 s on a CPU, for any model size) before the first step.
    model = FlaxBertForPreTraining(hf_config(cfg), seed=0, dtype=getattr(jnp, dtype),
                                   _do_init=False)
    tx = optax.adamw(opt_cfg.learning_rate, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                     weight_decay=opt_cfg.weight_decay)
    params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(0),
                                                           batch["input_ids"].shape)
    opt_state = jax.jit(tx.init)(params)
    labels = jnp.asarray(_dense_labels(batch))
    nsp = jnp.asarray(batch["next_sentence_labels"])
    inputs = {k: jnp.asarray(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}

    def loss_fn(p, rng):
        out = model(**inputs, params=p, dropout_rng=rng, train=True)
        logp = jax.nn.log_softmax(out.prediction_logits.astype(jnp.float32))
        w = (labels >= 0).astype(jnp.float32)
        tok = -jnp.take_along_axis(logp, jnp.maximum(labels, 0)[..., None], -1)[..., 0]
        mlm = (tok * w).sum() / jnp.maximum(w.sum(), 1.0)
        nsp_logp = jax.nn.log_softmax(out.seq_relationship_logits.astype(jnp.float32))
        return mlm - jnp.take_along_axis(nsp_logp, nsp[:, None], -1).mean()

    @jax.jit
    def train_step(p, s, rng):
        loss, grads = jax.value_and_grad(loss_fn)(p, rng)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    state = {"p": params, "s": opt_state, "rng": jax.random.key(0)}

    def step():
        rng, sub = jax.random.split(state["rng"])
        state["p"], state["s"], loss = train_step(state["p"], state["s"], sub)
        state["rng"] = rng
        loss.block_until_ready()

    return step


def torch_train(cfg, batch, opt_cfg, threads: int, dtype: str = "float32") -> Callable[[], None]:
    """PyTorch BertForPreTraining's full update (eager, CPU or CUDA if present) as a step.

    On CUDA, as a PyTorch user would run it: bf16/fp16 compute under autocast when `dtype` asks
    for it (fp32 master weights, like bertjax), fused AdamW, and the model's default attention
    (SDPA, flash kernels where they apply)."""
    import torch
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = BertForPreTraining(hf_config(cfg)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=opt_cfg.learning_rate,
                            betas=(opt_cfg.b1, opt_cfg.b2), eps=opt_cfg.eps,
                            weight_decay=opt_cfg.weight_decay, fused=device == "cuda")
    half = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    autocast = (torch.autocast(device, dtype=half) if half is not None and device == "cuda"
                else contextlib.nullcontext())
    t = {k: torch.as_tensor(batch[k], dtype=torch.long, device=device)
         for k in ("input_ids", "token_type_ids", "attention_mask", "next_sentence_labels")}
    labels = torch.as_tensor(_dense_labels(batch), device=device)

    def step():
        with autocast:
            out = model(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"],
                        attention_mask=t["attention_mask"], labels=labels,
                        next_sentence_label=t["next_sentence_labels"])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step
