"""The Optax optimizer from config.optimizer: schedule, decay mask, clipping, AdamW or LAMB.

    tx = make_optimizer(config.optimizer, config.num_train_steps)

The defaults are google-research/bert's optimization.py to the last digit: AdamWeightDecay with
b1 0.9, b2 0.999, eps 1e-6 and *no* bias correction of the moments (`bias_correction=False`: its
first updates are up to ~3x those of textbook Adam), decoupled weight decay 0.01 on every weight
but LayerNorm parameters and biases (`decay_mask`), the gradient's global norm clipped to 1.0 first,
and the "polynomial" schedule: lr * (1 - t / T) from step 0, with the first W steps replaced by
the linear warmup lr * t / W (so the rate steps down to lr * (1 - W / T) when warmup ends). The
Hugging Face recipe (torch AdamW, get_linear_schedule_with_warmup) is `bias_correction=True`,
`schedule="linear"` (decay from the peak at W to 0 at T).

Fine-tuning recipes (`update_scales`): layer-wise learning-rate decay (ELECTRA, BEiT) and frozen
embeddings / lowest layers multiply each parameter's final update by a per-parameter factor; frozen
parameters also get zero gradients before clipping, so they neither move nor count in the norm.
Under scan_layers the stacked [L, ...] leaves get a per-layer factor vector along axis 0. Gradient accumulation is not an optax wrapper here: the
train step scans over micro-batches (bertjax/steps.py) so that one step is one update.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bertjax.model import ConfigError

PyTree = Any

SCHEDULES = ("polynomial", "linear", "cosine", "constant", "rsqrt")
OPTIMIZERS = ("adamw", "lamb")
# Parameter names never decayed: LayerNorm's scale and bias, and every bias (incl. the MLM bias).
NO_DECAY_NAMES = ("bias", "scale")


def validate_config(opt_cfg: ml_collections.ConfigDict, num_train_steps: int) -> None:
    """Raises ConfigError naming the field for an impossible optimizer config."""
    if opt_cfg.name not in OPTIMIZERS:
        raise ConfigError(f"config.optimizer.name={opt_cfg.name!r} is not one of {OPTIMIZERS}")
    if opt_cfg.schedule not in SCHEDULES:
        raise ConfigError(
            f"config.optimizer.schedule={opt_cfg.schedule!r} is not one of {SCHEDULES}")
    if opt_cfg.learning_rate <= 0:
        raise ConfigError(
            f"config.optimizer.learning_rate must be > 0, got {opt_cfg.learning_rate!r}")
    proportion = opt_cfg.get("warmup_proportion", 0.0)
    if not 0.0 <= proportion <= 1.0:
        raise ConfigError(
            f"config.optimizer.warmup_proportion must be in [0, 1], got {proportion!r}")
    decay = opt_cfg.get("layerwise_lr_decay", 1.0)
    if not 0.0 < decay <= 1.0:
        raise ConfigError(f"config.optimizer.layerwise_lr_decay must be in (0, 1], got {decay!r}")
    if opt_cfg.get("freeze_layers", 0) < 0:
        raise ConfigError(
            f"config.optimizer.freeze_layers must be >= 0, got {opt_cfg.freeze_layers!r}")
    if opt_cfg.warmup_steps < 0:
        raise ConfigError(
            f"config.optimizer.warmup_steps must be >= 0, got {opt_cfg.warmup_steps!r}")
    warmup = warmup_steps(opt_cfg, num_train_steps)
    if opt_cfg.schedule in ("polynomial", "linear", "cosine") and warmup > num_train_steps:
        raise ConfigError(
            f"config.optimizer.warmup_steps={warmup} exceeds "
            f"config.num_train_steps={num_train_steps} (the {opt_cfg.schedule} schedule decays to 0 "
            "at num_train_steps)")
    if opt_cfg.grad_accum_steps < 1:
        raise ConfigError(
            f"config.optimizer.grad_accum_steps must be >= 1, got {opt_cfg.grad_accum_steps!r}")
    if opt_cfg.grad_clip_norm < 0:
        raise ConfigError(
            f"config.optimizer.grad_clip_norm must be >= 0, got {opt_cfg.grad_clip_norm!r}")


def warmup_steps(opt_cfg: ml_collections.ConfigDict, num_train_steps: int) -> int:
    """Warmup updates: warmup_proportion * num_train_steps, rounded down as google-research/bert's
    run_classifier.py and run_squad.py do, when the proportion is > 0; else warmup_steps."""
    proportion = float(opt_cfg.get("warmup_proportion", 0.0))
    if proportion > 0:
        return int(num_train_steps * proportion)
    return int(opt_cfg.warmup_steps)


def learning_rate_schedule(opt_cfg: ml_collections.ConfigDict,
                           num_train_steps: int) -> optax.Schedule:
    """step -> learning rate: linear warmup from 0 to the peak, then the named decay."""
    peak, warmup = float(opt_cfg.learning_rate), warmup_steps(opt_cfg, num_train_steps)
    name = opt_cfg.schedule
    if name == "polynomial":  # google-research/bert: polynomial_decay (power 1) from step 0
        total = max(num_train_steps, 1)

        def bert(count):
            t = jnp.asarray(count, jnp.float32)
            decayed = peak * (1.0 - jnp.minimum(t, total) / total)
            return decayed if warmup == 0 else jnp.where(t < warmup, peak * t / warmup, decayed)
        return bert
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(num_train_steps, 1), 0.0)
    warm = optax.linear_schedule(0.0, peak, warmup) if warmup > 0 else optax.constant_schedule(peak)
    if name == "linear":
        after = optax.linear_schedule(peak, 0.0, max(num_train_steps - warmup, 1))
    elif name == "constant":
        after = optax.constant_schedule(peak)
    elif name == "rsqrt":
        # Inverse square root (Vaswani et al.): peak * sqrt(warmup / step) after warmup.
        start = max(warmup, 1)

        def after(count):
            return peak * jnp.sqrt(start / jnp.maximum(count + warmup, start).astype(jnp.float32))
    else:
        raise ConfigError(f"config.optimizer.schedule={name!r} is not one of {SCHEDULES}")
    return optax.join_schedules([warm, after], [warmup])


def applied_updates(opt_state: PyTree) -> jax.Array:
    """How many updates `opt_state` has taken: the learning-rate schedule's count.

    It equals the step count unless `skip_nonfinite` kept the old state for some steps; the
    update that made the latest applied step used `learning_rate_schedule(...)(count - 1)`."""
    is_schedule = lambda path, _: getattr(path[-1], "tuple_name", "") == "ScaleByScheduleState"
    return optax.tree_utils.tree_get(opt_state, "count", filtering=is_schedule)


def decay_mask(params: PyTree) -> PyTree:
    """True for leaves that get weight decay: everything but biases and LayerNorm scales."""
    def decays(path, _):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return not (names and names[-1] in NO_DECAY_NAMES)
    return jax.tree_util.tree_map_with_path(decays, params)


def _layer_index(names: list[str]) -> int | None:
    """bert/encoder/layer_{i}/... -> i; bert/encoder/layers/... (scanned) -> -1; else None."""
    if len(names) > 2 and names[0] == "bert" and names[1] == "encoder":
        if names[2] == "layers":
            return -1
        if names[2].startswith("layer_") and names[2][len("layer_"):].isdigit():
            return int(names[2][len("layer_"):])
    return None


def _num_layers(tree: PyTree) -> int:
    """L, read off the tree: the number of layer_{i} subtrees or the stacked leaves' axis 0."""
    found = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        index = _layer_index([k.key for k in path if isinstance(k, jax.tree_util.DictKey)])
        if index == -1:
            return int(leaf.shape[0])
        if index is not None:
            found = max(found, index + 1)
    return found


