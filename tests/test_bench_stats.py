"""Statistics from known timings, the timing loop with a scripted backend, and the gate's pass/fail logic."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from test_bench_graphs import TINY_FLOPS, TinyTorch

from compress.bench import Backend, Target, gate, save_baseline, summarise
from compress.bench import runner as runner_module
from compress.bench.backends import Session
from compress.bench.compare import compare, paired_change
from compress.errors import CompressError
from compress.types import BenchResult


def test_summarise_computes_every_statistic_in_ms():
    stats = summarise([0.001 * v for v in (1, 2, 3, 4, 10)])
    assert stats["mean_ms"] == pytest.approx(4.0)
    assert stats["std_ms"] == pytest.approx(3.5355339, rel=1e-6)  # sample standard deviation
    assert (stats["min_ms"], stats["p50_ms"], stats["max_ms"]) == (1.0, 3.0, 10.0)
    assert stats["p90_ms"] == pytest.approx(4 + 0.6 * 6)  # linear interpolation between 4 and 10
    assert stats["p99_ms"] == pytest.approx(4 + 0.96 * 6)
    assert summarise([0.005])["std_ms"] == 0.0
    with pytest.raises(ValueError):
        summarise([])


class ScriptedSession(Session):
    def __init__(self, seconds):
        self.seconds = iter(seconds)
        self.detail = {"runtime": "scripted"}
        self.closed = False

    def timed_call(self) -> float:
        return next(self.seconds)

    def close(self) -> None:
        self.closed = True


class ConstantReference:
    def __init__(self, threads):
        pass

    def timings(self, calls):
        return [0.002] * calls


@dataclasses.dataclass(frozen=True)
class ScriptedBackend(Backend):
    session: ScriptedSession | None = None

    def unavailable(self):
        return None

    def load(self, target, threads):
        return self.session


def test_timing_loop_excludes_first_and_warmup_calls_and_derives_efficiency(monkeypatch):
    monkeypatch.setattr(runner_module, "peak_gemm_gflops", lambda threads: 100.0)
    monkeypatch.setattr(runner_module, "ReferenceWorkload", ConstantReference)
    session = ScriptedSession([0.5, 0.2, 0.2] + [0.010, 0.020, 0.030, 0.040])  # first, 2 warm-up, 4 timed
    backend = ScriptedBackend("scripted-cpu", "torch", "cpu", ("torch",), session=session)
    target = Target.from_module("tiny", TinyTorch(), {"x": torch.randn(1, 3, 16, 16)})
    result = runner_module.bench_one(target, backend, warmup=2, runs=4, threads=1)
    assert result.first_call_ms == 500.0 and result.times_ms == [10.0, 20.0, 30.0, 40.0]
    assert (result.p50_ms, result.min_ms, result.max_ms, result.mean_ms) == (25.0, 10.0, 40.0, 25.0)
    assert result.flops == TINY_FLOPS
    floor_ms = TINY_FLOPS / 100e9 * 1e3
    assert result.floor_ms == pytest.approx(floor_ms, rel=1e-3)
    assert result.efficiency == pytest.approx(floor_ms / 25.0, rel=1e-3)
    assert result.ratio == pytest.approx(25.0 / 2.0) and result.reference_ms == pytest.approx(2.0)
    assert session.closed and result.peak_memory_mb > 0 and not result.estimate


def result(target: str, backend: str, ratio: float) -> BenchResult:
    return BenchResult(target=target, path=target, format="onnx", backend=backend, device="cpu", threads=2,
                       p50_ms=ratio * 3.0, reference_ms=3.0, ratio=ratio)


def test_gate_passes_within_the_allowed_regression_and_fails_beyond_it(tmp_path):
    baseline = tmp_path / "baseline.json"
    save_baseline([result("a", "ort-cpu", 1.0), result("b", "ov-cpu", 2.0)], baseline)
    same = gate([result("a", "ort-cpu", 1.0), result("b", "ov-cpu", 2.0)], baseline, 0.15)
    assert same.passed and {row.status for row in same.rows} == {"ok"}
    within = gate([result("a", "ort-cpu", 1.14), result("b", "ov-cpu", 1.0)], baseline, 0.15)
    assert within.passed  # 14% slower is allowed; faster always passes
    slower = gate([result("a", "ort-cpu", 1.2), result("b", "ov-cpu", 2.0)], baseline, 0.15)
    assert not slower.passed
    row = next(r for r in slower.rows if r.target == "a")
    assert row.status == "regression" and row.change == pytest.approx(0.2)
    assert "FAIL" in slower.table() and "+20.0%" in slower.table()


def test_gate_remeasures_a_regression_and_judges_the_median_of_its_measurements(tmp_path):
    baseline = tmp_path / "baseline.json"
    save_baseline([result("a", "ort-cpu", 1.0)], baseline)
    burst = iter([1.02, 1.0])  # the first measurement hit a burst of load; the next ones are normal
    report = gate([result("a", "ort-cpu", 1.5)], baseline, 0.15,
                  remeasure=lambda r: result(r.target, r.backend, next(burst)), confirm=2)
    # the median of 1.5 and 1.02 (1.26) still regresses, so a third measurement decides: median 1.02
    assert report.passed and report.rows[0].measurements == 3 and report.rows[0].ratio == pytest.approx(1.02)
    measured = []

    def still_slow(r):
        measured.append(r.target)
        return result(r.target, r.backend, 1.4)

    report = gate([result("a", "ort-cpu", 1.5)], baseline, 0.15, remeasure=still_slow, confirm=2)
    assert not report.passed and measured == ["a", "a"]
    assert report.rows[0].measurements == 3 and report.rows[0].ratio == pytest.approx(1.4)
    with pytest.raises(CompressError, match="--confirm"):
        gate([], baseline, confirm=-1)


def test_gate_fails_an_unmeasured_baseline_entry_unless_allowed_and_ignores_estimates(tmp_path):
    baseline = tmp_path / "baseline.json"
    save_baseline([result("a", "ort-cpu", 1.0), result("gone", "ort-cpu", 1.0)], baseline)
    estimate = dataclasses.replace(result("a", "estimate:a17-pro-ane", 9.0), estimate=True)
    measured = [result("a", "ort-cpu", 1.0), result("new", "ort-cpu", 5.0), estimate]
    report = gate(measured, baseline)
    statuses = {(row.target, row.backend): row.status for row in report.rows}
    assert statuses == {("a", "ort-cpu"): "ok", ("new", "ort-cpu"): "new", ("gone", "ort-cpu"): "missing"}
    assert not report.passed and "gate FAIL" in report.table()
    assert gate(measured, baseline, allow_missing=True).passed


def test_gate_refuses_a_baseline_from_another_host_class_unless_allowed(tmp_path):
    baseline = tmp_path / "baseline.json"
    save_baseline([result("a", "ort-cpu", 1.0)], baseline)
    data = json.loads(baseline.read_text())
    assert data["entries"][0]["host"]["threads"] == 2 and "runtime" in data["entries"][0]["host"]
    other_isa = ["avx2", "a-flag-of-another-cpu"]  # never this host's list, whatever CPU runs the test
    for change in ({"cpu": "another CPU"}, {"isa": other_isa}, {"runtime": "onnxruntime 0.1"}):
        other = tmp_path / "other.json"
        data["entries"][0]["host"] = {**json.loads(baseline.read_text())["entries"][0]["host"], **change}
        other.write_text(json.dumps(data))
        with pytest.raises(CompressError, match="another host class"):
            gate([result("a", "ort-cpu", 1.0)], other)
        assert gate([result("a", "ort-cpu", 1.0)], other, allow_other_host=True).passed
    with pytest.raises(CompressError, match="another host class"):  # the thread count is part of the class
        gate([dataclasses.replace(result("a", "ort-cpu", 1.0), threads=1)], baseline)


def test_bad_baselines_are_one_line_errors(tmp_path):
    with pytest.raises(CompressError, match="not found"):
        gate([], tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"results": []}')
    with pytest.raises(CompressError, match="not a latency baseline"):
        gate([], tmp_path / "other.json")
    with pytest.raises(CompressError, match="no measured results"):
        save_baseline([], tmp_path / "empty.json")


def test_repeat_reports_the_round_with_the_median_ratio(monkeypatch):
    ratios = iter([3.0, 1.0, 2.0])  # round 1 hit a slow spell, round 2 a fast one
    monkeypatch.setattr(runner_module, "bench_one",
                        lambda target, backend, **_: result(target.name, backend.name, next(ratios)))
    monkeypatch.setattr(runner_module, "peak_gemm_gflops", lambda threads: 100.0)
    target = Target.from_module("tiny", TinyTorch(), {"x": torch.randn(1, 3, 16, 16)})
    [chosen] = runner_module.bench([target], ["torch-cpu"], warmup=0, runs=1, threads=1, repeat=3)
    assert chosen.ratio == 2.0 and chosen.detail["round_ratios"] == [3.0, 1.0, 2.0]
    with pytest.raises(CompressError, match="--repeat"):
        runner_module.bench([target], ["torch-cpu"], repeat=0)


class ConstantSession(Session):
    def __init__(self, seconds, log, name):
        self.seconds, self.log, self.name = seconds, log, name
        self.detail = {}

    def timed_call(self) -> float:
        self.log.append(self.name)
        return self.seconds


@dataclasses.dataclass(frozen=True)
class TwoBuildBackend(Backend):
    """Each target takes the seconds its name maps to; every call is logged in order."""

    seconds: dict | None = None
    log: list | None = None

    def unavailable(self):
        return None

    def load(self, target, threads):
        return ConstantSession(self.seconds[target.name], self.log, target.name)


def test_compare_interleaves_abba_and_flags_only_a_resolved_slowdown_beyond_the_limit():
    new, old = (Target(name, "onnx") for name in ("new", "old"))
    log = []
    backend = TwoBuildBackend("scripted-cpu", "ort", "cpu", ("onnx",), seconds={"new": 0.012, "old": 0.010}, log=log)
    slower = compare(new, old, backend, threads=1, rounds=2, pairs=2, calls=3, warmup=1, max_regression=0.15)
    assert slower.change == pytest.approx(0.2) and slower.change_low == pytest.approx(0.2)
    assert slower.status == "regression" and slower.pair_ratios == [[pytest.approx(1.2)] * 2] * 2
    # round 1 loads new first: warm-up + first call each, then ABBA blocks; round 2 starts with old
    assert log[:4] == ["new", "new", "old", "old"] and log[4:7] == ["new"] * 3 and log[7:13] == ["old"] * 6
    assert log[16:20] == ["old", "old", "new", "new"]
    within = compare(new, old, backend, threads=1, rounds=2, pairs=2, calls=3, warmup=1, max_regression=0.25)
    assert within.status == "ok"
    faster = compare(old, new, backend, threads=1, rounds=2, pairs=2, calls=3, warmup=1, max_regression=0.15)
    assert faster.status == "faster" and faster.to_dict()["status"] == "faster"
    with pytest.raises(CompressError, match="--rounds"):
        compare(new, old, backend, threads=1, rounds=1)


def test_paired_change_interval_covers_the_round_to_round_spread():
    change, low, high = paired_change([[1.30, 1.31], [0.95, 0.96], [1.30, 1.29], [0.94, 0.95]])
    assert low < 0 < high  # two rounds read +30%, two -5%: the interval cannot exclude no change
    change, low, high = paired_change([[1.30, 1.31], [1.28, 1.29], [1.30, 1.29]])
    assert 0.28 <= low <= change <= high <= 0.31
