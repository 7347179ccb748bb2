"""Sample quality for the toy family: sampling, the digit-classifier judge, the Frechet and kernel distances."""

from compress.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_GUIDANCE": "compress.models.guidance",
    "DEFAULT_SEEDS": "compress.evaluate.defaults",
    "EvalResult": "compress.types",
    "SAMPLERS": "compress.evaluate.sampling",
    "evaluate": "compress.evaluate.quality",
    "frechet_distance": "compress.evaluate.frechet",
    "kernel_distance": "compress.evaluate.frechet",
    "sample": "compress.evaluate.sampling",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