def update_scales(tree: PyTree, opt_cfg: ml_collections.ConfigDict) -> PyTree:
    """Per-parameter factors on the final update: float32 scalars, or [L, 1, ...] for stacked leaves.

    layerwise_lr_decay d: layer i of L gets d^(L - i), the embeddings d^(L + 1), everything else
    (pooler, final norm, task and pretraining heads) 1. freeze_embeddings / freeze_layers N: factor
    0 for bert/embeddings / layers 0..N-1. `tree`: params or updates (shapes are all it reads).
    """
    decay = float(opt_cfg.get("layerwise_lr_decay", 1.0))
    freeze_layers = int(opt_cfg.get("freeze_layers", 0))
    freeze_embeddings = bool(opt_cfg.get("freeze_embeddings", False))
    num_layers = _num_layers(tree)
    if freeze_layers > num_layers:
        raise ConfigError(f"config.optimizer.freeze_layers={freeze_layers} exceeds the model's "
                          f"{num_layers} layers")
    per_layer = np.array([0.0 if i < freeze_layers else decay ** (num_layers - i)
                          for i in range(num_layers)], np.float32)  # [L]

    def scale(path, leaf):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        index = _layer_index(names)
        if index == -1:
            return per_layer.reshape((num_layers,) + (1,) * (len(leaf.shape) - 1))
        if index is not None:
            return np.float32(per_layer[index])
        if names[:2] == ["bert", "embeddings"]:
            return np.float32(0.0 if freeze_embeddings else decay ** (num_layers + 1))
        return np.float32(1.0)
    return jax.tree_util.tree_map_with_path(scale, tree)


