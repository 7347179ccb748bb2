"""Data types that flow between pipeline stages, each serialised to JSON one way.

`to_dict` / `from_dict` are the only (de)serialisers: reports, plan files and
benchmark results all go through them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound="Record")


class Record:
    """Mixin: dataclass <-> plain JSON-able dict."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Unit(Record):
    """A removable part of a UNet: what it is, what removing it means, what it costs.

    kind: resnet | attention | pair | mid | stage | layer | attentions (every attention of a stage)
    removal: pass-through | drop-skip | replace-by-shortcut | drop-mid | drop-stage | drop-layer | drop-attention
    modules: the module paths (in the unmodified UNet) that the removal takes out.
    """

    name: str
    kind: str
    removal: str
    modules: tuple[str, ...]
    params: int = 0
    macs: int = 0  # conv + linear
    attention_macs: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unit:
        return super().from_dict({**data, "modules": tuple(data["modules"])})


@dataclass(frozen=True)
class UnitScore(Record):
    """One row of the importance table (LD-Pruner score: low = safe to remove)."""

    unit: str
    kind: str
    params: int
    macs: int
    score: float
    mean_shift: float  # ||mu_orig - mu_mod||_2, averaged over calibration timesteps
    std_shift: float  # ||sigma_orig - sigma_mod||_2
    attention_macs: int = 0  # attention matmuls, on top of `macs` (conv + linear)


@dataclass(frozen=True)
class RemovalPlan(Record):
    """Which units to remove from a UNet with a given config, at which granularity."""

    granularity: str  # "diffusers" or "block"
    removed: list[str] = field(default_factory=list)
    preset: str | None = None


@dataclass
class PruneReport(Record):
    """`prune_report.json`: what was removed, what it cost, and why (the scores).

    Recovery derives its teacher/student feature mapping from `removed_units` and
    `unet_config_before`, so this is the contract between pruning and recovery.
    """

    model: str
    ratio_requested: float | None
    budget: str
    granularity: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    removed: list[str]
    scores: list[dict[str, Any]]
    seed: int
    preset: str | None = None
    macs_resolution: int = 0
    attention_macs_before: int = 0
    attention_macs_after: int = 0
    removed_units: list[dict[str, Any]] = field(default_factory=list)
    score_settings: dict[str, Any] = field(default_factory=dict)
    unet_config_before: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # The latency model (every budget records it when a backend or estimate was used): the table's label,
    # its prediction, and with --verify-latency the original and pruned UNets timed interleaved.
    summary: str = ""  # the first line of the report and of the CLI output: budget and backend
    backend: str | None = None
    threads: int | None = None
    host: str | None = None
    latency_label: str | None = None
    latency_resolution: int = 0
    latency_batch: int = 0
    latency_table: str | None = None
    latency_table_before_ms: float | None = None  # the table's whole-UNet time
    latency_predicted_after_ms: float | None = None
    unit_latency_ms: dict[str, float] = field(default_factory=dict)  # each unit's predicted saving alone
    latency_before_ms: float | None = None  # --verify-latency, measured
    latency_after_ms: float | None = None
    latency_saving_predicted: float | None = None
    latency_margin: float | None = None  # a latency plan aimed at ratio x (1 + margin) predicted
    latency_saving_measured: float | None = None
    latency_prediction_error: float | None = None  # (predicted - measured saving) / measured saving
    # --width: `compress.prune.width.WidthPlan.to_dict()` (ratio, importance, widths, kept stage-output
    # channels) plus, when timed, the unnarrowed and narrowed UNets' latency measured interleaved
    width: dict[str, Any] = field(default_factory=dict)

    @property
    def params_removed_share(self) -> float:
        return 1 - self.params_after / self.params_before

    @property
    def macs_removed_share(self) -> float:
        return 1 - self.macs_after / self.macs_before

    @property
    def total_macs_removed_share(self) -> float:
        """conv + linear + attention matmuls: what `--budget macs` is a share of."""
        before = self.macs_before + self.attention_macs_before
        return 1 - (self.macs_after + self.attention_macs_after) / before


@dataclass(frozen=True)
class EvalResult(Record):
    """Sample quality of a toy-family model (`compress eval`), judged by the shipped digit classifier.

    Each metric is the mean over `seeds` (one sampling run of `samples` images per seed) with its sample
    standard deviation (`*_std`, 0 for one seed); `per_seed` keeps every run's values.
    fd: Frechet distance between classifier features of samples and of held-out digits;
    kid: the kernel (MMD^2) distance between the same features, unbiased, so comparable across sample counts;
    fd_real / kid_real: the same between train and held-out digits, the floor a perfect model reaches.
    runtime / precision: what computed the UNet ("torch", or the export's runtime) and in what precision.
    cache_interval / cache_branch: the feature-reuse setting the samples were drawn with (None: every call full).
    """

    model: str
    class_accuracy: float  # share of samples classified as the class they were conditioned on
    class_accuracy_std: float
    fd: float
    fd_std: float
    kid: float
    kid_std: float
    fd_real: float
    kid_real: float
    samples: int  # per seed
    steps: int
    sampler: str
    guidance: float
    seeds: list[int]
    per_seed: list[dict[str, float]]  # {"seed", "class_accuracy", "fd", "kid", "sampling_seconds"}
    runtime: str
    precision: str
    seconds: float  # the whole evaluation: loading, sampling, classifying
    sampling_seconds: float  # sampling alone, all seeds: seconds / (samples x seeds) is the wall time per sample
    cache_interval: int | None = None  # DeepCache-style feature reuse (compress.models.feature_cache); None = off
    cache_branch: int | None = None


