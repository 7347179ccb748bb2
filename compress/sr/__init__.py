"""SPAN super-resolution: the architecture, its exact re-parameterisation, training, evaluation and upscaling."""

from compress.models.resolve import load_span
from compress.models.span import SPAB, SPAN, Conv3XC
from compress.models.span_checkpoint import export_official, official_state_dict, save_span, span_from_state_dict
from compress.sr.cost import SPANCost, span_cost
from compress.sr.evaluate import SREvalResult, SRImageScore, evaluate_sr
from compress.sr.train import TrainConfig, TrainReport, train_span
from compress.sr.upscale import deploy_model, upscale_folder, upscale_image, upscale_tensor

__all__ = [
    "SPAN",
    "SPAB",
    "Conv3XC",
    "SPANCost",
    "SREvalResult",
    "SRImageScore",
    "TrainConfig",
    "TrainReport",
    "deploy_model",
    "export_official",
    "official_state_dict",
    "evaluate_sr",
    "load_span",
    "save_span",
    "span_cost",
    "span_from_state_dict",
    "train_span",
    "upscale_folder",
    "upscale_image",
    "upscale_tensor",
]
