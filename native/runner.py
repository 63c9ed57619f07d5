"""``edgesr_runner`` (native/tools/): the quantized layers of an edgesr INT4 .tflite, run standalone, for latency
on a device and parity between machines. This module builds it (for the host or, with a cross compiler, for
AArch64, statically so that ``adb push`` + ``adb shell`` runs it) and writes / reads its golden-vector files.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from edgesr import native

RUNNER_SOURCE = Path(__file__).parent / "tools" / "edgesr_runner.c"


def build_runner(out_dir: str | Path, compiler: str | list[str] | None = None, static: bool = False) -> Path:
    """Compile the kernels and the runner with ``compiler`` (default: the host's) into ``out_dir``."""
    cc = native._compiler(compiler)
    arch = native.target_arch(cc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objects = []
    for _, obj, argv in native.compile_commands(cc, arch, out):
        native._run_compiler(argv)
        objects.append(str(obj))
    exe = out / "edgesr_runner"
    # No fused multiply-add in the runner's own float code (whole-graph mode): sums round the same everywhere.
    native._run_compiler([*cc, "-O3", "-std=gnu99", "-ffp-contract=off", f"-I{native.include_dir()}", str(RUNNER_SOURCE), *objects,
                          *(["-static"] if static else []), "-lm", "-pthread", "-o", str(exe)])
    return exe


def write_golden(path: str | Path, weight_codes: np.ndarray, x_codes: np.ndarray, bits: int,
                 w_bounds=(-1.0, 1.0), x_bounds=(0.0, 1.0), threads: int = 1) -> None:
    """Integer test vectors for ``edgesr_runner --golden``: (n, k) weight codes, (m, k) input codes."""
    from edgesr.converter.pack import pack_codes

    n, k = weight_codes.shape
    m = x_codes.shape[0]
    packed = pack_codes(np.asarray(weight_codes, np.uint8), bits).tobytes()
    head = struct.pack("<5I4f", n, k, m, bits, threads, *w_bounds, *x_bounds)
    Path(path).write_bytes(head + packed + np.ascontiguousarray(x_codes, np.uint8).tobytes())


def read_accumulators(path: str | Path, m: int, n: int) -> np.ndarray:
    return np.fromfile(path, dtype="<i4").reshape(m, n)
