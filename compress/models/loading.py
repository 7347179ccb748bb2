"""Load a diffusion model from a registry entry, a hub id or a folder, with its conditioning.

A `DiffusionModel` is what every pipeline stage consumes: the UNet, how to make
`encoder_hidden_states` for it, and the noise-schedule config it was trained with.
Which loader a name, folder or file goes to is decided in one place, `compress.models.create`.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from diffusers import UNet2DConditionModel

from compress.errors import CompressError
from compress.models.class_conditioner import ClassConditioner
from compress.models.pruned import load_unet, read_plan
from compress.models.registry import ModelSpec, assets_dir
from compress.models.sd import SD_SCHEDULER_CONFIG
from compress.types import RemovalPlan

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # "org/name"; anything else must be a local path


def public_config(config: Any) -> dict[str, Any]:
    """A diffusers config without its bookkeeping keys (`_class_name`, `_diffusers_version`, ...)."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def scheduler_from_config(scheduler_class: type, config: Any, **overrides: Any) -> Any:
    """`scheduler_class` on a noise schedule saved by another scheduler class, keeping only the keys it takes.

    diffusers warns about (and saves again) keys another class wrote, e.g. DDPM's `variance_type` in an
    LCMScheduler config; the schedule itself (betas, timesteps, prediction type) carries over unchanged.
    """
    accepted = inspect.signature(scheduler_class.__init__).parameters
    return scheduler_class.from_config({k: v for k, v in public_config(config).items() if k in accepted}, **overrides)


@dataclass
class DiffusionModel:
    """A UNet plus what is needed to condition and sample it."""

    unet: UNet2DConditionModel
    family: str  # "sd" or "toy"
    name: str  # registry name or folder the model came from
    scheduler_config: dict[str, Any] = field(default_factory=lambda: dict(SD_SCHEDULER_CONFIG))
    conditioner: ClassConditioner | None = None  # toy family: class tokens
    text_encoder: Any = None  # sd family with real weights: transformers CLIPTextModel
    tokenizer: Any = None
    source_dir: Path | None = None  # the folder it was loaded from, if any
    plan: RemovalPlan | None = None  # the block plan of a block-granularity UNet

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.unet.config)


def _random_unet(config: dict[str, Any], seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(config).eval()


def load_sd_text_encoder(pipeline_dir: Path) -> tuple[Any, Any]:
    """The pipeline's CLIP text encoder and tokenizer, or (None, None) when the folder has none."""
    if not ((pipeline_dir / "text_encoder").is_dir() and (pipeline_dir / "tokenizer").is_dir()):
        return None, None
    try:
        import transformers
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise CompressError("encoding prompts needs transformers: pip install 'compress[sd]'") from None
    transformers.utils.logging.disable_progress_bar()  # keep stderr to our own messages
    transformers.utils.logging.set_verbosity_error()
    encoder = CLIPTextModel.from_pretrained(pipeline_dir / "text_encoder").eval()
    return encoder, CLIPTokenizer.from_pretrained(pipeline_dir / "tokenizer")


def _load_scheduler_config(folder: Path) -> dict[str, Any]:
    path = folder / "scheduler" / "scheduler_config.json"
    if path.is_file():
        return json.loads(path.read_text())
    return dict(SD_SCHEDULER_CONFIG)


def load_diffusion_folder(folder: Path, family: str | None, name: str) -> DiffusionModel:
    """A folder written by this toolkit or diffusers: a UNet folder, or one holding `unet/`."""
    root = folder.parent if folder.name == "unet" else folder
    unet = load_unet(folder)
    conditioner = ClassConditioner.load(root / "conditioner") if (root / "conditioner").is_dir() else None
    if family is None:
        family = "toy" if conditioner is not None else "sd"
    text_encoder, tokenizer = load_sd_text_encoder(root) if family == "sd" else (None, None)
    return DiffusionModel(unet=unet, family=family, name=name, scheduler_config=_load_scheduler_config(root),
                          conditioner=conditioner, text_encoder=text_encoder, tokenizer=tokenizer, source_dir=root,
                          plan=read_plan(folder))


def _hub_reachable() -> bool:
    """Whether the hub's host resolves; avoids minutes of retries on an offline machine."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _from_hub(hub_id: str, local_only: bool) -> tuple[UNet2DConditionModel, Any, Any]:
    with warnings.catch_warnings():  # hub deprecation chatter would bury the one-line error
        warnings.simplefilter("ignore")
        unet = UNet2DConditionModel.from_pretrained(hub_id, subfolder="unet", local_files_only=local_only).eval()
    try:
        from transformers import CLIPTextModel, CLIPTokenizer

        encoder = CLIPTextModel.from_pretrained(hub_id, subfolder="text_encoder", local_files_only=local_only)
        tokenizer = CLIPTokenizer.from_pretrained(hub_id, subfolder="tokenizer", local_files_only=local_only)
        return unet, encoder.eval(), tokenizer
    except Exception:  # no transformers or no text encoder: scoring falls back to random embeddings
        return unet, None, None


def _load_from_hub(spec: ModelSpec, hub_id: str) -> DiffusionModel:
    """Weights from the local hub cache, else from the hub when it can be reached."""
    try:
        unet, encoder, tokenizer = _from_hub(hub_id, local_only=True)
    except Exception:  # not cached
        if not _hub_reachable():
            raise CompressError(
                f"offline: the weights of {spec.name} ({hub_id}) are not in the local hub cache and the hub "
                "cannot be reached; pass --weights PATH for a local copy or --init random"
            ) from None
        try:
            unet, encoder, tokenizer = _from_hub(hub_id, local_only=False)
        except Exception as exc:  # huggingface_hub raises several types for missing repos or files
            raise CompressError(f"cannot get weights for {spec.name} from the hub ({hub_id}): "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return DiffusionModel(unet=unet, family=spec.family, name=spec.name, text_encoder=encoder, tokenizer=tokenizer)


def load_registered(spec: ModelSpec, weights: str | None = None, init: str = "pretrained",
                    seed: int = 0) -> DiffusionModel:
    """A registered diffusion model: seeded random weights, `weights` (a local folder or hub id), the shipped
    asset, or the hub (its local cache first)."""
    if init == "random":
        if weights is not None:
            raise CompressError("--weights and --init random exclude each other")
        unet = _random_unet(spec.unet_config, seed)
        conditioner = None
        if spec.family == "toy":
            torch.manual_seed(seed)
            conditioner = ClassConditioner(dim=spec.unet_config["cross_attention_dim"]).eval()
        return DiffusionModel(unet=unet, family=spec.family, name=spec.name, conditioner=conditioner)
    if weights is not None:
        path = Path(weights)
        if path.exists():
            if not path.is_dir():
                raise CompressError(f"--weights must be a diffusers folder or a hub id, got file {path}")
            return load_diffusion_folder(path, spec.family, spec.name)
        if not HUB_ID.fullmatch(str(weights)):
            raise CompressError(f"--weights path not found: {weights}")
        return _load_from_hub(spec, str(weights))
    if spec.asset is not None:
        folder = assets_dir(spec.asset)
        if not (folder / "unet").is_dir():
            raise CompressError(f"shipped weights for {spec.name} are missing from {folder}")
        return load_diffusion_folder(folder, spec.family, spec.name)
    return _load_from_hub(spec, spec.hub_id)
