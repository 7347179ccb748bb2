"""The trade-off a chain bought: `OUT/chain_report.{json,md}` and `chain_tradeoff.png`.

One row per scored setting of a point (teacher, pruned, recovered at the teacher's steps, with and without feature
reuse; distilled and quantized students at each step count). Latency per image on each bench backend is UNet calls
per image (steps, doubled by classifier-free guidance for a DDIM model) x the point's per-call p50, and its speed-up
over the teacher carries the interleaved per-call ratio's 95% interval. Feature reuse runs in torch only, so those
rows have only the eval's end-to-end sampling time (the `sampling` axis) and no backend latency. A row is on the
Pareto front of a latency axis when no faster row has better quality; the selection is the fastest row within the
recipe's quality limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.chain.measure import read_bench
from compress.chain.recipe import Recipe, stage_folder
from compress.chain.state import StageRecord
from compress.evaluate.quality import mean_and_std
from compress.io import atomic_file, read_json, write_json

REPORT = "chain_report"
PLOT = "chain_tradeoff.png"
SAMPLING_AXIS = "sampling"


def _rows(recipe: Recipe, records: dict[str, StageRecord], out: Path, bench: dict[str, Any]) -> list[dict[str, Any]]:
    """Quality rows from the eval stage, joined with the bench stage's latencies."""
    if "eval" not in records:
        return []
    folder, rows = stage_folder(out, "eval"), []
    for key, run in records["eval"].outputs["runs"].items():
        result = read_json(folder / run["file"])
        row: dict[str, Any] = {"key": key, "point": run["point"], "steps": run["steps"],
                               "cache_interval": run["cache_interval"], "latency": {}}
        if recipe.family == "span":
            row.update(quality="psnr", psnr=result["psnr"], psnr_std=None, calls=1)
        else:
            guided, student = result["guidance"] != 1.0, result["sampler"] == "lcm"
            row.update(quality="fd", fd=result["fd"], fd_std=result["fd_std"], kid=result["kid"],
                       kid_std=result["kid_std"], class_accuracy=result["class_accuracy"],
                       class_accuracy_std=result["class_accuracy_std"], sampler=result["sampler"],
                       guidance=result["guidance"], samples=result["samples"], seeds=result["seeds"],
                       runtime=f"{result['runtime']} ({result['precision']})",
                       calls=run["steps"] * (2 if guided and not student else 1))
            mean, std = mean_and_std([1000 * seed_run["sampling_seconds"] / result["samples"]
                                      for seed_run in result["per_seed"]])
            row["latency"][SAMPLING_AXIS] = {"per_image_ms": mean, "per_image_ms_std": std}
        for backend, measured in bench.items():
            point = measured["points"].get(run["point"])
            if point is None or "per_call_ms" not in point or run["cache_interval"] is not None:
                continue
            row["latency"][backend] = {"per_call_ms": point["per_call_ms"], "ratio": point["ratio"],
                                       "ratio_low": point["ratio_low"], "ratio_high": point["ratio_high"],
                                       "per_image_ms": point["per_call_ms"] * row["calls"]}
        rows.append(row)
    teacher = _teacher_row(rows)
    for row in rows:
        for axis, latency in row["latency"].items():
            base = teacher["latency"].get(axis) if teacher else None
            if base is None:
                continue
            calls = teacher["calls"] / row["calls"]
            if "ratio" in latency:  # interleaved per-call ratio: the speed-up carries its interval
                latency.update(speedup=calls / latency["ratio"], speedup_low=calls / latency["ratio_high"],
                               speedup_high=calls / latency["ratio_low"])
            else:
                latency["speedup"] = base["per_image_ms"] / latency["per_image_ms"]
    return rows


def _teacher_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in rows if r["point"] == "teacher" and r["cache_interval"] is None), None)


