"""Export UNets and SPAN to ONNX, OpenVINO and Core ML, validated against torch (optimum-like layout).

One export config per model family (`exporters.config`), one module per format (`exporters.onnx`,
`exporters.openvino`, `exporters.coreml`), shared validation (`exporters.validate`). Runtimes are optional
extras and are imported only when a format needs them.
"""

from compress.lazy import lazy_exports

_EXPORTS = {
    "ExportArtifact": "compress.types",
    "FORMATS": "exporters.formats",
    "ValidationError": "exporters.validate",
    "export": "exporters.api",
    "load_export_config": "exporters.config",
    "read_artifact": "exporters.validate",
    "validate_artifact": "exporters.validate",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
