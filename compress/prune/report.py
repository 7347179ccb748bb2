"""Human-facing views of a prune report: Markdown table and importance bar chart."""

from __future__ import annotations

from pathlib import Path

from compress.types import PruneReport


def _g(value: int) -> str:
    return f"{value / 1e9:.2f} G"


def _m(value: int) -> str:
    return f"{value / 1e6:.2f} M"


def write_markdown(report: PruneReport, path: Path) -> None:
    removed = set(report.removed)
    lines = [
        f"# Prune report: {report.model}",
        "",
        f"- granularity: {report.granularity}; budget: {report.budget}; "
        f"ratio requested: {report.ratio_requested if report.preset is None else report.preset}",
        f"- params: {report.params_before:,} -> {report.params_after:,} "
        f"(removed {report.params_removed_share:.1%})",
        f"- MACs at {report.macs_resolution}x{report.macs_resolution}: {_g(report.macs_before)} -> "
        f"{_g(report.macs_after)} (removed {report.macs_removed_share:.1%}); attention matmuls "
        f"{_g(report.attention_macs_before)} -> {_g(report.attention_macs_after)}",
        f"- removed: {', '.join(report.removed) or 'nothing'}",
        f"- seed {report.seed}; {report.seconds:.0f} s",
        "",
    ]
    if report.removed_units:
        lines += ["| removed unit | kind | removal | modules |", "|---|---|---|---|"]
        lines += [f"| {u['name']} | {u['kind']} | {u['removal']} | {', '.join(u['modules'])} |"
                  for u in report.removed_units]
        lines.append("")
    if report.scores:
        lines += ["## Importance (LD-Pruner score, low = safe to remove)", "",
                  "| unit | kind | params | MACs | score | mean shift | std shift | removed |",
                  "|---|---|---:|---:|---:|---:|---:|:---:|"]
        for s in sorted(report.scores, key=lambda s: s["score"]):
            lines.append(f"| {s['unit']} | {s['kind']} | {_m(s['params'])} | {_g(s['macs'])} | {s['score']:.4g} | "
                         f"{s['mean_shift']:.4g} | {s['std_shift']:.4g} | {'x' if s['unit'] in removed else ''} |")
    path.write_text("\n".join(lines) + "\n")


def plot_importance(report: PruneReport, path: Path) -> None:
    """Horizontal bars of scores, removed units in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report.scores, key=lambda s: s["score"])
    height = max(2.5, 0.28 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    if rows:
        removed = set(report.removed)
        colors = ["#d62728" if s["unit"] in removed else "#1f77b4" for s in rows]
        ax.barh([s["unit"] for s in rows], [s["score"] for s in rows], color=colors)
        ax.invert_yaxis()
        if all(s["score"] > 0 for s in rows):  # scores span decades; small ones must stay visible
            ax.set_xscale("log")
        ax.set_xlabel("LD-Pruner score (mean shift + std shift of output latents)")
        ax.set_title(f"{report.model}: unit importance (red = removed)")
    else:
        ax.text(0.5, 0.5, f"preset {report.preset}: no scores computed", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
