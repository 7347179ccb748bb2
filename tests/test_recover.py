"""`compress recover`: resume equivalence, the SD image-caption path, and bad input."""

import json
import subprocess
import sys

import torch

from compress.models.pruned import load_unet
from compress.prune import ScoreSettings, prune
from compress.recover import RecoverSettings, recover
from helpers import caption_folder, tiny_sd_pipeline

FAST_SCORE = ScoreSettings(samples=4, steps=2)


def weights(folder):
    return load_unet(folder).state_dict()


def test_resumed_run_ends_with_the_same_weights(toy_pair, tmp_path):
    teacher, student = toy_pair
    settings = RecoverSettings(steps=6, batch_size=4, checkpoint_every=3)
    recover(teacher, student, tmp_path / "full", settings=settings, evaluate_after=False, progress=False)
    first = RecoverSettings(steps=3, batch_size=4, checkpoint_every=3)  # stops right after the checkpoint
    recover(teacher, student, tmp_path / "split", settings=first, evaluate_after=False, progress=False)
    recover(teacher, student, tmp_path / "split", settings=settings, resume=True, evaluate_after=False,
            progress=False)
    full, split = weights(tmp_path / "full"), weights(tmp_path / "split")
    assert full.keys() == split.keys()
    for key in full:
        torch.testing.assert_close(split[key], full[key], rtol=1e-5, atol=1e-6)
    log = [json.loads(line) for line in (tmp_path / "split" / "recover_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "loss_task", "loss_kd_out", "loss_kd_feat", "lr", "seconds"} <= set(log[0])
    assert (tmp_path / "full" / "recover_loss.png").is_file()
    # The recovered student has the pruned structure, not the teacher's.
    assert len(full) == len(load_unet(student).state_dict())


def test_sd_pipeline_prunes_and_recovers_end_to_end(tmp_path):
    pipeline = tiny_sd_pipeline(tmp_path / "pipe")
    data = caption_folder(tmp_path / "captions")
    prune(pipeline, tmp_path / "student", ratio=0.3, budget="params", score=FAST_SCORE, progress=False)
    result = recover(pipeline, tmp_path / "student", tmp_path / "run", data=data,
                     settings=RecoverSettings(steps=2, batch_size=2), progress=False)
    assert result.steps == 2 and result.eval is None
    cache = (tmp_path / "run" / "data_cache.safetensors")
    assert cache.is_file()
    from safetensors.torch import load_file

    tensors = load_file(str(cache))
    assert tensors["x0"].shape == (4, 4, 16, 16) and tensors["cond"].shape == (4, 77, 16)
    recovered, pruned = load_unet(tmp_path / "run"), load_unet(tmp_path / "student")
    assert recovered.config.block_out_channels == pruned.config.block_out_channels


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "compress", "recover", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})


def _assert_one_error(proc, message):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_bad_input_is_one_error_and_exit_2(toy_pair, tmp_path):
    teacher, student = toy_pair
    pipeline = tiny_sd_pipeline(tmp_path / "pipe")
    prune(pipeline, tmp_path / "sd-student", ratio=0.3, budget="params", score=FAST_SCORE, progress=False)
    _assert_one_error(_cli("--teacher", pipeline, "--student", tmp_path / "sd-student", "--out", tmp_path / "a",
                           "--data", tmp_path / "missing"), "data folder not found")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "captions.jsonl").write_text("")
    _assert_one_error(_cli("--teacher", pipeline, "--student", tmp_path / "sd-student", "--out", tmp_path / "b",
                           "--data", tmp_path / "empty"), "is empty")
    _assert_one_error(_cli("--teacher", pipeline, "--student", student, "--out", tmp_path / "c"),
                      "not pruned from this teacher")
    run = tmp_path / "d"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"garbage")
    _assert_one_error(_cli("--teacher", teacher, "--student", student, "--out", run, "--resume"),
                      "cannot load checkpoint")
