"""`compress bench` and `compress npu-check`: parse the options and call `compress.bench`."""

from __future__ import annotations

import click

from compress.clitools import command_line, user_errors
from compress.io import atomic_file, check_new_files


def _split(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


@click.command("bench")
@click.argument("targets", nargs=-1)
@click.option("--backend", "backends", default=None,
              help="Comma-separated backends, e.g. ort-cpu,ov-cpu (see --list-backends); each target runs on those "
                   "that take its format (ov-* also take ONNX when listed alone) [default: its format's CPU backend].")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed calls after the first.")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True, help="Timed calls.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Measure every target and backend in this many rounds and report the median round (by ratio).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads [default: torch's count, the physical cores].")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Torch models: input height and width (the latent for a UNet, the low-res image for SPAN).")
@click.option("--init", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True,
              help="Torch models: `random` builds a registered architecture with seeded weights (offline).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--estimate", "estimates", multiple=True,
              help="Add a roofline ESTIMATE for a device profile (repeatable): a17-pro-ane, sd8gen3-hexagon, "
                   "core-ultra-npu. Without --backend, nothing is timed.")
@click.option("--precision", type=click.Choice(["fp16", "int8"]), default="fp16", show_default=True,
              help="Deployed precision the estimate assumes.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write results as JSON.")
@click.option("--md", "md_out", type=click.Path(dir_okay=False), help="Write the Markdown table.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Write a bar chart (PNG).")
@click.option("--baseline", type=click.Path(dir_okay=False),
              help="Gate against a baseline from --save-baseline: exit 1 on a regression.")
@click.option("--max-regression", type=click.FloatRange(min=0), default=0.15, show_default=True,
              help="Allowed slowdown of p50 / reference workload against the baseline.")
@click.option("--confirm", type=click.IntRange(min=0), default=2, show_default=True,
              help="Re-measure a result that looks regressed up to this many times; the median measurement counts.")
@click.option("--allow-missing", is_flag=True,
              help="With --baseline: pass although a baseline entry was not measured (by default that fails).")
@click.option("--allow-other-host", is_flag=True,
              help="With --baseline: gate against a baseline from another CPU model, ISA, runtime version or "
                   "thread count (ratios do not carry over between them; by default that is refused).")
@click.option("--save-baseline", type=click.Path(dir_okay=False), help="Write these results as a baseline.")
@click.option("--strict", is_flag=True, help="An unavailable backend in a list is an error, not a skipped warning.")
@click.option("--list-backends", is_flag=True, help="List every backend and whether it is available here.")
@click.pass_context
@user_errors
def bench_cmd(ctx, targets, backends, warmup, runs, repeat, threads, size, init, seed, estimates, precision, json_out,
              md_out, plot_out, baseline, max_regression, confirm, allow_missing, allow_other_host,
              save_baseline, strict, list_backends) -> None:
    """Time exported models (or torch models) on runtime backends, estimate NPUs, gate CI on regressions.

    \b
    TARGETS: export folders, .onnx / .xml / .mlpackage files, or models for torch-* backends
    (registry names such as toy or span-x2, UNet or SPAN folders).
      compress bench out/toy-onnx out/toy-ov --backend ort-cpu,ov-cpu --runs 50 --json r.json --md r.md
      compress bench out/toy-onnx --estimate a17-pro-ane --estimate sd8gen3-hexagon
      compress bench out/toy-onnx --backend ort-cpu --baseline base.json --max-regression 0.15

    Two builds are compared more soundly with `compress compare` (both timed interleaved in one run).
    """
    from compress import bench as api  # lazy: each name imports its module on use, torch only where timed
    from compress.errors import CompressError

    if list_backends:
        rows = api.list_backends()
        width = max(len(name) for name, _ in rows)
        for name, reason in rows:
            click.echo(f"{name:<{width}}  " + ("available" if reason is None else f"not available: {reason}"))
        return
    if not targets:
        raise CompressError("give at least one artifact or model to benchmark (or --list-backends)")
    check_new_files([json_out, md_out, plot_out, save_baseline], overwrite=True)  # unwritable ones fail now
    for name in estimates:  # bad names and baselines fail before anything is timed
        api.get_profile(name)
    if baseline:  # a baseline from another host class is refused before anything is timed
        entries = api.load_baseline(baseline)
        if not allow_other_host:
            import torch

            from compress.bench.gate import check_host

            measured_threads = torch.get_num_threads() if threads is None else threads
            for entry in entries.values():
                check_host(baseline, entry, measured_threads)
    resolved = [api.resolve_target(target, size=size, init=init, seed=seed) for target in dict.fromkeys(targets)]
    results = []
    if backends or not estimates:
        results = api.bench(resolved, _split(backends), warmup, runs, threads, strict=strict, repeat=repeat)
    for target in resolved:
        results += [api.estimate(target, name, precision) for name in estimates]
    click.echo(api.markdown(results))
    if json_out:
        api.write_results_json(results, json_out, command_line(click.get_current_context()))
    if md_out:
        with atomic_file(md_out) as tmp:
            tmp.write_text(api.markdown(results))
    if plot_out:
        api.plot(results, plot_out)
    if save_baseline:
        api.save_baseline(results, save_baseline)
        click.echo(f"wrote baseline {save_baseline}")
    if baseline:
        by_name = {target.name: target for target in resolved}

        def remeasure(result: api.BenchResult) -> api.BenchResult:
            click.echo(f"{result.target} on {result.backend} looks regressed: measuring again", err=True)
            return api.bench([by_name[result.target]], [result.backend], warmup, runs, threads, strict=True,
                             repeat=repeat)[0]

        report = api.gate(results, baseline, max_regression, remeasure=remeasure, confirm=confirm,
                          allow_missing=allow_missing, allow_other_host=allow_other_host)
        click.echo(report.table())
        if not report.passed:
            ctx.exit(1)


@click.command("compare")
@click.argument("candidates", nargs=-1)
@click.option("--against", "baselines", multiple=True,
              help="The baseline build of each CANDIDATE, in the same order (repeat the option once per candidate).")
@click.option("--backend", "backends", default=None,
              help="Comma-separated backends; each pair runs on those that take its format [default: its format's "
                   "CPU backend].")
@click.option("--rounds", type=click.IntRange(min=2), default=6, show_default=True,
              help="Rounds; each loads both builds anew, in alternating order.")
@click.option("--pairs", type=click.IntRange(min=1), default=8, show_default=True, help="ABBA block pairs per round.")
@click.option("--calls", type=click.IntRange(min=1), default=10, show_default=True, help="Timed calls per block.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Untimed calls per side and round.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads [default: torch's count, the physical cores].")
@click.option("--max-regression", type=click.FloatRange(min=0), default=0.15, show_default=True,
              help="Largest median slowdown that passes (0.15: 15% slower).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the comparisons as JSON.")
@click.pass_context
@user_errors
def compare_cmd(ctx, candidates, baselines, backends, rounds, pairs, calls, warmup, threads, max_regression,
                json_out) -> None:
    """Time each CANDIDATE build against its --against baseline, interleaved; exit 1 on a regression.

    \b
    Both builds run in one process: `--rounds` rounds each load both anew, then alternate ABBA blocks of
    `--calls` calls. Every adjacent pair of blocks gives a ratio candidate/baseline; the change is the median
    ratio - 1, with a 95% interval from resampling whole rounds. A regression is a change above --max-regression
    whose interval lies wholly above zero; load that hits both builds alike cancels in each pair.
      compress compare new/toy-onnx --against old/toy-onnx --backend ort-cpu --json cmp.json
      compress compare new/toy-onnx new/toy-ov --against old/toy-onnx --against old/toy-ov --backend ort-cpu,ov-cpu
    Cost: about 2 x rounds x (warmup + pairs x 2 x calls) model calls per pair and backend, plus 2 x rounds loads.
    """
    from compress.errors import CompressError

    if not candidates:
        raise CompressError("give at least one candidate artifact and its baseline with --against")
    if len(baselines) != len(candidates):
        raise CompressError(f"{len(candidates)} candidate(s) but {len(baselines)} --against baseline(s): "
                            "give one --against per candidate, in the same order")
    check_new_files([json_out], overwrite=True)
    import torch

    from compress import bench as api
    from compress.bench.compare import compare, comparison_table
    from compress.bench.runner import resolve_backends, runnable_backends
    from compress.io import write_json

    threads = torch.get_num_threads() if threads is None else threads
    pairs_of_targets = [(api.resolve_target(candidate), api.resolve_target(baseline))
                        for candidate, baseline in zip(candidates, baselines, strict=True)]
    chosen = resolve_backends(_split(backends), strict=True) if backends else None
    jobs = []
    for candidate, baseline in pairs_of_targets:
        if candidate.format != baseline.format:
            raise CompressError(f"{candidate.location} is {candidate.format} but its baseline {baseline.location} "
                                f"is {baseline.format}: compare builds of the same format")
        jobs += [(candidate, baseline, backend) for backend in runnable_backends(candidate, chosen, strict=True)]
    comparisons = []
    for candidate, baseline, backend in jobs:
        click.echo(f"comparing {candidate.location} with {baseline.location} on {backend.name}, {threads} threads",
                   err=True)
        comparisons.append(compare(candidate, baseline, backend, threads=threads, rounds=rounds, pairs=pairs,
                                   calls=calls, warmup=warmup, max_regression=max_regression,
                                   progress=lambda line: click.echo(f"  {line}", err=True)))
    click.echo(comparison_table(comparisons))
    if json_out:
        write_json(json_out, {"command": command_line(click.get_current_context()),
                              "comparisons": [c.to_dict() for c in comparisons]})
    if any(c.status == "regression" for c in comparisons):
        ctx.exit(1)


@click.command("npu-check")
@click.argument("artifact")
@click.option("--target", "npu", required=True, type=click.Choice(["ane", "qnn", "intel-npu"]),
              help="ane: Apple Neural Engine (Core ML package); qnn: Qualcomm HTP (ONNX); intel-npu: OpenVINO.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the findings as JSON.")
@click.pass_context
@user_errors
def npu_check_cmd(ctx, artifact, npu, json_out) -> None:
    """Report what would keep an exported model off a phone or laptop NPU; exit 1 when something does.

    \b
    Checks static shapes, ops against the target's documented op list, tensor ranks and layouts,
    weight / compute precision, and (ane) the 1 GiB iOS package limit. Example:
      compress npu-check out/toy-onnx --target qnn
    """
    from compress import bench as api
    from compress.io import write_json

    check_new_files([json_out], overwrite=True)
    report = api.npu_check(artifact, npu)
    click.echo(report.text())
    if json_out:
        write_json(json_out, report.to_dict())
    if report.blockers:
        ctx.exit(1)
