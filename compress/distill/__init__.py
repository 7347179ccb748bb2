"""Few-step samplers by consistency distillation (LCM) and Direct CM."""

from compress.lazy import lazy_exports

_EXPORTS = {
    "DistillResult": "compress.distill.train",
    "DistillSettings": "compress.distill.settings",
    "distill": "compress.distill.train",
    "with_guidance_embedding": "compress.distill.train",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
