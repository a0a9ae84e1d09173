"""The Optax optimizer from config.optimizer: schedule, decay mask, clipping, AdamW or LAMB.

    tx = make_optimizer(config.optimizer, config.num_train_steps)

AdamW follows BERT's AdamWeightDecay: b1 0.9, b2 0.999, eps 1e-6, decoupled weight decay 0.01
applied to every weight except LayerNorm parameters and biases (`decay_mask`). The gradient's global
norm is clipped first (1.0 by default). Gradient accumulation is not an optax wrapper here: the
train step scans over micro-batches (bertjax/steps.py) so that one step is one update.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from bertjax.model import ConfigError

PyTree = Any

SCHEDULES = ("linear", "cosine", "constant", "rsqrt")
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
    if opt_cfg.warmup_steps < 0:
        raise ConfigError(
            f"config.optimizer.warmup_steps must be >= 0, got {opt_cfg.warmup_steps!r}")
    if opt_cfg.schedule in ("linear", "cosine") and opt_cfg.warmup_steps > num_train_steps:
        raise ConfigError(
            f"config.optimizer.warmup_steps={opt_cfg.warmup_steps} exceeds "
            f"config.num_train_steps={num_train_steps} (the {opt_cfg.schedule} schedule decays to 0 "
            "at num_train_steps)")
    if opt_cfg.grad_accum_steps < 1:
        raise ConfigError(
            f"config.optimizer.grad_accum_steps must be >= 1, got {opt_cfg.grad_accum_steps!r}")
    if opt_cfg.grad_clip_norm < 0:
        raise ConfigError(
            f"config.optimizer.grad_clip_norm must be >= 0, got {opt_cfg.grad_clip_norm!r}")


def learning_rate_schedule(opt_cfg: ml_collections.ConfigDict,
                           num_train_steps: int) -> optax.Schedule:
    """step -> learning rate: linear warmup from 0 to the peak, then the named decay."""
    peak, warmup = float(opt_cfg.learning_rate), int(opt_cfg.warmup_steps)
    name = opt_cfg.schedule
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


def decay_mask(params: PyTree) -> PyTree:
    """True for leaves that get weight decay: everything but biases and LayerNorm scales."""
    def decays(path, _):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return not (names and names[-1] in NO_DECAY_NAMES)
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(opt_cfg: ml_collections.ConfigDict,
                   num_train_steps: int) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW or LAMB with the schedule and the decay mask."""
    validate_config(opt_cfg, num_train_steps)
    lr = learning_rate_schedule(opt_cfg, num_train_steps)
    kwargs = dict(b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                  weight_decay=opt_cfg.weight_decay, mask=decay_mask)
    if opt_cfg.name == "adamw":
        core = optax.adamw(lr, **kwargs)
    else:
        core = optax.lamb(lr, **kwargs)
    parts = []
    if opt_cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip_norm))
    parts.append(core)
    return optax.chain(*parts)
