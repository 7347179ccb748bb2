"""The single table of named models behind `create_model`-style loading (timm's registry idea).

Each entry names its family and how to get weights; loaders are dotted paths resolved on use,
so listing models imports nothing heavy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from compress.errors import CompressError
from compress.io import read_json
from compress.models.sd import SD14_UNET_CONFIG, SD15_UNET_CONFIG, SD21_BASE_UNET_CONFIG
from compress.models.toy import TOY_UNET_CONFIG


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "sd" (latent UNet with a CLIP text encoder), "toy" (pixel UNet + class tokens), "span"
    description: str
    unet_config: dict[str, Any] | None = None
    hub_id: str | None = None  # diffusers pipeline repo; the UNet is in its `unet/` subfolder
    asset: str | None = None  # folder under compress/assets holding shipped weights
    extra: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("sd14", "sd", "Stable Diffusion v1.4 UNet (859.5M params, 64x64 latent)",
                  SD14_UNET_CONFIG, hub_id="CompVis/stable-diffusion-v1-4"),
        ModelSpec("sd15", "sd", "Stable Diffusion v1.5 UNet (same architecture as v1.4)",
                  SD15_UNET_CONFIG, hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ModelSpec("sd21-base", "sd", "Stable Diffusion v2.1-base UNet (865.9M params, OpenCLIP-H text)",
                  SD21_BASE_UNET_CONFIG, hub_id="stabilityai/stable-diffusion-2-1-base"),
        ModelSpec("toy", "toy", "Embedded trained SD-topology UNet (2.4M params) on 16x16 digits, class tokens",
                  TOY_UNET_CONFIG, asset="toy"),
        ModelSpec("span-x2", "span", "SPAN x2 super-resolution (C=16, 47k params fused), trained on skimage photos",
                  asset="span-x2"),
        ModelSpec("span-x4", "span", "SPAN x4 super-resolution (C=16, 53k params fused), trained on skimage photos",
                  asset="span-x4"),
    )
}


def assets_dir(name: str) -> Path:
    """The folder of shipped weights `compress/assets/NAME`."""
    return Path(str(resources.files("compress").joinpath("assets", name)))


def list_models() -> list[ModelSpec]:
    return list(_MODELS.values())


def get_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(_MODELS)
        raise CompressError(f"unknown model {name!r}; known models: {known} (or pass a folder)") from None


def is_registered(name: str) -> bool:
    return name in _MODELS


PIPELINE_INDEX = "model_index.json"  # what makes a folder a diffusers pipeline


def _check_pipeline_index(folder: Path) -> None:
    """A pipeline folder's `model_index.json` must be a JSON object: stages copy the pipeline through it at the end
    (recover and distill after training), so a broken one is refused before the work starts."""
    index = folder / PIPELINE_INDEX
    if not index.is_file():
        return
    try:
        data = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompressError(f"{index} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CompressError(f"{index} is not a diffusers pipeline index (not a JSON object)")


INITS = ("pretrained", "random")  # how a registered diffusion model is built: its weights, or seeded random ones
SPAN_WEIGHTS_FILE = "model.safetensors"  # a SPAN folder's weights (compress.models.span_checkpoint)


def is_span_path(path: Path) -> bool:
    """A checkpoint file, or a folder whose config says SPAN (or that holds SPAN weights and no UNet)."""
    if path.is_file():
        return True  # diffusion models are folders; a single file can only be a SPAN checkpoint
    config = path / "config.json"
    if config.is_file():
        data = read_json(config)
        return isinstance(data, dict) and data.get("architecture") == "span"
    return (path / SPAN_WEIGHTS_FILE).is_file() and not (path / "unet").is_dir()


def model_family(ref: str | os.PathLike) -> str:
    """The family a registry name or an existing path names, from the files alone (no torch): span for a SPAN
    checkpoint or folder, toy for a folder with `conditioner/` (as `load_diffusion_folder` decides), else sd."""
    if is_registered(str(ref)):
        return get_spec(str(ref)).family
    path = Path(ref)
    if is_span_path(path):
        return "span"
    root = path.parent if path.name == "unet" else path
    return "toy" if (root / "conditioner").is_dir() else "sd"


def check_model_ref(ref: str | os.PathLike) -> None:
    """`ref` is a registry name or an existing file or folder; else the resolver's error, with nothing loaded."""
    ref = str(ref)
    if is_registered(ref):
        return
    if Path(ref).exists():
        _check_pipeline_index(Path(ref))
        return
    if Path(ref).suffix or os.sep in ref:
        raise CompressError(f"not found: {ref} (neither a registry name nor an existing folder or file)")
    get_spec(ref)  # the unknown-model error, which lists the known names
