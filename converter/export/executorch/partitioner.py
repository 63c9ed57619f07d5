"""``EdgesrInt4Partitioner``: hands every ``edgesr::qlinear`` / ``edgesr::qbmm`` node (with its weight and
bias constants) to the ``EdgesrInt4Backend`` delegate, one partition per node; the FP32 rest of the graph is
left for the next partitioner (XNNPACK).

Example, one W4A4 Swin block: q, k, v, proj, fc1, fc2 and the fused attention -> 7 partitions; the
LayerNorms, GELU, residual adds and window reshapes between them go to XNNPACK.
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
