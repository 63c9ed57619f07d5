"""edgesr native kernels: the C library behind every deployment path, and thin ctypes wrappers over it.

The C sources (``src/``, public header ``include/edgesr_kernels.h``) are compiled on first use with the system
C compiler (``cc``/``gcc``/``clang``; ``EDGESR_CC`` overrides, e.g. ``EDGESR_CC="ccache gcc"``) into a cache
directory keyed by a hash of the sources, the compiler and the flags (``~/.cache/edgesr/native`` unless
``EDGESR_CACHE_DIR`` is set). The build happens in a temporary directory that is renamed into place, so
concurrent first uses from several processes never see a half-written library.

Other native builds (the ExecuTorch / LiteRT delegates, Android) compile the same files:
:func:`source_files`, :func:`include_dir` and :func:`compile_flags` / :func:`compile_commands` give the exact
per-file flags (each ISA translation unit has its own; files of another architecture compile to nothing).

Dispatch is process-wide: the best path of this CPU unless :func:`force_isa` pins one (tests force each in
turn). A :class:`QLinear` keeps the path that was active when it was created.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError

__all__ = [
    "ISA_NAMES",
    "NativeBuildError",
    "QLinear",
    "SwinBlock",
    "active_isa",
    "available_isas",
    "build",
    "compile_commands",
    "compile_flags",
    "force_isa",
    "include_dir",
    "library_path",
    "link_flags",
    "qbmm",
    "qbmm_accumulate",
    "quantize_codes",
    "source_files",
    "target_arch",
    "unpack_codes",
    "version",
]

_HERE = Path(__file__).resolve().parent
LIBRARY_NAME = "libedgesr_kernels.so"

# Index = edgesr_isa enum value.
ISA_NAMES = ("scalar", "avx2", "avx512_vnni", "neon", "neon_dotprod", "neon_i8mm")

COMMON_FLAGS = ("-O3", "-std=gnu99", "-fPIC", "-pthread", "-ffp-contract=off", "-Wall", "-Wextra")
_ISA_FLAGS = {
    "x86_64": {
        "ek_x86_avx2.c": ("-mavx2", "-mfma"),
        "ek_x86_avx512vnni.c": ("-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vnni"),
    },
    "aarch64": {
        "ek_arm_dotprod.c": ("-march=armv8.2-a+dotprod",),
        "ek_arm_i8mm.c": ("-march=armv8.6-a+i8mm",),
    },
}
_LINK_FLAGS = ("-shared", "-pthread", "-lm")


class NativeBuildError(EdgesrError):
    """The native kernel library could not be built (no C compiler, or the compiler failed)."""


# --------------------------------------------------------------------------------------------------------------
# Sources and flags
# --------------------------------------------------------------------------------------------------------------


def include_dir() -> Path:
    """Directory of the public header ``edgesr_kernels.h``."""
    return _HERE / "include"


def source_files() -> list[Path]:
    """Every C source of the library (each compiles on any architecture; see :func:`compile_flags`)."""
    return sorted((_HERE / "src").glob("*.c"))


def _header_files() -> list[Path]:
    return sorted((_HERE / "src").glob("*.h")) + sorted(include_dir().glob("*.h"))


def _normalise_arch(arch: str) -> str:
    arch = arch.lower()
    if arch in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if arch in ("aarch64", "arm64", "armv8"):
        return "aarch64"
    return arch


def _compiler(compiler: str | list[str] | None = None) -> list[str]:
    if compiler is None:
        compiler = os.environ.get("EDGESR_CC") or None
    if compiler is None:
        for name in ("cc", "gcc", "clang"):
            found = shutil.which(name)
            if found:
                return [found]
        raise NativeBuildError(
            "edgesr native kernels: no C compiler found (looked for cc, gcc, clang on PATH); install gcc or clang, "
            "or point EDGESR_CC at one"
        )
    argv = shlex.split(compiler) if isinstance(compiler, str) else list(compiler)
    if not argv:
        raise NativeBuildError("edgesr native kernels: EDGESR_CC is empty")
    found = shutil.which(argv[0])
    if not found:
        raise NativeBuildError(f"edgesr native kernels: C compiler {argv[0]!r} not found")
    return [found, *argv[1:]]


_COMPILER_INFO: dict[tuple, tuple[str, str]] = {}


def _compiler_info(cc: list[str]) -> tuple[str, str]:
    """(target triple, version banner) of a compiler, cached per process."""
    key = tuple(cc)
    if key not in _COMPILER_INFO:
        try:
            triple = subprocess.run([*cc, "-dumpmachine"], capture_output=True, text=True, timeout=60).stdout.strip()
            banner = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeBuildError(f"edgesr native kernels: cannot run the C compiler {cc[0]}: {e}") from e
        _COMPILER_INFO[key] = (triple, banner.strip().splitlines()[0] if banner.strip() else "")
    return _COMPILER_INFO[key]


def target_arch(compiler: str | list[str] | None = None) -> str:
    """Architecture the compiler targets (``x86_64``, ``aarch64``, ...), from ``-dumpmachine``."""
    triple, _ = _compiler_info(_compiler(compiler))
    return _normalise_arch(triple.split("-")[0] if triple else platform.machine())


def compile_flags(source: str | Path, arch: str | None = None) -> list[str]:
    """Flags to compile one source file for ``arch`` (default: the host): common flags, the include paths and
    the file's ISA flags (``-mavx2``, ``-march=armv8.2-a+dotprod``, ...)."""
    arch = _normalise_arch(arch or platform.machine())
    name = Path(source).name
    isa = _ISA_FLAGS.get(arch, {}).get(name, ())
    return [*COMMON_FLAGS, f"-I{include_dir()}", f"-I{_HERE / 'src'}", *isa]


