"""Device mesh from config.mesh and shardings from the logical axis rule table.

Mesh axes: ("data", "fsdp", "tensor"). The model names every parameter's axes logically
(vocab, embed, mlp, heads, kv, layers, embed_out); config.mesh.logical_axis_rules maps those names to
mesh axes (bertjax/config.py: LOGICAL_AXIS_RULES). Batches are split over ("data", "fsdp").

A parameter dimension that the mapped mesh axes do not divide evenly (e.g. a 30522-row vocabulary
over 4 tensor devices) is replicated instead, so any model runs on any mesh.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bertjax import config as config_lib
from bertjax.model import ConfigError

PyTree = Any
AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int, int]:
    """Resolves the -1 entry of (data, fsdp, tensor); errors name the field."""
    sizes = [int(mesh_cfg[a]) for a in AXES]
    fill = [a for a, s in zip(AXES, sizes) if s == -1]
    if len(fill) > 1:
        raise ConfigError(f"at most one of config.mesh.{{data,fsdp,tensor}} may be -1, got {fill}")
    for a, s in zip(AXES, sizes):
        if s == 0 or s < -1:
            raise ConfigError(f"config.mesh.{a} must be a positive size or -1, got {s}")
    known = math.prod(s for s in sizes if s != -1)
    if fill:
        if num_devices % known:
            raise ConfigError(
                f"config.mesh sizes {dict(zip(AXES, sizes))} do not divide the {num_devices} devices")
        sizes = [num_devices // known if s == -1 else s for s in sizes]
    if math.prod(sizes) != num_devices:
        raise ConfigError(
            f"config.mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, "
            f"but {num_devices} are available")
    return tuple(sizes)


def make_mesh(mesh_cfg: ml_collections.ConfigDict,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    try:
        grid = mesh_utils.create_device_mesh(shape, devices)
    except (ValueError, NotImplementedError, AssertionError):  # unusual topology: device order
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, AXES)


def rules(mesh_cfg: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
    """The rule table as a tuple of (logical name, mesh axis | tuple of axes | None)."""
    return tuple((name, tuple(axes) if isinstance(axes, list) else axes)
                 for name, axes in mesh_cfg.logical_axis_rules)


def check_rules(mesh_cfg: ml_collections.ConfigDict) -> None:
    """ConfigError for a rule naming a logical axis the model does not use (its dimension would
    silently stay replicated) or a mesh axis that does not exist."""
    known = [name for name, _ in config_lib.LOGICAL_AXIS_RULES]
    for name, axes in rules(mesh_cfg):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {known}"
            raise ConfigError(f"config.mesh.logical_axis_rules: no logical axis {name!r}{hint}")
        for axis in axes if isinstance(axes, tuple) else (axes,):
            if axis is not None and axis not in AXES:
                raise ConfigError(f"config.mesh.logical_axis_rules: {name!r} -> {axis!r} is not "
                                  f"a mesh axis {AXES}")


def batch_size_multiple(mesh: Mesh) -> int:
    """The global batch must be a multiple of this (the data-parallel size)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over data x fsdp; everything else replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _fit(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Drops the mesh axes of any dimension they do not divide evenly."""
    out = []
    for i, size in enumerate(shape):
        axes = spec[i] if i < len(spec) else None
        names = (axes,) if isinstance(axes, str) else (axes or ())
        ways = math.prod(mesh.shape[a] for a in names)
        out.append(axes if ways > 0 and size % ways == 0 else None)
    return PartitionSpec(*out)


def param_shardings(boxed_params: PyTree, mesh: Mesh,
                    axis_rules: Sequence[tuple[str, Any]]) -> PyTree:
    """Boxed (LogicallyPartitioned) abstract params -> an unboxed tree of NamedShardings."""
    specs = nn.get_partition_spec(boxed_params)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, axis_rules)
    shapes = nn.meta.unbox(boxed_params)
    return jax.tree.map(lambda s, x: NamedSharding(mesh, _fit(s.spec, x.shape, mesh)),
                        shardings, shapes)


def like_params(tree: PyTree, params: PyTree, param_sharding: PyTree, mesh: Mesh) -> PyTree:
    """Shardings for a tree (e.g. an optimizer state) holding copies of the param tree.

    A leaf whose key path ends with a parameter's key path and has its shape (Adam's mu and nu)
    gets that parameter's sharding; every other leaf (counts, scalars) is replicated.
    """
    by_path = {}
    for (path, x), s in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                            jax.tree.leaves(param_sharding)):
        by_path[tuple(path)] = (tuple(x.shape), s)
    lengths = sorted({len(p) for p in by_path}, reverse=True)

    def pick(path, leaf):
        path = tuple(path)
        for n in lengths:
            hit = by_path.get(path[-n:]) if len(path) >= n else None
            if hit is not None and hit[0] == tuple(getattr(leaf, "shape", ())):
                return hit[1]
        return replicated(mesh)
    return jax.tree_util.tree_map_with_path(pick, tree)
