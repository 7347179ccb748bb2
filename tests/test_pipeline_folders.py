"""Pipeline folders in, pipeline folders out: prune, recover and distill of an SD pipeline folder write a complete
pipeline folder that stock diffusers loads in one line; a toy (non-pipeline) output stays as it was."""

import json
import os

import numpy as np
import pytest
import torch

from compress.distill import DistillSettings, distill
from compress.models.pruned import load_unet
from compress.prune import ScoreSettings, prune
from compress.recover import RecoverSettings, recover
from helpers import caption_folder, tiny_sd_pipeline

FAST_SCORE = ScoreSettings(samples=4, steps=2)
COPIED = ("text_encoder", "tokenizer", "vae")


@pytest.fixture(scope="module")
def pruned_pipeline(tmp_path_factory):
    """The tiny SD pipeline and a 30% params-budget prune of it (default granularity)."""
    root = tmp_path_factory.mktemp("pipelines")
    pipeline = tiny_sd_pipeline(root / "pipe")
    prune(pipeline, root / "pruned", ratio=0.3, budget="params", score=FAST_SCORE, progress=False)
    return pipeline, root / "pruned"


def _index(folder):
    return json.loads((folder / "model_index.json").read_text())


def _assert_same_state(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)


def _assert_copied_not_linked(source, out):
    for name in COPIED:
        files = [p for p in (source / name).rglob("*") if p.is_file()]
        assert files
        for path in files:
            copy = out / path.relative_to(source)
            assert copy.read_bytes() == path.read_bytes()
            assert os.stat(copy).st_ino != os.stat(path).st_ino and os.stat(copy).st_nlink == 1


def _generate(pipe, **kwargs):
    images = pipe("a cat", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0),
                  **kwargs).images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()


def test_pruned_pipeline_loads_in_stock_diffusers_with_the_source_components(pruned_pipeline):
    from diffusers import StableDiffusionPipeline

    source, out = pruned_pipeline
    assert _index(out) == _index(source)  # same class, same components, same (PNDM) scheduler
    pipe = StableDiffusionPipeline.from_pretrained(out)
    original = StableDiffusionPipeline.from_pretrained(source)
    _assert_same_state(load_unet(out), pipe.unet)
    assert pipe.unet.num_parameters() < original.unet.num_parameters()
    _assert_same_state(original.text_encoder, pipe.text_encoder)
    _assert_same_state(original.vae, pipe.vae)
    _assert_copied_not_linked(source, out)
    _generate(pipe)


def test_prune_cli_writes_the_same_pipeline_folder(pruned_pipeline, tmp_path):
    from click.testing import CliRunner

    from compress.cli import main

    source, library_out = pruned_pipeline
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["prune", "--model", str(source), "--ratio", "0.3", "--budget", "params", "--out",
                                       str(out), "--calib-samples", "4", "--calib-steps", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert _index(out) == _index(library_out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in library_out.iterdir())
    _assert_same_state(load_unet(library_out), load_unet(out))


def test_block_granularity_pipeline_is_complete_but_refused_by_stock_diffusers(pruned_pipeline, tmp_path):
    from diffusers import StableDiffusionPipeline

    source, _ = pruned_pipeline
    out = tmp_path / "block"
    prune(source, out, ratio=0.3, budget="params", granularity="block", score=FAST_SCORE, progress=False)
    assert (out / "unet" / "prune_plan.json").is_file()
    assert _index(out) == _index(source)
    _assert_copied_not_linked(source, out)
    with pytest.raises(Exception, match="compress.load_unet"):
        StableDiffusionPipeline.from_pretrained(out)


def test_recovered_pruned_pipeline_is_a_complete_pipeline(pruned_pipeline, tmp_path):
    from diffusers import StableDiffusionPipeline

    source, pruned = pruned_pipeline
    out = tmp_path / "run"
    recover(source, pruned, out, data=caption_folder(tmp_path / "captions"),
            settings=RecoverSettings(steps=2, batch_size=2), progress=False)
    assert _index(out) == _index(source)
    pipe = StableDiffusionPipeline.from_pretrained(out)
    _assert_same_state(load_unet(out), pipe.unet)
    _assert_copied_not_linked(source, out)
    _generate(pipe)


def test_distilled_pipeline_loads_as_a_latent_consistency_pipeline(pruned_pipeline, tmp_path):
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    source, _ = pruned_pipeline
    out = tmp_path / "lcm"
    distill(source, out, data=caption_folder(tmp_path / "captions"),
            settings=DistillSettings(steps=1, batch_size=2, solver_steps=10), progress=False)
    index = _index(out)
    assert index["_class_name"] == "LatentConsistencyModelPipeline"
    assert index["scheduler"] == ["diffusers", "LCMScheduler"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    pipe = LatentConsistencyModelPipeline.from_pretrained(out)
    assert isinstance(pipe.scheduler, LCMScheduler)
    assert pipe.unet.config.time_cond_proj_dim
    _assert_same_state(load_unet(out), pipe.unet)
    _assert_copied_not_linked(source, out)
    _generate(pipe, guidance_scale=3.0)


def test_toy_output_has_no_pipeline_index(toy_pair):
    teacher, student = toy_pair
    assert not (teacher / "model_index.json").exists()
    assert not (student / "model_index.json").exists()
    assert sorted(p.name for p in student.iterdir() if p.is_dir()) == ["conditioner", "unet"]


@pytest.mark.parametrize("command", ["recover", "distill"])
def test_a_broken_pipeline_index_is_refused_before_training(pruned_pipeline, tmp_path, monkeypatch, capsys, command):
    """recover and distill copy the pipeline through its index after training: a broken index fails first."""
    import shutil

    from helpers import run_console

    _, pruned = pruned_pipeline
    broken = tmp_path / "broken"
    shutil.copytree(pruned, broken)
    (broken / "model_index.json").write_text("{not json")
    args = ["--teacher", broken, "--out", tmp_path / "out"]
    if command == "recover":
        args += ["--student", broken]
    code, _, stderr = run_console(monkeypatch, capsys, command, *args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "model_index.json is not valid JSON" in lines[0], stderr
    assert not (tmp_path / "out").exists()
