"""Finetune-recovery of pruned UNets by output- and feature-level knowledge distillation."""

from compress.lazy import lazy_exports

_EXPORTS = {
    "FeaturePair": "compress.recover.features",
    "RecoverResult": "compress.recover.train",
    "RecoverSettings": "compress.recover.settings",
    "feature_pairs": "compress.recover.features",
    "recover": "compress.recover.train",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
