"""``.onnx`` files exported by edgesr, run with onnxruntime (CPU): the same ``run`` / ``scale`` / ``tile`` /
``metadata`` interface as :class:`edgesr.runtime.pte.PteModel`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError
from edgesr.runtime import model_file

METADATA_KEY = "edgesr_metadata"  # the descriptor's metadata property, written by edgesr.converter.export.onnx


class OnnxError(EdgesrError):
    pass


class OnnxModel(model_file.ModelFile):
    """One edgesr ``.onnx``: ``run`` takes and returns (1, C, H, W) float32 at the file's tile. A file exported
    with dynamic H, W takes any multiple of the window; ``tile`` (default 64 x 64) is then the tile that the
    tiled runtime feeds it."""

    error = OnnxError

    def __init__(self, path: str | Path, threads: int = 1, tile: tuple[int, int] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxError(f"{self.path}: no such file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxError("running .onnx files needs onnxruntime: pip install 'edgesr[onnx]'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime reports every load failure as one of its own exception types
            raise OnnxError(f"{self.path}: cannot load the model (not ONNX, truncated or corrupt?): "
                            f"{str(e).splitlines()[0]}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise OnnxError(f"{self.path}: not exported by edgesr (no {METADATA_KEY} metadata)")
        self.metadata = json.loads(meta[METADATA_KEY])
        self.dynamic = self.metadata.get("tile") is None
        self._tile = tuple(self.metadata["tile"]) if not self.dynamic else tuple(tile or (64, 64))
        m = int(self.metadata["size_multiple"])
        if self._tile[0] % m or self._tile[1] % m:
            raise OnnxError(f"tile {self._tile[0]}x{self._tile[1]} is not a multiple of the model's window {m}")
        self.threads = opts.intra_op_num_threads
        self._input = self._session.get_inputs()[0].name

    @property
    def tile(self) -> tuple[int, int]:
        return self._tile  # a dynamic file's tile is the runtime's choice

    def run(self, x: np.ndarray) -> np.ndarray:
        c, m = int(self.metadata["in_channels"]), int(self.metadata["size_multiple"])
        if self.dynamic:
            if x.ndim != 4 or x.shape[:2] != (1, c) or x.shape[2] % m or x.shape[3] % m or not x.shape[2] * x.shape[3]:
                raise OnnxError(f"{self.path}: input {tuple(x.shape)} must be (1, {c}, H, W) with H, W positive "
                                f"multiples of {m}")
        else:
            self.check_input(x)
        return self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]
