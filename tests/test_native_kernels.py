"""edgesr.native: the C kernel library against NumPy/PyTorch references, on every ISA path this CPU runs.

Integer accumulators must equal an int64 matmul of the codes exactly; codes must equal
``converter.quant.quant_codes`` bit for bit; float outputs must match the fake-quant PyTorch model and be
identical across paths and thread counts. The AArch64 paths (NEON, dotprod, i8mm) run under qemu-user when a
cross compiler and qemu are installed (``apt-get install gcc-aarch64-linux-gnu qemu-user``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesr import native
from edgesr.converter.pack import pack_codes, unpack_codes
from edgesr.converter.quant import fake_quantize, quant_codes

try:
    native._compiler()
except native.NativeBuildError as e:  # no C compiler on this machine (a failing build is an error, not a skip)
    pytest.skip(f"native kernels cannot be built: {e}", allow_module_level=True)
native.library_path()

ISAS = native.available_isas()
HSET = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=ISAS)
def isa(request):
    with native.force_isa(request.param):
        yield request.param


def _bounds(rng, kind: str) -> tuple[float, float]:
    if kind == "sym":
        a = float(rng.uniform(0.1, 4))
        return float(np.float32(-a)), float(np.float32(a))
    if kind == "one_sided":  # post-softmax / post-GELU inputs
        return float(np.float32(rng.uniform(-0.2, 0.0))), float(np.float32(rng.uniform(0.5, 8)))
    lo = float(rng.uniform(3, 5))  # far from zero: the vector paths' exact-clamp variant
    return float(np.float32(lo)), float(np.float32(lo + rng.uniform(0.01, 0.5)))


def _tricky_values(rng, lo: float, hi: float, bits: int, n: int) -> np.ndarray:
    """Random values, values exactly at half steps and their float neighbours, and values outside the bounds."""
    step = np.float32((np.float32(hi) - np.float32(lo)) / np.float32(2**bits - 1))
    half = np.float32(lo) + (rng.integers(0, 2**bits, n).astype(np.float32) + np.float32(0.5)) * step
    out = np.concatenate([
        rng.uniform(lo, hi, n).astype(np.float32),
        half,
        np.nextafter(half, np.float32(np.inf)),
        np.nextafter(half, np.float32(-np.inf)),
        rng.uniform(lo - 3 * (hi - lo), hi + 3 * (hi - lo), n).astype(np.float32),
        np.array([lo, hi, np.nextafter(np.float32(lo), np.float32(-1e9)), np.float32(1e30), -np.float32(1e30)],
                 dtype=np.float32),
    ])
    return rng.permutation(out)


# ----------------------------------------------------------------------------------------------------------------
# Codes
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("kind", ["sym", "one_sided", "far"])
def test_codes_equal_torch_quant_codes(isa, bits, kind):
    rng = np.random.default_rng(bits * 7 + len(kind))
    lo, hi = _bounds(rng, kind)
    x = _tricky_values(rng, lo, hi, bits, 700)
    ref = quant_codes(torch.from_numpy(x), torch.tensor(lo), torch.tensor(hi), bits).numpy()
    got = native.quantize_codes(x, lo, hi, bits)
    assert got.dtype == np.uint8 and got.shape == x.shape
    bad = np.flatnonzero(got != ref)
    assert bad.size == 0, f"{isa}: {bad.size} codes differ, e.g. x={x[bad[:3]]} got {got[bad[:3]]} want {ref[bad[:3]]}"


def test_codes_nan_and_degenerate_bounds(isa):
    x = np.array([np.nan, 0.5, -np.inf, np.inf], dtype=np.float32)
    assert native.quantize_codes(x, -1.0, 1.0, 4).tolist() == [0, 11, 0, 15]
    assert native.quantize_codes(x, 1.0, 1.0, 4).tolist() == [0, 0, 0, 0]  # upper <= lower: all zero


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_of_special_values_inside_long_rows(isa, bits):
    """NaN, infinities and values beyond the int32 range of the guess, scattered through a row long enough for
    the vector loops' main body (not only their tails)."""
    rng = np.random.default_rng(bits)
    lo, hi = -1.5, 2.5
    x = _tricky_values(rng, lo, hi, bits, 100)
    specials = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 1e38, -1e38], dtype=np.float32)
    x[rng.choice(x.size, 60, replace=False)] = rng.choice(specials, 60)
    got = native.quantize_codes(x, lo, hi, bits)
    finite_or_inf = ~np.isnan(x)
    ref = quant_codes(torch.from_numpy(x[finite_or_inf]), torch.tensor(lo), torch.tensor(hi), bits).numpy()
    assert np.array_equal(got[finite_or_inf], ref)
    assert not got[np.isnan(x)].any()  # NaN gives code 0


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8])
def test_unpack_codes_matches_converter(bits):
    rng = np.random.default_rng(bits)
    for count in (1, 7, 64, 333):
        codes = rng.integers(0, 2**bits, count)
        packed = pack_codes(codes, bits)
        assert np.array_equal(native.unpack_codes(packed, bits, count), unpack_codes(packed, bits, count))


