"""compress: prune, recover, distil, export and benchmark diffusion and SR models."""

from compress.errors import CompressError
from compress.models.loading import DiffusionModel
from compress.models.pruned import load_unet
from compress.models.registry import list_models
from compress.models.resolve import create, load_diffusion_model
from compress.prune import prune

__all__ = ["CompressError", "DiffusionModel", "create", "list_models", "load_diffusion_model", "load_unet", "prune"]
