"""``torch.onnx`` (TorchScript exporter, opset 21) of the export-friendly model, 2DQuant layers as QDQ.

FP32: the graph of :class:`~edgesr.converter.export.graph.ExportableSwinIR` at one static LR tile, not
constant-folded (folding would store the gathered position bias, 2.4 MB, instead of its 130 KB tables). Quantized:
its ``edgesr::qlinear`` / ``edgesr::qbmm`` ops are exported as ``edgesr.*`` placeholders and then lowered to
standard QDQ by :func:`.qdq.lower_to_qdq`, so onnxruntime reproduces the fake-quant model with no custom op.
The model descriptor is stored as the ``edgesr_metadata`` metadata property (JSON).
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

from edgesr.converter.export.descriptor import descriptor
from edgesr.converter.export.files import write_atomic
from edgesr.converter.export.graph import ExportableSwinIR
from edgesr.models.swinir import SwinIR
from edgesr.runtime.onnxrt import METADATA_KEY

OPSET = 21  # 4-bit QuantizeLinear / DequantizeLinear


def _const(v, kind: str):
    from torch.onnx.symbolic_helper import _maybe_get_const

    return _maybe_get_const(v, kind)


def _qlinear_symbolic(g, x, w, b, xl, xu, wl, wu, bits):
    return g.op("edgesr::QLinear", x, w, b, x_lower_f=_const(xl, "f"), x_upper_f=_const(xu, "f"),
                w_lower_f=_const(wl, "f"), w_upper_f=_const(wu, "f"), bits_i=_const(bits, "i"))


def _qbmm_symbolic(g, a, b, al, au, bl, bu, bits, b_transposed):
    return g.op("edgesr::QBmm", a, b, a_lower_f=_const(al, "f"), a_upper_f=_const(au, "f"),
                b_lower_f=_const(bl, "f"), b_upper_f=_const(bu, "f"), bits_i=_const(bits, "i"),
                b_transposed_i=int(bool(_const(b_transposed, "b"))))


def _register_symbolics() -> None:
    torch.onnx.register_custom_op_symbolic("edgesr::qlinear", _qlinear_symbolic, OPSET)
    torch.onnx.register_custom_op_symbolic("edgesr::qbmm", _qbmm_symbolic, OPSET)


def compact_names(proto) -> None:
    """Short names for intermediate values, none for nodes: torch.onnx names every value after its module path
    ("/model/layers.0/blocks.1/attn/Reshape_3_output_0"), about 0.4 MB of a SwinIR-light file. Graph inputs,
    outputs and initializers keep their names; subgraphs (If / Loop bodies) are renamed with the same map, so
    their references to outer values stay valid."""
    g = proto.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output} | {i.name for i in g.initializer}
    renamed: dict[str, str] = {}

    def visit(graph) -> None:
        own = {v.name for v in graph.input} | {v.name for v in graph.output} | {i.name for i in graph.initializer}
        for node in graph.node:  # topological order: every input is renamed before it is read
            node.name = ""
            for i, name in enumerate(node.input):
                if name in renamed:
                    node.input[i] = renamed[name]
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    visit(sub)
            for i, name in enumerate(node.output):
                if name and name not in keep and name not in own:
                    renamed[name] = node.output[i] = f"v{len(renamed)}"
        for out in graph.output:  # a subgraph's outputs may be values computed inside it
            if out.name in renamed:
                out.name = renamed[out.name]
        del graph.value_info[:]

    visit(g)


def export_onnx(model: SwinIR, out: str | Path, tile: tuple[int, int] = (64, 64), source: dict | None = None,
                dynamic: bool = False, stock_int4: bool = False) -> dict:
    """Write ``model`` (FP or fake-quant) as an ONNX file for one static LR tile, or with ``dynamic=True`` for
    any H, W that are multiples of the window (``tile`` is then only the tracing example); writes atomically.
    ``stock_int4`` (FP models only): onnxruntime's blockwise weight-only INT4 instead (:mod:`.stock`)."""
    import onnx

    from edgesr.converter.export.onnx.qdq import lower_to_qdq

    t0 = time.perf_counter()
    quantized = getattr(model, "quant_config", None) is not None
    if stock_int4 and quantized:
        raise ValueError("the stock INT4 profile quantizes an FP model; a 2DQuant model exports as QDQ")
    wrapper = ExportableSwinIR(model.eval(), tile, fuse_blocks=False, dynamic=dynamic).eval()
    axes = {"lr": {2: "height", 3: "width"}, "sr": {2: "out_height", 3: "out_width"}} if dynamic else None
    example = (torch.rand(1, model.config.in_chans, *tile),)
    _register_symbolics()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example, buf, dynamo=False, opset_version=OPSET, input_names=["lr"],
                          output_names=["sr"], custom_opsets={"edgesr": 1}, dynamic_axes=axes,
                          do_constant_folding=False)
    proto = onnx.load_from_string(buf.getvalue())
    lowered = lower_to_qdq(proto) if quantized else {}
    stock = None
    if stock_int4:
        from edgesr.converter.export.onnx.stock import BLOCK_SIZE
        from edgesr.converter.export.onnx.stock import stock_int4 as to_stock

        proto, n = to_stock(proto)
        stock = {"scheme": "onnxruntime MatMulNBits", "bits": 4, "block_size": BLOCK_SIZE, "symmetric": True,
                 "layers": n}
    compact_names(proto)
    meta = descriptor(model, None if dynamic else tile, "onnx")
    meta["dynamic"] = dynamic
    meta["stock_int4"] = stock
    meta["source"] = source or {}
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta, sort_keys=True)})
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    out = write_atomic(out, lambda f: f.write(data))
    ops = Counter(n.op_type for n in proto.graph.node)
    return {"path": str(out), "bytes": out.stat().st_size, "opset": OPSET, "lowered": lowered, "stock_int4": stock,
            "ops": dict(sorted(ops.items())), "seconds": round(time.perf_counter() - t0, 1), "tile": None if dynamic else list(tile),
            "quantized": quantized}
