"""Ahead-of-time half of the ``EdgesrInt4Backend`` delegate: turns one partitioned ``edgesr::qlinear``,
``edgesr::qbmm``, ``edgesr::qattention`` or ``edgesr::qswin_block`` node into the blob (layout:
:mod:`edgesr.converter.export.blob`) that ``runtime/edgesr_int4_backend.cpp`` loads.
"""

from __future__ import annotations

from executorch.backends.xnnpack.utils.utils import get_param_tensor
from executorch.exir.backend.backend_details import BackendDetails, PreprocessResult

from edgesr.converter.export.blob import attention_blob, bmm_blob, linear_blob, swin_block_blob


def op_name(node) -> str:
    return str(getattr(node.target, "_name", node.target))


class EdgesrInt4Backend(BackendDetails):
    @staticmethod
    def preprocess(edge_program, compile_specs) -> PreprocessResult:
        nodes = [n for n in edge_program.graph.nodes if n.op == "call_function"]
        if len(nodes) != 1:
            raise ValueError(f"EdgesrInt4Backend takes one quantized op per partition, got {len(nodes)}")
        node = nodes[0]
        name = op_name(node)
        if name.startswith("edgesr::qlinear"):
            _, w, b, xl, xu, wl, wu, bits = node.args
            weight = get_param_tensor(edge_program, w)
            bias = get_param_tensor(edge_program, b) if b is not None else None
            blob = linear_blob(weight, bias, (xl, xu), (wl, wu), bits)
        elif name.startswith("edgesr::qbmm"):
            _, _, al, au, bl, bu, bits, b_transposed = node.args
            blob = bmm_blob((al, au), (bl, bu), bits, b_transposed)
        elif name.startswith("edgesr::qattention"):
            _, _, _, _, mask, heads, bounds, bits = node.args
            blob = attention_blob(heads, mask is not None, bounds, bits)
        elif name.startswith("edgesr::qswin_block"):
            _, n1w, n1b, n2w, n2b, table, ws, bs, *scalars = node.args
            param = lambda a: get_param_tensor(edge_program, a)  # noqa: E731
            blob = swin_block_blob((param(n1w), param(n1b)), (param(n2w), param(n2b)), param(table),
                                   [param(w) for w in ws], [param(b) for b in bs], *scalars)
        else:
            raise ValueError(f"EdgesrInt4Backend cannot run {name}")
        return PreprocessResult(processed_bytes=blob)
