"""LiteRT backend of the runtime: ``.tflite`` files exported by edgesr, run with ai-edge-litert (XNNPACK on).

An edgesr INT4 file's ``EDGESR_SWIN_BLOCK`` custom ops need the edgesr LiteRT delegate
(``libedgesr_litert_delegate.so``, over the shared native kernels): built on first use into the native cache,
or ``EDGESR_LITERT_DELEGATE`` points at a prebuilt one. Files are NHWC; :meth:`TfliteModel.run` takes and
returns NCHW like every other backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError
from edgesr.runtime import model_file

TFLITE_MAGIC = b"TFL3"  # flatbuffer file identifier at offset 4
METADATA_KEY = "edgesr_metadata"  # written by edgesr.converter.export.tflite


class TfliteError(EdgesrError):
    pass


def is_tflite(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:8] == TFLITE_MAGIC
    except OSError:
        return False


def delegate_library() -> Path:
    """Path of the edgesr LiteRT delegate: ``EDGESR_LITERT_DELEGATE``, else built (once) from the sources."""

    def build() -> Path:
        from edgesr.converter.export.tflite.build import build_delegate

        return build_delegate()

    return model_file.delegate_library("EDGESR_LITERT_DELEGATE", "the edgesr LiteRT delegate library", build,
                                       TfliteError)


def read_metadata(data: bytes, path: Path) -> dict:
    from ai_edge_litert import schema_py_generated as fb

    if data[4:8] != TFLITE_MAGIC:
        raise TfliteError(f"{path}: not a LiteRT model (.tflite): missing the TFL3 identifier")
    try:
        model = fb.Model.GetRootAs(data, 0)
        entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
        if METADATA_KEY not in entries:
            raise TfliteError(f"{path}: not exported by edgesr (no {METADATA_KEY} metadata)")
        buf = model.Buffers(entries[METADATA_KEY])
        if buf.DataLength():
            raw = buf.DataAsNumpy().tobytes()
        else:  # stored past the flatbuffer (offset from the file start), as rewriters of large models do
            raw = data[buf.Offset() : buf.Offset() + buf.Size()]
        return json.loads(raw)
    except TfliteError:
        raise
    except Exception as e:  # a damaged flatbuffer fails anywhere in the generated accessors
        raise TfliteError(f"{path}: cannot read the model (truncated or corrupt?): {e}") from None


class TfliteModel(model_file.ModelFile):
    """One edgesr ``.tflite``: ``run`` takes and returns (1, C, H, W) float32 at the file's tile."""

    error = TfliteError

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise TfliteError(f"{self.path}: no such file")
        data = self.path.read_bytes()
        if data[4:8] != TFLITE_MAGIC:
            raise TfliteError(f"{self.path}: not a LiteRT model (.tflite): missing the {TFLITE_MAGIC.decode()} identifier")
        try:
            from ai_edge_litert.interpreter import Interpreter, load_delegate
        except ImportError:
            raise TfliteError("running .tflite files needs ai-edge-litert: pip install 'edgesr[tflite]'") from None
        self.metadata = read_metadata(data, self.path)
        self.threads = max(1, int(threads))
        delegates = []
        self.custom_ops = dict(self.metadata.get("custom_ops") or {})
        if self.custom_ops:
            lib = delegate_library()
            try:
                delegates.append(load_delegate(str(lib), {"threads": str(self.threads)}))
            except (OSError, ValueError, RuntimeError) as e:
                raise TfliteError(f"cannot load the edgesr LiteRT delegate {lib}: {e}") from None
        try:
            self._interp = Interpreter(model_content=data, num_threads=self.threads, experimental_delegates=delegates)
            self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise TfliteError(f"{self.path}: LiteRT cannot prepare the model: {str(e).splitlines()[0]}") from None
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x)
        self._interp.set_tensor(self._in["index"], np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1)))
        self._interp.invoke()
        return np.ascontiguousarray(self._interp.get_tensor(self._out["index"]).transpose(0, 3, 1, 2))
