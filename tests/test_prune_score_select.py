"""Importance scores (LD-Pruner) and the selection rule."""

import contextlib

import pytest
import torch

from compress.errors import CompressError
from compress.models.loading import DiffusionModel
from compress.prune import ScoreSettings, enumerate_units, find_units, score, score_units, select_units
from compress.prune.score import combine_shifts
from compress.types import Unit
from helpers import make_tiny_unet

SETTINGS = ScoreSettings(samples=4, steps=2, resolution=16, guidance=2.0, seed=3)


def tiny_model() -> DiffusionModel:
    return DiffusionModel(unet=make_tiny_unet(), family="sd", name="tiny")


def test_a_unit_that_does_nothing_scores_zero_and_real_units_do_not():
    model = tiny_model()
    attention = model.unet.down_blocks[0].attentions[1]
    with torch.no_grad():  # a transformer block whose output projection is zero adds nothing to the residual
        attention.proj_out.weight.zero_()
        attention.proj_out.bias.zero_()
    units = find_units(model.unet, ["down.0.attn.1", "down.0.attn.0", "mid"], "block")
    scores = {s.unit: s for s in score_units(model, units, SETTINGS.resolved(model), progress=False)}
    assert scores["down.0.attn.1"].score == pytest.approx(0.0, abs=1e-6)
    assert scores["down.0.attn.0"].score > 1e-3 and scores["mid"].score > 1e-3


@pytest.mark.parametrize("mode", ["step", "trajectory"])
def test_scores_are_deterministic_for_a_seed(mode):
    settings = ScoreSettings(mode=mode, samples=4, steps=2, resolution=16, guidance=2.0, seed=3)
    runs = []
    for _ in range(2):
        model = tiny_model()
        units = enumerate_units(model.unet, "diffusers")
        runs.append([s.score for s in score_units(model, units, settings.resolved(model), progress=False)])
    assert runs[0] == pytest.approx(runs[1], abs=1e-6)
    model = tiny_model()
    other = ScoreSettings(mode=mode, samples=4, steps=2, resolution=16, guidance=2.0, seed=4).resolved(model)
    assert [s.score for s in score_units(model, enumerate_units(model.unet, "diffusers"), other,
                                         progress=False)] != pytest.approx(runs[0], abs=1e-6)


@pytest.mark.parametrize("granularity", ["diffusers", "block"])
def test_replayed_leading_blocks_give_the_scores_a_full_forward_gives(granularity, monkeypatch):
    model = tiny_model()
    units = enumerate_units(model.unet, granularity)
    settings = SETTINGS.resolved(model)
    calls = []  # real computations inside the first down block
    model.unet.down_blocks[0].resnets[0].register_forward_hook(lambda *_: calls.append(1))
    replayed = {s.unit: s.score for s in score_units(model, units, settings, progress=False)}
    replayed_calls = len(calls)
    monkeypatch.setattr(score._PrefixCache, "replaying", lambda self, unit: contextlib.nullcontext())
    computed = {s.unit: s.score for s in score_units(model, units, settings, progress=False)}
    assert replayed == pytest.approx(computed, rel=1e-6, abs=1e-9)
    assert 0 < replayed_calls < len(calls) - replayed_calls  # units after the first block did not recompute it
    up_unit = next(u for u in units if all(p.startswith("up_blocks") for p in u.modules))
    assert score._PrefixCache(model.unet).unchanged(up_unit) == len(model.unet.down_blocks) + 1


def test_combine_modes():
    assert combine_shifts(2.0, 3.0, "sum") == 5.0
    assert combine_shifts(2.0, 3.0, "mean") == 2.0
    assert combine_shifts(2.0, 3.0, "std") == 3.0
    assert combine_shifts(2.0, 3.0, "product") == 6.0


def test_bad_score_settings_are_user_errors():
    model = tiny_model()
    with pytest.raises(CompressError, match="divisible"):
        ScoreSettings(resolution=12).resolved(model)
    with pytest.raises(CompressError, match="at least 2"):
        ScoreSettings(samples=1).resolved(model)


def _unit(name, params, modules):
    return Unit(name, "layer", "drop-layer", modules, params=params)


UNITS = [_unit("a", 30, ("x.0",)), _unit("b", 25, ("x.1",)), _unit("c", 10, ("x.2",)), _unit("d", 40, ("x",))]


def share(units):
    return sum(u.params for u in units) / 100


def test_exhaustive_selection_picks_lowest_score_within_the_window():
    scores = {"a": 5.0, "b": 1.0, "c": 1.0, "d": 0.1}
    # d conflicts with a, b and c (it contains them). Sets reaching 0.3 with share < 0.4: {a}, {b,c}, ...
    chosen = select_units(UNITS, scores, 0.3, share, max_overshoot=0.1)
    assert [u.name for u in chosen] == ["b", "c"]
    # d alone (0.40) falls outside [0.3, 0.4); with a wider window it wins on score
    assert [u.name for u in select_units(UNITS, scores, 0.3, share, max_overshoot=0.2)] == ["d"]


def test_margin_prefers_sets_that_reach_the_aim_and_falls_back_to_the_ratio():
    scores = {"a": 5.0, "b": 1.0, "c": 1.0, "d": 0.1}
    # aim 0.3 x 1.2 = 0.36: {b, c} (0.35) no longer qualifies; d (0.40) reaches it with the lowest score
    assert [u.name for u in select_units(UNITS, scores, 0.3, share, max_overshoot=0.1, margin=0.2)] == ["d"]
    # aim 0.65 x 1.2 = 0.78 is out of reach (at most 0.65): the ratio alone decides
    assert [u.name for u in select_units(UNITS, scores, 0.65, share, margin=0.2)] == ["a", "b", "c"]
    units = [_unit(f"u{i}", 5, (f"m.{i}",)) for i in range(20)]
    greedy = select_units(units, {u.name: 1.0 for u in units}, 0.3, share, margin=0.2)
    assert share(greedy) >= 0.36


def test_unreachable_ratio_is_a_clear_error():
    with pytest.raises(CompressError, match="cannot be reached"):
        select_units(UNITS, dict.fromkeys("abcd", 1.0), 0.9, share)


def test_greedy_selection_respects_conflicts_and_the_ratio():
    units = [_unit(f"u{i}", 5, (f"m.{i}",)) for i in range(20)] + [_unit("big", 60, ("m",))]
    scores = {u.name: float(i) for i, u in enumerate(units)}
    chosen = select_units(units, scores, 0.3, share)
    assert share(chosen) >= 0.3 and "big" not in [u.name for u in chosen]
    assert [u.name for u in chosen] == ["u0", "u1", "u2", "u3", "u4", "u5"]
