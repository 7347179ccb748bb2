"""Sample quality for the toy family: sampling, the digit-classifier judge and the Frechet distance."""

from compress.evaluate.frechet import frechet_distance
from compress.evaluate.quality import evaluate
from compress.evaluate.sampling import SAMPLERS, sample
from compress.models.guidance import DEFAULT_GUIDANCE
from compress.types import EvalResult

__all__ = ["DEFAULT_GUIDANCE", "SAMPLERS", "EvalResult", "evaluate", "frechet_distance", "sample"]
