"""Width pruning: narrow every stage of a diffusers UNet to a width a stock config can express.

The UNet is walked once, in the order its forward pass runs, to find its *channel spaces*: sets of channels
that must be kept or dropped together (a stage's residual stream, joined through identity shortcuts and the
transformers' residual adds; each resnet's inner width; each transformer's inner stream; each attention's
query/key and value heads; each feed-forward's hidden width; the sinusoidal timestep features). Every
parameter dimension is recorded as a concatenation of spaces (an up resnet's input is its stream followed by
the skip it concatenates), so narrowing is one `index_select` per dimension, with no per-module code.

A stock config gives every space of stage s the width `block_out_channels[s]`, so all of them shrink by the
stage's ratio. Which channels survive is chosen per space by an importance (the criterion is separate from
the removal, as in Torch-Pruning):

- `magnitude`: Torch-Pruning's `GroupMagnitudeImportance` (p=2, mean group reduction): for each parameter
  slice that reads or writes the space, the squared L2 norm of each channel's part, averaged over the slices.
  (Normalising each slice before averaging, which weighs a norm's affine like a conv, chose worse on the toy:
  eps error 0.368 against 0.325 before recovery.)
- `random`: a seeded random choice, the baseline the magnitude choice is measured against.

Channels are kept in equal numbers from each norm group (so a new group holds the survivors of one old
group) and from each attention head (required: a head's query and key channels are contracted together).
Two things are not plain slices, and both keep the narrowed model equal to the original with the dropped
channels masked out:

- the timestep features are sin/cos at fixed frequencies that depend on their count; with `freq_shift`
  lowered by the number of dropped frequencies, the narrowed model's features are exactly the original's
  highest frequencies. The dropped lowest frequencies vary so slowly over the training timesteps that a least
  squares fit reproduces them from the kept ones and a constant (max error ~2e-5 on the toy), so their
  weights in `time_embedding.linear_1` are folded into the kept columns and the bias: the narrowed time
  embedding equals the original's at every training timestep. (Zeroing them instead moved the toy's
  output by 25% relative L2, most of what narrowing it by 0.3 costs before recovery.)
- attention scores are scaled by 1/sqrt(head_dim); the query weights are multiplied by
  sqrt(new_head_dim / old_head_dim) so the kept channels' scores are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from diffusers import UNet2DConditionModel

from compress.errors import CompressError
from compress.models.loading import public_config
from compress.prune.settings import WIDTH_IMPORTANCES


@dataclass
class Space:
    """Channels kept or dropped together."""

    name: str  # the first module that writes it
    size: int
    stage: int  # it narrows by this stage's ratio of `block_out_channels`
    blocks: int = 1  # channels are kept in equal numbers from this many equal consecutive blocks
    lowest_first: bool = False  # timestep frequencies: keep the first ones, no importance
    kept: torch.Tensor | None = None

    def new_size(self, widths: list[int], before: list[int]) -> int:
        return self.size * widths[self.stage] // before[self.stage]


Layout = list[Space]  # one parameter dimension: these spaces concatenated, in order


@dataclass
class WidthPlan:
    """What a width prune kept: per-stage widths, the importance, and the kept channels of each stage output
    (recovery distils the student's features towards those channels of the teacher's)."""

    ratio: float
    importance: str
    widths_before: list[int]
    widths_after: list[int]
    stage_output_channels: dict[str, list[int]] = field(default_factory=dict)
    time_fit_error: float = 0.0  # the largest error of the dropped timestep features' refit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _heads(config: Any) -> list[int]:
    """Attention heads per down stage (diffusers reads `attention_head_dim` as the head count when
    `num_attention_heads` is unset: SD-v1's `attention_head_dim: 8` means 8 heads)."""
    heads = config.num_attention_heads or config.attention_head_dim
    stages = len(config.block_out_channels)
    return list(heads) if isinstance(heads, (list, tuple)) else [heads] * stages


def stage_widths(config: Any, ratio: float) -> list[int]:
    """Each stage's width after removing `ratio` of it, rounded to the nearest multiple of what a stock config
    can express there (the norm group count and the stage's head count); refused when a stage would vanish."""
    groups, heads = config.norm_num_groups, _heads(config)
    widths = []
    for stage, width in enumerate(config.block_out_channels):
        quantum = math.lcm(groups, heads[stage])
        new = math.floor(width * (1 - ratio) / quantum + 0.5) * quantum
        if new < quantum:
            raise CompressError(
                f"--width {ratio} cannot be expressed: stage {stage} ({width} channels) would keep "
                f"{width * (1 - ratio):.1f}, below one unit of {quantum} (norm_num_groups {groups}, "
                f"{heads[stage]} heads); the largest usable --width here is {1 - quantum / width:.3f}")
        widths.append(new)
    if widths == list(config.block_out_channels):
        raise CompressError(f"--width {ratio} changes no stage: widths {widths} round back to themselves "
                            f"(each stage moves in steps of lcm(norm groups, heads))")
    return widths


class ChannelSpaces:
    """The channel spaces of a UNet and the layout of every parameter dimension, found in forward order."""

    def __init__(self, unet: UNet2DConditionModel) -> None:
        self.unet, self.config = unet, unet.config
        self.spaces: list[Space] = []
        self.dims: dict[str, dict[int, Layout]] = {}
        self.queries: list[str] = []  # attention `to_q` modules (their weights are rescaled)
        self.stage_outputs: dict[str, Space] = {}
        self.widths: list[int] = list(self.config.block_out_channels)  # the stage widths the kept channels fill
        self.time_features: Layout = []
        self.time_fit_error = 0.0
        self._check_supported()
        self._walk()

    def _check_supported(self) -> None:
        c = self.config
        unsupported = {
            "time_embedding_type": c.time_embedding_type != "positional",
            "class_embed_type": c.class_embed_type is not None or c.num_class_embeds is not None,
            "addition_embed_type": c.addition_embed_type is not None,
            "encoder_hid_dim": c.encoder_hid_dim is not None,
            "dual_cross_attention": c.dual_cross_attention,
            "resnet_time_scale_shift": c.resnet_time_scale_shift != "default",
            "transformer_layers_per_block": not isinstance(c.transformer_layers_per_block, int),
            "time_cond_proj_dim (a distilled student: narrow before distilling)": c.time_cond_proj_dim is not None,
        }
        bad = [key for key, is_bad in unsupported.items() if is_bad]
        if bad:
            raise CompressError(f"width pruning supports SD-v1-style UNets; this one sets {', '.join(bad)}")

    def space(self, name: str, stage: int, blocks: int = 1, size: int | None = None, **kw: Any) -> Space:
        space = Space(name, size or self.config.block_out_channels[stage], stage, blocks, **kw)
        self.spaces.append(space)
        return space

    def _param(self, path: str, dim: int, layout: Layout) -> None:
        self.dims.setdefault(path, {})[dim] = layout

    def layer(self, path: str, inp: Layout | None, out: Layout | None) -> None:
        """A conv or linear layer (weight [out, in, ...], optional bias [out]); None: a dimension kept whole."""
        module = self.unet.get_submodule(path)
        if out is not None:
            self._param(f"{path}.weight", 0, out)
            if module.bias is not None:
                self._param(f"{path}.bias", 0, out)
        if inp is not None:
            self._param(f"{path}.weight", 1, inp)

    def norm(self, path: str, inp: Layout) -> None:
        module = self.unet.get_submodule(path)
        if module.weight is not None:
            self._param(f"{path}.weight", 0, inp)
            self._param(f"{path}.bias", 0, inp)

    def resnet(self, path: str, inp: Layout, stage: int) -> Space:
        groups = self.config.norm_num_groups
        module = self.unet.get_submodule(path)
        self.norm(f"{path}.norm1", inp)
        inner = self.space(f"{path}.conv1", stage, blocks=groups)
        self.layer(f"{path}.conv1", inp, [inner])
        if module.time_emb_proj is not None:
            self.layer(f"{path}.time_emb_proj", None, [inner])
        self.norm(f"{path}.norm2", [inner])
        if module.conv_shortcut is not None:
            out = self.space(f"{path}.conv_shortcut", stage, blocks=groups)
            self.layer(f"{path}.conv_shortcut", inp, [out])
        else:
            if len(inp) != 1:
                raise CompressError(f"{path} concatenates its input but has no shortcut conv")
            out = inp[0]
        self.layer(f"{path}.conv2", [inner], [out])
        return out

    def transformer(self, path: str, stream: Space, heads: int) -> None:
        module = self.unet.get_submodule(path)
        self.norm(f"{path}.norm", [stream])
        inner = self.space(f"{path}.proj_in", stream.stage)
        self.layer(f"{path}.proj_in", [stream], [inner])
        for k, block in enumerate(module.transformer_blocks):
            prefix = f"{path}.transformer_blocks.{k}"
            for n in ("norm1", "norm2", "norm3"):
                if getattr(block, n, None) is not None:
                    self.norm(f"{prefix}.{n}", [inner])
            for attn, cross in (("attn1", False), ("attn2", True)):
                if getattr(block, attn, None) is None:
                    continue
                query = self.space(f"{prefix}.{attn}.to_q", stream.stage, blocks=heads)
                value = self.space(f"{prefix}.{attn}.to_v", stream.stage, blocks=heads)
                self.layer(f"{prefix}.{attn}.to_q", [inner], [query])
                self.layer(f"{prefix}.{attn}.to_k", None if cross else [inner], [query])
                self.layer(f"{prefix}.{attn}.to_v", None if cross else [inner], [value])
                self.layer(f"{prefix}.{attn}.to_out.0", [value], [inner])
                self.queries.append(f"{prefix}.{attn}.to_q")
            hidden_size = block.ff.net[2].in_features
            hidden = self.space(f"{prefix}.ff.net.0.proj", stream.stage, size=hidden_size)
            geglu = block.ff.net[0].proj.out_features == 2 * hidden_size
            self.layer(f"{prefix}.ff.net.0.proj", [inner], [hidden, hidden] if geglu else [hidden])
            self.layer(f"{prefix}.ff.net.2", [hidden], [inner])
        self.layer(f"{path}.proj_out", [inner], [stream])  # added back to the stream

    def _walk(self) -> None:
        unet, groups, heads = self.unet, self.config.norm_num_groups, _heads(self.config)
        half = unet.time_proj.num_channels // 2
        frequencies = self.space("time_proj", 0, size=half, lowest_first=True)
        self.layer("time_embedding.linear_1", [frequencies, frequencies], None)  # [cos | sin] (or sin | cos)
        self.time_features = [frequencies, frequencies]
        x = self.space("conv_in", 0, blocks=groups)
        self.layer("conv_in", None, [x])
        skips = [x]
        for i, block in enumerate(unet.down_blocks):
            attentions = getattr(block, "attentions", None)
            for j in range(len(block.resnets)):
                x = self.resnet(f"down_blocks.{i}.resnets.{j}", [x], i)
                if attentions is not None:
                    self.transformer(f"down_blocks.{i}.attentions.{j}", x, heads[i])
                skips.append(x)
            if block.downsamplers:
                down = self.space(f"down_blocks.{i}.downsamplers.0.conv", i, blocks=groups)
                self.layer(f"down_blocks.{i}.downsamplers.0.conv", [x], [down])
                x = down
                skips.append(x)
            self.stage_outputs[f"down_blocks.{i}"] = x
        last = len(unet.down_blocks) - 1
        if unet.mid_block is not None:
            mid = unet.mid_block
            x = self.resnet("mid_block.resnets.0", [x], last)
            for j in range(len(mid.attentions)):
                self.transformer(f"mid_block.attentions.{j}", x, heads[last])
                x = self.resnet(f"mid_block.resnets.{j + 1}", [x], last)
            self.stage_outputs["mid_block"] = x
        for i, block in enumerate(unet.up_blocks):
            stage = last - i
            attentions = getattr(block, "attentions", None)
            for j in range(len(block.resnets)):
                x = self.resnet(f"up_blocks.{i}.resnets.{j}", [x, skips.pop()], stage)
                if attentions is not None:
                    self.transformer(f"up_blocks.{i}.attentions.{j}", x, heads[stage])
            if block.upsamplers:
                up = self.space(f"up_blocks.{i}.upsamplers.0.conv", stage, blocks=groups)
                self.layer(f"up_blocks.{i}.upsamplers.0.conv", [x], [up])
                x = up
            self.stage_outputs[f"up_blocks.{i}"] = x
        if unet.conv_norm_out is not None:
            self.norm("conv_norm_out", [x])
        self.layer("conv_out", [x], None)

    def members(self) -> dict[int, list[tuple[str, int, int]]]:
        """For each space (by id): the (parameter, dim, offset) slices that read or write it."""
        found: dict[int, list[tuple[str, int, int]]] = {id(s): [] for s in self.spaces}
        for name, dims in self.dims.items():
            for dim, layout in dims.items():
                offset = 0
                for space in layout:
                    found[id(space)].append((name, dim, offset))
                    offset += space.size
        return found


def _magnitude(space: Space, members: list[tuple[str, int, int]],
               params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Torch-Pruning's group magnitude: each channel's squared L2 in every slice, averaged over the slices (its
    normaliser then divides by a constant, which changes no ranking)."""
    scores = []
    for name, dim, offset in members:
        channels = params[name].detach().float().narrow(dim, offset, space.size).transpose(0, dim)
        scores.append(channels.reshape(space.size, -1).pow(2).sum(1))
    return torch.stack(scores).mean(0)


def _choose(space: Space, new: int, score: torch.Tensor) -> torch.Tensor:
    """The top-scored `new / blocks` channels of each block, in their original order."""
    per_block, keep = space.size // space.blocks, new // space.blocks
    kept = [b * per_block + score[b * per_block:(b + 1) * per_block].topk(keep).indices
            for b in range(space.blocks)]
    return torch.cat(kept).sort().values


def choose_channels(unet: UNet2DConditionModel, widths: list[int], importance: str = "magnitude",
                    seed: int = 0) -> ChannelSpaces:
    """The UNet's channel spaces, each with the channels it keeps at the stage `widths` (the criterion)."""
    if importance not in WIDTH_IMPORTANCES:
        raise CompressError(f"--width-importance must be one of {', '.join(WIDTH_IMPORTANCES)}, not {importance!r}")
    before = list(unet.config.block_out_channels)
    spaces = ChannelSpaces(unet)
    spaces.widths = list(widths)
    params = dict(unet.named_parameters())
    generator = torch.Generator().manual_seed(seed)
    for space, members in zip(spaces.spaces, spaces.members().values(), strict=True):
        new = space.new_size(widths, before)
        if space.lowest_first:
            space.kept = torch.arange(new)
        elif importance == "magnitude":
            space.kept = _choose(space, new, _magnitude(space, members, params))
        else:
            space.kept = _choose(space, new, torch.rand(space.size, generator=generator))
    return spaces


def index(layout: Layout) -> torch.Tensor:
    """The original indices a narrowed dimension of this layout keeps, in order."""
    kept, offset = [], 0
    for space in layout:
        kept.append(space.kept + offset)
        offset += space.size
    return torch.cat(kept)


def _fold_dropped_frequencies(unet: UNet2DConditionModel, kept: torch.Tensor, timesteps: int
                              ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """`time_embedding.linear_1`'s weight over the kept features and its bias, with the dropped features'
    weights folded in through their least-squares fit on the kept ones over timesteps 0..timesteps-1; and the
    fit's largest error."""
    with torch.no_grad():
        features = unet.time_proj(torch.arange(timesteps, dtype=torch.float32)).double()
    dropped = torch.ones(features.shape[1], dtype=torch.bool)
    dropped[kept] = False
    basis = torch.cat([features[:, kept], torch.ones(timesteps, 1, dtype=torch.float64)], 1)
    fit = torch.linalg.lstsq(basis, features[:, dropped]).solution
    error = (basis @ fit - features[:, dropped]).abs().max().item() if dropped.any() else 0.0
    layer = unet.time_embedding.linear_1
    weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
    folded = weight[:, kept] + weight[:, dropped] @ fit[:-1].T
    return folded.to(layer.weight.dtype), (bias + weight[:, dropped] @ fit[-1]).to(layer.bias.dtype), error


def narrowed_unet(unet: UNet2DConditionModel, spaces: ChannelSpaces, timesteps: int = 1000
                  ) -> UNet2DConditionModel:
    """The stock UNet holding only the kept channels of `spaces` (the mechanics of removal); `timesteps`: the
    training schedule's length, over which the dropped timestep features are refitted."""
    config, widths = unet.config, spaces.widths
    old_half = unet.time_proj.num_channels // 2
    new_config = dict(public_config(config), block_out_channels=widths,
                      time_embedding_dim=unet.time_embedding.linear_1.out_features,
                      freq_shift=config.freq_shift + widths[0] // 2 - old_half)
    narrowed = UNet2DConditionModel.from_config(new_config)
    state = {}
    for name, tensor in unet.state_dict().items():
        for dim, layout in spaces.dims.get(name, {}).items():
            tensor = tensor.index_select(dim, index(layout))
        state[name] = tensor
    weight, bias, spaces.time_fit_error = _fold_dropped_frequencies(unet, index(spaces.time_features), timesteps)
    state["time_embedding.linear_1.weight"], state["time_embedding.linear_1.bias"] = weight, bias
    for path in spaces.queries:  # keep the kept channels' attention scores: scale 1/sqrt(head_dim) changed
        heads = unet.get_submodule(path.rsplit(".", 1)[0]).heads
        old_dim = unet.get_submodule(path).out_features // heads
        new_dim = state[f"{path}.weight"].shape[0] // heads
        for key in (f"{path}.weight", f"{path}.bias"):
            if key in state:
                state[key] = state[key] * math.sqrt(new_dim / old_dim)
    expected = narrowed.state_dict()
    wrong = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    if wrong or len(state) != len(expected):
        raise CompressError(f"width pruning does not know this UNet's layout (first mismatch: {wrong[:1]})")
    narrowed.load_state_dict(state)
    return narrowed.eval() if unet.dtype == torch.float32 else narrowed.to(unet.dtype).eval()


def narrow(unet: UNet2DConditionModel, ratio: float, importance: str = "magnitude", seed: int = 0,
           timesteps: int = 1000) -> tuple[UNet2DConditionModel, WidthPlan]:
    """A stock `UNet2DConditionModel` with every stage `ratio` narrower, holding the kept channels' weights."""
    widths = stage_widths(unet.config, ratio)
    spaces = choose_channels(unet, widths, importance, seed)
    narrowed = narrowed_unet(unet, spaces, timesteps)
    plan = WidthPlan(ratio, importance, list(unet.config.block_out_channels), widths,
                     {path: space.kept.tolist() for path, space in spaces.stage_outputs.items()},
                     time_fit_error=spaces.time_fit_error)
    return narrowed, plan
