"""`compress eval` accepts what `compress prune` writes for the toy family, at both granularities."""

import pytest

from compress.evaluate import evaluate
from compress.prune import ScoreSettings, prune


@pytest.mark.parametrize("granularity,ratio", [("diffusers", 0.3), ("block", 0.2)])
def test_eval_runs_on_pruned_toy_folders(tmp_path, granularity, ratio):
    out = tmp_path / granularity
    report = prune("toy", out, ratio=ratio, granularity=granularity, budget="params",  # no MAC or latency search
                   score=ScoreSettings(samples=4, steps=2), progress=False)
    assert report.params_after < report.params_before
    result = evaluate(out, steps=2, samples=10, json_path=tmp_path / "eval.json", grid_path=tmp_path / "eval.png")
    assert result.samples == 10 and 0.0 <= result.class_accuracy <= 1.0 and result.fd > 0
    assert (tmp_path / "eval.json").is_file() and (tmp_path / "eval.png").is_file()
