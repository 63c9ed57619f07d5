"""edgesr: low-bit SwinIR-light super-resolution, from 2DQuant post-training quantization to phones."""

__version__ = "0.1.0"
