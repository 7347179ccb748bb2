"""Finetune-recovery of pruned UNets by output- and feature-level knowledge distillation."""

from compress.recover.features import FeaturePair, feature_pairs
from compress.recover.train import RecoverResult, RecoverSettings, recover

__all__ = ["FeaturePair", "RecoverResult", "RecoverSettings", "feature_pairs", "recover"]
