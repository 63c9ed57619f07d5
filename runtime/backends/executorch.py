"""ExecuTorch ``.pte`` files (:mod:`edgesr.runtime.pte`); each carries its own tile."""

from edgesr.runtime.backends import register


def _accepts(path) -> bool:
    from edgesr.runtime.pte import is_pte

    return path.suffix == ".pte" or (path.is_file() and is_pte(path))


def _open(path, threads: int = 1, tile=None):
    from edgesr.runtime.pte import PteModel

    return PteModel(path, threads=threads)


register("executorch", _accepts, _open)
