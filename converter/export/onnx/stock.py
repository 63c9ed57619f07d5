"""The "no custom code" ONNX profile: onnxruntime's own weight-only INT4 (``MatMulNBits``) on the FP32 graph.

This is not 2DQuant: weights are quantized blockwise (32 along K, symmetric, round-to-nearest) by
onnxruntime's quantizer and activations stay float; it needs nothing but a stock onnxruntime. Its quality is
measured next to the 2DQuant file by ``scripts/bench_onnx.py``.

torch.onnx writes each linear as ``MatMul(x, Transpose(W))``; the quantizer only takes a MatMul whose second
input is an initializer, so :func:`fold_weight_transposes` first stores ``Wᵀ`` itself. Example, a q projection:
Transpose(W (60, 60)) -> MatMul becomes MatMul with Wᵀ (60, 60), then MatMulNBits with 60 x 2 blocks of 32
(K padded to 64) 4-bit codes and a scale per block.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

BLOCK_SIZE = 32


def fold_weight_transposes(proto: onnx.ModelProto) -> int:
    """Replace Transpose(initializer) by a transposed initializer; returns how many were folded."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    folded = 0
    for node in list(g.node):
        if node.op_type != "Transpose" or node.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        value = numpy_helper.to_array(inits[node.input[0]])
        value = np.transpose(value, perm) if perm else value.T
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), node.output[0]))
        g.node.remove(node)
        folded += 1
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return folded


def stock_int4(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """(quantized model, number of MatMulNBits) from an FP32 edgesr ONNX model."""
    try:
        from onnxruntime.quantization import QuantFormat
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
    except ImportError as e:
        raise ImportError(f"the stock INT4 profile needs onnxruntime's quantization tools (onnx-ir): {e}") from None
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)  # one INFO line per skipped MatMul
    fold_weight_transposes(proto)
    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=4,
                                          quant_format=QuantFormat.QOperator)
    quantizer = MatMulNBitsQuantizer(proto, algo_config=config)
    quantizer.process()
    out = quantizer.model.model
    return out, sum(1 for n in out.graph.node if n.op_type == "MatMulNBits")
