import dataclasses

import pytest
import torch

from compress.errors import CompressError
from compress.evaluate import SAMPLERS, sample
from compress.evaluate.sampling import make_scheduler, resolve_sampler
from compress.models.resolve import load_diffusion_model
from compress.models.sd import SD_SCHEDULER_CONFIG

LABELS = torch.tensor([0, 3, 7, 9])


@pytest.fixture(scope="module")
def toy():
    return load_diffusion_model("toy", init="random")


def test_same_seed_same_images_and_other_seed_other_images(toy):
    first = sample(toy, LABELS, steps=2, seed=0)
    assert first.shape == (4, 1, 16, 16)
    assert first.min() >= -1.0 and first.max() <= 1.0
    assert torch.equal(first, sample(toy, LABELS, steps=2, seed=0))
    assert not torch.equal(first, sample(toy, LABELS, steps=2, seed=1))


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_and_is_seeded(toy, sampler):
    def run():  # two batches, so stateful schedulers must restart; guidance 1 keeps it to one UNet pass
        return sample(toy, LABELS, steps=2, sampler=sampler, guidance=1.0, seed=3, batch_size=3)

    images = run()
    assert images.shape == (4, 1, 16, 16) and torch.isfinite(images).all()
    assert torch.equal(images, run())


def test_guidance_changes_the_samples(toy):
    assert not torch.equal(sample(toy, LABELS, steps=2, guidance=1.0), sample(toy, LABELS, steps=2, guidance=3.0))


@pytest.mark.parametrize(
    ("saved", "expected"),
    [("LCMScheduler", "lcm"), ("EulerDiscreteScheduler", "euler"), ("DDPMScheduler", "ddim"), (None, "ddim")],
)
def test_no_sampler_means_the_saved_scheduler(saved, expected):
    config = dict(SD_SCHEDULER_CONFIG) if saved is None else {**SD_SCHEDULER_CONFIG, "_class_name": saved}
    assert resolve_sampler(config) == expected
    assert resolve_sampler(config, "euler") == "euler"


def test_bad_requests_are_user_errors(toy):
    with pytest.raises(CompressError, match="unknown sampler"):
        resolve_sampler(SD_SCHEDULER_CONFIG, "heun")
    with pytest.raises(CompressError, match="LCMScheduler cannot run 60 steps"):
        make_scheduler(SD_SCHEDULER_CONFIG, "lcm", 60)
    with pytest.raises(CompressError, match="class ids"):
        sample(toy, torch.tensor([11]), steps=1)
    with pytest.raises(CompressError, match="toy-family"):
        sample(dataclasses.replace(toy, conditioner=None), LABELS, steps=1)


def test_scheduler_from_config_keeps_the_schedule_and_drops_another_class_s_keys():
    from diffusers import DDIMScheduler, LCMScheduler

    from compress.models.loading import scheduler_from_config

    saved = {"_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
             "beta_end": 0.012, "num_train_timesteps": 1000, "variance_type": "fixed_small", "steps_offset": 1}
    lcm = scheduler_from_config(LCMScheduler, saved, original_inference_steps=10)
    assert (lcm.config.beta_schedule, lcm.config.beta_end, lcm.config.original_inference_steps) == (
        "scaled_linear", 0.012, 10)
    assert "variance_type" not in lcm.config
    ddim = scheduler_from_config(DDIMScheduler, saved)
    assert ddim.config.steps_offset == 1 and ddim.alphas_cumprod[-1].item() == pytest.approx(
        DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod[-1].item())
