"""ExecuTorch backend of the runtime: loads a ``.pte`` with the edgesr INT4 delegate library registered.

The delegate library (``libedgesr_et_delegate.so``: the C++ ``EdgesrInt4Backend`` over the shared native
kernels) is built on first use into the native cache; ``EDGESR_ET_DELEGATE`` points at a prebuilt one.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError
from edgesr.runtime import model_file

PTE_MAGIC = b"ET12"  # flatbuffer file identifier at offset 4
METADATA_METHOD = "edgesr_metadata"
_loaded: ctypes.CDLL | None = None
# ExecuTorch's XNNPACK delegate binds the process-wide thread pool when a program's delegates are first
# initialised; resizing the pool invalidates that binding. Reloading only the method then keeps XNNPACK on the
# old pool size (an FP32 .pte loaded at 1 thread ran at 1.03 CPU-seconds per second after a resize to 2) or
# deadlocks. Every resize bumps this generation and models reload their program before the next run.
_pool = {"threads": None, "generation": 0}


def set_threads(threads: int, force: bool = False) -> None:
    """Threads for every ExecuTorch model in this process (XNNPACK pool and edgesr INT4 kernels).

    In the pip wheels ExecuTorch's XNNPACK resolves pthreadpool symbols from libtorch, so
    ``torch.set_num_threads`` can also disturb the pool that loaded methods point at (seen as a deadlock or
    SIGFPE). Set torch's threads first, then call this with ``force=True`` to rebuild the pool and reload.
    """
    from executorch.extension.pybindings import portable_lib

    threads = max(1, int(threads))
    load_delegate().edgesr_et_set_num_threads(threads)
    if force or _pool["threads"] != threads:
        portable_lib._unsafe_reset_threadpool(threads)
        _pool["threads"] = threads
        _pool["generation"] += 1


class PteError(EdgesrError):
    pass


def delegate_library() -> Path:
    """Path of the delegate library: ``EDGESR_ET_DELEGATE``, else built (once) from the sources."""

    def build() -> Path:
        from edgesr.converter.export.executorch.build import build_delegate

        return build_delegate()

    return model_file.delegate_library("EDGESR_ET_DELEGATE", "the edgesr ExecuTorch delegate library", build, PteError)


def load_delegate() -> ctypes.CDLL:
    """Register ``EdgesrInt4Backend`` with the ExecuTorch runtime in this process (idempotent)."""
    global _loaded
    if _loaded is None:
        from executorch.extension.pybindings import portable_lib  # noqa: F401  (runtime symbols first)

        path = delegate_library()
        try:
            _loaded = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise PteError(f"cannot load the edgesr ExecuTorch delegate library {path}: {e}") from None
    return _loaded


def is_pte(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:8] == PTE_MAGIC
    except OSError:
        return False


class PteModel(model_file.ModelFile):
    """One ``.pte`` exported by edgesr: ``run`` takes and returns (1, C, H, W) float32 at the file's tile."""

    error = PteError

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise PteError(f"{self.path}: no such file")
        if not is_pte(self.path):
            raise PteError(f"{self.path}: not an ExecuTorch program (.pte): missing the {PTE_MAGIC.decode()} identifier")
        try:
            from executorch.runtime import Runtime
        except ImportError:
            raise PteError("running .pte files needs the executorch package: pip install 'edgesr[pte]'") from None
        load_delegate()
        set_threads(threads)
        self._runtime = Runtime.get()
        self._load()
        self.metadata = json.loads(self._program.load_method(METADATA_METHOD).execute([])[0])
        self.threads = _pool["threads"]

    def _load(self) -> None:
        """(Re)load the program and its forward method under the current thread pool (see ``_pool``)."""
        self._method = None  # the old method's delegates go before the new ones are built
        try:
            self._program = self._runtime.load_program(str(self.path))
        except Exception as e:  # the runtime reports truncation/corruption as a generic RuntimeError
            raise PteError(f"{self.path}: cannot load the program (truncated or corrupt .pte?): {e}") from None
        if METADATA_METHOD not in self._program.method_names or "forward" not in self._program.method_names:
            raise PteError(f"{self.path}: not exported by edgesr (no {METADATA_METHOD} or forward method)")
        try:
            self._method = self._program.load_method("forward")
        except Exception as e:
            raise PteError(f"{self.path}: cannot initialise the forward method: {e}") from None
        self._generation = _pool["generation"]

    def set_threads(self, threads: int) -> None:
        """Process-wide (see :func:`set_threads`); kept on the model for convenience."""
        set_threads(threads)
        self.threads = _pool["threads"]

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.check_input(x)
        if self._generation != _pool["generation"]:
            self._load()
        out = self._method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
        return out[0].numpy()

