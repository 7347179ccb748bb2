"""`compress chain`: prune, recover, distill, quantize, export, bench and eval in one resumable run, and the
quality/latency trade-off it bought."""

from compress.lazy import lazy_exports

_EXPORTS = {
    "Recipe": "compress.chain.recipe",
    "STAGES": "compress.chain.recipe",
    "check_recipe": "compress.chain.recipe",
    "describe_plan": "compress.chain.api",
    "read_recipe": "compress.chain.recipe",
    "run_chain": "compress.chain.api",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
