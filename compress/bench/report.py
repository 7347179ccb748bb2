"""Write results as JSON, a Markdown table and a bar chart; estimates are labelled as such in all three."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from compress.bench.host import cpu_name
from compress.io import write_json
from compress.types import BenchResult


def host_info() -> dict[str, Any]:
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}


def write_results_json(results: list[BenchResult], path: str | os.PathLike, command: str | None = None) -> None:
    write_json(path, {"command": command, "host": host_info(), "results": [r.to_dict() for r in results]})


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def markdown(results: list[BenchResult]) -> str:
    """One row per result; an estimate's row says ESTIMATE and its label is repeated under the table."""
    header = ("| target | backend | load ms | first ms | p50 ms | p90 ms | p99 ms | mean ± std ms | min ms | max ms "
              "| peak MB | GFLOP | efficiency | ratio | roofline estimate ms |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        gflop = f"{r.flops / 1e9:.3g}" if r.flops else "-"
        if r.estimate:
            cells = [r.target, f"{r.backend} (ESTIMATE)", "-", "-", "-", "-", "-", "-", "-", "-", "-", gflop, "-", "-",
                     f"{_ms(r.estimate_ms)} (ESTIMATE)"]
        else:
            cells = [r.target, r.backend, _ms(r.load_ms), _ms(r.first_call_ms), _ms(r.p50_ms), _ms(r.p90_ms),
                     _ms(r.p99_ms), f"{_ms(r.mean_ms)} ± {_ms(r.std_ms)}", _ms(r.min_ms), _ms(r.max_ms),
                     _ms(r.peak_memory_mb), gflop, f"{r.efficiency:.1%}" if r.efficiency is not None else "-",
                     f"{r.ratio:.4g}" if r.ratio is not None else "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    measured = [r for r in results if not r.estimate]
    if measured:
        r = measured[0]
        peak = next((m.peak_gflops for m in measured if m.peak_gflops), None)
        lines.append("")
        threads = f"{r.threads} thread" + ("s" if r.threads != 1 else "")
        lines.append(f"Measured: {threads}, {r.warmup} warm-up + {r.runs} timed calls after the first. "
                     "efficiency = (FLOPs / host peak GEMM rate) / p50"
                     + (f", peak {peak:.1f} GFLOP/s" if peak else "")
                     + "; ratio = model time / reference workload timed between its calls.")
    precisions = {str(r.detail.get("compiled", {}).get("INFERENCE_PRECISION_HINT", "")) for r in measured}
    if any("bf16" in p or "bfloat16" in p for p in precisions):
        lines.append("OpenVINO computed in bf16 (its CPU default where the CPU has bf16 instructions), so its "
                     "efficiency against the fp32 GEMM peak can exceed 100%.")
    for r in results:
        if r.estimate:
            sources = "; ".join(r.detail.get("sources", []))
            lines.append(f"\n**{r.target} on {r.backend}: {r.label}.** Compute-bound part "
                         f"{_ms(r.detail.get('compute_bound_ms'))} ms, memory-bound part "
                         f"{_ms(r.detail.get('memory_bound_ms'))} ms; sources: {sources}.")
    return "\n".join(lines) + "\n"


def figure(results: list[BenchResult]) -> Any:
    """Horizontal bars of measured p50 (whiskers to p90) and roofline estimates, hatched and marked ESTIMATE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.target} · {r.backend}" + (" (ESTIMATE)" if r.estimate else "") for r in results]
    values = [(r.estimate_ms if r.estimate else r.p50_ms) or 0.0 for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(results) + 1.6))
    for i, r in enumerate(results):
        if r.estimate:
            ax.barh(i, values[i], color="#f4b183", hatch="//", edgecolor="#c55a11",
                    label="ESTIMATE: roofline estimate, not measured")
            ax.text(values[i], i, "  ESTIMATE", va="center", color="#c55a11", fontweight="bold")
        else:
            whisker = [[0], [max((r.p90_ms or values[i]) - values[i], 0)]]
            ax.barh(i, values[i], xerr=whisker, color="#5b9bd5", capsize=3, label="measured p50 (whisker: p90)")
    ax.set_yticks(range(len(results)), labels)
    ax.invert_yaxis()
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("log")
    ax.set_xlabel("latency per call, ms")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="lower right", fontsize=8)
    title = "compress bench"
    if any(r.estimate for r in results):
        title += " (hatched bars are ESTIMATES, not measurements)"
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot(results: list[BenchResult], path: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

    fig = figure(results)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
