"""Builds ``libedgesr_et_delegate.so``: the C++ ``EdgesrInt4Backend`` (runtime/) linked with the shared native
kernels (native/), against the headers and runtime library that the executorch wheel ships.

Built once per (sources, compiler, executorch) into the native cache, atomically; no manual steps.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from edgesr import native
from edgesr.errors import EdgesrError

BACKEND_SOURCE = Path(__file__).parent / "runtime" / "edgesr_int4_backend.cpp"
RUNNER_SOURCE = Path(__file__).parent / "runtime" / "edgesr_pte_runner.cpp"
LIB_NAME = "libedgesr_et_delegate.so"
RUNNER_LIB_NAME = "libedgesr_pte_runner.so"


class DelegateBuildError(EdgesrError):
    pass


def _executorch_dirs() -> tuple[Path, Path, Path]:
    try:
        import executorch
    except ImportError:
        raise DelegateBuildError("the ExecuTorch delegate needs the executorch package: pip install 'edgesr[pte]'") from None
    root = Path(executorch.__path__[0])
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    portable = root / "extension" / "pybindings" / f"_portable_lib{suffix}"
    # On x86_64 wheels the backend-registry symbols (register_backend, ...) live in this library.
    core = root / "backends" / "qualcomm" / "libqnn_executorch_backend.so"
    for p in (root / "include", portable):
        if not p.exists():
            raise DelegateBuildError(f"executorch install lacks {p}; reinstall executorch==1.4.1")
    return root, portable, core


def _cxx() -> str:
    cxx = os.environ.get("EDGESR_CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise DelegateBuildError("no C++ compiler found (install g++ or set EDGESR_CXX) to build the ExecuTorch delegate")
    return cxx


def _compile_and_link_args(root: Path, portable: Path, core: Path, cxx: str) -> tuple[list[str], list[str]]:
    inc = root / "include"
    compile_argv = [cxx, "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-DC10_USING_CUSTOM_GENERATED_MACROS",
                    f"-I{inc}", f"-I{inc / 'executorch/runtime/core/portable_type/c10'}", f"-I{native.include_dir()}"]
    link_args = [f"-L{portable.parent}", f"-l:{portable.name}", "-lpthread", f"-Wl,-rpath,{portable.parent}"]
    if core.exists():
        link_args += [f"-L{core.parent}", f"-l:{core.name}", f"-Wl,-rpath,{core.parent}"]
    return compile_argv, link_args


def build_pte_runner(force: bool = False) -> Path:
    """``libedgesr_pte_runner.so``: runtime/edgesr_pte_runner.cpp (the C API the Android app's JNI glue calls)
    against the wheel's runtime, so it can be checked on this machine against the Python runtime. Its
    ``edgesr_et_set_num_threads`` comes from the delegate library, which must be loaded (globally) first."""
    root, portable, core = _executorch_dirs()
    cxx = _cxx()
    compile_argv, link_args = _compile_and_link_args(root, portable, core, cxx)
    compile_argv = [arg for arg in compile_argv if arg != "-fvisibility=hidden"]  # the C API is the point
    # The wheel's threadpool.h includes pthreadpool.h, which the wheel lacks; torch ships the same header.
    import torch

    compile_argv.append(f"-I{Path(torch.__file__).parent / 'include'}")
    try:
        return native.build_plugin(RUNNER_LIB_NAME, [(RUNNER_SOURCE, compile_argv)], [cxx, "-shared"], link_args,
                                   key_parts=(root, sys.version_info[:2]), force=force, kernels=False)
    except native.NativeBuildError as e:
        raise DelegateBuildError(f"building the .pte runner library failed: {e}") from None


def build_delegate(force: bool = False) -> Path:
    root, portable, core = _executorch_dirs()
    cxx = _cxx()
    compile_argv, link_args = _compile_and_link_args(root, portable, core, cxx)
    try:
        return native.build_plugin(LIB_NAME, [(BACKEND_SOURCE, compile_argv)], [cxx, "-shared"], link_args,
                                   key_parts=(root, sys.version_info[:2]), force=force)
    except native.NativeBuildError as e:
        raise DelegateBuildError(f"building the ExecuTorch delegate failed: {e}") from None
