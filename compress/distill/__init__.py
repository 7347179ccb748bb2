"""Few-step samplers by consistency distillation (LCM) and Direct CM."""

from compress.distill.train import DistillResult, DistillSettings, distill, with_guidance_embedding

__all__ = ["DistillResult", "DistillSettings", "distill", "with_guidance_embedding"]
