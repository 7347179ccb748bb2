"""Latency-aware pruning: attention-inclusive MACs, the leaf cost model, latency tables and their cache,
selection under a latency budget, and the refusals (another UNet, latent size or backend; missing extras)."""

import json
import random
import sys

import pytest
import torch
from click.testing import CliRunner
from diffusers import UNet2DConditionModel
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from compress.cli import main
from compress.models.sd import SD14_UNET_CONFIG
from compress.models.units import enumerate_units, units_conflict
from compress.prune import LatencySettings, ScoreSettings, prune
from compress.prune.cost import REPLACING, LeafCosts, cost_without, measure
from compress.prune.latency import (
    LatencyModel,
    LatencyTable,
    build_table,
    cache_path,
    read_table,
    table_key,
    weights_released,
)
from compress.prune.rewrite import pruned_module
from helpers import make_tiny_unet, tiny_inputs

FAST = ScoreSettings(samples=4, steps=2)
FAST_CLI = ["--calib-samples", "4", "--calib-steps", "2", "--no-progress"]
ESTIMATE = LatencySettings(estimate="a17-pro-ane")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def random_subsets(units, count, seed=0):
    rng = random.Random(seed)
    for _ in range(count):
        chosen = []
        for unit in rng.sample(units, len(units)):
            if rng.random() < 0.5 and not any(units_conflict(unit, other) for other in chosen):
                chosen.append(unit)
        yield chosen


def test_mac_total_is_torch_flop_counter_on_a_real_forward(tiny_unet):
    """conv + linear + attention equals FlopCounterMode's total on a real CPU forward (not our meta trace).

    The forward runs attention through SDPA's math backend: FlopCounterMode has no formula for the fused CPU
    flash kernel, so a default CPU forward silently counts no attention at all."""
    counter = FlopCounterMode(display=False)
    sample, timestep, hidden = tiny_inputs(batch=1)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        tiny_unet(sample, timestep, hidden)
    cost = measure(make_tiny_unet().to("meta"), 16, 77)
    assert cost.attention_macs > 0
    assert cost.total_macs == counter.get_total_flops() // 2


def test_sd14_attention_matmuls_are_counted():
    """DESIGN.md section 10: 63.0 G attention MACs on top of 338.6 G conv + linear at a 64x64 latent."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(SD14_UNET_CONFIG)
    cost = measure(unet, 64, 77)
    assert abs(cost.macs / 338.6e9 - 1) < 0.005 and abs(cost.attention_macs / 63.0e9 - 1) < 0.005


@pytest.mark.parametrize("granularity", ["diffusers", "block"])
def test_leaf_costs_of_any_removal_set_equal_a_trace_of_it(tiny_unet, granularity):
    """One trace per replacing unit is exact: params and MACs of random removal sets (stage removals, shortcuts and
    bypasses mixed) match a whole trace of each set, and so does every single unit's cost."""
    units = enumerate_units(tiny_unet, granularity)
    costs = LeafCosts(tiny_unet, units, 16, 77)
    subsets = list(random_subsets(units, 16))
    assert any(u.removal == "drop-stage" for s in subsets for u in s)
    assert granularity == "diffusers" or any(u.removal == "replace-by-shortcut" for s in subsets for u in s)
    for subset in [*subsets, *([u] for u in units if u.removal in REPLACING)]:
        assert costs.cost(subset) == cost_without(tiny_unet, subset, 16, 77), [u.name for u in subset]
        assert costs.total_macs(subset) == costs.cost(subset).total_macs


def test_an_estimate_table_predicts_whole_models_exactly(tiny_unet):
    """On the roofline profile the model is exact by construction (a sum over ops), so the calibrated line
    must reproduce the whole-UNet estimate of removal sets it was not calibrated on."""
    units = enumerate_units(tiny_unet, "diffusers")
    costs = LeafCosts(tiny_unet, units, 16, 77)
    key = table_key(tiny_unet, 16, 1, 77, None, "a17-pro-ane", 1)
    table = build_table(tiny_unet, units, "diffusers", costs, key, 77, progress=False)
    assert table.estimate and "ESTIMATE" in table.label and table.complete
    model = LatencyModel(table, costs)
    assert model.predict_ms([]) == pytest.approx(table.whole_ms)
    calibration = [u for u in units if u.name in table.calibration["removed"]]
    assert model.predict_ms(calibration) == pytest.approx(table.calibration["whole_ms"])
    assert table.scale == pytest.approx(1.0, abs=0.1)
    assert cache_path(key).is_file() and read_table(cache_path(key)).to_dict() == table.to_dict()


def test_latency_budget_reaches_the_ratio_and_differs_from_params(tiny_unet_dir, tmp_path):
    latency = prune(tiny_unet_dir, tmp_path / "lat", ratio=0.3, score=FAST, latency=ESTIMATE, progress=False)
    params = prune(tiny_unet_dir, tmp_path / "par", ratio=0.3, budget="params", score=FAST, latency=ESTIMATE,
                   progress=False)
    assert latency.latency_saving_predicted >= 0.3
    assert params.params_removed_share >= 0.3
    assert latency.summary.startswith("budget: latency; latency ESTIMATE")
    assert (tmp_path / "lat" / "prune_report.md").read_text().splitlines()[2].startswith("**budget: latency")
    assert set(latency.unit_latency_ms) == {u.name for u in enumerate_units(make_tiny_unet(), "diffusers")}
    assert (tmp_path / "lat" / "latency_table.json").is_file()


