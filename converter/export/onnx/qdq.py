"""Graph pass: 2DQuant's placeholder nodes -> standard ONNX QDQ (opset 21) that any runtime executes.

``torch.onnx`` writes ``edgesr::qlinear`` / ``edgesr::qbmm`` as ``edgesr.QLinear`` / ``edgesr.QBmm`` nodes with
their learned bounds as attributes (:mod:`.lower`). Each becomes:

* a quantizer of a float tensor v, bounds (l, u), L = 2^b - 1, s = (u - l) / L (float32, as the model):
  ``Sub(v, l) -> QuantizeLinear(s, 0) -> DequantizeLinear(s, 0) -> Add(l)`` with a uint4 zero point for
  b <= 4 (uint8 above): shift, round half to even, saturate to [0, L] (the clamp), scale back: that is
  ``fake_quantize``. For 2 and 3 bits ``Max(0) -> Min(u - l)`` clamps before QuantizeLinear (uint4 saturates
  at 15). The shift by l keeps 2DQuant's bounds exact; a QDQ zero point would round l to the grid.
* ``QLinear(x, W, bias)``: the quantizer on x, ``MatMul`` with ``DequantizeLinear(codes of Wᵀ) + l_w`` and
  ``Add(bias)``; the weight codes are a packed uint4 initializer (two codes per byte).
* ``QBmm(a, b)``: quantizers on both, ``Transpose(0, 2, 1)`` of b when transposed, ``MatMul``.

Example, the q projection of a SwinIR-light block: x (64, 64, 60) -> 5 nodes -> MatMul with W (60, 60) ->
(64, 64, 60); W is 3,600 codes in 1,800 bytes instead of 14,400 bytes of float32.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from edgesr.converter.pack import pack_codes
from edgesr.converter.quant import quant_codes

DOMAIN = "edgesr"


def _step(lower: float, upper: float, bits: int) -> np.float32:
    return np.float32((np.float32(upper) - np.float32(lower)) / np.float32(2**bits - 1))


def _code_type(bits: int) -> int:
    return TensorProto.UINT4 if bits <= 4 else TensorProto.UINT8


def _codes_tensor(name: str, codes: np.ndarray, bits: int) -> TensorProto:
    if bits <= 4:  # ONNX packs 4-bit tensors two per byte, first element in the low nibble (as pack_codes)
        return helper.make_tensor(name, TensorProto.UINT4, codes.shape, pack_codes(codes.reshape(-1), 4).tobytes(),
                                  raw=True)
    return numpy_helper.from_array(codes.astype(np.uint8), name)


class _Builder:
    """Collects the replacement nodes and initializers; names are unique per placeholder node."""

    def __init__(self, prefix: str):
        self.prefix, self.nodes, self.inits, self._n = prefix, [], [], 0

    def name(self, what: str) -> str:
        self._n += 1
        return f"{self.prefix}/{what}_{self._n}"

    def const(self, value, what: str, dtype=np.float32) -> str:
        name = self.name(what)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.name(op), **attrs))
        return output

    def zero_point(self, bits: int) -> str:
        name = self.name("zero_point")
        self.inits.append(helper.make_tensor(name, _code_type(bits), [], [0]))
        return name

    def quantizer(self, v: str, lower: float, upper: float, bits: int, output: str | None = None) -> str:
        lo = self.const(lower, "lower")
        scale, zp = self.const(_step(lower, upper, bits), "scale"), self.zero_point(bits)
        shifted = self.node("Sub", [v, lo])
        if bits not in (4, 8):  # QuantizeLinear saturates to the code type's range: clamp to L codes first
            rng = self.const(np.float32(upper) - np.float32(lower), "range")
            shifted = self.node("Min", [self.node("Max", [shifted, self.const(0.0, "zero")]), rng])
        codes = self.node("QuantizeLinear", [shifted, scale, zp])
        return self.node("Add", [self.node("DequantizeLinear", [codes, scale, zp]), lo], output)


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constant(graph, name: str) -> np.ndarray:
    """The value of ``name`` when it is constant: an initializer, or a Constant / Identity chain to one."""
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    while name not in inits:
        node = producers.get(name)
        if node is None:
            raise ValueError(f"{name} is not a constant")
        if node.op_type == "Identity":
            name = node.input[0]
        elif node.op_type == "Constant":
            return numpy_helper.to_array(helper.get_attribute_value(node.attribute[0]))
        else:
            raise ValueError(f"{name} is computed by {node.op_type}, not a constant")
    return numpy_helper.to_array(inits[name])


def _lower_qlinear(graph, node, b: _Builder) -> None:
    a = _attrs(node)
    bits = int(a["bits"])
    x, w_name = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    w = torch.from_numpy(_constant(graph, w_name).astype(np.float32))
    codes = quant_codes(w, torch.tensor(a["w_lower"]), torch.tensor(a["w_upper"]), bits).numpy()
    w_codes = b.name("weight_codes")
    b.inits.append(_codes_tensor(w_codes, np.ascontiguousarray(codes.T), bits))  # (K, N) for MatMul
    w_scale, w_zp = b.const(_step(a["w_lower"], a["w_upper"], bits), "w_scale"), b.zero_point(bits)
    w_dq = b.node("Add", [b.node("DequantizeLinear", [w_codes, w_scale, w_zp]), b.const(a["w_lower"], "w_lower")])
    xq = b.quantizer(x, a["x_lower"], a["x_upper"], bits)
    if bias is None:
        b.node("MatMul", [xq, w_dq], node.output[0])
    else:
        b.node("Add", [b.node("MatMul", [xq, w_dq]), bias], node.output[0])


def _lower_qbmm(node, b: _Builder) -> None:
    a = _attrs(node)
    bits = int(a["bits"])
    aq = b.quantizer(node.input[0], a["a_lower"], a["a_upper"], bits)
    bq = b.quantizer(node.input[1], a["b_lower"], a["b_upper"], bits)
    if a["b_transposed"]:
        bq = b.node("Transpose", [bq], perm=[0, 2, 1])
    b.node("MatMul", [aq, bq], node.output[0])


def _prune(graph) -> None:
    """Drop nodes whose outputs nobody reads and initializers nobody uses (the replaced float weights)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def lower_to_qdq(model: onnx.ModelProto) -> dict[str, int]:
    """Rewrite every edgesr placeholder of ``model`` (in place); returns how many of each were lowered."""
    graph = model.graph
    counts = {"QLinear": 0, "QBmm": 0}
    new_nodes = []
    for node in list(graph.node):
        if node.domain != DOMAIN:
            new_nodes.append(node)
            continue
        b = _Builder(node.name or node.output[0])
        if node.op_type == "QLinear":
            _lower_qlinear(graph, node, b)
        elif node.op_type == "QBmm":
            _lower_qbmm(node, b)
        else:
            raise ValueError(f"no ONNX lowering for edgesr.{node.op_type}")
        counts[node.op_type] += 1
        new_nodes.extend(b.nodes)
        graph.initializer.extend(b.inits)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _prune(graph)
    kept = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return counts