def has_update_scales(opt_cfg: ml_collections.ConfigDict) -> bool:
    return (opt_cfg.get("layerwise_lr_decay", 1.0) != 1.0 or opt_cfg.get("freeze_layers", 0) > 0
            or bool(opt_cfg.get("freeze_embeddings", False)))


def scale_by_tree(scales_of: Callable[[PyTree], PyTree],
                  only_zeros: bool = False) -> optax.GradientTransformation:
    """Multiplies updates by `scales_of(updates)` (constants computed at trace time).

    only_zeros: apply just the zero factors (frozen parameters), leaving the others at 1.
    """
    def update(updates, state, params=None):
        del params
        scales = scales_of(updates)
        if only_zeros:
            scales = jax.tree.map(lambda s: (s != 0).astype(np.float32), scales)
        return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scale_by_adam(b1: float, b2: float, eps: float,
                  bias_correction: bool) -> optax.GradientTransformation:
    """Adam's direction m / (sqrt(v) + eps); with bias_correction=False the moments are used as
    they are, as google-research/bert's AdamWeightDecayOptimizer does (no 1 / (1 - b^t)). The
    state is optax's ScaleByAdamState either way, so checkpoints do not depend on the choice."""
    if bias_correction:
        return optax.scale_by_adam(b1, b2, eps)

    def init(params):
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32),
                                      mu=jax.tree.map(jnp.zeros_like, params),
                                      nu=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
        return direction, optax.ScaleByAdamState(optax.safe_increment(state.count), mu, nu)
    return optax.GradientTransformation(init, update)


def make_optimizer(opt_cfg: ml_collections.ConfigDict,
                   num_train_steps: int) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW or LAMB with the schedule and the decay mask; then the
    per-parameter factors of `update_scales` (layer-wise lr decay, frozen parameters), if any."""
    validate_config(opt_cfg, num_train_steps)
    lr = learning_rate_schedule(opt_cfg, num_train_steps)
    core = optax.chain(
        scale_by_adam(opt_cfg.b1, opt_cfg.b2, opt_cfg.eps, opt_cfg.bias_correction),
        optax.add_decayed_weights(opt_cfg.weight_decay, decay_mask),
        *([optax.scale_by_trust_ratio()] if opt_cfg.name == "lamb" else []),
        optax.scale_by_learning_rate(lr))
    scales_of = functools.partial(update_scales, opt_cfg=opt_cfg)
    scaled = has_update_scales(opt_cfg)
    parts = []
    if scaled:  # frozen parameters: zero gradients, so they do not count in the clipped norm
        parts.append(scale_by_tree(scales_of, only_zeros=True))
    if opt_cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip_norm))
    parts.append(core)
    if scaled:
        parts.append(scale_by_tree(scales_of))
    return optax.chain(*parts)