def _better(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Is row a's quality better than row b's (lower fd, higher PSNR)?"""
    return a["fd"] < b["fd"] if a["quality"] == "fd" else a["psnr"] > b["psnr"]


def _within_limit(row: dict[str, Any], teacher: dict[str, Any], o: dict[str, Any]) -> bool:
    if row["quality"] == "fd":
        return row["fd"] <= o["fd_ratio_limit"] * teacher["fd"]
    return teacher["psnr"] - row["psnr"] <= o["psnr_drop_limit"]


def fronts(rows: list[dict[str, Any]], recipe: Recipe) -> dict[str, Any]:
    """Per latency axis: the Pareto front (row keys, fastest first) and the fastest row within the quality limit."""
    teacher, o, result = _teacher_row(rows), recipe.stages["eval"], {}
    axes = dict.fromkeys(axis for row in rows for axis in row["latency"])
    for axis in axes:
        timed = sorted((r for r in rows if axis in r["latency"]), key=lambda r: r["latency"][axis]["per_image_ms"])
        front, best = [], None
        for row in timed:
            if best is None or _better(row, best):
                front.append(row["key"])
                best = row
        within = [r for r in timed if teacher is not None and _within_limit(r, teacher, o)]
        result[axis] = {"front": front, "selected": within[0]["key"] if within else None}
    return result


def write_report(recipe: Recipe, records: dict[str, StageRecord], out: Path) -> dict[str, Any]:
    """Write chain_report.{json,md} (and the plot when there is quality and latency); return the JSON."""
    bench = read_bench(stage_folder(out, "bench")) if "bench" in records else {}
    rows = _rows(recipe, records, out, bench)
    report = {"recipe": recipe.path, "model": recipe.model, "init": recipe.init, "family": recipe.family,
              "stages": {stage: {"folder": stage_folder(out, stage).name, "hash": record.hash,
                                 "seconds": record.seconds, "outputs": record.outputs}
                         for stage, record in records.items()},
              "rows": rows, "fronts": fronts(rows, recipe) if rows else {},
              "bench": bench}
    report["hosts"] = {backend: measured["host"] for backend, measured in report["bench"].items()}
    if "eval" in recipe.stages:
        report["limits"] = {k: recipe.stages["eval"][k] for k in ("fd_ratio_limit", "psnr_drop_limit")}
    with atomic_file(out / f"{REPORT}.json") as tmp:
        write_json(tmp, report)
    with atomic_file(out / f"{REPORT}.md") as tmp:
        tmp.write_text(markdown(report))
    if any(row["latency"] for row in rows):
        plot(report, out / PLOT)
    return report


def _label(row: dict[str, Any]) -> str:
    if row["quality"] == "psnr":
        return row["point"]
    sampler = {"lcm": "LCM", "ddim": "DDIM"}.get(row["sampler"], row["sampler"])
    cache = f", cache {row['cache_interval']}" if row["cache_interval"] is not None else ""
    return f"{row['point']}, {sampler} {row['steps']}{cache}"


def _quality(row: dict[str, Any]) -> str:
    if row["quality"] == "psnr":
        return f"{row['psnr']:.3f} dB"
    return f"{row['fd']:.2f} ± {row['fd_std']:.2f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Chain report: {report['model']} ({report['recipe']})", ""]
    lines += ["| stage | folder | seconds | outputs |", "|---|---|---:|---|"]
    for stage, info in report["stages"].items():
        outputs = ", ".join(f"{k}: {v}" for k, v in info["outputs"].items() if k in ("model", "artifact", "summary"))
        lines.append(f"| {stage} | {info['folder']} | {info['seconds']:.0f} | {outputs} |")
    for backend, measured in report.get("bench", {}).items():
        host = measured["host"]
        lines += ["", f"## Per-call latency on {backend} ({host['cpu']}, {host['threads']} threads, "
                  f"{host['runtime']}; each graph timed interleaved with the teacher's)", "",
                  "| point | ms per call (p50) | vs the teacher's graph (95% interval) |", "|---|---:|---:|"]
        for point, timing in measured["points"].items():
            if "per_call_ms" not in timing:
                lines.append(f"| {point} | {timing.get('skipped', '')} | |")
                continue
            lines.append(f"| {point} | {timing['per_call_ms']:.2f} | {timing['ratio']:.3f}x "
                         f"({timing['ratio_low']:.3f}-{timing['ratio_high']:.3f}) |")
    rows = report["rows"]
    if not rows:
        return "\n".join(lines) + "\n"
    teacher = _teacher_row(rows)
    axes = list(dict.fromkeys(axis for row in rows for axis in row["latency"]))
    for axis in axes:
        host = report["hosts"].get(axis)
        front = report["fronts"][axis]
        if host:
            lines += ["", f"## Latency on {axis} ({host['cpu']}, {host['threads']} threads, {host['runtime']}, "
                      f"ISA {' '.join(host['isa'])})", ""]
        else:
            lines += ["", "## End-to-end sampling time (each model where the eval ran it: torch fp32, or the "
                      "export's runtime; batches of 250, per image, mean ± std over the seeds' runs; the runs were "
                      "one after another, not interleaved: indicative)", ""]
        if rows[0]["quality"] == "fd":
            lines += ["| setting | fd | kid | class_accuracy | fd / teacher | UNet calls | ms per image | speed-up "
                      "(95% interval) | Pareto |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        else:
            lines += ["| setting | Y-PSNR | drop | ms per image | speed-up (95% interval) | Pareto |",
                      "|---|---:|---:|---:|---:|---|"]
        for row in sorted((r for r in rows if axis in r["latency"]), key=lambda r: r["latency"][axis]["per_image_ms"]):
            latency = row["latency"][axis]
            per_image = f"{latency['per_image_ms']:.2f}" + (f" ± {latency['per_image_ms_std']:.2f}"
                                                             if "per_image_ms_std" in latency else "")
            speedup = ""
            if "speedup" in latency:
                speedup = f"{latency['speedup']:.2f}x"
                if "speedup_low" in latency:
                    speedup += f" ({latency['speedup_low']:.2f}-{latency['speedup_high']:.2f})"
            marks = ("front" if row["key"] in front["front"] else "") + (" **selected**" if row["key"]
                                                                         == front["selected"] else "")
            if row["quality"] == "fd":
                ratio = f"{row['fd'] / teacher['fd']:.2f}" if teacher else ""
                lines.append(f"| {_label(row)} | {_quality(row)} | {row['kid']:.4f} ± {row['kid_std']:.4f} | "
                             f"{row['class_accuracy']:.3f} | {ratio} | {row['calls']} | "
                             f"{per_image} | {speedup} | {marks.strip()} |")
            else:
                drop = f"{teacher['psnr'] - row['psnr']:.3f}" if teacher else ""
                lines.append(f"| {_label(row)} | {_quality(row)} | {drop} | {latency['per_image_ms']:.2f} | "
                             f"{speedup} | {marks.strip()} |")
    limits = report.get("limits", {})
    lines += ["", f"Quality limit: fd within {limits.get('fd_ratio_limit')}x the teacher's (toy) or Y-PSNR within "
              f"{limits.get('psnr_drop_limit')} dB (SPAN). fd and kid: mean ± std over the eval seeds. Speed-ups on a "
              "runtime backend: UNet calls per image x the per-call ratio, timed interleaved with the teacher's "
              "graph (95% interval from resampling rounds)."]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Quality against latency per image, one panel per latency axis, the Pareto front joined, the limit dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    axes_names = list(dict.fromkeys(axis for row in rows for axis in row["latency"]))
    figure, axes = plt.subplots(1, len(axes_names), figsize=(6.5 * len(axes_names), 5), squeeze=False)
    teacher = _teacher_row(rows)
    fd = rows[0]["quality"] == "fd"
    limits = report.get("limits", {})
    limit = None
    if teacher is not None:
        limit = teacher["fd"] * limits["fd_ratio_limit"] if fd else teacher["psnr"] - limits["psnr_drop_limit"]
    top = 2 * limit if fd and limit is not None else None  # a broken point (fd in the hundreds) is drawn at the top
    for axis_name, ax in zip(axes_names, axes[0], strict=True):
        timed = sorted((r for r in rows if axis_name in r["latency"]),
                       key=lambda r: r["latency"][axis_name]["per_image_ms"])
        front = report["fronts"][axis_name]
        for index, row in enumerate(timed):
            x = row["latency"][axis_name]["per_image_ms"]
            y = row["fd"] if fd else row["psnr"]
            clipped = top is not None and y > top
            on_front = row["key"] in front["front"]
            color = "tab:red" if row["key"] == front["selected"] else "tab:blue" if on_front else "tab:gray"
            ax.errorbar(x, min(y, top) if clipped else y, yerr=None if clipped or not fd else row["fd_std"],
                        fmt="^" if clipped else "o" if on_front else "s", color=color, capsize=3)
            label = _label(row) + (f" (fd {y:.0f})" if clipped else "")
            ax.annotate(label, (x, min(y, top) if clipped else y), textcoords="offset points",
                        xytext=(4, 6 if index % 2 == 0 else -11), fontsize=7)
        points = [(r["latency"][axis_name]["per_image_ms"], r["fd"] if fd else r["psnr"])
                  for r in timed if r["key"] in front["front"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], "-", color="tab:blue", alpha=0.5,
                label="Pareto front")
        if limit is not None:
            ax.axhline(limit, linestyle="--", color="tab:red", alpha=0.6, label="quality limit")
        ax.set_xscale("log")
        ax.set_xlabel(f"ms per image, {axis_name}")
        ax.set_ylabel("fd (mean ± std over seeds; lower is better)" if fd else "Y-PSNR (dB)")
        ax.set_title(axis_name if axis_name != SAMPLING_AXIS else "end-to-end sampling (indicative)")
        ax.legend(fontsize=8)
        if fd:
            ax.set_ylim(0, top * 1.08 if top is not None else None)
    figure.suptitle(f"{report['model']}: quality vs latency per image ({Path(report['recipe']).name})")
    figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
