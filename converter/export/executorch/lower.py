"""torch.export -> edge -> delegates -> ``.pte``, with the model descriptor embedded as a constant method."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from edgesr.converter.export.descriptor import descriptor
from edgesr.converter.export.files import write_atomic
from edgesr.converter.export.graph import ExportableSwinIR
from edgesr.models.swinir import SwinIR
from edgesr.runtime.pte import METADATA_METHOD


def export_pte(model: SwinIR, out: str | Path, tile: tuple[int, int] = (64, 64), source: dict | None = None,
               fuse_attention: bool = False, fuse_blocks: bool = True) -> dict:
    """Lower ``model`` (FP or fake-quant) to a ``.pte`` for one static LR tile; writes atomically.

    Returns a report: bytes, delegate partitions per backend, seconds spent. ``fuse_blocks`` (default) lowers
    each uniformly quantized Swin block to one native ``edgesr_swin_block`` call; without it every quantized
    linear / matmul is its own delegate call between XNNPACK partitions, and ``fuse_attention`` then picks one
    fused attention call instead of two quantized matmuls around XNNPACK's softmax.
    """
    # torchao (imported by executorch) logs a warning per CUDA-only extension it cannot load on CPU builds.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from edgesr.converter.export.executorch.partitioner import EdgesrInt4Partitioner

    quantized = getattr(model, "quant_config", None) is not None
    t0 = time.perf_counter()
    wrapper = ExportableSwinIR(model.eval(), tile, fuse_attention=fuse_attention, fuse_blocks=fuse_blocks).eval()
    example = (torch.rand(1, model.config.in_chans, *tile),)
    with torch.no_grad():
        ep = torch.export.export(wrapper, example, strict=False)
    meta = descriptor(model, tile, "pte")
    meta["source"] = source or {}
    partitioners = [EdgesrInt4Partitioner(), XnnpackPartitioner()] if quantized else [XnnpackPartitioner()]
    edge = to_edge_transform_and_lower(
        ep,
        partitioner=partitioners,
        constant_methods={METADATA_METHOD: json.dumps(meta, sort_keys=True)},
        compile_config=EdgeCompileConfig(_check_ir_validity=False),
    )
    delegates: dict[str, int] = {}
    graph = edge.exported_program().graph_module
    for node in graph.graph.nodes:
        if node.op == "get_attr" and node.target.startswith("lowered_module"):
            backend = getattr(graph, node.target).backend_id
            delegates[backend] = delegates.get(backend, 0) + 1
    outside = sorted({getattr(n.target, "__name__", str(n.target)) for n in graph.graph.nodes
                      if n.op == "call_function" and "call_delegate" not in str(n.target) and "getitem" not in str(n.target)})
    program = edge.to_executorch()
    out = write_atomic(out, program.write_to_file)
    return {"path": str(out), "bytes": out.stat().st_size, "delegates": delegates, "portable_ops": outside,
            "seconds": round(time.perf_counter() - t0, 1), "tile": list(tile), "quantized": quantized}
