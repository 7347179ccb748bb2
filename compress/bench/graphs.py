"""Read a model's graph without running it: its inputs, and per-op FLOPs and memory traffic.

One reader per source, all producing the same `Graph`: torch modules (a dispatch mode over meta tensors, FLOP
formulas from `torch.utils.flop_counter`), ONNX (shape inference, then a node walk), OpenVINO IR (a walk over its
static shapes) and Core ML (the MIL program in the package's specification). FLOPs are counted for convolutions,
matrix products and attention (a multiply-add is two FLOPs); every other op only moves memory. The bench's
efficiency, the roofline estimate and npu-check all read a `Graph`.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from compress.errors import CompressError
from compress.optional import require


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # -1 marks a dynamic dimension
    dtype: str  # numpy name: float32, float16, int64, ...

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape)


@dataclass(frozen=True)
class OpCost:
    """One op: its FLOPs and the elements it reads (weights included) and writes, at the graph's shapes."""

    type: str  # in the graph's own naming: Conv (ONNX), Convolution (OpenVINO), conv (Core ML), convolution (torch)
    flops: int = 0
    read: int = 0
    written: int = 0
    weights: int = 0  # elements of constant inputs
    rank: int = 0  # the highest rank among its inputs and outputs
    dtype: str = ""  # its first output's dtype: what it computes in
    # "dilated" (a dilated convolution), "dynamic" (a shape is not static), "omitted-input" (ONNX: an optional
    # input left out)
    flags: frozenset[str] = frozenset()


@dataclass
class Graph:
    format: str  # onnx | openvino | coreml | torch
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: list[OpCost]
    weight_bytes: dict[str, int] = field(default_factory=dict)  # stored weight bytes per dtype
    op_counts: Counter[str] = field(default_factory=Counter)  # every op type, data-free ones (reshapes) included

    @property
    def flops(self) -> int:
        return sum(op.flops for op in self.ops)


def _numel(shape: tuple[int, ...] | list[int]) -> int:
    return 0 if any(d < 0 for d in shape) else math.prod(shape)


def einsum_flops(equation: str, shapes: list[tuple[int, ...]]) -> int:
    """2 x the product of every index's size (each output element sums over the contracted indices)."""
    terms = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        for letter, size in zip(term.replace("...", ""), shape[-len(term.replace("...", "")):], strict=True):
            sizes[letter] = size
    return 2 * math.prod(sizes.values())


# ---------------------------------------------------------------------------------------------------- torch


class _Recorder(TorchDispatchMode):
    """Records an `OpCost` for every aten op; views cost nothing but carry "is a weight" to their outputs."""

    def __init__(self, constants: list[torch.Tensor]):
        super().__init__()
        self.keep = list(constants)  # strong references keep ids unique while recording
        self.constant_ids = {id(t) for t in constants}
        self.ops: list[OpCost] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket not in flop_registry:
            with self:  # composite ops such as attention are counted through their parts
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        constant_inputs = [t for t in inputs if id(t) in self.constant_ids]
        if func.is_view or func.overloadpacket is torch.ops.aten._unsafe_view:  # _unsafe_view aliases too
            if constant_inputs:
                self.keep += outputs
                self.constant_ids |= {id(t) for t in outputs}
            return out
        formula = flop_registry.get(func.overloadpacket)
        self.ops.append(OpCost(
            type=func.overloadpacket.__name__,
            flops=int(formula(*args, **kwargs, out_val=out)) if formula else 0,
            read=sum(t.numel() for t in inputs), written=sum(t.numel() for t in outputs),
            weights=sum(t.numel() for t in constant_inputs),
            rank=max((t.dim() for t in inputs + outputs), default=0),
            dtype=_torch_dtype_name(outputs[0].dtype) if outputs else ""))
        return out


