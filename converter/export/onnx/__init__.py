"""ONNX target: ``.onnx`` files for onnxruntime and other ONNX runtimes. FP32 as exported; 2DQuant layers as
standard uint4 QDQ with the learned bounds (:mod:`.qdq`), so no custom op is needed to run them."""

from edgesr.converter.export.onnx.lower import METADATA_KEY, export_onnx  # noqa: F401
