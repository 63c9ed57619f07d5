"""``EdgesrInt4Partitioner``: hands every edgesr quantized node (``edgesr::qswin_block``, or per layer
``edgesr::qlinear`` / ``edgesr::qbmm`` / ``edgesr::qattention``) with its constants to the ``EdgesrInt4Backend``
delegate, one partition per node; the FP32 rest of the graph is left for the next partitioner (XNNPACK).

Example, W4A4 SwinIR-light: 24 blocks -> 24 partitions, and XNNPACK takes the convs, patch LayerNorms and
residuals around them (5 partitions). Per layer (``--per-layer``), one block is q, k, v, proj, fc1, fc2 and the
two matmuls -> 8 partitions, with its LayerNorms, softmax, GELU and window reshapes left to XNNPACK between them.
"""

from __future__ import annotations

from executorch.exir.backend.compile_spec_schema import CompileSpec
from executorch.exir.backend.partitioner import DelegationSpec, Partitioner, PartitionResult
from executorch.exir.backend.utils import tag_constant_data

from edgesr.converter.export.executorch.backend import EdgesrInt4Backend, op_name
from edgesr.converter.export.ops import QUANT_OPS


class EdgesrInt4Partitioner(Partitioner):
    def __init__(self):
        super().__init__()
        self.delegation_spec = DelegationSpec(EdgesrInt4Backend.__name__, [CompileSpec("edgesr", b"1")])

    def partition(self, exported_program) -> PartitionResult:
        tags = {}
        for node in exported_program.graph_module.graph.nodes:
            if node.op != "call_function" or not op_name(node).startswith(QUANT_OPS):
                continue
            tag = f"edgesr_int4_{len(tags)}"
            node.meta["delegation_tag"] = tag
            tags[tag] = self.delegation_spec
        tag_constant_data(exported_program)
        return PartitionResult(tagged_exported_program=exported_program, partition_tags=tags)
