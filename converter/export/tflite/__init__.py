"""LiteRT / TFLite lowering: :func:`.lower.export_tflite` writes the FP32, stock-INT4 or edgesr-INT4 file."""

from edgesr.converter.export.tflite.lower import export_tflite

__all__ = ["export_tflite"]
