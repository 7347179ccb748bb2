"""Run exported pipelines in optimum's own pipeline classes and the torch pipeline in diffusers, same inputs.

Runs in the second virtual environment (`.venv-optimum`, requirements-optimum.txt): optimum-onnx and
optimum-intel do not co-install with the diffusers and transformers the toolkit uses. It imports nothing from
compress. The torch reference comes from the main environment (the diffusers users run there): REFERENCE.npz
holds the latents and the image the torch pipeline made from them. Prints one JSON object: per exported folder,
optimum's pipeline class and the max |pixel difference| from the torch image in 1/255 units.

    python tests/optimum_check.py REFERENCE.npz [--onnx DIR] [--openvino DIR] [--steps 3] [--guidance 7.5]
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import torch

PROMPT = "a photo of an astronaut riding a horse"


def _images(pipe, latents: torch.Tensor, steps: int, guidance: float) -> np.ndarray:
    size = latents.shape[-1] * pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(1)  # an LCM step's noise, as the reference drew it
    return np.asarray(pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, latents=latents,
                           height=size, width=size, generator=generator, output_type="np").images, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference", help="npz with `latents` and `image` (the torch pipeline's output)")
    parser.add_argument("--onnx")
    parser.add_argument("--openvino")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=7.5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    data = np.load(args.reference)
    latents, reference = torch.from_numpy(data["latents"]), data["image"].astype(np.float64)
    result = {"image_shape": list(reference.shape)}
    if args.onnx:
        from optimum.onnxruntime import ORTDiffusionPipeline

        pipe = ORTDiffusionPipeline.from_pretrained(args.onnx)
        pipe.set_progress_bar_config(disable=True)
        image = _images(pipe, latents, args.steps, args.guidance)
        result["onnx"] = {"pipeline": type(pipe).__name__,
                          "max_abs_255": float(np.abs(image - reference).max() * 255)}
    if args.openvino:
        from optimum.intel import OVDiffusionPipeline

        pipe = OVDiffusionPipeline.from_pretrained(args.openvino, ov_config={"INFERENCE_PRECISION_HINT": "f32"})
        pipe.set_progress_bar_config(disable=True)
        image = _images(pipe, latents, args.steps, args.guidance)
        result["openvino"] = {"pipeline": type(pipe).__name__,
                              "max_abs_255": float(np.abs(image - reference).max() * 255)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
