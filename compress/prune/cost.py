"""Parameter and MAC counts for a UNet, for each removable unit, and for each leaf module it calls.

MACs count everything that costs time: convolutions, linear layers and the attention matmuls (QK^T and AV),
the split kept as `macs` (conv + linear, the convention of the published SD figures: 338.6 G for SD-v1.4 at a
64x64 latent) and `attention_macs` (63.0 G more there). Counting runs on a meta-device replica, so it costs no
memory and well under a second even for SD.

The leaf trace (`LeafCosts`) records every resnet, transformer block and sampler call with its input shapes and
MACs. A removal leaves the shapes of every other leaf as they were (a bypassed or shortcut block outputs the shape
the block did), except a stage removal, which moves the mid block to another resolution. So the leaves of any
removal set are those of the one trace with its stage removal (if any), minus the leaves under its other units,
plus the 1x1 shortcut leaf of each resnet replaced by its shortcut, read from that unit's own trace: one trace per
replacing unit serves every set (checked against whole traces of random sets in the tests). Tracing on the meta
device costs about a second for the toy, so per-set traces made block-granularity pruning slow. The latency
tables use the same leaves, which is how one table predicts every removal set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch.utils.flop_counter import FlopCounterMode

from compress.models.surgery import ShortcutResnet, get_module, removed_units
from compress.types import Unit

ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product")
LEAF_TYPES = (ResnetBlock2D, Transformer2DModel, Downsample2D, Upsample2D, ShortcutResnet)
REPLACING = ("drop-stage", "replace-by-shortcut")  # removals that add or move leaves instead of only deleting


@dataclass(frozen=True)
class UNetCost:
    params: int
    macs: int  # conv + linear
    attention_macs: int  # attention matmuls

    @property
    def total_macs(self) -> int:
        return self.macs + self.attention_macs


@dataclass(frozen=True)
class TensorSlot:
    """Where a tensor argument goes in a recorded call, and its shape."""

    shape: tuple[int, ...]


@dataclass(frozen=True)
class LeafCall:
    """One call of a leaf module as the UNet makes it: enough to replay it alone at the same shapes."""

    path: str  # module path in the unmodified UNet
    kind: str  # the leaf's class name (ShortcutResnet: the resnet at `path` replaced by its shortcut)
    signature: str  # module type, parameter shapes and input shapes: equal signatures cost the same
    description: str
    macs: int
    attention_macs: int
    args: tuple[Any, ...] = field(compare=False, repr=False)  # TensorSlot where a tensor was passed
    kwargs: dict[str, Any] = field(compare=False, repr=False)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [v.shape for v in (*self.args, *self.kwargs.values()) if isinstance(v, TensorSlot)]

    def rebuild(self, tensors: Iterable[torch.Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments with `tensors` in the slots, in order (positional first)."""
        supply = iter(tensors)

        def fill(value: Any) -> Any:
            return next(supply) if isinstance(value, TensorSlot) else value

        args = tuple(fill(a) for a in self.args)
        return args, {k: fill(v) for k, v in self.kwargs.items()}


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_replica(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """The same architecture (stock config) on the meta device."""
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(unet.config)


def _cross_dim(unet: UNet2DConditionModel) -> int:
    dim = unet.config.cross_attention_dim
    return dim[0] if isinstance(dim, (list, tuple)) else dim


def _split(counts: dict[Any, int]) -> tuple[int, int]:
    """(conv + linear MACs, attention MACs) from a FlopCounterMode table of FLOPs per op."""
    macs = attention = 0
    for op, flops in counts.items():
        if any(name in str(op) for name in ATTENTION_OPS):
            attention += flops // 2
        else:
            macs += flops // 2
    return macs, attention


def _slot(value: Any) -> Any:
    return TensorSlot(tuple(value.shape)) if isinstance(value, torch.Tensor) else value


def _signature(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
    shapes = [tuple(v.shape) for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
    params = [tuple(p.shape) for p in module.parameters()]
    static = sorted((k, repr(v)) for k, v in kwargs.items() if not isinstance(v, torch.Tensor))
    digest = hashlib.sha1(repr((params, shapes, static)).encode()).hexdigest()[:10]
    description = f"{type(module).__name__} {' '.join('x'.join(map(str, s)) for s in shapes)}"
    return f"{description} #{digest}", description


def _trace(replica: UNet2DConditionModel, units: list[Unit], resolution: int, text_tokens: int, batch: int
           ) -> tuple[UNetCost, dict[str, LeafCall]]:
    """One meta forward of `replica` with `units` removed: the whole cost and every leaf call."""
    paths = {id(m): p for p, m in replica.named_modules() if isinstance(m, LEAF_TYPES)}
    counter = FlopCounterMode(display=False)
    leaves: dict[str, LeafCall] = {}
    open_calls: list[tuple[dict[Any, int], tuple, dict]] = []

    def before(module, args, kwargs):
        open_calls.append((dict(counter.get_flop_counts().get("Global", {})), args, kwargs))

    def after(module, args, kwargs, output):
        counts_before, args, kwargs = open_calls.pop()
        now = counter.get_flop_counts().get("Global", {})
        macs, attention = _split({op: n - counts_before.get(op, 0) for op, n in now.items()})
        signature, description = _signature(module, args, kwargs)
        leaves[paths[id(module)]] = LeafCall(paths[id(module)], type(module).__name__, signature, description, macs,
                                             attention,
                                             tuple(_slot(a) for a in args), {k: _slot(v) for k, v in kwargs.items()})

    cfg = replica.config
    with torch.device("meta"):
        sample = torch.empty(batch, cfg.in_channels, resolution, resolution)
        hidden = torch.empty(batch, text_tokens, _cross_dim(replica))
        timestep = torch.ones(batch, dtype=torch.long)
    # Shortcut stand-ins exist only inside removed_units; they take the path of the resnet they replace.
    slots = [(get_module(replica, p.rpartition(".")[0]), p) for u in units if u.removal == "replace-by-shortcut"
             for p in u.modules]
    handles = []
    try:
        with removed_units(replica, units), counter, torch.no_grad():
            for container, path in slots:
                paths[id(container._modules[path.rpartition(".")[2]])] = path
            for module in replica.modules():
                if id(module) in paths:
                    handles += [module.register_forward_pre_hook(before, with_kwargs=True),
                                module.register_forward_hook(after, with_kwargs=True)]
            replica(sample, timestep, hidden)
            params = count_params(replica)
    finally:
        for handle in handles:
            handle.remove()
    macs, attention = _split(counter.get_flop_counts()["Global"])
    return UNetCost(params, macs // batch, attention // batch), leaves


def measure(unet: UNet2DConditionModel, resolution: int, text_tokens: int) -> UNetCost:
    """Params and MACs of one batch-1 forward of `unet` (which must live on the meta device)."""
    return _trace(unet, [], resolution, text_tokens, 1)[0]


def cost_without(unet: UNet2DConditionModel, units: list[Unit], resolution: int, text_tokens: int) -> UNetCost:
    """Exact cost of the UNet with `units` removed (interactions such as mid + stage included)."""
    return _trace(meta_replica(unet), units, resolution, text_tokens, 1)[0]


def _under(path: str, removed: set[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in removed)


class LeafCosts:
    """The leaf calls and cost of every removal set of `units`, from one trace per replacing unit (see the module
    doc)."""

    def __init__(self, unet: UNet2DConditionModel, units: list[Unit], resolution: int, text_tokens: int,
                 batch: int = 1):
        self.replica = replica = meta_replica(unet)
        self.resolution, self.text_tokens, self.batch = resolution, text_tokens, batch
        self.full, self.base = _trace(replica, [], resolution, text_tokens, batch)
        self.shifted = {u.name: _trace(replica, [u], resolution, text_tokens, batch)[1]
                        for u in units if u.removal in REPLACING}
        leaf_macs = sum(c.macs for c in self.base.values()) // batch
        leaf_attention = sum(c.attention_macs for c in self.base.values()) // batch
        self.fixed_macs = (self.full.macs - leaf_macs, self.full.attention_macs - leaf_attention)

    def leaves(self, units: list[Unit]) -> dict[str, LeafCall]:
        """Leaf calls of the UNet with `units` removed."""
        stages = [u for u in units if u.removal == "drop-stage"]
        source = self.shifted[stages[0].name] if stages else self.base
        removed = {p for u in units if u.removal != "drop-stage" for p in u.modules}
        calls = {p: c for p, c in source.items() if not _under(p, removed)}
        for unit in units:
            if unit.removal == "replace-by-shortcut":
                calls |= {p: c for p, c in self.shifted[unit.name].items()
                          if p in unit.modules and c.kind == ShortcutResnet.__name__}
        return calls

    def all_calls(self) -> dict[str, LeafCall]:
        """One call per distinct signature over every removal set: what a latency table must hold."""
        calls: dict[str, LeafCall] = {}
        for source in (self.base, *self.shifted.values()):
            for call in source.values():
                calls.setdefault(call.signature, call)
        return calls

    def cost(self, units: list[Unit]) -> UNetCost:
        """Params and per-sample MACs of the UNet with `units` removed (params counted on the edited replica)."""
        with removed_units(self.replica, units):
            params = count_params(self.replica)
        leaves = self.leaves(units).values()
        return UNetCost(params, self.fixed_macs[0] + sum(c.macs for c in leaves) // self.batch,
                        self.fixed_macs[1] + sum(c.attention_macs for c in leaves) // self.batch)

    def costed(self, units: list[Unit]) -> list[Unit]:
        """Each unit with its params and MACs: the full model's cost minus the cost without the unit."""
        full = self.cost([])
        return [Unit(u.name, u.kind, u.removal, u.modules, params=full.params - after.params,
                     macs=full.macs - after.macs, attention_macs=full.attention_macs - after.attention_macs)
                for u, after in ((u, self.cost([u])) for u in units)]

    def total_macs(self, units: list[Unit]) -> int:
        """conv + linear + attention MACs per sample of the UNet with `units` removed."""
        leaves = self.leaves(units).values()
        return sum(self.fixed_macs) + sum(c.macs + c.attention_macs for c in leaves) // self.batch


def unit_costs(unet: UNet2DConditionModel, units: list[Unit], resolution: int, text_tokens: int) -> list[Unit]:
    """`units` with their params and MACs filled in (see `LeafCosts.costed`)."""
    return LeafCosts(unet, units, resolution, text_tokens).costed(units)
