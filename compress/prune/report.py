"""Human-facing views of a prune report: Markdown table and importance bar chart."""

from __future__ import annotations

from pathlib import Path

from compress.types import PruneReport


def _g(value: int) -> str:
    return f"{value / 1e9:.2f} G"


def _m(value: int) -> str:
    return f"{value / 1e6:.2f} M"


def _latency_lines(report: PruneReport) -> list[str]:
    if report.latency_table_before_ms is None:
        return []
    lines = [f"- latency ({report.latency_label}) at a {report.latency_resolution}x{report.latency_resolution} "
             f"latent, batch {report.latency_batch}: predicted {report.latency_table_before_ms:.1f} ms -> "
             f"{report.latency_predicted_after_ms:.1f} ms (saving {report.latency_saving_predicted:.1%})"]
    if report.latency_margin:
        aim = report.width.get("block_ratio", report.ratio_requested) * (1 + report.latency_margin)
        lines.append(f"- the plan aimed at a predicted saving of {aim:.1%} (ratio x {1 + report.latency_margin:g}, "
                     "--latency-margin) where a removal set reaches it, so "
                     "that an optimistic prediction still delivers the ratio")
    if report.latency_table:
        lines.append(f"- latency table: {report.latency_table}")
    if report.latency_before_ms is not None:
        speedup = report.latency_before_ms / report.latency_after_ms
        lines.append(f"- verified on {report.backend} ({report.threads} threads, {report.host}), original and "
                     f"pruned timed interleaved: {report.latency_before_ms:.1f} ms -> {report.latency_after_ms:.1f} ms "
                     f"(saving {report.latency_saving_measured:.1%}, {speedup:.2f}x); the prediction was off by "
                     f"{report.latency_prediction_error:+.1%} of the measured saving")
    return lines


def _width_lines(report: PruneReport) -> list[str]:
    w = report.width
    if not w:
        return []
    lines = [f"- width: --width {w['ratio']} narrowed block_out_channels {w['widths_before']} -> {w['widths_after']}"
             f", channels chosen by {w['importance']} importance; that alone removed {w['params_saving']:.1%} of "
             f"params and {w['macs_saving']:.1%} of MACs (incl. attention)"]
    if "latency_saving_measured" in w:
        low, high = w["latency_saving_interval"]
        lines.append(f"- narrowing timed against the original on {w['backend']} ({w['threads']} threads, "
                     f"{w['host']}, {w['latency_resolution']}x{w['latency_resolution']} latent, batch "
                     f"{w['latency_batch']}): {w['latency_before_ms']:.1f} ms -> {w['latency_after_ms']:.1f} ms, "
                     f"saving {w['latency_saving_measured']:.1%} (95% interval {low:.1%} to {high:.1%})")
    if "block_ratio" in w:
        lines.append(f"- blocks then removed from the narrowed UNet: a share {w['block_ratio']} of it, so that "
                     f"{report.ratio_requested} of the original's {report.budget} is gone in all"
                     if w["block_ratio"] else "- narrowing alone reached the ratio: no blocks removed")
    return lines


def write_markdown(report: PruneReport, path: Path) -> None:
    removed = set(report.removed)
    lines = [
        f"# Prune report: {report.model}",
        "",
        f"**{report.summary}**",
        "",
        f"- granularity: {report.granularity}; budget: {report.budget}; "
        f"ratio requested: {report.ratio_requested if report.preset is None else report.preset}",
        f"- params: {report.params_before:,} -> {report.params_after:,} "
        f"(removed {report.params_removed_share:.1%})",
        f"- MACs at {report.macs_resolution}x{report.macs_resolution}: {_g(report.macs_before)} -> "
        f"{_g(report.macs_after)} (removed {report.macs_removed_share:.1%}); attention matmuls "
        f"{_g(report.attention_macs_before)} -> {_g(report.attention_macs_after)}",
        f"- removed: {', '.join(report.removed) or 'no blocks'}",
        *_width_lines(report),
        f"- seed {report.seed}; {report.seconds:.0f} s",
        *_latency_lines(report),
        "",
    ]
    if report.removed_units:
        lines += ["| removed unit | kind | removal | modules |", "|---|---|---|---|"]
        lines += [f"| {u['name']} | {u['kind']} | {u['removal']} | {', '.join(u['modules'])} |"
                  for u in report.removed_units]
        lines.append("")
    if report.scores:
        lines += ["## Importance (LD-Pruner score, low = safe to remove)", "",
                  "| unit | kind | params | MACs (incl. attention) | latency saving | score | mean shift | std shift "
                  "| removed |",
                  "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
        for s in sorted(report.scores, key=lambda s: s["score"]):
            saving = report.unit_latency_ms.get(s["unit"])
            macs = s["macs"] + s.get("attention_macs", 0)
            lines.append(f"| {s['unit']} | {s['kind']} | {_m(s['params'])} | {_g(macs)} | "
                         f"{'' if saving is None else f'{saving:.1f} ms'} | {s['score']:.4g} | "
                         f"{s['mean_shift']:.4g} | {s['std_shift']:.4g} | {'x' if s['unit'] in removed else ''} |")
    path.write_text("\n".join(lines) + "\n")


def plot_importance(report: PruneReport, path: Path) -> None:
    """Scores as bars (removed units in red) and, with a latency model, each unit's score against its latency
    saving: the cheap-to-lose, expensive-to-run units sit bottom right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report.scores, key=lambda s: s["score"])
    removed = set(report.removed)
    trade_off = bool(rows and report.unit_latency_ms)
    height = max(3.0, 0.28 * len(rows) + 1.2)
    fig, axes = plt.subplots(1, 2 if trade_off else 1, figsize=(14 if trade_off else 8, height), squeeze=False)
    ax = axes[0][0]
    log_scale = rows and all(s["score"] > 0 for s in rows)  # scores span decades; small ones must stay visible
    if rows:
        colors = ["#d62728" if s["unit"] in removed else "#1f77b4" for s in rows]
        ax.barh([s["unit"] for s in rows], [s["score"] for s in rows], color=colors)
        ax.invert_yaxis()
        if log_scale:
            ax.set_xscale("log")
        ax.set_xlabel("LD-Pruner score (mean shift + std shift of output latents)")
        ax.set_title(f"{report.model}: unit importance (red = removed)")
    else:
        ax.text(0.5, 0.5, f"preset {report.preset}: no scores computed", ha="center", va="center")
        ax.set_axis_off()
    if trade_off:
        ax = axes[0][1]
        for s in rows:
            chosen = s["unit"] in removed
            x, y = report.unit_latency_ms[s["unit"]], s["score"]
            ax.scatter(x, y, color="#d62728" if chosen else "#1f77b4", marker="X" if chosen else "o", s=60)
            ax.annotate(s["unit"], (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")
        if log_scale:
            ax.set_yscale("log")
        ax.set_xlabel(f"latency saved if removed alone, ms ({report.backend}, {report.latency_resolution}x"
                      f"{report.latency_resolution} latent)")
        ax.set_ylabel("importance score (low = safe to remove)")
        ax.set_title(f"trade-off: removed (red X) save {report.latency_saving_predicted:.1%} of the latency")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