@pytest.fixture(scope="module")
def estimated(tmp_path_factory):
    """One prune on the A17 roofline profile: its folder and report."""
    root = tmp_path_factory.mktemp("estimated")
    make_tiny_unet().save_pretrained(root / "tiny" / "unet")
    report = prune(root / "tiny", root / "a", ratio=0.3, score=FAST, latency=ESTIMATE, progress=False)
    return root, report


def test_warm_table_same_plan_and_reuse_from_file(estimated, tmp_path):
    root, first = estimated
    again = prune(root / "tiny", tmp_path / "b", ratio=0.3, score=FAST, latency=ESTIMATE, progress=False)
    table = root / "a" / "latency_table.json"
    reused = prune(root / "tiny", tmp_path / "c", ratio=0.3, score=FAST, latency=LatencySettings(table=str(table)),
                   progress=False)
    assert first.removed == again.removed == reused.removed
    assert reused.latency_table == str(table) and reused.backend == "estimate:a17-pro-ane"


@pytest.mark.parametrize("changes,message", [
    ({"unet_config": "0123456789abcdef"}, "another UNet config"),
    ({"latent": 32}, "another latent"),
    ({"batch": 2}, "another batch"),
])
def test_a_table_for_another_unet_size_or_batch_is_refused(estimated, tmp_path, changes, message):
    root, _ = estimated
    data = json.loads((root / "a" / "latency_table.json").read_text())
    data["key"].update(changes)
    table = tmp_path / "table.json"
    table.write_text(json.dumps(data))
    result = run("prune", "--model", root / "tiny", "--ratio", "0.3", "--latency-table", table, "--out",
                 tmp_path / "b", *FAST_CLI)
    assert result.exit_code == 2
    assert result.output.startswith("error:") and message in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_a_table_of_another_backend_than_asked_is_refused(estimated, tmp_path):
    root, _ = estimated
    result = run("prune", "--model", root / "tiny", "--ratio", "0.3", "--latency-table",
                 root / "a" / "latency_table.json", "--backend", "torch-cpu", "--out", tmp_path / "b", *FAST_CLI)
    assert result.exit_code == 2 and "measured on estimate:a17-pro-ane, not torch-cpu" in result.output


def test_unknown_backend_and_missing_extra_are_one_error_line(tiny_unet_dir, tmp_path, monkeypatch):
    result = run("prune", "--model", tiny_unet_dir, "--ratio", "0.3", "--backend", "tpu-v9", "--out", tmp_path / "x")
    assert result.exit_code == 2 and result.output.startswith("error: unknown backend 'tpu-v9'")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the [openvino] extra were not installed
    result = run("prune", "--model", tiny_unet_dir, "--ratio", "0.3", "--backend", "ov-cpu", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "pip install 'compress[openvino]'" in result.output
    assert len(result.output.splitlines()) == 1 and not (tmp_path / "x").exists()
    result = run("prune", "--model", tiny_unet_dir, "--ratio", "0.3", "--estimate", "a17-pro-ane", "--verify-latency",
                 "--out", tmp_path / "x")
    assert result.exit_code == 2 and "cannot be measured" in result.output


def test_verify_latency_times_both_unets_on_the_backend(tiny_unet_dir, tmp_path):
    """A measured table (ort-cpu) and --verify-latency: the report holds measured vs predicted and the host."""
    result = run("prune", "--model", tiny_unet_dir, "--ratio", "0.3", "--backend", "ort-cpu", "--threads", "1",
                 "--verify-latency", "--out", tmp_path / "v", *FAST_CLI)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("budget: latency; latency measured on ort-cpu (onnxruntime")
    report = json.loads((tmp_path / "v" / "prune_report.json").read_text())
    assert report["backend"] == "ort-cpu" and report["threads"] == 1 and report["host"]
    for key in ("latency_before_ms", "latency_after_ms", "latency_predicted_after_ms", "latency_prediction_error"):
        assert isinstance(report[key], float), key
    # The tiny UNet's time is mostly per-call overhead, so only the arithmetic is checked here; the speed-up on
    # SD is measured by benchmarks/bench_prune_latency.py.
    assert report["latency_saving_measured"] == pytest.approx(1 - report["latency_after_ms"] /
                                                              report["latency_before_ms"], abs=1e-3)
    table = LatencyTable.from_dict(json.loads((tmp_path / "v" / "latency_table.json").read_text()))
    assert table.key["threads"] == 1 and table.key["runtime"].startswith("onnxruntime")
    assert len(table.leaves) == len(LeafCosts(make_tiny_unet(), enumerate_units(make_tiny_unet(), "diffusers"),
                                              16, 77).all_calls())


def test_released_weights_of_a_unet_and_its_pruned_view_come_back_bit_exact(tiny_unet, tmp_path):
    units = [u for u in enumerate_units(tiny_unet, "diffusers") if u.name == "mid"]
    pruned = pruned_module(tiny_unet, units, "diffusers")
    before = {k: v.clone() for k, v in tiny_unet.state_dict().items()}
    tiny_unet.conv_in.weight.detach().numpy()  # as a runtime's converter does: the storage can no longer resize
    with weights_released((tiny_unet, pruned), tmp_path):
        assert tiny_unet.conv_in.weight.numel() == 0 and pruned.conv_in.weight.numel() == 0
    assert not list(tmp_path.iterdir())
    assert all(torch.equal(before[k], v) for k, v in tiny_unet.state_dict().items())
    assert torch.equal(pruned.conv_in.weight, before["conv_in.weight"])
    assert pruned.conv_in.weight.data_ptr() == tiny_unet.conv_in.weight.data_ptr()  # shared again
