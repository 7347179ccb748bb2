"""Export UNets and SPAN to ONNX, OpenVINO and Core ML, validated against torch (optimum-like layout).

One export config per model family (`exporters.config`), one module per format (`exporters.onnx`,
`exporters.openvino`, `exporters.coreml`), shared validation (`exporters.validate`). Runtimes are optional
extras and are imported only when a format needs them.
"""

from compress.types import ExportArtifact
from exporters.api import export
from exporters.config import FORMATS, load_export_config
from exporters.validate import ValidationError, read_artifact, validate_artifact

__all__ = ["FORMATS", "ExportArtifact", "ValidationError", "export", "load_export_config", "read_artifact",
           "validate_artifact"]
