"""Block-importance study on the trained toy model: does the LD-Pruner score predict damage?

For every unit of the toy UNet (single blocks, R+A pairs, the mid triplet, the innermost
stage, and the diffusers-granularity layers) this prints its LD-Pruner score and the `fd`
after removing it without retraining, over several sampling seeds, then the Spearman rank
correlation between score and mean fd increase with a bootstrap 95% interval (units resampled),
and the fd with the mid stage removed alone (BK-SDM found that nearly harmless on SD).
Writes benchmarks/results/block_importance.{json,md,png}.

Each fd increase is paired: the unit-removed model and the teacher are sampled from the same seeds, and the
increase is the mean over seeds of (fd without the unit - teacher fd), with its std. About 35 s per
(unit, seed) at the defaults on a 2-core Xeon, about twice that on a 2-core AVX2 EPYC (60 units x 3 seeds:
1h45 to 3h30): run it in parts with --cache (every finished evaluation is appended there with its seconds and
host, and skipped on the next run) and --max-minutes. The cache is committed, so a part on one machine resumes
on another; the JSON sums the evaluation seconds over all parts.

    python benchmarks/study_block_importance.py --cache benchmarks/cache/block_importance.jsonl --max-minutes 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from compress.bench.host import cpu_name
from compress.evaluate import DEFAULT_GUIDANCE, evaluate
from compress.evaluate.quality import mean_and_std
from compress.models.resolve import load_diffusion_model
from compress.models.surgery import removed_units
from compress.prune import ScoreSettings, enumerate_units, score_units, unit_costs

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "(teacher)"


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho: Pearson correlation of the ranks (ties get their average rank)."""

    def ranks(values: list[float]) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        order = values.argsort()
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=float)
        for v in np.unique(values):  # average ranks of ties
            r[values == v] = r[values == v].mean()
        return r

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def bootstrap_interval(x: list[float], y: list[float], resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of Spearman's rho over resamples of the units (pairs drawn with replacement)."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x), np.asarray(y)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            values.append(spearman(list(x[idx]), list(y[idx])))
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


class Cache:
    """Finished evaluations, one JSON line each, keyed by (unit, seed) under one set of settings."""

    def __init__(self, path: Path | None, settings: dict):
        self.path, self.settings, self.entries = path, settings, {}
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if entry["settings"] == settings:
                    self.entries[(entry["unit"], entry["seed"])] = entry["result"]

    def get(self, unit: str, seed: int) -> dict | None:
        return self.entries.get((unit, seed))

    def put(self, unit: str, seed: int, result: dict) -> None:
        self.entries[(unit, seed)] = result
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as file:
                file.write(json.dumps({"settings": self.settings, "unit": unit, "seed": seed, "result": result}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seeds", default="0,1,2", help="sampling seeds (comma-separated)")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE["toy"])
    parser.add_argument("--cache", type=Path, default=None, help="append finished evaluations here; resume from it")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this long")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for block_importance.{json,md,png}")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    model = load_diffusion_model("toy")
    unet = model.unet
    units = enumerate_units(unet, "block") + [u for u in enumerate_units(unet, "diffusers") if u.kind == "layer"]
    units = unit_costs(unet, units, unet.config.sample_size, model.conditioner.tokens)
    settings = ScoreSettings().resolved(model)
    scores = {s.unit: s for s in score_units(model, units, settings)}
    eval_settings = {"samples": args.samples, "steps": args.steps, "guidance": args.guidance, "sampler": "ddim"}
    cache = Cache(args.cache, eval_settings)
    todo = [(name, seed) for name in [BASE] + [u.name for u in units] for seed in seeds
            if cache.get(name, seed) is None]
    by_name = {u.name: u for u in units}
    host = cpu_name()
    for name, seed in tqdm(todo, desc="fd per (unit, seed)"):
        if args.max_minutes is not None and time.time() - started > 60 * args.max_minutes:
            print(f"stopped after {args.max_minutes} min; {len(cache.entries)} evaluations cached in {args.cache}")
            return
        with removed_units(unet, [by_name[name]] if name != BASE else []):
            result = evaluate(model, steps=args.steps, samples=args.samples, guidance=args.guidance, seeds=[seed])
        cache.put(name, seed, {"fd": result.fd, "kid": result.kid, "class_accuracy": result.class_accuracy,
                               "seconds": result.seconds, "host": host})
    base = {seed: cache.get(BASE, seed) for seed in seeds}
    rows = []
    for unit in units:
        runs = {seed: cache.get(unit.name, seed) for seed in seeds}
        increase, increase_std = mean_and_std([runs[seed]["fd"] - base[seed]["fd"] for seed in seeds])
        rows.append({"unit": unit.name, "kind": unit.kind, "removal": unit.removal, "params": unit.params,
                     "macs": unit.macs, "score": scores[unit.name].score,
                     "fd": float(np.mean([r["fd"] for r in runs.values()])),
                     "fd_increase": increase, "fd_increase_std": increase_std,
                     "class_accuracy": float(np.mean([r["class_accuracy"] for r in runs.values()])),
                     "per_seed": runs})
    x, y = [r["score"] for r in rows], [r["fd_increase"] for r in rows]
    rho = spearman(x, y)
    mid = next(r for r in rows if r["unit"] == "mid")
    base_fd, base_fd_std = mean_and_std([base[seed]["fd"] for seed in seeds])
    summary = {
        "command": f"python benchmarks/study_block_importance.py --samples {args.samples} --steps {args.steps} "
                   f"--seeds {args.seeds} --guidance {args.guidance:g}",
        "eval_settings": {**eval_settings, "seeds": seeds},
        "score_settings": settings.to_dict(),
        "teacher": {"fd": base_fd, "fd_std": base_fd_std, "per_seed": base},
        "spearman_score_vs_fd_increase": rho,
        "spearman_bootstrap_95": bootstrap_interval(x, y),
        "mid_removed": {k: mid[k] for k in ("fd", "fd_increase", "fd_increase_std", "class_accuracy")},
        "seconds_this_run": round(time.time() - started, 1),
        "evaluation_seconds_all_parts": round(sum(entry["seconds"] for entry in cache.entries.values()), 1),
        "hosts": sorted({entry["host"] for entry in cache.entries.values()}),
        "units": sorted(rows, key=lambda r: r["score"]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "block_importance.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_markdown(summary, args.out / "block_importance.md")
    _plot(summary, args.out / "block_importance.png")
    low, high = summary["spearman_bootstrap_95"]
    print(f"teacher fd {summary['teacher']['fd']:.3f} ± {summary['teacher']['fd_std']:.3f}")
    print(f"mid stage removed alone: fd increase {mid['fd_increase']:+.3f} ± {mid['fd_increase_std']:.3f}")
    print(f"Spearman(score, fd increase) over {len(rows)} units: {rho:.3f} (95% {low:.3f} to {high:.3f})")


def _write_markdown(summary: dict, path: Path) -> None:
    t, e = summary["teacher"], summary["eval_settings"]
    low, high = summary["spearman_bootstrap_95"]
    mid = summary["mid_removed"]
    lines = [
        "# Block-importance study (toy model)", "",
        f"Command: `{summary['command']}`; evaluations took {summary['evaluation_seconds_all_parts'] / 60:.0f} "
        f"min over all parts, on {'; '.join(summary['hosts'])}.", "",
        f"Each fd: {e['samples']} samples, {e['steps']} DDIM steps, guidance {e['guidance']:g}, mean over seeds "
        f"{','.join(map(str, e['seeds']))}; each increase is paired by seed with the teacher's. "
        f"Teacher fd {t['fd']:.3f} ± {t['fd_std']:.3f}.", "",
        f"**Spearman rank correlation between LD-Pruner score and fd increase: "
        f"{summary['spearman_score_vs_fd_increase']:.3f}** (bootstrap 95% over units: {low:.3f} to {high:.3f}) "
        f"over {len(summary['units'])} units.", "",
        f"Mid stage (R-A-R) removed alone, no retraining: fd increase {mid['fd_increase']:+.3f} ± "
        f"{mid['fd_increase_std']:.3f}, class_accuracy {mid['class_accuracy']:.3f}.", "",
        "| unit | kind | removal | params | score | fd | fd increase (± std over seeds) | class acc |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['unit']} | {r['kind']} | {r['removal']} | {r['params']:,} | {r['score']:.4g} | {r['fd']:.3f} | "
              f"{r['fd_increase']:+.3f} ± {r['fd_increase_std']:.3f} | {r['class_accuracy']:.3f} |"
              for r in summary["units"]]
    path.write_text("\n".join(lines) + "\n")


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    kinds = sorted({r["kind"] for r in summary["units"]})
    for kind in kinds:
        rows = [r for r in summary["units"] if r["kind"] == kind]
        ax.scatter([r["score"] for r in rows], [max(r["fd_increase"], 1e-3) for r in rows], label=kind, s=22)
    for r in summary["units"]:
        if r["unit"] in ("mid", "stage.3") or r["kind"] == "layer":
            ax.annotate(r["unit"], (r["score"], max(r["fd_increase"], 1e-3)), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("LD-Pruner score (mean + std shift of output latents)")
    ax.set_ylabel("fd increase after removal, no retraining (floored at 1e-3)")
    ax.set_title(f"toy UNet: score vs damage, Spearman {summary['spearman_score_vs_fd_increase']:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
