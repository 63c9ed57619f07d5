"""2DQuant post-training quantization (DOBI + DQC) and the quantized artifact."""

from edgesr.converter.config import DQCConfig, QuantConfig  # noqa: F401
from edgesr.converter.quant import quantize, quantize_  # noqa: F401
