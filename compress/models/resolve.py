"""`create(ref)`: the one resolver of a model string (timm's `create_model`).

A registry name, a folder or a checkpoint file becomes the model it names: a `DiffusionModel` (a UNet with
its conditioning and noise schedule) or a `SPAN`. prune, recover, distill, eval, export, bench and sr all
resolve through here, so a name means the same thing to every command.
"""

from __future__ import annotations

import os
from pathlib import Path

from compress.errors import CompressError
from compress.models.loading import DiffusionModel, load_diffusion_folder, load_registered
from compress.models.registry import (
    INITS,
    SPAN_WEIGHTS_FILE,
    assets_dir,
    check_model_ref,
    get_spec,
    is_registered,
    is_span_path,
)
from compress.models.span import SPAN
from compress.models.span_checkpoint import load_span_path

RANDOM_ONLY_REGISTERED = "--init random builds registered diffusion models only (sd14, sd15, sd21-base, toy)"


def _refuse(ref: str, kind: str, expect: str | None) -> None:
    if expect == "span" and kind != "span":
        raise CompressError(f"{ref} is a {kind} model, not a SPAN super-resolution model")
    if expect == "diffusion" and kind == "span":
        raise CompressError(f"{ref} is a span model, not a diffusion UNet")


def create(ref: str | os.PathLike | DiffusionModel | SPAN, *, weights: str | os.PathLike | None = None,
           init: str = "pretrained", seed: int = 0, expect: str | None = None) -> DiffusionModel | SPAN:
    """The model `ref` names: a registry name (`compress models`), a folder the toolkit or diffusers wrote,
    or a SPAN checkpoint file. A model object is returned as it is.

    `weights` (a local diffusers folder or hub id) and `init="random"` (the exact architecture with seeded
    random weights) apply to registered diffusion models. `expect="diffusion"|"span"` refuses the other kind
    before anything is loaded.
    """
    if init not in INITS:
        raise CompressError(f"--init must be 'pretrained' or 'random', not {init!r}")
    if isinstance(ref, (DiffusionModel, SPAN)):
        _refuse(getattr(ref, "name", "model"), "span" if isinstance(ref, SPAN) else ref.family, expect)
        return ref
    ref = str(ref)
    if is_registered(ref):
        spec = get_spec(ref)
        _refuse(ref, spec.family, expect)
        if spec.family != "span":
            return load_registered(spec, None if weights is None else str(weights), init, seed)
        if init == "random":
            raise CompressError(RANDOM_ONLY_REGISTERED)
        if weights is not None:
            raise CompressError(f"--weights applies to registered diffusion models, not to {ref}")
        folder = assets_dir(spec.asset)
        if not (folder / SPAN_WEIGHTS_FILE).is_file():
            raise CompressError(f"shipped weights for {ref} are missing from {folder}")
        return load_span_path(folder)
    check_model_ref(ref)
    path = Path(ref)
    if init == "random":
        raise CompressError(RANDOM_ONLY_REGISTERED)
    if weights is not None:
        raise CompressError(f"--weights applies to registry names, not to the folder or file {ref}")
    if is_span_path(path):
        _refuse(ref, "span", expect)
        return load_span_path(path)
    _refuse(ref, "diffusion", expect)
    return load_diffusion_folder(path, None, ref)


def load_diffusion_model(model: str | os.PathLike | DiffusionModel, weights: str | os.PathLike | None = None,
                         init: str = "pretrained", seed: int = 0) -> DiffusionModel:
    """`create(model)` for a diffusion model (registry name or folder); a SPAN is refused."""
    return create(model, weights=weights, init=init, seed=seed, expect="diffusion")  # type: ignore[return-value]


def load_span(model_ref: str | os.PathLike | SPAN) -> SPAN:
    """`create(model_ref)` for SPAN: a registry name (`span-x2`), a folder we wrote, or a checkpoint file."""
    return create(model_ref, expect="span")  # type: ignore[return-value]
