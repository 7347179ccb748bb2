"""Roofline latency estimates for mobile and laptop NPUs we cannot run on: never a measurement, always labelled.

Per op, the time is at least its FLOPs at the device's peak rate and at least its memory traffic (weights and
activations read and written, at the deployed precision) at the device's bandwidth; the estimate is the sum of
the larger of the two over all ops. It assumes every op reaches peak (real ops do not, so it reads low) and that
every activation goes to DRAM and back between ops (a real NPU keeps tiles on chip and fuses ops, so it reads
high): it is a roofline estimate, neither a lower nor an upper bound, and lives in `estimate_ms`, never `p50_ms`.

Vendors publish peak int8 TOPS; the fp16 rates below are derived as half the int8 rate (the usual NPU ratio),
which is stated next to each number. Bandwidth is the DRAM interface's: transfer rate x bus width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from compress.errors import CompressError
from compress.types import BenchResult

if TYPE_CHECKING:
    from compress.bench.targets import Target

BYTES_PER_ELEMENT = {"fp16": 2, "int8": 1}


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    title: str
    int8_tops: float
    fp16_tflops: float
    bandwidth_gbs: float
    sources: tuple[str, ...]

    def peak_flops(self, precision: str) -> float:
        return (self.int8_tops if precision == "int8" else self.fp16_tflops) * 1e12


PROFILES = {profile.name: profile for profile in (
    DeviceProfile(
        "a17-pro-ane", "Apple A17 Pro Neural Engine",
        # Apple Newsroom, 2023-09-12, "Apple unveils iPhone 15 Pro and iPhone 15 Pro Max": the 16-core Neural
        # Engine processes "nearly 35 trillion operations per second" (up to 2x the A16's quoted 17 trillion).
        int8_tops=35.0,
        # Not published. The doubling over A16 came with int8 support, so fp16 is taken as half: 17.5 TFLOPS.
        fp16_tflops=17.5,
        # LPDDR5-6400 on a 64-bit bus (iPhone 15 Pro teardowns, e.g. TechInsights): 6.4 GT/s x 8 B = 51.2 GB/s.
        bandwidth_gbs=51.2,
        sources=("https://www.apple.com/newsroom/2023/09/apple-unveils-iphone-15-pro-and-iphone-15-pro-max/",
                 "fp16 = int8 / 2 (assumed)", "LPDDR5-6400 x 64-bit")),
    DeviceProfile(
        "sd8gen3-hexagon", "Qualcomm Snapdragon 8 Gen 3 Hexagon NPU",
        # Qualcomm's product brief gives no TOPS figure (it claims 98% faster AI than 8 Gen 2); 45 TOPS int8 is the
        # figure third-party spec pages list, e.g. https://runlocalai.co/hardware/snapdragon-8-gen-3.
        int8_tops=45.0,
        fp16_tflops=22.5,  # not published: int8 / 2 (the HTP runs fp16 since v73; v75 here)
        # Qualcomm product brief: LPDDR5X up to 4800 MHz (9.6 GT/s) on a 64-bit bus: 9.6 GT/s x 8 B = 76.8 GB/s.
        bandwidth_gbs=76.8,
        sources=("Qualcomm Snapdragon 8 Gen 3 product brief (memory)", "https://runlocalai.co/hardware/snapdragon-8-gen-3",
                 "fp16 = int8 / 2 (assumed)")),
    DeviceProfile(
        "core-ultra-npu", "Intel Core Ultra 7 155H NPU (Meteor Lake)",
        # Intel Core Ultra launch, 2023-12-14: NPU up to 11 TOPS int8 (of 34 platform TOPS).
        int8_tops=11.0,
        fp16_tflops=5.5,  # Intel NPU (3720) runs fp16 at half its int8 MAC rate
        # Intel ARK, Core Ultra 7 155H: max memory bandwidth 120 GB/s (LPDDR5X-7467, 128-bit).
        bandwidth_gbs=120.0,
        sources=("Intel Core Ultra launch, 2023-12-14 (NPU 11 TOPS)", "Intel ARK: Core Ultra 7 155H (120 GB/s)",
                 "fp16 = int8 / 2 (Intel NPU)")),
)}


def estimate_label(profile: DeviceProfile, precision: str) -> str:
    return (f"ESTIMATE (roofline estimate for {profile.title}, {precision}: ops at peak rate, every activation "
            "through DRAM; not measured, not a bound)")


def get_profile(name: str) -> DeviceProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise CompressError(f"unknown device profile {name!r}; known: {', '.join(PROFILES)}") from None


def estimate(target: Target, device: str, precision: str = "fp16") -> BenchResult:
    """A roofline estimate for `target` on the device profile `device`, in `estimate_ms`, labelled as such."""
    profile = get_profile(device)
    if precision not in BYTES_PER_ELEMENT:
        raise CompressError(f"precision must be one of {', '.join(BYTES_PER_ELEMENT)}, not {precision!r}")
    graph = target.graph()
    peak = profile.peak_flops(precision)
    bandwidth = profile.bandwidth_gbs * 1e9
    size = BYTES_PER_ELEMENT[precision]
    total = compute = memory = 0.0
    memory_bound = 0
    for op in graph.ops:
        op_compute, op_memory = op.flops / peak, (op.read + op.written) * size / bandwidth
        total += max(op_compute, op_memory)
        compute += op_compute
        memory += op_memory
        memory_bound += op_memory > op_compute
    return BenchResult(
        target=target.name, path=target.location, format=target.format, backend=f"estimate:{profile.name}",
        device=profile.title, threads=0, estimate_ms=total * 1e3, flops=graph.flops or None,
        peak_gflops=peak / 1e9, floor_ms=compute * 1e3, estimate=True,
        label=estimate_label(profile, precision),
        detail={"precision": precision, "compute_bound_ms": compute * 1e3, "memory_bound_ms": memory * 1e3,
                "ops": len(graph.ops), "memory_bound_ops": memory_bound,
                "bytes": int(sum(op.read + op.written for op in graph.ops) * size),
                "int8_tops": profile.int8_tops, "fp16_tflops": profile.fp16_tflops,
                "bandwidth_gbs": profile.bandwidth_gbs, "sources": list(profile.sources)})
