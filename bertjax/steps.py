"""Pure train and eval steps, jitted by the trainer (bertjax/train.py) with explicit shardings.

    state, metrics = train_step(state, batch, base_key, task=..., model=..., tx=..., ...)

Everything static (task, model, optimizer, schedule, accumulation) is bound with functools.partial
before jax.jit, so the jitted function takes only arrays: (state, batch, base_key).

`build_steps` jits them with the state's shardings (the trainer and bertjax.bench both use it).

Metrics leave the step as {name: (sum, count)} pairs of float32 scalars (plus `nonfinite_step`, an
int32 scalar: the step number if the update was not finite, else INT32_MAX). They stay on the
devices; `accumulate` adds them up (a min for nonfinite_step) until the trainer fetches them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import optax

from bertjax import model as model_lib
from bertjax import sharding
from bertjax.tasks.base import Task

PyTree = Any
Array = jax.Array
NO_NONFINITE = np.iinfo(np.int32).max
LOSS_TERM = "loss_term/"  # eval metric prefix of each loss term's (sum, denominator)


@flax.struct.dataclass
class TrainState:
    step: Array  # int32 scalar: updates applied so far
    params: PyTree  # float32 master weights (plain arrays, no logical boxes)
    opt_state: PyTree


def init_state(rng: Array, batch: dict, *, task: Task, model: nn.Module,
               tx: optax.GradientTransformation) -> TrainState:
    """Fresh state; the trainer traces it with jax.eval_shape and jits it with out_shardings."""
    params = model_lib.unbox(task.init_params(model, rng, batch))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def _split_micro_batches(batch: dict, n: int) -> dict:
    """[B, ...] -> [n, B/n, ...] with micro-batch i = rows i, n+i, 2n+i, ...

    Interleaving keeps every micro-batch spread over all data-parallel devices (a contiguous split
    would put micro-batch 0 on the first devices only).
    """
    def split(x):
        x = x.reshape((x.shape[0] // n, n) + x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        return nn.with_logical_constraint(x, (None, "batch") + (None,) * (x.ndim - 2))
    return jax.tree.map(split, batch)


def _weighted_loss(sums: dict, den: dict) -> Array:
    return sum(sums[k] / den[k] for k in sorted(sums))


def train_step(state: TrainState, batch: dict, base_key: Array, *, task: Task, model: nn.Module,
               tx: optax.GradientTransformation, grad_accum_steps: int = 1,
               skip_nonfinite: bool = False) -> tuple[TrainState, dict[str, Any]]:
    """One optimizer update on a global batch (rows: [batch_size, ...], split over data x fsdp)."""
    rng = jax.random.fold_in(base_key, state.step)  # no RNG in the state: a function of the step
    # Denominators of the whole batch: every micro-batch's gradient is already correctly scaled.
    den = {k: jnp.maximum(v, 1.0) for k, v in task.loss_denominators(batch).items()}

    def micro_loss(params, micro_batch, micro_rng):
        sums, metrics = task.loss_fn(model, params, micro_batch, micro_rng, deterministic=False)
        metrics = dict(metrics)
        for k in sums:  # the loss terms' sums: finalize() rebuilds the window's total loss
            metrics[LOSS_TERM + k] = (sums[k], den[k])
        return _weighted_loss(sums, den), metrics

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
    if grad_accum_steps == 1:
        (loss, metrics), grads = grad_fn(state.params, batch, rng)
    else:
        micro = _split_micro_batches(batch, grad_accum_steps)
        first = jax.tree.map(lambda x: x[0], micro)
        _, metrics_shape = jax.eval_shape(micro_loss, state.params, first, rng)
        zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)

        def body(carry, xs):
            grads_acc, loss_acc, metrics_acc = carry
            micro_batch, i = xs
            (l, m), g = grad_fn(state.params, micro_batch, jax.random.fold_in(rng, i))
            add = lambda a, b: jax.tree.map(jnp.add, a, b)
            return (add(grads_acc, g), loss_acc + l, add(metrics_acc, m)), None

        init = (jax.tree.map(jnp.zeros_like, state.params), jnp.zeros((), jnp.float32),
                zeros(metrics_shape))
        (grads, loss, metrics), _ = jax.lax.scan(
            body, init, (micro, jnp.arange(grad_accum_steps)))
        # Each micro-batch reported the full batch's denominators: count them once.
        metrics = {k: (v[0], v[1] / grad_accum_steps) if k.startswith(LOSS_TERM) else v
                   for k, v in metrics.items()}

    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if skip_nonfinite:
        # Compute the update, then keep the old one where anything was NaN/Inf.
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)

    one = jnp.ones((), jnp.float32)
    metrics = dict(metrics)
    metrics.update({
        "grad_norm": (grad_norm, one),
        "param_norm": (optax.global_norm(params), one),
        "skipped_updates": ((~finite).astype(jnp.float32), jnp.zeros((), jnp.float32)),
        "nonfinite_step": jnp.where(finite, NO_NONFINITE, state.step + 1).astype(jnp.int32),
    })
    return new_state, metrics


def eval_step(params: PyTree, batch: dict, *, task: Task, model: nn.Module) -> dict[str, Any]:
    """Metric sums of one eval batch (deterministic: no dropout)."""
    sums, metrics = task.loss_fn(model, params, batch, jax.random.key(0), deterministic=True)
    den = task.loss_denominators(batch)
    metrics = dict(metrics)
    for k in sums:
        metrics[LOSS_TERM + k] = (sums[k], jnp.asarray(den[k], jnp.float32))
    return metrics


def accumulate(total: dict | None, metrics: dict) -> dict:
    """Adds step metrics into a running total (min for nonfinite_step); stays on device."""
    if total is None:
        return metrics
    out = {}
    for k, v in metrics.items():
        if k == "nonfinite_step":
            out[k] = jnp.minimum(total[k], v)
        else:
            out[k] = (total[k][0] + v[0], total[k][1] + v[1])
    return out


def finalize(total: dict) -> dict[str, float]:
    """Host-side: {name: sum / count}; pure sums (count 0, e.g. skipped_updates) stay sums.

    LOSS_TERM entries become the total loss: sum over terms of term sum / term denominator.
    """
    total = jax.device_get(total)
    out, loss = {}, 0.0
    for k, v in total.items():
        if k == "nonfinite_step":
            continue
        s, c = float(v[0]), float(v[1])
        if k.startswith(LOSS_TERM):
            loss += s / max(c, 1.0)
            out["loss"] = loss
        else:
            out[k] = s / c if c > 0 else s
    return out


class Steps(NamedTuple):
    """The jitted, sharded functions of a run and the layout of its state."""
    init: Callable  # (init_key, batch) -> a fresh TrainState, every leaf placed by state_sh
    train_step: Callable  # (state, batch, base_key) -> (state, metrics); the state is donated
    abstract: TrainState  # shapes and dtypes of the state
    state_sh: TrainState  # its shardings
    param_sh: PyTree  # the params' shardings (from the logical axis rules)
    batch_in: PyTree  # the batch's shardings (rows over data x fsdp)


def build_steps(config: ml_collections.ConfigDict, task: Task, model: nn.Module,
                tx: optax.GradientTransformation, mesh, rules,
                dummy: dict, init_key: jax.Array) -> Steps:
    """The state layout and jitted init / train step, shared by the trainer and bertjax.bench.

    Call train_step inside `jax.set_mesh(mesh)` and `nn.logical_axis_rules(rules)`.
    """
    init_fn = functools.partial(init_state, task=task, model=model, tx=tx)
    replicated = sharding.replicated(mesh)
    # Initialisation runs outside the logical-rules context: the jitted init's out_shardings
    # place every parameter (flax's in-init constraints trip over DenseGeneral's reshaped kernels).
    boxed = jax.eval_shape(lambda k: task.init_params(model, k, dummy), init_key)
    param_sh = sharding.param_shardings(boxed, mesh, rules)
    abstract = jax.eval_shape(init_fn, init_key, dummy)
    state_sh = TrainState(
        step=replicated, params=param_sh,
        opt_state=sharding.like_params(abstract.opt_state, abstract.params, param_sh, mesh))
    batch_in = jax.tree.map(lambda _: sharding.batch_sharding(mesh), dummy)
    # donate_argnums=0: the old state's buffers are reused for the new state, so parameters
    # and optimizer moments exist once in device memory, not twice.
    jitted_train_step = jax.jit(
        functools.partial(train_step, task=task, model=model, tx=tx,
                          grad_accum_steps=config.optimizer.grad_accum_steps,
                          skip_nonfinite=config.skip_nonfinite),
        in_shardings=(state_sh, batch_in, replicated), out_shardings=(state_sh, replicated),
        donate_argnums=0)
    return Steps(jax.jit(init_fn, out_shardings=state_sh), jitted_train_step, abstract, state_sh,
                 param_sh, batch_in)

