"""The "no custom code on the phone" profile: LiteRT's own INT4 of the FP32 file, by ai-edge-quantizer.

Fully-connected weights become per-output-channel symmetric INT4 with dynamically quantized activations (what
XNNPACK runs as INT4 x INT8 on device); optionally the convs get INT8 weights the same way. Blockwise INT4 is
not an option for SwinIR-light: its widths (60, 120) divide by no supported block size (32..256).
"""

from __future__ import annotations

from edgesr.errors import EdgesrError


def stock_recipe(int8_convs: bool = False) -> list[dict]:
    def entry(op: str, bits: int) -> dict:
        return {"regex": ".*", "operation": op, "algorithm_key": "min_max_uniform_quantize",
                "op_config": {"weight_tensor_config": {"num_bits": bits, "symmetric": True,
                                                       "granularity": "CHANNELWISE", "dtype": "INT"},
                              "compute_precision": "INTEGER", "explicit_dequantize": False}}

    recipe = [entry("FULLY_CONNECTED", 4)]
    if int8_convs:
        recipe.append(entry("CONV_2D", 8))
    return recipe


def quantize_stock(fp32_tflite: bytes, int8_convs: bool = False) -> bytes:
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise EdgesrError("the stock INT4 .tflite needs ai-edge-quantizer: pip install 'edgesr[tflite]'") from None
    q = quantizer.Quantizer(bytearray(fp32_tflite), stock_recipe(int8_convs))
    return bytes(q.quantize(enable_progress_bar=False, enable_progress_report=False).quantized_model)
