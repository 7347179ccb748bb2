"""Block-importance study on the trained toy model: does the LD-Pruner score predict damage?

For every unit of the toy UNet (single blocks, R+A pairs, the mid triplet, the innermost
stage, and the diffusers-granularity layers) this prints its LD-Pruner score and the `fd`
after removing it without retraining, then the Spearman rank correlation between score and
fd increase, and the fd with the mid stage removed alone (BK-SDM found that nearly harmless
on SD). Writes benchmarks/results/block_importance.{json,md,png}.

    python benchmarks/study_block_importance.py            # ~15 min on 2 CPU cores
    python benchmarks/study_block_importance.py --samples 500 --steps 25   # eval's defaults, slower
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from compress.evaluate import evaluate
from compress.models.resolve import load_diffusion_model
from compress.models.surgery import removed_units
from compress.prune import ScoreSettings, enumerate_units, score_units, unit_costs

RESULTS = Path(__file__).resolve().parent / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    model = load_diffusion_model("toy")
    unet = model.unet
    units = enumerate_units(unet, "block") + [u for u in enumerate_units(unet, "diffusers") if u.kind == "layer"]
    units = unit_costs(unet, units, unet.config.sample_size, model.conditioner.tokens)
    settings = ScoreSettings(seed=args.seed).resolved(model)
    scores = {s.unit: s for s in score_units(model, units, settings)}

    def quality():
        return evaluate(model, steps=args.steps, samples=args.samples, seed=args.seed, progress=False)

    base = quality()
    rows = []
    for unit in tqdm(units, desc="fd without each unit"):
        with removed_units(unet, [unit]):
            result = quality()
        rows.append({"unit": unit.name, "kind": unit.kind, "removal": unit.removal, "params": unit.params,
                     "macs": unit.macs, "score": scores[unit.name].score, "fd": result.fd,
                     "fd_increase": result.fd - base.fd, "class_accuracy": result.class_accuracy})
    rho = spearman([r["score"] for r in rows], [r["fd_increase"] for r in rows])
    mid = next(r for r in rows if r["unit"] == "mid")
    summary = {
        "command": f"python benchmarks/study_block_importance.py --samples {args.samples} --steps {args.steps} "
                   f"--seed {args.seed}",
        "eval_settings": {"samples": args.samples, "steps": args.steps, "seed": args.seed,
                          "guidance": base.guidance, "sampler": base.sampler},
        "score_settings": settings.to_dict(),
        "teacher": {"fd": base.fd, "fd_real": base.fd_real, "class_accuracy": base.class_accuracy},
        "spearman_score_vs_fd_increase": rho,
        "mid_removed": {"fd": mid["fd"], "fd_increase": mid["fd_increase"], "class_accuracy": mid["class_accuracy"]},
        "seconds": round(time.time() - started, 1),
        "units": sorted(rows, key=lambda r: r["score"]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "block_importance.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_markdown(summary, RESULTS / "block_importance.md")
    _plot(summary, RESULTS / "block_importance.png")
    print(f"teacher fd {base.fd:.3f} (fd_real {base.fd_real:.3f}), class_accuracy {base.class_accuracy:.3f}")
    print(f"mid stage removed alone: fd {mid['fd']:.3f} (+{mid['fd_increase']:.3f}), "
          f"class_accuracy {mid['class_accuracy']:.3f}")
    print(f"Spearman(score, fd increase) over {len(rows)} units: {rho:.3f}")


def _write_markdown(summary: dict, path: Path) -> None:
    t = summary["teacher"]
    lines = [
        "# Block-importance study (toy model)", "",
        f"Command: `{summary['command']}`", "",
        f"Teacher: fd {t['fd']:.3f}, fd_real {t['fd_real']:.3f}, class_accuracy {t['class_accuracy']:.3f} "
        f"({summary['eval_settings']['samples']} samples, {summary['eval_settings']['steps']} DDIM steps, "
        f"guidance {summary['eval_settings']['guidance']}).", "",
        f"**Spearman rank correlation between LD-Pruner score and fd increase: "
        f"{summary['spearman_score_vs_fd_increase']:.3f}** over {len(summary['units'])} units.", "",
        f"Mid stage (R-A-R) removed alone, no retraining: fd {summary['mid_removed']['fd']:.3f} "
        f"(+{summary['mid_removed']['fd_increase']:.3f}), class_accuracy "
        f"{summary['mid_removed']['class_accuracy']:.3f}.", "",
        "| unit | kind | removal | params | score | fd | fd increase | class acc |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['unit']} | {r['kind']} | {r['removal']} | {r['params']:,} | {r['score']:.4g} | {r['fd']:.3f} | "
              f"{r['fd_increase']:+.3f} | {r['class_accuracy']:.3f} |" for r in summary["units"]]
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
