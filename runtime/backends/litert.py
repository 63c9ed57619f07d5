"""LiteRT for edgesr ``.tflite`` files (:mod:`edgesr.runtime.litert`); each carries its own tile."""

from edgesr.runtime.backends import register


def _accepts(path) -> bool:
    from edgesr.runtime.litert import is_tflite

    return path.suffix == ".tflite" or (path.is_file() and is_tflite(path))


def _open(path, threads: int = 1, tile=None):
    from edgesr.runtime.litert import TfliteModel

    return TfliteModel(path, threads=threads)


register("litert", _accepts, _open)