# ----------------------------------------------------------------------------------------------------------------
# Integer accumulators: exact
# ----------------------------------------------------------------------------------------------------------------

EDGE_SHAPES = [(1, 1, 1), (1, 17, 1), (7, 1, 13), (5, 33, 65), (64, 60, 60), (3, 16, 4), (9, 23, 31), (2, 180, 120)]


def _check_linear_acc(m, n, k, bits, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 2**bits, (n, k))
    x = rng.integers(0, 2**bits, (m, k))
    if seed % 3 == 0:  # extremes
        w[:, : k // 2] = 2**bits - 1
        x[: m // 2] = 2**bits - 1
    layer = native.QLinear(pack_codes(w, bits), n, k, bits, -1.0, 1.0, -1.0, 1.0)
    ref = x.astype(np.int64) @ w.T.astype(np.int64)
    acc1 = layer.accumulate(x.astype(np.uint8), threads=1)
    acc2 = layer.accumulate(x.astype(np.uint8), threads=2)
    assert np.array_equal(acc1, ref), f"linear acc m={m} n={n} k={k} bits={bits}"
    assert np.array_equal(acc2, acc1)


@pytest.mark.parametrize("shape", EDGE_SHAPES)
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_linear_accumulate_edge_shapes(isa, shape, bits):
    _check_linear_acc(*shape, bits, seed=sum(shape) + bits)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("n", [8, 13])  # without and with a spare padding channel (the ones channel)
def test_linear_accumulate_all_max_codes_over_long_k(isa, bits, n):
    """Every code at its maximum over a K long enough that narrow-code paths which sum in 16-bit lanes must
    widen several times (4-bit: every 288 k on AVX2), so any overflow or lost partial sum shows."""
    m, k = 6, 1203
    top = 2**bits - 1
    w = np.full((n, k), top)
    x = np.full((m, k), top)
    w[1, ::7] = 0  # and one channel and one row that are not constant
    x[2, 5::3] = top // 2
    layer = native.QLinear(pack_codes(w, bits), n, k, bits, -1.0, 1.0, -1.0, 1.0)
    ref = x.astype(np.int64) @ w.T.astype(np.int64)
    assert np.array_equal(layer.accumulate(x.astype(np.uint8), threads=1), ref)
    # The float path (row sums from the GEMM or the quantizer): inputs of 1.0 are code L, dequantized to 1.0.
    y = layer.run(np.full((m, k), 1.0, np.float32), threads=1)
    w_deq = -1.0 + w * (2.0 / top)
    _assert_close(y, np.broadcast_to(w_deq.sum(axis=1), (m, n)), f"{isa} W{bits} all-max float output")


@HSET
@given(m=st.integers(1, 80), n=st.integers(1, 70), k=st.integers(1, 140), bits=st.sampled_from([2, 3, 4, 8]),
       seed=st.integers(0, 2**16))
def test_linear_accumulate_random_shapes(isa, m, n, k, bits, seed):
    _check_linear_acc(m, n, k, bits, seed)


@HSET
@given(batch=st.integers(1, 5), m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 80),
       bits=st.sampled_from([2, 3, 4, 8]), seed=st.integers(0, 2**16))
def test_bmm_accumulate_random_shapes(isa, batch, m, n, k, bits, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**bits, (batch, m, k)).astype(np.uint8)
    b = rng.integers(0, 2**bits, (batch, n, k)).astype(np.uint8)
    ref = a.astype(np.int64) @ b.astype(np.int64).transpose(0, 2, 1)
    assert np.array_equal(native.qbmm_accumulate(a, b, threads=1), ref)
    assert np.array_equal(native.qbmm_accumulate(a, b, threads=2), ref)


# ----------------------------------------------------------------------------------------------------------------
# Float outputs: the fake-quant PyTorch model
# ----------------------------------------------------------------------------------------------------------------


def _assert_close(got, ref, what):
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(got - ref).max())
    assert err <= 1e-4 * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("m,n,k", [(4096 // 16, 60, 60), (37, 180, 60), (64, 60, 120), (5, 7, 3), (1, 1, 1)])
def test_linear_run_matches_fake_quant(isa, bits, m, n, k):
    rng = np.random.default_rng(m + n + k + bits)
    w = (rng.standard_normal((n, k)) * 0.2).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    w_lo, w_hi = float(np.float32(min(w.min(), 0) * 0.8 - 0.01)), float(np.float32(max(w.max(), 0) * 0.9 + 0.01))
    x_lo, x_hi = float(np.float32(-1.5)), float(np.float32(2.0))
    layer = native.QLinear.from_weight(w, bits, w_lo, w_hi, x_lo, x_hi, bias)
    y1 = layer.run(x, threads=1)
    y2 = layer.run(x, threads=2)
    assert np.array_equal(y1, y2), "threads 1 and 2 differ"
    t = torch.from_numpy
    ref = F.linear(fake_quantize(t(x), torch.tensor(x_lo), torch.tensor(x_hi), bits),
                   fake_quantize(t(w), torch.tensor(w_lo), torch.tensor(w_hi), bits), t(bias))
    _assert_close(y1, ref.numpy(), f"{isa} linear {m}x{n}x{k} W{bits}A{bits}")


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("batch,m,k,n", [(6, 64, 10, 64), (6, 64, 64, 10), (2, 9, 5, 3), (1, 130, 17, 33)])
def test_qbmm_matches_fake_quant(isa, bits, transposed, batch, m, k, n):
    rng = np.random.default_rng(batch + m + k + n + bits)
    a = rng.standard_normal((batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, n, k) if transposed else (batch, k, n)).astype(np.float32)
    if k == 64:  # softmax-like operand: one-sided bounds
        a = np.abs(a) / 8
    a_lo, a_hi = (0.0, 0.5) if k == 64 else (-2.0, 2.5)
    b_lo, b_hi = -1.75, 2.0
    out1 = native.qbmm(a, b, transposed, a_lo, a_hi, b_lo, b_hi, bits, threads=1)
    out2 = native.qbmm(a, b, transposed, a_lo, a_hi, b_lo, b_hi, bits, threads=2)
    assert out1.shape == (batch, m, n)
    assert np.array_equal(out1, out2), "threads 1 and 2 differ"
    qa = fake_quantize(torch.from_numpy(a), torch.tensor(a_lo), torch.tensor(a_hi), bits)
    qb = fake_quantize(torch.from_numpy(b), torch.tensor(b_lo), torch.tensor(b_hi), bits)
    ref = qa @ (qb.transpose(-2, -1) if transposed else qb)
    _assert_close(out1, ref.numpy(), f"{isa} qbmm {batch}x{m}x{k}x{n} T={transposed} bits={bits}")


def test_every_path_gives_identical_floats():
    """The epilogue is one fused multiply-add on every path, so outputs agree bit for bit with scalar."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((45, 37)).astype(np.float32)
    x = rng.standard_normal((70, 37)).astype(np.float32)
    v = rng.standard_normal((3, 37, 11)).astype(np.float32)
    outs = {}
    for name in ISAS:
        with native.force_isa(name):
            layer = native.QLinear.from_weight(w, 4, -2.0, 2.0, -2.5, 2.5, bias=np.ones(45, np.float32))
            outs[name] = (layer.run(x), native.qbmm(x[:3 * 20].reshape(3, 20, 37), v, False, -2, 2, -2, 2, 3))
    for name, (y, o) in outs.items():
        assert np.array_equal(y, outs["scalar"][0]) and np.array_equal(o, outs["scalar"][1]), name


def test_thread_pool_concurrent_callers_and_fork():
    """Several Python threads sharing one layer and the pool (one runs the region, the others run alone),
    thread counts above the core count, and a forked child that starts without the parent's workers."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((60, 60)).astype(np.float32)
    x = rng.standard_normal((1000, 60)).astype(np.float32)
    layer = native.QLinear.from_weight(w, 4, -3, 3, -3, 3)
    ref = layer.run(x, threads=1)

    def work(threads):
        return all(np.array_equal(layer.run(x, threads=threads), ref) for _ in range(20))

    with ThreadPoolExecutor(3) as pool:
        assert all(pool.map(work, [2, 3, 8]))
    if hasattr(os, "fork"):
        pid = os.fork()
        if pid == 0:  # child: must not wait for workers that only exist in the parent
            os._exit(0 if np.array_equal(layer.run(x, threads=2), ref) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ----------------------------------------------------------------------------------------------------------------
# Arguments, dispatch
# ----------------------------------------------------------------------------------------------------------------


def test_bad_arguments():
    packed = pack_codes(np.arange(8) % 16, 4)
    for bits in (0, 9):
        with pytest.raises(ValueError):
            native.QLinear(packed, 2, 4, bits, 0, 1, 0, 1)
        with pytest.raises(ValueError):
            native.quantize_codes(np.zeros(3), 0, 1, bits)
        with pytest.raises(ValueError):
            native.qbmm(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), True, 0, 1, 0, 1, bits)
    with pytest.raises(ValueError):
        native.QLinear(packed, 4, 4, 4, 0, 1, 0, 1)  # too few bytes
    layer = native.QLinear(packed, 2, 4, 4, 0, 1, 0, 1)
    with pytest.raises(ValueError):
        layer.run(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError):
        layer.accumulate(np.full((1, 4), 16))  # code beyond 4 bits
    with pytest.raises(ValueError):
        native.force_isa("sse9")
    # The C API itself refuses bad arguments without crashing.
    lib = native._lib()
    buf = (ctypes.c_uint8 * 8)()
    for bits in (0, 9):
        assert not lib.edgesr_qlinear_create(2, 4, bits, ctypes.addressof(buf), 0.0, 1.0, 0.0, 1.0, None)
        assert lib.edgesr_unpack_codes(ctypes.addressof(buf), 4, bits, ctypes.addressof(buf)) == -1
    assert not lib.edgesr_qlinear_create(2, 4, 4, None, 0.0, 1.0, 0.0, 1.0, None)
    assert not lib.edgesr_qlinear_create(0, 4, 4, ctypes.addressof(buf), 0.0, 1.0, 0.0, 1.0, None)
    lib.edgesr_quantize_codes(None, 4, 0.0, 1.0, 4, ctypes.addressof(buf))
    lib.edgesr_qlinear_run(None, None, 4, None, 1)
    lib.edgesr_qlinear_destroy(None)
    lib.edgesr_qbmm(None, None, 1, 1, 1, 1, 0, 0.0, 1.0, 0.0, 1.0, 4, None, 1)
    lib.edgesr_qbmm_accumulate(None, None, 1, 1, 1, 1, None, 1)
    assert lib.edgesr_force_isa(99) == -1


def test_dispatch_and_force():
    assert ISAS[0] == "scalar"
    best = native.active_isa()
    assert best == ISAS[-1] if len(ISAS) > 1 else best == "scalar"
    with native.force_isa("scalar"):
        assert native.active_isa() == "scalar"
        with native.force_isa(best):
            assert native.active_isa() == best
        assert native.active_isa() == "scalar"
    assert native.active_isa() == best
    layer = native.QLinear(pack_codes(np.ones(4, int), 4), 1, 4, 4, 0, 1, 0, 1)
    assert layer.isa == best


# ----------------------------------------------------------------------------------------------------------------
# Build: cache, errors, the C self-test natively and on AArch64 under qemu
# ----------------------------------------------------------------------------------------------------------------


def test_compile_commands_and_sources():
    srcs = native.source_files()
    assert {p.name for p in srcs} >= {"ek_core.c", "ek_x86_avx512vnni.c", "ek_arm_i8mm.c"}
    assert (native.include_dir() / "edgesr_kernels.h").is_file()
    flags = {Path(s).name: argv for s, _, argv in native.compile_commands(arch="aarch64")}
    assert "-march=armv8.6-a+i8mm" in flags["ek_arm_i8mm.c"] and "-mavx2" not in flags["ek_x86_avx2.c"]
    assert "-mavx512vnni" in native.compile_flags("ek_x86_avx512vnni.c", "x86_64")


def test_build_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGESR_CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(native.NativeBuildError, match="no C compiler found"):
        native.build(tmp_path / "out")
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\ncase \"$1\" in -dumpmachine) echo x86_64-linux-gnu;; --version) echo fake 1;;\n"
                    "*) echo 'fakecc: error: the compiler says no' >&2; exit 3;; esac\n")
    fake.chmod(0o755)
    with pytest.raises(native.NativeBuildError, match="compilation failed.*\n.*the compiler says no"):
        native.build(tmp_path / "out", compiler=str(fake))


def test_clean_cache_concurrent_first_use(tmp_path):
    """Two processes building into an empty cache at once both get the same, working library (built at -O0 by
    a compiler wrapper to keep this quick: what is tested is the cache, not the optimiser)."""
    cc = tmp_path / "cc-O0"
    cc.write_text(f'#!/bin/sh\nfor a do shift; [ "$a" = -O3 ] && a=-O0; set -- "$@" "$a"; done\nexec {_cc()} "$@"\n')
    cc.chmod(0o755)
    script = textwrap.dedent("""
        from edgesr import native
        print(native.library_path()); print(native.quantize_codes([0.4], 0.0, 1.0, 2)[0])
    """)
    env = {**os.environ, "EDGESR_CACHE_DIR": str(tmp_path / "cache"), "EDGESR_CC": str(cc)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    paths = {out.split()[0] for out, _ in outs}
    assert len(paths) == 1 and all(out.split()[1] == "1" for out, _ in outs)
    entries = [e.name for e in (tmp_path / "cache").iterdir()]
    assert len(entries) == 1 and not entries[0].startswith(".build-"), entries  # no leftovers


def _cc():
    return shutil.which("cc") or shutil.which("gcc")


def test_c_selftest_native(tmp_path):
    """The C self-test (every path against scalar, exact accumulators, codes) linked to the cached library."""
    exe = tmp_path / "kernel_selftest"
    lib = native.library_path()
    subprocess.run([_cc(), "-O1", "-std=gnu99", f"-I{native.include_dir()}", str(REPO / "native/tests/kernel_selftest.c"),
                    str(lib), f"-Wl,-rpath,{lib.parent}", "-lm", "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe), "--rounds", "25", "--expect-best", native.active_isa()], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "ALL PASSED" in out.stdout, out.stdout + out.stderr


AARCH64_CC = shutil.which("aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64")


@pytest.fixture(scope="module")
def aarch64_selftest(tmp_path_factory):
    if not AARCH64_CC or not QEMU:
        pytest.skip("AArch64 paths not checked: needs aarch64-linux-gnu-gcc and qemu-aarch64 "
                    "(apt-get install gcc-aarch64-linux-gnu qemu-user)")
    out = tmp_path_factory.mktemp("aarch64")
    cmds = native.compile_commands(AARCH64_CC, "aarch64", out)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: subprocess.run(c[2], capture_output=True, text=True), cmds))
    for r in results:
        assert r.returncode == 0, r.stderr
    exe = out / "kernel_selftest"
    subprocess.run([AARCH64_CC, "-O1", "-static", f"-I{native.include_dir()}", str(REPO / "native/tests/kernel_selftest.c"),
                    *[str(o) for _, o, _ in cmds], "-lm", "-pthread", "-o", str(exe)], check=True, capture_output=True)
    return exe


CLANG = shutil.which("clang")


def _clang_aarch64(target: str) -> list[str]:
    """clang for AArch64 (the Android NDK's compiler) over Debian's cross sysroot. With the Android triple the
    sources see __ANDROID__ as under the NDK; bionic's headers are not here, glibc's stand in (compile only)."""
    extra = ["--sysroot=/usr/aarch64-linux-gnu", "-isystem", "/usr/aarch64-linux-gnu/include"]
    return ["clang", f"--target={target}", *(extra if "android" in target else [])]


@pytest.mark.parametrize("target", ["aarch64-linux-android26", "aarch64-linux-gnu"])
def test_clang_compiles_the_arm_paths_without_warnings(tmp_path, target):
    if not CLANG or not AARCH64_CC:
        pytest.skip("needs clang and aarch64-linux-gnu-gcc's sysroot (apt-get install clang gcc-aarch64-linux-gnu)")
    for src, _, argv in native.compile_commands(_clang_aarch64(target), "aarch64", tmp_path):
        r = subprocess.run([*argv, "-Werror"], capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name}: {r.stderr[-2000:]}"


def test_clang_build_passes_the_selftest_under_qemu(tmp_path):
    """The kernels as clang compiles them for AArch64 (NEON, dotprod, i8mm) against scalar, as with gcc."""
    if not CLANG or not AARCH64_CC or not QEMU:
        pytest.skip("needs clang, aarch64-linux-gnu-gcc and qemu-aarch64")
    cc = _clang_aarch64("aarch64-linux-gnu")
    cmds = native.compile_commands(cc, "aarch64", tmp_path)
    for _, _, argv in cmds:
        subprocess.run(argv, check=True, capture_output=True)
    exe = tmp_path / "kernel_selftest"
    subprocess.run([*cc, "-O1", "-static", f"-I{native.include_dir()}", str(REPO / "native/tests/kernel_selftest.c"),
                    *[str(o) for _, o, _ in cmds], "-lm", "-pthread", "-o", str(exe)], check=True, capture_output=True)
    for cpu, best in (("max,sme=off", "neon_i8mm"), ("cortex-a76", "neon_dotprod"), ("cortex-a53", "neon")):
        out = subprocess.run([QEMU, "-cpu", cpu, str(exe), "--rounds", "2", "--expect-best", best],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and "ALL PASSED" in out.stdout, out.stdout + out.stderr
        assert f"{best:<13} PASS" in out.stdout, out.stdout


@pytest.mark.parametrize("cpu,best,rounds", [("max,sme=off", "neon_i8mm", 15), ("cortex-a76", "neon_dotprod", 4),
                                              ("cortex-a53", "neon", 2)])
def test_c_selftest_aarch64_qemu(aarch64_selftest, cpu, best, rounds):
    """NEON, dotprod and i8mm against scalar under qemu; dispatch falls back when the CPU lacks i8mm/dotprod."""
    out = subprocess.run([QEMU, "-cpu", cpu, str(aarch64_selftest), "--rounds", str(rounds), "--expect-best", best],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ALL PASSED" in out.stdout, out.stdout + out.stderr
    assert f"automatic dispatch: {best}" in out.stdout
    for name in ("neon", "neon_dotprod", "neon_i8mm")[: ("neon", "neon_dotprod", "neon_i8mm").index(best) + 1]:
        assert f"{name:<13} PASS" in out.stdout, out.stdout