def torch_graph(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Graph:
    """Trace one call of `module(*inputs)` on the meta device: no memory, well under a second even for SD."""
    state = {name: torch.empty_like(t, device="meta")
             for name, t in [*module.named_parameters(), *module.named_buffers()]}
    meta_inputs = [torch.empty_like(t, device="meta") for t in inputs.values()]
    recorder = _Recorder(list(state.values()))
    with recorder, torch.no_grad():
        out = torch.func.functional_call(module, state, tuple(meta_inputs))
    outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    weight_bytes: Counter[str] = Counter()
    for tensor in module.parameters():
        weight_bytes[_torch_dtype_name(tensor.dtype)] += tensor.numel() * tensor.element_size()
    return Graph(
        "torch",
        [TensorInfo(name, tuple(t.shape), _torch_dtype_name(t.dtype)) for name, t in inputs.items()],
        [TensorInfo(f"output_{i}", tuple(t.shape), _torch_dtype_name(t.dtype)) for i, t in enumerate(outputs)],
        recorder.ops, dict(weight_bytes), Counter(op.type for op in recorder.ops))


def _torch_dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------------------------------- ONNX

ONNX_FREE = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size"}


def _onnx_conv_flops(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    weight = shapes.get(node.input[1], ())
    if node.op_type == "Conv":
        out = shapes.get(node.output[0], ())
        return 2 * _numel(out) * _numel(weight[1:]) if out and weight else 0
    x = shapes.get(node.input[0], ())  # ConvTranspose: every input element meets Cout/groups x kernel weights
    return 2 * _numel(x) * _numel(weight[1:]) if x and weight else 0


def _onnx_flops(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        return _onnx_conv_flops(node, shapes)
    if op in ("MatMul", "Gemm"):
        a, out = shapes.get(node.input[0], ()), shapes.get(node.output[0], ())
        if not a or not out:
            return 0
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
        return 2 * _numel(out) * (a[0] if trans_a else a[-1])
    if op == "Einsum":
        equation = next(attr.s.decode() for attr in node.attribute if attr.name == "equation")
        return einsum_flops(equation, [shapes.get(name, ()) for name in node.input])
    return 0


def onnx_graph(path: str | Path) -> Graph:
    """Walk an ONNX model's nodes after shape inference (weights in external data are not loaded)."""
    onnx = require("onnx", "reading an ONNX graph")
    with _unreadable(path, "ONNX model"):
        model = onnx.load(str(path), load_external_data=False)
    with contextlib.suppress(Exception):  # an op shape inference does not know: keep the exporter's shapes
        model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    to_numpy = onnx.helper.tensor_dtype_to_np_dtype

    def info(value: Any) -> TensorInfo:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return TensorInfo(value.name, shape, np.dtype(to_numpy(tensor.elem_type)).name)

    values = {v.name: info(v) for v in [*graph.value_info, *graph.input, *graph.output]}
    shapes = {name: value.shape for name, value in values.items()}
    constants: set[str] = set()
    weight_bytes: Counter[str] = Counter()
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
        constants.add(init.name)
        dtype = np.dtype(to_numpy(init.data_type))
        weight_bytes[dtype.name] += _numel(tuple(init.dims)) * dtype.itemsize
    ops, counts = [], Counter()
    for node in graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
            continue
        counts[node.op_type] += 1
        if node.op_type in ONNX_FREE:
            continue
        tensors = [shapes.get(name) for name in [*node.input, *node.output] if name]
        dilated = any(attr.name == "dilations" and any(d > 1 for d in attr.ints) for attr in node.attribute)
        flags = {"dilated"} if dilated else set()
        if any(shape is None or any(d < 0 for d in shape) for shape in tensors):
            flags.add("dynamic")
        if "" in node.input:  # an optional input left out (Resize's roi): no tensor, so no shape
            flags.add("omitted-input")
        ops.append(OpCost(
            type=node.op_type, flops=_onnx_flops(node, shapes),
            read=sum(_numel(shapes.get(name, ())) for name in node.input if name),
            written=sum(_numel(shapes.get(name, ())) for name in node.output),
            weights=sum(_numel(shapes.get(name, ())) for name in node.input if name in constants),
            rank=max((len(s) for s in tensors if s is not None), default=0),
            dtype=values[node.output[0]].dtype if node.output and node.output[0] in values else "",
            flags=frozenset(flags)))
    names = {init.name for init in graph.initializer}
    return Graph("onnx", [info(v) for v in graph.input if v.name not in names], [info(v) for v in graph.output],
                 ops, dict(weight_bytes), counts)


# ------------------------------------------------------------------------------------------------- OpenVINO

OPENVINO_FREE = {"Parameter", "Result", "Constant", "Reshape", "Squeeze", "Unsqueeze", "ShapeOf"}


def _ov_shape(partial: Any) -> tuple[int, ...]:
    if partial.rank.is_dynamic:
        return (-1,)
    return tuple(d.get_length() if d.is_static else -1 for d in partial)


def _ov_dtype(element_type: Any) -> str:
    try:
        return element_type.to_dtype().name
    except (RuntimeError, TypeError):  # u4, nf4, ... have no numpy dtype
        return element_type.get_type_name()


def _ov_flops(node: Any, ins: list[tuple[int, ...]], out: tuple[int, ...]) -> int:
    kind = node.get_type_name()
    if kind == "Convolution":
        return 2 * _numel(out) * _numel(ins[1][1:])
    if kind == "GroupConvolution":  # weights (groups, Cout/groups, Cin/groups, kernel...)
        return 2 * _numel(out) * _numel(ins[1][2:])
    if kind == "ConvolutionBackpropData":  # weights (Cin, Cout, kernel...)
        return 2 * _numel(ins[0]) * _numel(ins[1][1:])
    if kind == "MatMul":
        transpose_a = node.get_attributes().get("transpose_a", False)
        a = ins[0]
        return 2 * _numel(out) * (a[-2] if transpose_a else a[-1])
    if kind == "ScaledDotProductAttention":  # query (..., L, E), key (..., S, E), value (..., S, Ev)
        query, key, value = ins[:3]
        return 2 * _numel(query[:-1]) * key[-2] * (query[-1] + value[-1])
    if kind == "Einsum":
        return einsum_flops(node.get_attributes()["equation"], ins)
    return 0


def openvino_graph(path: str | Path) -> Graph:
    """Walk an OpenVINO model (IR, or anything `read_model` reads, such as ONNX) over its static shapes."""
    core = require("openvino", "reading an OpenVINO graph").Core()
    if Path(path).suffix == ".xml":  # checked first: read_model tries every frontend, and TensorFlow's logs noise
        with _unreadable(path, "OpenVINO IR"):
            if ElementTree.parse(path).getroot().tag != "net":
                raise ValueError("its root element is not <net>")
    with _unreadable(path, "OpenVINO model"):
        model = core.read_model(str(path))
    ops, weight_bytes, counts = [], Counter(), Counter()
    constant: set[str] = set()  # Constants, and ops on constants only (the Convert / Subtract / Multiply that
    for node in model.get_ordered_ops():  # decompress fp16 or int8 weights); the order is topological
        kind = node.get_type_name()
        sources = [port.get_source_output().get_node().get_name() for port in node.inputs()]
        if kind == "Constant":
            constant.add(node.get_name())
            weight_bytes[_ov_dtype(node.get_output_element_type(0))] += node.get_byte_size()
            continue
        if kind not in ("Parameter", "ShapeOf", "ReadValue") and sources and all(s in constant for s in sources):
            constant.add(node.get_name())
            continue
        if kind not in ("Parameter", "Result"):
            counts[kind] += 1
        if kind in OPENVINO_FREE:
            continue
        ins = [_ov_shape(node.get_input_partial_shape(i)) for i in range(node.get_input_size())]
        outs = [_ov_shape(node.get_output_partial_shape(i)) for i in range(node.get_output_size())]
        flags = {"dynamic"} if any(d < 0 for s in ins + outs for d in s) else set()
        if any(d > 1 for d in node.get_attributes().get("dilations", ())):
            flags.add("dilated")
        ops.append(OpCost(
            type=kind, flops=0 if "dynamic" in flags else _ov_flops(node, ins, outs[0] if outs else ()),
            read=sum(_numel(s) for s in ins), written=sum(_numel(s) for s in outs),
            weights=sum(_numel(shape) for shape, source in zip(ins, sources, strict=True) if source in constant),
            rank=max((len(s) for s in ins + outs), default=0),
            dtype=_ov_dtype(node.get_output_element_type(0)) if outs else "", flags=frozenset(flags)))

    def infos(ports: Any) -> list[TensorInfo]:
        return [TensorInfo(port.get_any_name(), _ov_shape(port.get_partial_shape()),
                           _ov_dtype(port.get_element_type())) for port in ports]

    return Graph("openvino", infos(model.inputs), infos(model.outputs), ops, dict(weight_bytes), counts)


# -------------------------------------------------------------------------------------------------- Core ML

_MIL_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "INT32": "int32", "INT8": "int8", "UINT8": "uint8",
               "INT16": "int16", "BOOL": "bool", "INT64": "int64"}


def _mil_blocks(block: Any) -> list[Any]:
    ops = []
    for op in block.operations:
        ops.append(op)
        for inner in op.blocks:
            ops += _mil_blocks(inner)
    return ops


def _mil_type(value_type: Any, data_type_name: Any) -> tuple[tuple[int, ...], str]:
    tensor = value_type.tensorType
    shape = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else -1 for d in tensor.dimensions)
    name = data_type_name(tensor.dataType)
    return shape, _MIL_DTYPES.get(name, name.lower())


def _mil_immediate(op: Any) -> list | None:
    """The values of a const op stored in the program itself (small parameters, not weight blobs)."""
    value = op.attributes["val"]
    if value.WhichOneof("value") != "immediateValue":
        return None
    tensor = value.immediateValue.tensor
    kind = tensor.WhichOneof("value")
    return list(getattr(tensor, kind).values) if kind else None


@dataclass
class _MilScope:
    """Shapes of every value so far, and the values of small consts, to read an op's arguments by key."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    consts: dict[str, list | None] = field(default_factory=dict)

    @staticmethod
    def _name(op: Any, key: str) -> str | None:
        binding = op.inputs.get(key)
        return binding.arguments[0].name if binding is not None and binding.arguments else None

    def shape(self, op: Any, key: str) -> tuple[int, ...]:
        return self.shapes.get(self._name(op, key), ())

    def values(self, op: Any, key: str) -> list | None:
        return self.consts.get(self._name(op, key))


def _mil_flops(op: Any, scope: _MilScope, out: tuple[int, ...]) -> int:
    if op.type in ("conv", "conv_transpose"):
        weight = scope.shape(op, "weight")  # conv: (Cout, Cin/groups, k...); conv_transpose: (Cin, Cout/groups, k...)
        return 2 * _numel(out if op.type == "conv" else scope.shape(op, "x")) * _numel(weight[1:])
    if op.type == "linear":
        return 2 * _numel(out) * scope.shape(op, "weight")[-1]
    if op.type == "matmul":
        x = scope.shape(op, "x")
        return 2 * _numel(out) * (x[-2] if scope.values(op, "transpose_x") == [True] else x[-1])
    if op.type == "einsum":
        equation = scope.values(op, "equation")
        shapes = [scope.shapes.get(a.name, ()) for a in op.inputs["values"].arguments]
        return einsum_flops(equation[0], shapes) if equation else 0
    return 0


def coreml_graph(paths: list[Path]) -> Graph:
    """Walk the MIL program of one package, or of a chain of packages (a chunked UNet) as one graph."""
    ct = require("coremltools", "reading a Core ML graph")
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType
    from coremltools.proto.MIL_pb2 import DataType

    inputs, outputs, ops, weight_bytes, counts = [], [], [], Counter(), Counter()
    for path in paths:
        with _unreadable(path, "Core ML package"):
            spec = ct.utils.load_spec(str(path))
        function = spec.mlProgram.functions["main"]
        scope = _MilScope({value.name: _mil_type(value.type, DataType.Name)[0] for value in function.inputs})
        shapes = scope.shapes
        for op in _mil_blocks(function.block_specializations[function.opset]):
            outs = [_mil_type(o.type, DataType.Name) for o in op.outputs]
            for value, (shape, _) in zip(op.outputs, outs, strict=True):
                shapes[value.name] = shape
            if op.type == "const":
                shape, dtype = outs[0]
                scope.consts[op.outputs[0].name] = _mil_immediate(op)
                if dtype in ("float32", "float16", "int8", "uint8"):
                    weight_bytes[dtype] += _numel(shape) * np.dtype(dtype).itemsize
                continue
            counts[op.type] += 1
            if op.type in ("reshape", "squeeze", "expand_dims"):
                continue

            ins = [shapes.get(a.name, ()) for binding in op.inputs.values() for a in binding.arguments if a.name]
            every = ins + [shape for shape, _ in outs]
            flags = {"dynamic"} if any(d < 0 for s in every for d in s) else set()
            if op.type == "conv" and any(d > 1 for d in scope.values(op, "dilations") or ()):
                flags.add("dilated")
            ops.append(OpCost(type=op.type, flops=_mil_flops(op, scope, outs[0][0] if outs else ()),
                              read=sum(_numel(s) for s in ins), written=sum(_numel(s) for s, _ in outs),
                              weights=sum(_numel(shapes.get(a.name, ())) for binding in op.inputs.values()
                                          for a in binding.arguments if a.name in scope.consts),
                              rank=max((len(s) for s in every), default=0), dtype=outs[0][1] if outs else "",
                              flags=frozenset(flags)))

        def infos(features: Any) -> list[TensorInfo]:
            result = []
            for feature in features:
                array = feature.type.multiArrayType
                flexible = array.WhichOneof("ShapeFlexibility") is not None
                shape = tuple(-1 if flexible else d for d in array.shape)
                dtype = ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
                result.append(TensorInfo(feature.name, shape, dtype.replace("double", "float64")))
            return result

        chained = {o.name for o in outputs}
        inputs += [i for i in infos(spec.description.input) if i.name not in chained and i not in inputs]
        outputs = infos(spec.description.output)
    return Graph("coreml", inputs, outputs, ops, dict(weight_bytes), counts)


@contextlib.contextmanager
def _unreadable(path: str | Path, kind: str) -> Iterator[None]:
    """Turn a parser's exception (protobuf, XML, the runtime's own) into one line naming the file."""
    try:
        yield
    except Exception as exc:  # each parser raises its own types (DecodeError, ParseError, RuntimeError, ...)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else type(exc).__name__
        raise CompressError(f"{path} is not a readable {kind} ({detail})") from None


def artifact_graph(format: str, paths: list[Path]) -> Graph:
    if format == "onnx":
        return onnx_graph(paths[0])
    if format == "openvino":
        return openvino_graph(paths[0])
    if format == "coreml":
        return coreml_graph(paths)
    raise CompressError(f"no graph reader for format {format!r}")
