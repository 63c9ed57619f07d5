"""onnxruntime for edgesr ``.onnx`` files (:mod:`edgesr.runtime.onnxrt`); a static file carries its own tile,
a dynamic one runs at the requested tile."""

from edgesr.runtime.backends import register


def _accepts(path) -> bool:
    return path.suffix == ".onnx"


def _open(path, threads: int = 1, tile=None):
    from edgesr.runtime.onnxrt import OnnxModel

    return OnnxModel(path, threads=threads, tile=tile)


register("onnxruntime", _accepts, _open)
