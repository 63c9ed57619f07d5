"""ExecuTorch target: ``.pte`` files. FP32 goes to XNNPACK whole; 2DQuant layers go to the edgesr INT4
delegate (:mod:`.partitioner`, :mod:`.backend`, C++ runtime in ``runtime/`` over the shared ``native/`` kernels)."""

from edgesr.converter.export.executorch.lower import export_pte  # noqa: F401
