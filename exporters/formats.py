"""The formats and their option values, in a module without torch, so `compress export --help` answers at once."""

FORMATS = ("onnx", "openvino", "coreml")
MIN_OPSET = 18  # asking for opset 17 produced an invalid model (a Split with num_outputs), DESIGN.md section 7
TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")  # Core ML deployment
PALETTE_BITS = (1, 2, 3, 4, 6, 8)  # Core ML palettization