@dataclass
class ExportArtifact(Record):
    """What `compress export` wrote, saved as `export_report.json` in the output folder.

    `path` (the main file or package; the first chunk when a Core ML UNet is chunked) and `files`
    are relative to `directory`. Input and output names are the same in every format; the shapes are
    the ones exported and validated (with `options["dynamic_batch"]` the first axis is dynamic).
    `checks` are dicts with keys name, passed (bool, or None for information only), value, limit,
    detail. `validated` is None when validation was skipped, False when a check failed, True when the runtime's
    output matched torch and every check passed, and "structural-only" when the runtime could not run here (Core
    ML off macOS): a string, never to be read as a numeric pass.
    """

    format: str  # onnx | openvino | coreml
    model: str  # the source as given: registry name, folder or checkpoint
    family: str  # unet | span
    directory: str  # absolute path of the output folder
    path: str
    files: list[str]
    input_names: list[str]
    input_shapes: list[list[int]]
    input_dtypes: list[str]  # numpy-style names: float32, float16
    output_names: list[str]
    output_shapes: list[list[int]]
    output_dtypes: list[str]
    fp16: bool  # ONNX: fp16 graph and I/O; OpenVINO: fp16 weights; Core ML: fp16 compute precision
    weights: str  # fp32 | fp16 | int8 (weights only) | int8-w8a8 | int8-hybrid (compress quantize) | palettized-Nbit
    options: dict[str, Any]  # the format options used (opset, deployment target, attention, chunks, ...)
    file_sizes: dict[str, int]  # bytes per file; a Core ML package counts as one entry
    total_bytes: int
    export_seconds: float
    peak_memory_mb: float  # peak resident memory of the exporting process (ru_maxrss), load included
    init: str = "pretrained"
    seed: int = 0
    validated: bool | str | None = None  # True | False | "structural-only" | None (not validated)
    validation_seconds: float = 0.0
    checks: list[dict[str, Any]] = field(default_factory=list)
    model_info: dict[str, Any] = field(default_factory=dict)  # the UNet config, or SPAN scale and channels
    report: str = "export_report.json"
    # `compress quantize`: mode, calibration set, sensitivity, kept layers, tool, and the task metric of the fp32
    # torch model and of the quantized graph; empty for a plain export
    quantization: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineExport(Record):
    """What `compress export PIPELINE_DIR` wrote, saved as `export_report.json` in the output folder.

    `components` maps text_encoder, unet, vae_decoder and vae_encoder to their `ExportArtifact` dicts (files
    relative to `directory`); `precision` says which ran in fp16; `checks` are the end-to-end image checks (same
    keys as `ExportArtifact.checks`); `validated` is True, False, "structural-only" (Core ML off macOS) or None.
    """

    format: str
    source: str  # the pipeline folder as given
    directory: str
    fp16: bool
    precision: dict[str, str]
    pipeline_class: str  # model_index.json's _class_name: the pipeline the folder loads as
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # tokenizer, scheduler, index (or Apple's vocabulary files)
    checks: list[dict[str, Any]] = field(default_factory=list)
    validated: bool | str | None = None
    report: str = "export_report.json"

    def failed_checks(self) -> list[tuple[str, dict[str, Any]]]:
        """(component or "pipeline", check) for every check that failed."""
        failed = [(name, c) for name, artifact in self.components.items() for c in artifact.get("checks", [])
                  if c["passed"] is False]
        return failed + [("pipeline", c) for c in self.checks if c["passed"] is False]


@dataclass
class BenchResult(Record):
    """One model on one backend (`compress bench`): latency statistics in milliseconds, or a roofline estimate.

    Timed results: `load_ms` (read + compile), `first_call_ms`, then statistics over `runs` calls after `warmup`.
    `efficiency` is `floor_ms / p50_ms`, where the floor is `flops` at the host's measured fp32 GEMM rate
    (`peak_gflops`, CPU backends only). `ratio` is the model's time over a fixed torch workload timed between its
    calls (`reference_ms`; median of per-block ratios): the machine-independent number the CI gate compares.
    With `estimate` set, nothing ran: the statistics are empty, `estimate_ms` holds a roofline estimate for a
    device profile (`device`; see compress.bench.estimate for its assumptions), and `label` says so.
    """

    target: str  # the name given on the command line (registry name, or file / folder name)
    path: str  # the resolved model file, package or reference
    format: str  # onnx | openvino | coreml | torch
    backend: str  # e.g. ort-cpu, ov-cpu, torch-cuda; estimate:<profile> for estimates
    device: str
    threads: int
    warmup: int = 0
    runs: int = 0
    load_ms: float | None = None
    first_call_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    peak_memory_mb: float | None = None
    flops: int | None = None  # multiply-adds count twice; convolution, matmul and attention ops
    peak_gflops: float | None = None
    floor_ms: float | None = None
    efficiency: float | None = None
    reference_ms: float | None = None
    ratio: float | None = None
    estimate: bool = False
    estimate_ms: float | None = None  # roofline estimate, set only with `estimate`
    label: str = "measured"
    detail: dict[str, Any] = field(default_factory=dict)  # runtime versions, providers, estimate breakdown
    times_ms: list[float] = field(default_factory=list)
