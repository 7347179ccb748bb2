"""The training harness: EMA that follows its module, the guidance embedding on w's device and dtype, rank
shards, and refusals before any work."""

import pytest
import torch
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
    LatentConsistencyModelPipeline,
)
from torch import nn

from compress.errors import CompressError
from compress.models.guidance import guidance_embedding
from compress.training import EMA, TrainingRun


def _nudge(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)


def test_ema_target_moves_after_one_update():
    online = nn.Linear(4, 3)
    ema = EMA(online, decay=0.9)
    before = ema.average.weight.clone()
    _nudge(online)
    ema.update(online)
    torch.testing.assert_close(ema.average.weight, before + 0.1)


def test_ema_target_moves_after_it_was_moved_to_another_dtype():
    """The bug this replaces: an EMA holding `state_dict()` tensors stopped updating once `.to()` swapped them."""
    online = nn.Linear(4, 3)
    ema = EMA(online, decay=0.9)
    ema.average.to(torch.float64)  # as `target.to(device)` does on a GPU
    before = ema.average.weight.clone()
    _nudge(online)
    ema.update(online)
    assert ema.average.weight.dtype == torch.float64
    torch.testing.assert_close(ema.average.weight, before + 0.1)
    online.to(torch.float64)  # and the source may move too
    _nudge(online)
    ema.update(online)
    assert not torch.equal(ema.average.weight, before + 0.1)


def test_ema_state_round_trips_and_copies_into_a_module():
    online, other = nn.Linear(2, 2), nn.Linear(2, 2)
    ema = EMA(online, decay=0.5)
    _nudge(online)
    ema.update(online)
    fresh = EMA(other, decay=0.5)
    fresh.load_state_dict(ema.state_dict())
    fresh.copy_to(other)
    torch.testing.assert_close(other.weight, ema.average.weight)
    with pytest.raises(CompressError, match="decay must be in"):
        EMA(online, decay=2.0)


def test_guidance_embedding_follows_w_device_and_dtype():
    w = torch.tensor([1.5, 3.0, 8.0], dtype=torch.float64)
    emb = guidance_embedding(w, 256)
    assert emb.dtype == torch.float64
    # diffusers takes log(10000) in float32 whatever the dtype, so float64 agrees with it to float32 precision
    reference = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w - 1, embedding_dim=256,
                                                                           dtype=torch.float64)
    torch.testing.assert_close(emb, reference, atol=1e-4, rtol=0)
    on_meta = guidance_embedding(torch.ones(2, device="meta"), 256)  # a device other than the CPU
    assert on_meta.device.type == "meta" and on_meta.shape == (2, 256)
    assert guidance_embedding(torch.tensor([2, 3])).dtype == torch.float32  # integer scales: float32


def test_ranks_take_disjoint_slices_of_the_global_batch(tmp_path, monkeypatch):
    """What two ranks see, with the process count and rank faked on one process."""
    run = TrainingRun(tmp_path / "run", name="t", steps=1, checkpoint_every=1)
    state = run.accelerator.state
    monkeypatch.setattr(type(run.accelerator), "num_processes", property(lambda self: 2))
    assert run.global_batch(3) == 6
    batch = torch.arange(6.0)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(type(run.accelerator), "process_index", property(lambda self, r=rank: r))
        run._batch_sum = None
        shares.append(run.local(batch)[0])
    assert state is run.accelerator.state
    assert shares[0].tolist() == [0.0, 1.0, 2.0] and shares[1].tolist() == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0, "checkpoint_every": 1}, "--steps must be at least 1"),
    ({"steps": 5, "checkpoint_every": 0}, "--checkpoint-every must be at least 1"),
    ({"steps": 5, "checkpoint_every": 1, "grad_accum": 0}, "--grad-accum must be at least 1"),
    ({"steps": 5, "checkpoint_every": 1, "mixed_precision": "fp8"}, "--mixed-precision must be one of"),
    ({"steps": 5, "checkpoint_every": 1, "resume": True}, "nothing to resume"),
])
def test_bad_settings_are_refused_before_the_folder_is_touched(tmp_path, kwargs, message):
    with pytest.raises(CompressError, match=message):
        TrainingRun(tmp_path / "run", name="t", **kwargs)
    assert not (tmp_path / "run").exists()


def test_an_existing_run_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(CompressError, match="pass --resume to continue it or --overwrite"):
        TrainingRun(tmp_path / "run", name="t", steps=1, checkpoint_every=1)
    run = TrainingRun(tmp_path / "run", name="t", steps=1, checkpoint_every=1, overwrite=True)
    assert (tmp_path / "run" / "keep.txt").exists()  # nothing is deleted until the run starts
    run.create_folder()
    assert list((tmp_path / "run").iterdir()) == []
