"""`compress bench` and `compress npu-check` from the command line: backends, errors, outputs, the CI gate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_bench_graphs import TINY_FLOPS, tiny_onnx, tiny_openvino

from compress.bench import BACKENDS, list_backends
from compress.bench.report import figure
from compress.cli import main
from compress.types import BenchResult

FAST = ["--warmup", "50", "--runs", "2000", "--threads", "1"]  # ~30 ms of timed calls: bursts of load average out


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_error(result, code=2):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    return tiny_onnx(folder / "tiny.onnx")


def unavailable_onnx_backend():
    reasons = dict(list_backends())
    name = next((n for n in BACKENDS if n.startswith("ort-") and reasons[n]), None)
    if name is None:
        pytest.skip("every ONNX Runtime provider is available here")
    return name


def test_list_backends_names_every_backend_with_availability_or_reason():
    result = run("bench", "--list-backends")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.strip().splitlines()}
    assert set(lines) == set(BACKENDS)
    assert lines["ort-cpu"].split()[1] == "available" and lines["torch-cpu"].split()[1] == "available"
    for name, reason in list_backends():
        if reason:
            assert f"not available: {reason}" in lines[name] and reason.strip()
    if not any(line.split()[1] == "available" for n, line in lines.items() if n.startswith("coreml-")):
        assert "macOS" in lines["coreml-ane"]


def test_bad_input_is_one_error_line_and_exit_2(tiny, tmp_path):
    assert "not found" in assert_one_error(run("bench", tmp_path / "missing.onnx", "--backend", "ort-cpu"))
    assert "unknown backend" in assert_one_error(run("bench", tiny, "--backend", "ort-gpu"))
    missing = unavailable_onnx_backend()
    assert "not available" in assert_one_error(run("bench", tiny, "--backend", missing))
    assert "unknown device profile" in assert_one_error(run("bench", tiny, "--estimate", "nokia-3310"))
    assert "not found" in assert_one_error(run("bench", tiny, "--baseline", tmp_path / "none.json"))
    assert_one_error(run("bench", tiny, "--backend", f"ort-cpu,{missing}", "--strict", *FAST))
    assert "not found" in assert_one_error(run("npu-check", tmp_path / "missing.onnx", "--target", "qnn"))


def test_unavailable_backend_in_a_list_is_skipped_with_a_warning(tiny, tmp_path):
    missing = unavailable_onnx_backend()
    out = tmp_path / "r.json"
    result = run("bench", tiny, "--backend", f"ort-cpu,{missing}", *FAST, "--json", out)
    assert result.exit_code == 0, result.output
    assert f"warning: skipping backend {missing}: not available" in result.output
    results = json.loads(out.read_text())["results"]
    assert [r["backend"] for r in results] == ["ort-cpu"]
    first = BenchResult.from_dict(results[0])
    assert first.runs == 2000 and len(first.times_ms) == 2000 and first.flops == TINY_FLOPS
    assert first.min_ms <= first.p50_ms <= first.p90_ms <= first.p99_ms <= first.max_ms
    assert first.efficiency > 0 and first.ratio > 0 and first.load_ms > 0 and first.peak_memory_mb > 0


def test_each_artifact_runs_on_the_backends_of_its_format_and_openvino_reads_onnx_alone(tiny, tmp_path):
    xml = tiny_openvino(tmp_path / "ov" / "tiny.xml")
    out = tmp_path / "r.json"
    few = ["--warmup", "2", "--runs", "5", "--threads", "1", "--json", out]
    result = run("bench", tiny, xml, "--backend", "ort-cpu,ov-cpu", *few)
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())["results"]
    assert [(r["format"], r["backend"]) for r in results] == [("onnx", "ort-cpu"), ("openvino", "ov-cpu")]
    compiled = results[1]["detail"]["compiled"]
    assert compiled["PERFORMANCE_HINT"] == "LATENCY" and compiled["INFERENCE_NUM_THREADS"] == "1"
    alone = run("bench", tiny, "--backend", "ov-cpu", *few)
    assert alone.exit_code == 0, alone.output
    [onnx_on_ov] = json.loads(out.read_text())["results"]
    assert (onnx_on_ov["format"], onnx_on_ov["backend"]) == ("onnx", "ov-cpu")


def test_estimates_are_labelled_in_json_markdown_and_plot(tiny, tmp_path):
    paths = {suffix: tmp_path / f"r.{suffix}" for suffix in ("json", "md", "png")}
    result = run("bench", tiny, "--estimate", "a17-pro-ane", "--estimate", "core-ultra-npu",
                 "--json", paths["json"], "--md", paths["md"], "--plot", paths["png"])
    assert result.exit_code == 0, result.output
    results = json.loads(paths["json"].read_text())["results"]
    assert len(results) == 2  # no --backend: nothing is timed
    for entry in results:
        assert entry["estimate"] is True and "ESTIMATE" in entry["label"] and entry["estimate_ms"] > 0
        assert entry["p50_ms"] is None and "lower bound" not in entry["label"]
        assert entry["runs"] == 0 and entry["times_ms"] == []
    markdown = paths["md"].read_text()
    assert markdown.count("(ESTIMATE)") >= 4 and "roofline estimate" in markdown and "lower bound" not in markdown
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    fig = figure([BenchResult.from_dict(entry) for entry in results])
    ax = fig.axes[0]
    texts = [t.get_text() for t in [*ax.texts, *ax.get_yticklabels(), *ax.get_legend().texts]] + [ax.get_title()]
    assert sum("ESTIMATE" in text for text in texts) >= 6


COMPARE = ["--rounds", "4", "--pairs", "6", "--calls", "200", "--threads", "1"]  # a call takes ~20 us


def test_compare_passes_the_same_build_twice_and_fails_a_genuinely_slower_one(tmp_path):
    build, again = tiny_onnx(tmp_path / "a" / "tiny.onnx"), tiny_onnx(tmp_path / "b" / "tiny.onnx")
    slower = tiny_onnx(tmp_path / "slow" / "tiny.onnx", batch=16)  # sixteen images per call: real extra work
    for _ in range(2):
        same = run("compare", again, "--against", build, "--backend", "ort-cpu", *COMPARE,
                   "--json", tmp_path / "same.json")
        assert same.exit_code == 0, same.output
        assert "gate PASS" in same.output
    [entry] = json.loads((tmp_path / "same.json").read_text())["comparisons"]
    assert entry["status"] == "ok" and entry["host"]["backend"] == "ort-cpu" and len(entry["pair_ratios"]) == 4
    failed = run("compare", slower, "--against", build, "--backend", "ort-cpu", *COMPARE)
    assert failed.exit_code == 1, failed.output
    assert "| regression |" in failed.output and "gate FAIL" in failed.output


def test_compare_bad_input_is_one_error_line(tiny, tmp_path):
    assert "--against" in assert_one_error(run("compare", tiny, "--backend", "ort-cpu"))
    assert "same format" in assert_one_error(run("compare", tiny, "--against", tiny_openvino(tmp_path / "t.xml")))
    result = run("compare", tiny, "--against", tiny, "--rounds", "1")  # click's range check, before any import
    assert result.exit_code == 2 and "'--rounds': 1 is not in the range x>=2" in result.output


def test_stored_gate_fails_an_unmeasured_entry_and_refuses_another_host_class(tiny, tmp_path):
    other = tiny_onnx(tmp_path / "other" / "tiny2.onnx")
    baseline = tmp_path / "baseline.json"
    saved = run("bench", tiny, other, "--backend", "ort-cpu", *FAST, "--save-baseline", baseline)
    assert saved.exit_code == 0, saved.output
    missing = run("bench", tiny, "--backend", "ort-cpu", *FAST, "--baseline", baseline)
    assert missing.exit_code == 1, missing.output
    assert "| tiny2.onnx | ort-cpu |" in missing.output and "missing" in missing.output
    data = json.loads(baseline.read_text())
    for entry in data["entries"]:
        entry["host"]["cpu"] = "another CPU"
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(data))
    assert "another host class" in assert_one_error(
        run("bench", tiny, other, "--backend", "ort-cpu", *FAST, "--baseline", moved))


def test_npu_check_exit_code_says_whether_something_blocks(tmp_path):
    blocked = run("npu-check", tiny_onnx(tmp_path / "dyn.onnx", batch="batch"), "--target", "qnn",
                  "--json", tmp_path / "f.json")
    assert blocked.exit_code == 1 and "[blocker] static shapes" in blocked.output
    assert json.loads((tmp_path / "f.json").read_text())["target"] == "qnn"
    clean = run("npu-check", tiny_onnx(tmp_path / "static.onnx"), "--target", "intel-npu")
    assert clean.exit_code == 0 and "nothing found" in clean.output
