"""Bad input, every command: exit 2, one `error:` line, no traceback, nothing created or changed, fast.

Each case runs in this process through the console entry point (`compress.cli:run`, what the `compress` script
calls), with an alarm so that a case that starts real work fails the test instead of running it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compress.cli import run

# id: (arguments, a fragment of the one error line, which proves the intended check refused it). {t} is the
# test's folder. Each case must be refused before any model loads or trains.
CASES = {
    # output paths that cannot be created: under a file, on a read-only filesystem
    "eval-json-under-file": ("eval --model toy --json {t}/file.txt/x.json", "is a file, not a folder"),
    "eval-json-under-proc": ("eval --model toy --json /proc/compress-test/x.json", "is not writable"),
    "eval-grid-under-file": ("eval --model toy --grid {t}/file.txt/x.png", "is a file, not a folder"),
    "sample-out-under-file": ("sample --model toy --out {t}/file.txt/x.png", "is a file, not a folder"),
    "sample-out-under-proc": ("sample --model toy --out /proc/compress-test.png", "is not writable"),
    "sr-eval-json-under-file": ("sr eval --model span-x2 --data {t}/imgs --json {t}/file.txt/x.json",
        "is a file, not a folder"),
    "sr-upscale-out-under-file": ("sr upscale --model span-x2 {t}/img.png {t}/file.txt/x.png",
        "is a file, not a folder"),
    "bench-json-under-file": ("bench --backend torch-cpu --init random --json {t}/file.txt/x.json toy",
        "is a file, not a folder"),
    "prune-out-under-file": ("prune --model toy --ratio 0.3 --out {t}/file.txt/pruned", "is a file, not a folder"),
    "prune-out-under-proc": ("prune --model toy --ratio 0.3 --out /proc/compress-test", "is not writable"),
    "recover-out-under-file": ("recover --teacher toy --student {t}/imgs --out {t}/file.txt/run",
        "is a file, not a folder"),
    "distill-out-under-file": ("distill --teacher toy --out {t}/file.txt/run", "is a file, not a folder"),
    "export-out-under-file": ("export toy --format onnx --out {t}/file.txt/onnx", "is a file, not a folder"),
    "sr-train-out-under-file": ("sr train --scale 2 --data {t}/imgs --steps 5 --out {t}/file.txt/run",
        "is a file, not a folder"),
    "sr-export-official-under-file": ("sr export-official --model span-x2 {t}/file.txt/x.pth",
        "is a file, not a folder"),
    "compare-json-under-file": ("compare --json {t}/file.txt/x.json {t}/text.onnx --against {t}/text.onnx",
        "is a file, not a folder"),
    "npu-check-json-under-file": ("npu-check --target qnn --json {t}/file.txt/x.json {t}/text.onnx",
        "is a file, not a folder"),
    # files of the wrong kind
    "bench-baseline-png": ("bench --backend torch-cpu --init random --baseline {t}/img.png toy", "is not valid JSON"),
    "bench-baseline-wrong-schema": ("bench --backend torch-cpu --init random --baseline {t}/schema.json toy",
        "is not a latency baseline"),
    "bench-text-onnx": ("bench --backend ort-cpu {t}/text.onnx", "is not a readable ONNX model"),
    "bench-truncated-onnx": ("bench --backend ort-cpu {t}/truncated.onnx", "is not a readable ONNX model"),
    "npu-check-text-onnx": ("npu-check --target qnn {t}/text.onnx", "is not a readable ONNX model"),
    "npu-check-truncated-onnx": ("npu-check --target qnn {t}/truncated.onnx", "is not a readable ONNX model"),
    "bench-garbage-openvino-xml": ("bench --backend ov-cpu {t}/garbage.xml", "is not a readable OpenVINO IR"),
    "npu-check-garbage-openvino-xml": ("npu-check --target intel-npu {t}/garbage.xml", "is not a readable OpenVINO IR"),
    "sr-corrupt-config": ("sr eval --model {t}/span-bad --data {t}/imgs", "config.json is not valid JSON"),
    "sr-upscale-not-an-image": ("sr upscale --model span-x2 {t}/file.txt {t}/out.png", "cannot read image"),
    # ranges and relations
    "sr-info-size-0": ("sr info --size 0", "--size must be positive"),
    "sr-info-scale-5": ("sr info --scale 5", "scale must be one of 2, 3, 4"),
    "sr-train-lr-negative": ("sr train --scale 2 --data {t}/imgs --steps 5 --out {t}/run --lr -1",
        "--lr must be above 0"),
    "sr-train-steps-0": ("sr train --scale 2 --data {t}/imgs --steps 0 --out {t}/run", "--steps must be positive"),
    "sr-train-channels-0": ("sr train --scale 2 --channels 0 --data {t}/imgs --steps 5 --out {t}/run",
        "--channels must be positive"),
    "sr-train-checkpoint-every-0": ("sr train --scale 2 --data {t}/imgs --steps 5 --out {t}/run --checkpoint-every 0",
        "--checkpoint-every must be positive"),
    "sr-upscale-tile-0": ("sr upscale --model span-x2 --tile 0 {t}/img.png {t}/out.png", "tile must be positive"),
    "recover-checkpoint-every-0": ("recover --teacher toy --student {t}/imgs --out {t}/run --checkpoint-every 0",
        "--checkpoint-every must be at least 1"),
    "recover-lr-0": ("recover --teacher toy --student {t}/imgs --out {t}/run --lr 0", "--lr above 0"),
    "recover-batch-size-0": ("recover --teacher toy --student {t}/imgs --out {t}/run --batch-size 0",
        "--batch-size must be positive"),
    "recover-ema-1.5": ("recover --teacher toy --student {t}/imgs --out {t}/run --ema 1.5",
        "--ema must be between 0 and 1"),
    "recover-negative-weight": ("recover --teacher toy --student {t}/imgs --out {t}/run --task -1",
        "loss weights must be non-negative"),
    "distill-w-min-above-w-max": ("distill --teacher toy --out {t}/run --w-min 9 --w-max 2", "--w-min <= --w-max"),
    "distill-ema-2": ("distill --teacher toy --out {t}/run --ema 2.0", "--ema must be in [0, 1)"),
    "distill-ema-1": ("distill --teacher toy --out {t}/run --ema 1", "--ema must be in [0, 1)"),
    "distill-steps-0": ("distill --teacher toy --out {t}/run --steps 0", "--steps must be at least 1"),
    "distill-solver-steps-0": ("distill --teacher toy --out {t}/run --solver-steps 0", "--solver-steps in 1..1000"),
    "prune-calib-samples-0": ("prune --model toy --ratio 0.3 --calib-samples 0 --out {t}/pruned",
        "--calib-samples must be at least 2"),
    "prune-calib-steps-0": ("prune --model toy --ratio 0.3 --calib-steps 0 --out {t}/pruned", "--calib-steps"),
    "prune-ratio-1.5": ("prune --model toy --ratio 1.5 --out {t}/pruned", "--ratio must be strictly between 0 and 1"),
    "prune-unknown-model": ("prune --model sd99 --ratio 0.3 --out {t}/pruned", "unknown model 'sd99'"),
    "eval-samples-1": ("eval --model toy --samples 1", "--samples"),
    "eval-seeds-repeat": ("eval --model toy --seeds 0,1,0", "repeats a value"),
    "eval-seeds-not-ints": ("eval --model toy --seeds a,b", "not a comma-separated list of integers"),
    "sample-steps-0": ("sample --model toy --steps 0 --out {t}/s.png", "'--steps': 0 is not in the range x>=1"),
    "sample-class-11": ("sample --model toy --class 11 --out {t}/s.png", "'--class': 11 is not in the range 0<=x<=9"),
    "bench-runs-0": ("bench --backend torch-cpu --init random --runs 0 toy", "'--runs': 0 is not in the range x>=1"),
    "bench-threads-0": ("bench --backend torch-cpu --init random --threads 0 toy",
        "'--threads': 0 is not in the range x>=1"),
    "export-opset-5": ("export toy --format onnx --opset 5 --out {t}/onnx", "--opset must be >= 18"),
    "export-height-0": ("export toy --format onnx --height 0 --out {t}/onnx", "'--height': 0 is not in the range x>=1"),
    # --resume with nothing to resume
    "recover-resume-nothing": ("recover --teacher toy --student {t}/imgs --out {t}/run --resume", "nothing to resume"),
    "distill-resume-nothing": ("distill --teacher toy --out {t}/run --resume", "nothing to resume"),
    "sr-train-resume-nothing": ("sr train --scale 2 --data {t}/imgs --steps 5 --out {t}/run --resume",
        "nothing to resume"),
    # nothing replaced that the user did not allow
    "sample-existing-out": ("sample --model toy --out {t}/img.png", "already exists (pass --overwrite"),
    "sample-unknown-extension": ("sample --model toy --out {t}/s.gif", "unknown image extension '.gif'"),
    "eval-grid-beside-json-exists": ("eval --model toy --json {t}/img.json",
        "img.png already exists (pass --overwrite"),
    "eval-json-exists": ("eval --model toy --json {t}/schema.json", "schema.json already exists (pass --overwrite"),
    "sr-upscale-folder-into-png-name": ("sr upscale --model span-x2 {t}/imgs {t}/out.png", "OUT must be a folder too"),
    "sr-upscale-folder-into-file": ("sr upscale --model span-x2 {t}/imgs {t}/file.txt", "is a file; give a folder"),
    "sr-export-official-bad-suffix": ("sr export-official --model span-x2 {t}/x.onnx",
        "OUT must end in .pth or .safetensors"),
    "sr-upscale-existing-out": ("sr upscale --model span-x2 {t}/img.png {t}/img.png", "already exists"),
    "export-existing-out": ("export toy --format onnx --out {t}/imgs", "already exists (pass --overwrite"),
    "prune-existing-out": ("prune --model toy --ratio 0.3 --out {t}/imgs", "already exists (pass --overwrite"),
    # compress quantize
    "quantize-unknown-mode": ("quantize toy --format onnx --mode w4 --out {t}/q", "'--mode': 'w4' is not one of"),
    "quantize-mode-of-another-format": ("quantize toy --format onnx --mode hybrid --out {t}/q",
        "unknown mode 'hybrid' for --format onnx"),
    "quantize-empty-calibration-folder": ("quantize span-x4 --format onnx --data {t}/empty --out {t}/q",
        "holds no images"),
    "quantize-missing-calibration-folder": ("quantize span-x4 --format onnx --data {t}/nowhere --out {t}/q",
        "calibration folder not found"),
    "quantize-samples-0": ("quantize toy --format onnx --samples 0 --out {t}/q", "--samples must be at least 1"),
    "quantize-keep-sensitive-negative": ("quantize toy --format onnx --keep-sensitive -1 --out {t}/q",
        "--keep-sensitive must be 0 or more"),
    "quantize-keep-sensitive-too-many": ("quantize toy --format onnx --keep-sensitive 100000 --out {t}/q",
        "more than the"),
    "quantize-coreml-w8a8-off-mac": ("quantize toy --format coreml --mode w8a8 --out {t}/q", "only on macOS"),
    "quantize-task-seeds-repeat": ("quantize toy --format onnx --task-seeds 1,1 --out {t}/q", "repeats a value"),
    "quantize-existing-out": ("quantize toy --format onnx --out {t}/imgs", "already exists (pass --overwrite"),
    "quantize-unknown-model": ("quantize sd99 --format onnx --out {t}/q", "unknown model 'sd99'"),
    # compress chain: a malformed recipe names the file, the stage and the key
    "chain-unknown-stage": ("chain {t}/recipes/unknown-stage.toml --out {t}/run",
        "unknown-stage.toml: [finetune]: unknown stage"),
    "chain-unknown-option": ("chain {t}/recipes/unknown-option.toml --out {t}/run",
        "unknown-option.toml: [recover] stepz: unknown option"),
    "chain-unknown-table-option": ("chain {t}/recipes/unknown-table-option.toml --out {t}/run",
        "unknown-table-option.toml: [prune.score] sample: unknown option"),
    "chain-type-error": ("chain {t}/recipes/type-error.toml --out {t}/run",
        "type-error.toml: [prune] ratio: expected a number, got 'a third'"),
    "chain-list-type-error": ("chain {t}/recipes/list-type-error.toml --out {t}/run",
        "list-type-error.toml: [eval] seeds: expected a list of integers, got [0, 'one']"),
    "chain-value-error": ("chain {t}/recipes/value-error.toml --out {t}/run",
        "value-error.toml: [prune] --ratio must be strictly between 0 and 1"),
    "chain-not-toml": ("chain {t}/file.txt --out {t}/run", "file.txt: not valid TOML"),
    "chain-missing-recipe": ("chain {t}/nowhere.toml --out {t}/run", "recipe not found"),
    "chain-no-model": ("chain {t}/recipes/no-model.toml --out {t}/run", "no-model.toml: model: missing"),
    "chain-unknown-model": ("chain {t}/recipes/unknown-model.toml --out {t}/run", "unknown model 'sd99'"),
    "chain-recover-without-prune": ("chain {t}/recipes/recover-alone.toml --out {t}/run",
        "recover-alone.toml: [recover] needs a [prune] stage"),
    "chain-stage-of-another-family": ("chain {t}/recipes/span-prune.toml --out {t}/run",
        "span-prune.toml: [prune]: a chain cannot prune a span-family model"),
    "chain-unknown-backend": ("chain {t}/recipes/unknown-backend.toml --out {t}/run", "unknown backend"),
    "chain-out-not-a-chain-folder": ("chain {t}/recipes/valid.toml --out {t}/imgs", "is not a chain folder"),
}


# Refused by checks that need a parser or a model loader (ONNX, OpenVINO, a SPAN config, an image); every
# other case is refused before torch is imported, which is what makes it answer in a fraction of a second.
NEEDS_TORCH = {"bench-baseline-png", "bench-baseline-wrong-schema", "bench-text-onnx", "bench-truncated-onnx",
               "npu-check-text-onnx", "npu-check-truncated-onnx", "bench-garbage-openvino-xml",
               "npu-check-garbage-openvino-xml", "sr-corrupt-config", "sr-upscale-not-an-image", "sr-info-scale-5",
               "quantize-keep-sensitive-too-many"}


def _make_fixtures(t: Path) -> None:
    (t / "file.txt").write_text("a plain file\n")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))  # fits SPAN's training crop
    image.save(t / "img.png")
    image.save(t / "img.json.png")  # not in a case's way: the grid of img.json is img.png
    (t / "imgs").mkdir()
    (t / "empty").mkdir()
    image.save(t / "imgs" / "a.png")
    (t / "schema.json").write_text('{"not": "a baseline"}\n')
    (t / "garbage.xml").write_text("not xml at all\n")
    (t / "text.onnx").write_text("this is not a protobuf\n")
    (t / "truncated.onnx").write_bytes(_tiny_onnx_bytes()[:40])
    (t / "span-bad").mkdir()
    (t / "span-bad" / "config.json").write_text("{not json")
    (t / "recipes").mkdir()
    for name, text in RECIPES.items():
        (t / "recipes" / f"{name}.toml").write_text(text)


RECIPES = {
    "valid": 'model = "toy"\n[eval]\n',
    "unknown-stage": 'model = "toy"\n[finetune]\nsteps = 3\n',
    "unknown-option": 'model = "toy"\n[prune]\nratio = 0.3\n[recover]\nstepz = 3\n',
    "unknown-table-option": 'model = "toy"\n[prune]\nratio = 0.3\n[prune.score]\nsample = 4\n',
    "type-error": 'model = "toy"\n[prune]\nratio = "a third"\n',
    "list-type-error": 'model = "toy"\n[eval]\nseeds = [0, "one"]\n',
    "value-error": 'model = "toy"\n[prune]\nratio = 1.5\n',
    "no-model": '[eval]\nsamples = 10\n',
    "unknown-model": 'model = "sd99"\n[eval]\n',
    "recover-alone": 'model = "toy"\n[recover]\nsteps = 3\n',
    "span-prune": 'model = "span-x4"\n[prune]\nratio = 0.3\n',
    "unknown-backend": 'model = "toy"\n[bench]\nbackend = ["ov-npu2"]\n',
}


def _tiny_onnx_bytes() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in sorted(root.rglob("*"))}


class _Overran(Exception):
    pass


def _alarm(signum, frame):
    raise _Overran("the command started work instead of refusing the input")


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_one_error_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    _make_fixtures(tmp_path)
    arguments, fragment = CASES[case]
    argv = arguments.format(t=tmp_path).split()
    before = _snapshot(tmp_path)
    monkeypatch.setattr(sys, "argv", ["compress", *argv])
    monkeypatch.chdir(tmp_path)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        with pytest.raises(SystemExit) as exit_info:
            run()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err + out
    assert _snapshot(tmp_path) == before
    assert not os.path.exists("/proc/compress-test")


_WITHOUT_TORCH = """
import json, sys
from compress.cli import run
for case, argv in json.loads(sys.stdin.read()):
    sys.argv = ["compress", *argv]
    try:
        run()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if code != 2 or "torch" in sys.modules:
        print(json.dumps({"case": case, "code": code, "torch": "torch" in sys.modules}))
        break
"""


def test_refusals_that_need_no_model_do_not_import_torch(tmp_path):
    """All of them in one fresh process: the first case that exits otherwise than 2 or imports torch is named."""
    _make_fixtures(tmp_path)
    cases = [(case, CASES[case][0].format(t=tmp_path).split()) for case in CASES if case not in NEEDS_TORCH]
    assert len(cases) >= 40
    before = _snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH], input=json.dumps(cases), capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
    assert _snapshot(tmp_path) == before
