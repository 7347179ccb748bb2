"""Statistics from known timings, the timing loop with a scripted backend, and the gate's pass/fail logic."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_bench_graphs import TINY_FLOPS, TinyTorch

from compress.bench import Backend, Target, gate, save_baseline, summarise
from compress.bench import runner as runner_module
from compress.bench.backends import Session
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


def test_gate_remeasures_a_regression_and_fails_only_if_it_reproduces(tmp_path):
    baseline = tmp_path / "baseline.json"
    save_baseline([result("a", "ort-cpu", 1.0)], baseline)
    burst = iter([1.02])  # the first measurement hit a burst of load; the next one is normal
    report = gate([result("a", "ort-cpu", 1.5)], baseline, 0.15,
                  remeasure=lambda r: result(r.target, r.backend, next(burst)), confirm=2)
    assert report.passed and report.rows[0].measurements == 2 and report.rows[0].ratio == pytest.approx(1.02)
    measured = []

    def still_slow(r):
        measured.append(r.target)
        return result(r.target, r.backend, 1.4)

    report = gate([result("a", "ort-cpu", 1.5)], baseline, 0.15, remeasure=still_slow, confirm=2)
    assert not report.passed and measured == ["a", "a"]
    assert report.rows[0].measurements == 3 and report.rows[0].ratio == pytest.approx(1.4)
    with pytest.raises(CompressError, match="--confirm"):
        gate([], baseline, confirm=-1)


def test_gate_reports_new_and_missing_entries_and_ignores_estimates(tmp_path):
    baseline = tmp_path / "baseline.json"
    save_baseline([result("a", "ort-cpu", 1.0), result("gone", "ort-cpu", 1.0)], baseline)
    estimate = dataclasses.replace(result("a", "estimate:a17-pro-ane", 9.0), estimate=True)
    report = gate([result("a", "ort-cpu", 1.0), result("new", "ort-cpu", 5.0), estimate], baseline)
    statuses = {(row.target, row.backend): row.status for row in report.rows}
    assert statuses == {("a", "ort-cpu"): "ok", ("new", "ort-cpu"): "new", ("gone", "ort-cpu"): "missing"}
    assert report.passed


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
