"""A small writer of TFLite flatbuffers: tensors, constant buffers, builtin and CUSTOM operators, metadata.

It emits the schema of ``ai_edge_litert.schema_py_generated`` (the runtime's own) through its object API, so a
file is written from a graph built op by op, without a converter stack. Constant buffers are 16-byte aligned,
as the LiteRT converter writes them (XNNPACK and the builtin kernels read floats in place).
"""

from __future__ import annotations

import hashlib

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

_DTYPES = {np.dtype(np.float32): fb.TensorType.FLOAT32, np.dtype(np.int32): fb.TensorType.INT32,
           np.dtype(np.int64): fb.TensorType.INT64, np.dtype(np.uint8): fb.TensorType.UINT8,
           np.dtype(np.int8): fb.TensorType.INT8, np.dtype(np.bool_): fb.TensorType.BOOL}


class _AlignedBuffer(fb.BufferT):
    """A Buffer whose byte vector starts on a 16-byte boundary (the object API aligns to 1)."""

    def Pack(self, builder):
        data = None
        if self.data is not None and len(self.data):
            raw = bytes(self.data)
            builder.StartVector(1, len(raw), 16)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
        fb.BufferStart(builder)
        if data is not None:
            fb.BufferAddData(builder, data)
        return fb.BufferEnd(builder)


class Graph:
    """One subgraph under construction. ``tensor`` / ``const`` return tensor indices, ``op`` appends an operator
    (in execution order), ``serialize`` returns the file bytes."""

    def __init__(self):
        self.tensors: list[fb.TensorT] = []
        self.buffers: list[fb.BufferT] = [fb.BufferT()]  # buffer 0: the empty sentinel every file has
        self.operators: list[fb.OperatorT] = []
        self._opcodes: dict[tuple[int, str | None], int] = {}
        self.opcodes: list[fb.OperatorCodeT] = []
        self._consts: dict[tuple, int] = {}

    def tensor(self, shape, dtype=np.float32, name: str | None = None, buffer: int = 0) -> int:
        t = fb.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = _DTYPES[np.dtype(dtype)]
        t.buffer = buffer
        t.name = name or f"t{len(self.tensors)}"
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, value, dtype=None, name: str | None = None) -> int:
        """A constant tensor; equal constants (shapes, axes, index tables) are stored once."""
        arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (arr.dtype.str, arr.shape, hashlib.sha256(arr.tobytes()).digest())
        if key in self._consts:
            return self._consts[key]
        buf = _AlignedBuffer()
        buf.data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        self.buffers.append(buf)
        idx = self.tensor(arr.shape, arr.dtype, name, buffer=len(self.buffers) - 1)
        self._consts[key] = idx
        return idx

    def _opcode(self, builtin: int, custom: str | None, version: int) -> int:
        key = (builtin, custom)
        if key not in self._opcodes:
            oc = fb.OperatorCodeT()
            oc.builtinCode = builtin
            oc.deprecatedBuiltinCode = min(builtin, fb.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.customCode = custom
            oc.version = version
            self._opcodes[key] = len(self.opcodes)
            self.opcodes.append(oc)
        return self._opcodes[key]

    def op(self, builtin: int, inputs, outputs, options=None, version: int = 1) -> None:
        o = fb.OperatorT()
        o.opcodeIndex = self._opcode(builtin, None, version)
        o.inputs, o.outputs = [int(i) for i in inputs], [int(i) for i in outputs]
        if options is not None:
            o.builtinOptionsType = getattr(fb.BuiltinOptions, type(options).__name__[:-1])
            o.builtinOptions = options
        self.operators.append(o)

    def custom(self, name: str, inputs, outputs, options: bytes) -> None:
        o = fb.OperatorT()
        o.opcodeIndex = self._opcode(fb.BuiltinOperator.CUSTOM, name, 1)
        o.inputs, o.outputs = [int(i) for i in inputs], [int(i) for i in outputs]
        o.customOptions = np.frombuffer(options, dtype=np.uint8)
        o.customOptionsFormat = fb.CustomOptionsFormat.FLEXBUFFERS  # the only value the schema has; raw bytes
        self.operators.append(o)

    def serialize(self, inputs, outputs, metadata: dict[str, bytes], description: str) -> bytes:
        sg = fb.SubGraphT()
        sg.tensors, sg.operators = self.tensors, self.operators
        sg.inputs, sg.outputs = list(inputs), list(outputs)
        sg.name = "main"
        model = fb.ModelT()
        model.version = 3
        model.description = description
        model.operatorCodes, model.subgraphs = self.opcodes, [sg]
        buffers = list(self.buffers)
        model.metadata = []
        for key, blob in metadata.items():
            buf = _AlignedBuffer()
            buf.data = blob
            buffers.append(buf)
            entry = fb.MetadataT()
            entry.name, entry.buffer = key, len(buffers) - 1
            model.metadata.append(entry)
        model.buffers = buffers
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def op_names(data: bytes) -> list[str]:
    """Operator names of a .tflite in execution order (builtins by name, customs by their custom code)."""
    model = fb.Model.GetRootAs(data, 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        codes.append(oc.CustomCode().decode() if code == fb.BuiltinOperator.CUSTOM else names[code])
    sg = model.Subgraphs(0)
    return [codes[sg.Operators(i).OpcodeIndex()] for i in range(sg.OperatorsLength())]