def link_flags() -> list[str]:
    return list(_LINK_FLAGS)


def compile_commands(
    compiler: str | list[str] | None = None, arch: str | None = None, out_dir: str | Path | None = None
) -> list[tuple[Path, Path, list[str]]]:
    """``(source, object, argv)`` for every source file: the exact commands :func:`build` runs."""
    cc = _compiler(compiler)
    arch = arch or target_arch(cc)
    out = Path(out_dir) if out_dir is not None else Path(".")
    cmds = []
    for src in source_files():
        obj = out / (src.stem + ".o")
        cmds.append((src, obj, [*cc, *compile_flags(src, arch), "-c", str(src), "-o", str(obj)]))
    return cmds


# --------------------------------------------------------------------------------------------------------------
# Build and cache
# --------------------------------------------------------------------------------------------------------------


def _cache_root() -> Path:
    env = os.environ.get("EDGESR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgesr" / "native"


def _build_key(cc: list[str], arch: str) -> str:
    h = hashlib.sha256()
    for path in [*source_files(), *_header_files()]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    triple, banner = _compiler_info(cc)
    flags = {src.name: compile_flags(src, arch)[len(COMMON_FLAGS) + 2 :] for src in source_files()}
    h.update(json.dumps([cc, triple, banner, arch, COMMON_FLAGS, flags, _LINK_FLAGS]).encode())
    return h.hexdigest()[:20]


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_compiler(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeBuildError(f"edgesr native kernels: cannot run {argv[0]}: {e}") from e
    if proc.returncode != 0:
        raise NativeBuildError(
            f"edgesr native kernels: compilation failed (exit {proc.returncode}): {shlex.join(argv)}\n"
            f"{_tail(proc.stderr or proc.stdout)}"
        )


def build(out: str | Path, compiler: str | list[str] | None = None, jobs: int | None = None) -> Path:
    """Compile the library into ``out`` (a directory) and return the path of the shared object."""
    cc = _compiler(compiler)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cmds = compile_commands(cc, target_arch(cc), out)
    jobs = jobs or min(len(cmds), max(1, min(4, os.cpu_count() or 1)))
    with ThreadPoolExecutor(jobs) as pool:
        for f in [pool.submit(_run_compiler, argv) for _, _, argv in cmds]:
            f.result()
    lib = out / LIBRARY_NAME
    _run_compiler([*cc, *[str(obj) for _, obj, _ in cmds], *_LINK_FLAGS, "-o", str(lib)])
    return lib


def build_plugin(lib_name: str, sources: list[tuple[Path, list[str]]], linker: list[str], link_args: list[str],
                 key_parts: tuple = (), force: bool = False, compiler: str | list[str] | None = None,
                 kernels: bool = True) -> Path:
    """A shared library of the kernels plus ``sources`` (each ``(file, compiler argv without -c/-o)``), linked by
    ``[*linker, -o lib, objects..., *link_args]``: the delegates' libraries. Cached like the kernels, keyed by
    every input, and published atomically (concurrent builders race harmlessly). ``compiler`` (default: the
    host's) compiles the kernels; a cross compiler gives them its target's ISA flags. ``kernels=False``: only
    ``sources`` (a library that reaches the kernels through another one already loaded)."""
    cc = _compiler(compiler)
    arch = target_arch(cc)
    h = hashlib.sha256(_build_key(cc, arch).encode())
    for src, argv in sources:
        h.update(src.name.encode() + b"\0" + Path(src).read_bytes() + json.dumps(argv).encode())
    h.update(json.dumps([lib_name, linker, link_args, [str(k) for k in key_parts], kernels]).encode())
    out_dir = _cache_root() / f"{Path(lib_name).stem}-{h.hexdigest()[:16]}"
    lib = out_dir / lib_name
    if lib.is_file() and not force:
        return lib
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{Path(lib_name).stem}-", dir=out_dir.parent))
    try:
        cmds = compile_commands(cc, arch, tmp) if kernels else []
        cmds += [(src, tmp / (Path(src).stem + ".o"), [*argv, "-c", str(src), "-o", str(tmp / (Path(src).stem + ".o"))])
                 for src, argv in sources]
        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            for f in [pool.submit(_run_compiler, argv) for _, _, argv in cmds]:
                f.result()
        _run_compiler([*linker, "-o", str(tmp / lib_name), *[str(obj) for _, obj, _ in cmds], *link_args])
        for obj in tmp.glob("*.o"):
            obj.unlink()
        os.chmod(tmp, 0o755)
        if force and out_dir.exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not lib.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


_BUILD_LOCK = threading.Lock()
_LIB_PATH: Path | None = None


def library_path() -> Path:
    """Path of the compiled shared library, building it into the cache first if needed."""
    global _LIB_PATH
    with _BUILD_LOCK:
        if _LIB_PATH is not None and _LIB_PATH.exists():
            return _LIB_PATH
        cc = _compiler()
        arch = target_arch(cc)
        root = _cache_root()
        final = root / _build_key(cc, arch)
        lib = final / LIBRARY_NAME
        if not lib.exists():
            try:
                root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
            except OSError as e:
                raise NativeBuildError(f"edgesr native kernels: cannot write the cache directory {root}: {e}") from e
            try:
                build(tmp, cc)
                for obj in tmp.glob("*.o"):
                    obj.unlink()
                os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache entry is readable like any build
                try:
                    os.rename(tmp, final)  # atomic; fails if another process got there first
                except OSError:
                    if not lib.exists():
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        _LIB_PATH = lib
        return lib


# --------------------------------------------------------------------------------------------------------------
# ctypes bindings
# --------------------------------------------------------------------------------------------------------------

_LIB: ctypes.CDLL | None = None
_p = ctypes.c_void_p
_i = ctypes.c_int
_f = ctypes.c_float
_SIGNATURES = {
    "edgesr_isa_available": (_i, [_i]),
    "edgesr_force_isa": (_i, [_i]),
    "edgesr_active_isa": (_i, []),
    "edgesr_isa_name": (ctypes.c_char_p, [_i]),
    "edgesr_version": (ctypes.c_char_p, []),
    "edgesr_quantize_codes": (None, [_p, ctypes.c_size_t, _f, _f, _i, _p]),
    "edgesr_unpack_codes": (_i, [_p, ctypes.c_size_t, _i, _p]),
    "edgesr_qlinear_create": (_p, [_i, _i, _i, _p, _f, _f, _f, _f, _p]),
    "edgesr_qlinear_destroy": (None, [_p]),
    "edgesr_qlinear_run": (None, [_p, _p, _i, _p, _i]),
    "edgesr_qlinear_accumulate": (None, [_p, _p, _i, _p, _i]),
    "edgesr_qbmm": (None, [_p, _p, _i, _i, _i, _i, _i, _f, _f, _f, _f, _i, _p, _i]),
    "edgesr_qbmm_accumulate": (None, [_p, _p, _i, _i, _i, _i, _p, _i]),
    "edgesr_qattention": (_i, [_p, _p, _p, _i, _i, _i, _i, _p, _p, _i, _p, _i, _p, _i]),
    "edgesr_swin_block_create": (_p, [_p]),
    "edgesr_swin_block_destroy": (None, [_p]),
    "edgesr_swin_block_workspace_floats": (ctypes.c_size_t, [_p]),
    "edgesr_swin_block_run": (_i, [_p, _p, _p, _p, _i]),
    "edgesr_swin_block_shape": (None, [_p, ctypes.POINTER(_i), ctypes.POINTER(_i)]),
    "edgesr_blob_op": (_i, [ctypes.c_char_p, ctypes.c_size_t]),
    "edgesr_swin_block_from_blob": (_p, [ctypes.c_char_p, ctypes.c_size_t]),
}


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(str(library_path()))
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        _LIB = lib
    return _LIB


def version() -> str:
    return _lib().edgesr_version().decode()


def available_isas() -> list[str]:
    """Paths this CPU (and build) can run, scalar first."""
    lib = _lib()
    return [name for i, name in enumerate(ISA_NAMES) if lib.edgesr_isa_available(i)]


def active_isa() -> str:
    return ISA_NAMES[_lib().edgesr_active_isa()]


def _isa_index(name: str) -> int:
    try:
        return ISA_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown ISA {name!r}; expected one of {', '.join(ISA_NAMES)}") from None


class force_isa:
    """Pin the dispatch to one path (``None``: automatic), process-wide. Usable as a plain call or as a context
    manager that restores the previous setting::

        with force_isa("avx2"):
            layer = QLinear(...)
    """

    def __init__(self, name: str | None):
        lib = _lib()
        self._previous = ISA_NAMES[lib.edgesr_active_isa()] if _forced[0] else None
        idx = -1 if name is None else _isa_index(name)
        if lib.edgesr_force_isa(idx) != 0:
            raise ValueError(f"ISA {name!r} is not available on this CPU/build (available: {available_isas()})")
        _forced[0] = name is not None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _lib().edgesr_force_isa(-1 if self._previous is None else _isa_index(self._previous))
        _forced[0] = self._previous is not None
        return False


_forced = [False]


def _check_bits(bits: int) -> int:
    bits = int(bits)
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    return bits


def _f32(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _u8(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError("codes must be in 0..255")
    return np.ascontiguousarray(x, dtype=np.uint8)


def _threads(threads: int) -> int:
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


def quantize_codes(x, lower: float, upper: float, bits: int) -> np.ndarray:
    """Codes (uint8, same shape) of ``x`` for the quantizer with bounds ``lower < upper``: equal to
    ``edgesr.converter.quant.quant_codes``. NaN gives code 0; bounds with ``upper <= lower`` give all zeros."""
    bits = _check_bits(bits)
    x = _f32(x)
    out = np.empty(x.shape, dtype=np.uint8)
    _lib().edgesr_quantize_codes(x.ctypes.data, x.size, float(lower), float(upper), bits, out.ctypes.data)
    return out


def unpack_codes(packed, bits: int, count: int) -> np.ndarray:
    """One code per byte from a little-endian bit stream (``edgesr.converter.pack.pack_codes``)."""
    bits = _check_bits(bits)
    packed = _u8(packed).reshape(-1)
    count = int(count)
    if count < 0 or packed.size < (count * bits + 7) // 8:
        raise ValueError(f"{packed.size} bytes cannot hold {count} codes of {bits} bits")
    out = np.empty(count, dtype=np.uint8)
    if _lib().edgesr_unpack_codes(packed.ctypes.data, count, bits, out.ctypes.data) != 0:
        raise ValueError("unpack failed")
    return out


class QLinear:
    """A prepared quantized linear layer ``y = xq @ wq.T + bias`` (weights unpacked and laid out once).

    ``weight_packed``: the (n, k) weight codes bit-packed as in the artifact (``pack_codes``).
    """

    def __init__(self, weight_packed, n: int, k: int, bits: int, w_lo: float, w_hi: float, x_lo: float,
                 x_hi: float, bias=None):
        self._handle = None
        bits = _check_bits(bits)
        n, k = int(n), int(k)
        if n < 1 or k < 1:
            raise ValueError(f"n and k must be >= 1, got n={n}, k={k}")
        packed = _u8(weight_packed).reshape(-1)
        if packed.size < (n * k * bits + 7) // 8:
            raise ValueError(f"weight_packed has {packed.size} bytes, {n}x{k} codes of {bits} bits need "
                             f"{(n * k * bits + 7) // 8}")
        b = None
        if bias is not None:
            b = _f32(bias).reshape(-1)
            if b.size != n:
                raise ValueError(f"bias has {b.size} values, expected {n}")
        lib = _lib()
        self.n, self.k, self.bits = n, k, bits
        self.bounds = (float(w_lo), float(w_hi), float(x_lo), float(x_hi))
        self.isa = active_isa()
        self._handle = lib.edgesr_qlinear_create(n, k, bits, packed.ctypes.data, float(w_lo), float(w_hi),
                                                 float(x_lo), float(x_hi), None if b is None else b.ctypes.data)
        if not self._handle:
            raise MemoryError("edgesr_qlinear_create failed")
        self._destroy = lib.edgesr_qlinear_destroy

    @classmethod
    def from_weight(cls, weight, bits: int, w_lo: float, w_hi: float, x_lo: float, x_hi: float, bias=None):
        """Quantize a float (n, k) weight with the native quantizer and pack it."""
        from edgesr.converter.pack import pack_codes

        w = _f32(weight)
        n, k = w.shape
        return cls(pack_codes(quantize_codes(w, w_lo, w_hi, bits), bits), n, k, bits, w_lo, w_hi, x_lo, x_hi, bias)

    def _check(self, x, last: int):
        if self._handle is None:
            raise ValueError("QLinear is closed")
        if x.ndim < 1 or x.shape[-1] != last:
            raise ValueError(f"expected input of shape (..., {last}), got {tuple(x.shape)}")

    def run(self, x, threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
        """Float output (..., n) of float input (..., k)."""
        x = _f32(x)
        self._check(x, self.k)
        m = x.size // self.k
        y = self._out(out, (*x.shape[:-1], self.n), np.float32)
        if m:
            _lib().edgesr_qlinear_run(self._handle, x.ctypes.data, m, y.ctypes.data, _threads(threads))
        return y

    def accumulate(self, x_codes, threads: int = 1) -> np.ndarray:
        """Integer accumulators (..., n), int32: sum_k x_codes[..., k] * w_codes[n, k]."""
        x = _u8(x_codes)
        self._check(x, self.k)
        if x.size and x.max() >= (1 << self.bits):
            raise ValueError(f"activation codes must be below 2^{self.bits}")
        m = x.size // self.k
        acc = np.empty((*x.shape[:-1], self.n), dtype=np.int32)
        if m:
            _lib().edgesr_qlinear_accumulate(self._handle, x.ctypes.data, m, acc.ctypes.data, _threads(threads))
        return acc

    @staticmethod
    def _out(out, shape, dtype):
        if out is None:
            return np.empty(shape, dtype=dtype)
        if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype).name} array of shape {tuple(shape)}")
        return out

    def close(self) -> None:
        if self._handle is not None:
            self._destroy(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _batch_dims(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    if a.ndim < 2 or b.ndim < 2 or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"operands need the same leading (batch) dimensions: {tuple(a.shape)} and {tuple(b.shape)}")
    return a.shape[:-2]


def qbmm(a, b, b_transposed: bool, a_lo: float, a_hi: float, b_lo: float, b_hi: float, bits: int,
         threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """``quant(a) @ quant(b)`` (or ``@ quant(b).T`` per batch when ``b_transposed``), per-tensor quantizers,
    float32. ``a``: (..., m, k); ``b``: (..., k, n), or (..., n, k) when transposed."""
    bits = _check_bits(bits)
    a, b = _f32(a), _f32(b)
    lead = _batch_dims(a, b)
    m, k = a.shape[-2:]
    n = b.shape[-2] if b_transposed else b.shape[-1]
    kb = b.shape[-1] if b_transposed else b.shape[-2]
    if kb != k:
        raise ValueError(f"inner dimensions differ: a {tuple(a.shape)}, b {tuple(b.shape)}, b_transposed={b_transposed}")
    batch = int(np.prod(lead, dtype=np.int64))
    y = QLinear._out(out, (*lead, m, n), np.float32)
    if batch and m and n and k:
        _lib().edgesr_qbmm(a.ctypes.data, b.ctypes.data, batch, m, k, n, int(bool(b_transposed)), float(a_lo),
                           float(a_hi), float(b_lo), float(b_hi), bits, y.ctypes.data, _threads(threads))
    elif y.size:
        y.fill(0.0)  # empty sum (k == 0)
    return y


def qbmm_accumulate(a_codes, b_codes, threads: int = 1) -> np.ndarray:
    """int32 ``a_codes @ b_codes.T`` per batch: ``a_codes`` (..., m, k), ``b_codes`` (..., n, k)."""
    a, b = _u8(a_codes), _u8(b_codes)
    lead = _batch_dims(a, b)
    m, k = a.shape[-2:]
    n, kb = b.shape[-2:]
    if kb != k:
        raise ValueError(f"inner dimensions differ: {tuple(a.shape)} and {tuple(b.shape)}")
    batch = int(np.prod(lead, dtype=np.int64))
    acc = np.zeros((*lead, m, n), dtype=np.int32)
    if batch and m and n and k:
        _lib().edgesr_qbmm_accumulate(a.ctypes.data, b.ctypes.data, batch, m, k, n, acc.ctypes.data,
                                      _threads(threads))
    return acc


def qattention(q, k, v, bias, mask, heads: int, bounds, bits: int, threads: int = 1) -> np.ndarray:
    """Fused quantized window attention (``edgesr_qattention``): q, k, v (groups*heads, n, hd), bias
    (heads, n, n), mask (windows, n, n) or None, bounds = q, k, attention-map, v (lower, upper) pairs."""
    bits = _check_bits(bits)
    q, k, v, bias = _f32(q), _f32(k), _f32(v), _f32(bias)
    if q.ndim != 3 or q.shape != k.shape or q.shape != v.shape or q.shape[0] % heads:
        raise ValueError(f"q, k, v must share a (groups*heads, n, hd) shape, got {q.shape}, {k.shape}, {v.shape}")
    t, n, hd = q.shape
    if bias.shape != (heads, n, n):
        raise ValueError(f"bias must be {(heads, n, n)}, got {bias.shape}")
    m = None if mask is None else _f32(mask)
    if m is not None and (m.ndim != 3 or m.shape[1:] != (n, n) or (t // heads) % m.shape[0]):
        raise ValueError(f"mask must be (windows, {n}, {n}) with windows dividing {t // heads}, got {m.shape}")
    b = np.ascontiguousarray(np.asarray(bounds, dtype=np.float32).reshape(8))
    out = np.empty_like(q)
    rc = _lib().edgesr_qattention(q.ctypes.data, k.ctypes.data, v.ctypes.data, t // heads, heads, n, hd,
                                  bias.ctypes.data, None if m is None else m.ctypes.data,
                                  1 if m is None else m.shape[0], b.ctypes.data, bits, out.ctypes.data,
                                  _threads(threads))
    if rc != 0:
        raise ValueError("edgesr_qattention rejected its arguments (n <= 256, hd <= 64, upper > lower)")
    return out


class _SwinBlockDesc(ctypes.Structure):
    _fields_ = [(name, _i) for name in ("dim", "heads", "window", "shift", "hidden", "height", "width", "bits")] + [
        ("eps1", _f), ("eps2", _f), ("q_scale", _f),
        ("norm1_weight", _p), ("norm1_bias", _p), ("norm2_weight", _p), ("norm2_bias", _p), ("bias_table", _p),
        ("weight_packed", _p * 6), ("bias", _p * 6),
        ("x_bounds", (_f * 2) * 6), ("w_bounds", (_f * 2) * 6), ("attn_bounds", _f * 8),
    ]


class SwinBlock:
    """One whole quantized Swin block (``edgesr_swin_block_*``) on a fixed ``height`` x ``width`` token grid.

    ``linears``: six ``(weight (n, k) float, bias (n,) or None, (x_lo, x_hi), (w_lo, w_hi))`` for q, k, v,
    proj, fc1, fc2 (weights are quantized and packed here); ``attn_bounds``: q, k, map, v (lower, upper).
    ``run`` maps (height * width, dim) tokens to the block's output.
    """

    LINEARS = ("q", "k", "v", "proj", "fc1", "fc2")

    def __init__(self, *, dim: int, heads: int, window: int, shift: int, height: int, width: int, bits: int,
                 eps1: float, eps2: float, q_scale: float, norm1, norm2, bias_table, linears, attn_bounds):
        from edgesr.converter.pack import pack_codes

        self._handle = None
        bits = _check_bits(bits)
        if len(linears) != 6:
            raise ValueError(f"expected 6 linears (q, k, v, proj, fc1, fc2), got {len(linears)}")
        hidden = int(np.shape(linears[4][0])[0])
        keep = []  # arrays the descriptor points into, alive until create() has copied them

        def ptr(a, dtype=np.float32):
            a = np.ascontiguousarray(a, dtype=dtype)
            keep.append(a)
            return a.ctypes.data

        d = _SwinBlockDesc(dim=dim, heads=heads, window=window, shift=shift, hidden=hidden, height=height,
                           width=width, bits=bits, eps1=eps1, eps2=eps2, q_scale=q_scale)
        d.norm1_weight, d.norm1_bias = ptr(norm1[0]), ptr(norm1[1])
        d.norm2_weight, d.norm2_bias = ptr(norm2[0]), ptr(norm2[1])
        d.bias_table = ptr(bias_table)
        for i, (w, b, xb, wb) in enumerate(linears):
            w = _f32(w)
            d.weight_packed[i] = ptr(pack_codes(quantize_codes(w, wb[0], wb[1], bits), bits), np.uint8)
            d.bias[i] = None if b is None else ptr(b)
            d.x_bounds[i][0], d.x_bounds[i][1] = float(xb[0]), float(xb[1])
            d.w_bounds[i][0], d.w_bounds[i][1] = float(wb[0]), float(wb[1])
        for i, v in enumerate(np.asarray(attn_bounds, dtype=np.float64).reshape(8)):
            d.attn_bounds[i] = float(v)
        self._adopt(_lib().edgesr_swin_block_create(ctypes.byref(d)),
                    "edgesr_swin_block_create rejected the block (grid a multiple of the window, "
                    "0 <= shift < window, dim a multiple of heads, upper > lower)")

    @classmethod
    def from_blob(cls, blob: bytes) -> "SwinBlock":
        """The block a delegate blob describes (:mod:`edgesr.converter.export.blob`), parsed by the native
        library exactly as the ExecuTorch and LiteRT delegates parse it."""
        self = cls.__new__(cls)
        self._handle = None
        blob = bytes(blob)
        self._adopt(_lib().edgesr_swin_block_from_blob(blob, len(blob)), "not a valid Swin-block blob")
        return self

    def _adopt(self, handle, error: str) -> None:
        if not handle:
            raise ValueError(error)
        lib = _lib()
        self._handle, self._destroy = handle, lib.edgesr_swin_block_destroy
        tokens, dim = _i(), _i()
        lib.edgesr_swin_block_shape(handle, ctypes.byref(tokens), ctypes.byref(dim))
        self.tokens, self.dim = tokens.value, dim.value
        self.workspace = np.empty(lib.edgesr_swin_block_workspace_floats(handle), dtype=np.float32)

    def run(self, x, threads: int = 1) -> np.ndarray:
        x = _f32(x)
        if self._handle is None:
            raise ValueError("SwinBlock is closed")
        if x.size != self.tokens * self.dim:
            raise ValueError(f"expected {self.tokens} x {self.dim} tokens, got shape {tuple(x.shape)}")
        out = np.empty_like(x)
        if _lib().edgesr_swin_block_run(self._handle, x.ctypes.data, out.ctypes.data, self.workspace.ctypes.data,
                                        _threads(threads)) != 0:
            raise ValueError("edgesr_swin_block_run failed")
        return out

    def close(self) -> None:
        if self._handle is not None:
            self._destroy(self._handle)
            self._handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
