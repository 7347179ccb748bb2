"""compress: prune, recover, distil, export and benchmark diffusion and SR models."""

from compress.errors import CompressError
from compress.models.loading import DiffusionModel, load_diffusion_model, load_unet
from compress.models.registry import list_models
from compress.prune import prune

__all__ = ["CompressError", "DiffusionModel", "list_models", "load_diffusion_model", "load_unet", "prune"]
