"""DeepCache-style feature reuse: exact when every call is full, the shallow pass right, the deep work skipped."""

from __future__ import annotations

import pytest
import torch

from compress.errors import CompressError
from compress.evaluate import sample
from compress.models.feature_cache import DeepFeatureCache
from compress.models.resolve import load_diffusion_model
from helpers import make_tiny_unet

LABELS = torch.tensor([0, 3, 7, 9, 1])


@pytest.fixture(scope="module")
def toy():
    return load_diffusion_model("toy")  # the shipped, trained teacher: its features are not noise


def test_interval_1_reproduces_the_uncached_samples_exactly(toy):
    plain = sample(toy, LABELS, steps=6, guidance=3.0, seed=4)
    assert torch.equal(plain, sample(toy, LABELS, steps=6, guidance=3.0, seed=4, cache_interval=1))


def test_interval_3_reuses_features_and_stays_close(toy):
    plain = sample(toy, LABELS, steps=9, guidance=3.0, seed=4)
    calls = []
    handle = toy.unet.mid_block.register_forward_hook(lambda *args: calls.append(1))
    try:
        cached = sample(toy, LABELS, steps=9, guidance=3.0, seed=4, cache_interval=3)
    finally:
        handle.remove()
    assert len(calls) == 3 * 2  # full calls at steps 0, 3, 6, for the conditional and unconditional pass
    assert not torch.equal(plain, cached)
    assert (plain - cached).abs().mean() < 0.1  # images in [-1, 1]: reuse perturbs, it does not break


def _check_shallow_pass(unet, sample_size: int, context_dim: int, timestep_cond: torch.Tensor | None = None) -> None:
    """With the deep feature recorded at the same inputs, the shallow pass must equal the full forward."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, unet.config.in_channels, sample_size, sample_size, generator=generator)
    context = torch.randn(2, 7, context_dim, generator=generator)
    t = torch.tensor(321)
    with torch.no_grad():
        expected = unet(x, t, context, timestep_cond=timestep_cond).sample
        for branch in range(len(unet.down_blocks)):
            cache = DeepFeatureCache(unet, interval=2, branch=branch)
            assert torch.equal(cache(0, "cond", x, t, context, timestep_cond), expected)  # full call
            shallow = cache(1, "cond", x, t, context, timestep_cond)
            torch.testing.assert_close(shallow, expected, rtol=1e-4, atol=1e-5, msg=f"branch {branch}")


def test_shallow_pass_equals_the_full_forward_at_every_branch(toy):
    _check_shallow_pass(toy.unet, 16, toy.unet.config.cross_attention_dim)


def test_shallow_pass_with_sizes_that_need_upsample_size_and_a_guidance_embedding(toy):
    # 12 is not a multiple of 2^3 upsamplers, so diffusers passes upsample_size; the student adds timestep_cond
    from compress.distill import with_guidance_embedding

    student = with_guidance_embedding(toy.unet)
    torch.nn.init.normal_(student.time_embedding.cond_proj.weight, std=0.02)
    _check_shallow_pass(student, 12, toy.unet.config.cross_attention_dim, torch.randn(2, 256))
    _check_shallow_pass(make_tiny_unet(), 12, make_tiny_unet().config.cross_attention_dim)


def test_shallow_pass_of_a_pruned_unet(toy_pair):
    _, student = toy_pair
    pruned = load_diffusion_model(student).unet
    _check_shallow_pass(pruned, 16, pruned.config.cross_attention_dim)


def test_refusals(toy):
    with pytest.raises(CompressError, match="needs a torch UNet"):
        DeepFeatureCache(object(), 3)
    with pytest.raises(CompressError, match="must be 0..3"):
        DeepFeatureCache(toy.unet, 3, branch=4)
    with pytest.raises(CompressError, match="at least 1"):
        DeepFeatureCache(toy.unet, 0)
