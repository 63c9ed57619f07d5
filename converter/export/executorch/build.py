"""Builds ``libedgesr_et_delegate.so``: the C++ ``EdgesrInt4Backend`` (runtime/) linked with the shared native
kernels (native/), against the headers and runtime library that the executorch wheel ships.

Built once per (sources, compiler, executorch) into the native cache, atomically; no manual steps.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from edgesr import native
from edgesr.errors import EdgesrError

BACKEND_SOURCE = Path(__file__).parent / "runtime" / "edgesr_int4_backend.cpp"
LIB_NAME = "libedgesr_et_delegate.so"


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


def build_delegate(force: bool = False) -> Path:
    root, portable, core = _executorch_dirs()
    cxx = _cxx()
    kernel_cmds = native.compile_commands()  # the kernels, each with its own ISA flags
    h = hashlib.sha256()
    for src in [BACKEND_SOURCE, *native.source_files(), *native.include_dir().glob("*.h"), *(native.include_dir().parent / "src").glob("*.h")]:
        h.update(src.name.encode() + src.read_bytes())
    h.update(repr((cxx, [argv for _, _, argv in kernel_cmds], str(root), sys.version_info[:2])).encode())
    out_dir = native._cache_root() / f"et-{h.hexdigest()[:16]}"
    lib = out_dir / LIB_NAME
    if lib.is_file() and not force:
        return lib
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".et-build-", dir=out_dir.parent))
    try:
        objects = []
        for _, obj, argv in native.compile_commands(out_dir=tmp):
            _run(argv)
            objects.append(obj)
        obj = tmp / "edgesr_int4_backend.o"
        inc = root / "include"
        _run([cxx, "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-DC10_USING_CUSTOM_GENERATED_MACROS",
              f"-I{inc}", f"-I{inc / 'executorch/runtime/core/portable_type/c10'}", f"-I{native.include_dir()}",
              "-c", str(BACKEND_SOURCE), "-o", str(obj)])
        link = [cxx, "-shared", "-o", str(tmp / LIB_NAME), str(obj), *map(str, objects),
                f"-L{portable.parent}", f"-l:{portable.name}", "-lpthread",
                f"-Wl,-rpath,{portable.parent}"]
        if core.exists():
            link += [f"-L{core.parent}", f"-l:{core.name}", f"-Wl,-rpath,{core.parent}"]
        _run(link)
        try:
            os.replace(tmp, out_dir)  # atomic publish; a concurrent builder may have won the race
        except OSError:
            if not lib.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise DelegateBuildError(f"building the ExecuTorch delegate failed:\n$ {' '.join(cmd)}\n{tail}")
