"""SPAN super-resolution: the architecture, its exact re-parameterisation, training, evaluation and upscaling."""

from compress.lazy import lazy_exports

_EXPORTS = {
    "Conv3XC": "compress.models.span",
    "SPAB": "compress.models.span",
    "SPAN": "compress.models.span",
    "SPANCost": "compress.sr.cost",
    "SREvalResult": "compress.sr.evaluate",
    "SRImageScore": "compress.sr.evaluate",
    "TrainConfig": "compress.sr.settings",
    "TrainReport": "compress.sr.train",
    "deploy_model": "compress.sr.upscale",
    "evaluate_sr": "compress.sr.evaluate",
    "export_official": "compress.models.span_checkpoint",
    "load_span": "compress.models.resolve",
    "official_state_dict": "compress.models.span_checkpoint",
    "save_span": "compress.models.span_checkpoint",
    "span_cost": "compress.sr.cost",
    "span_from_state_dict": "compress.models.span_checkpoint",
    "train_span": "compress.sr.train",
    "upscale_folder": "compress.sr.upscale",
    "upscale_image": "compress.sr.upscale",
    "upscale_tensor": "compress.sr.upscale",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
