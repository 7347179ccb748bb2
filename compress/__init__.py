"""compress: prune, recover, distil, export and benchmark diffusion and SR models."""

from compress.lazy import lazy_exports

_EXPORTS = {
    "CompressError": "compress.errors",
    "DiffusionModel": "compress.models.loading",
    "create": "compress.models.resolve",
    "list_models": "compress.models.registry",
    "load_diffusion_model": "compress.models.resolve",
    "load_unet": "compress.models.pruned",
    "prune": "compress.prune",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
