"""Native quantized kernels vs PyTorch FP32, measured side by side in one run.

Each shape is timed with interleaved repetitions (torch, native, torch, native, ...) and the median is
reported, so both see the same machine state. torch's OpenMP threads keep spinning for a while after each of
its calls (libgomp's default GOMP_SPINCOUNT), which at 2 threads would occupy the second core during the
native calls; unless set by the caller, GOMP_SPINCOUNT=10000 makes them sleep soon after torch's block of calls
(the back-to-back torch calls inside a block are unaffected). The quantized linear includes everything the deployed layer
does: quantizing the float input, the integer GEMM and the dequantizing epilogue (+ bias); the bmm quantizes
both float operands; the whole-block row runs one native Swin block (edgesr_swin_block) against torch's FP32
block of the same shape. Shapes are SwinIR-light's (M = 4096 tokens of a 64x64 patch; 384 = 64 windows x 6 heads).

    python scripts/bench_kernels.py [--reps 31] [--threads 1 2] [--bits 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # before torch starts OpenMP (see the docstring)

import numpy as np
import torch
import torch.nn.functional as F

from edgesr import native


def _interleaved(fns: list, reps: int, inner: int) -> list[float]:
    """Median microseconds per call of each function, repetitions interleaved (f0, f1, f0, f1, ...)."""
    for f in fns:  # warm-up (thread pools, caches, first-touch of outputs)
        for _ in range(3):
            f()
    samples = [[] for _ in fns]
    for _ in range(reps):
        for i, f in enumerate(fns):
            f()  # untimed: the other library's idle threads settle, ours wake up
            t0 = time.perf_counter_ns()
            for _ in range(inner):
                f()
            samples[i].append((time.perf_counter_ns() - t0) / inner / 1e3)
    return [statistics.median(s) for s in samples]


def _bounds(t: np.ndarray) -> tuple[float, float]:
    return float(t.min()), float(t.max())


def bench_linear(threads: int, bits: int, reps: int, rng: np.random.Generator) -> None:
    print(f"\nquantized linear W{bits}A{bits} (quantize + int GEMM + dequant + bias) vs torch F.linear FP32, "
          f"M=4096, threads={threads}")
    print(f"  {'shape':<16}{'torch us':>10}{'native us':>11}{'speed-up':>10}")
    for k, n in ((60, 60), (60, 180), (120, 60)):
        x = rng.standard_normal((4096, k), dtype=np.float32)
        w = (rng.standard_normal((n, k), dtype=np.float32) * 0.1).astype(np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        layer = native.QLinear.from_weight(w, bits, *_bounds(w), *_bounds(x), bias=b)
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        t_torch, t_nat = _interleaved([lambda: F.linear(xt, wt, bt), lambda: layer.run(x, threads)], reps, 3)
        print(f"  K={k:<3} N={n:<8}{t_torch:>10.1f}{t_nat:>11.1f}{t_torch / t_nat:>9.2f}x")
        layer.close()


def bench_bmm(threads: int, bits: int, reps: int, rng: np.random.Generator) -> None:
    print(f"\nquantized attention bmm (both operands quantized) vs torch.matmul FP32, threads={threads}")
    print(f"  {'shape':<34}{'torch us':>10}{'native us':>11}{'speed-up':>10}")
    q = rng.standard_normal((384, 64, 10), dtype=np.float32)
    kk = rng.standard_normal((384, 64, 10), dtype=np.float32)
    attn = rng.random((384, 64, 64), dtype=np.float32) / 64
    v = rng.standard_normal((384, 64, 10), dtype=np.float32)
    qt, kt, at, vt = (torch.from_numpy(t) for t in (q, kk, attn, v))
    bq, bk, ba, bv = (_bounds(t) for t in (q, kk, attn, v))  # calibrated bounds: fixed, not per call
    cases = [
        ("Q.K^T 384x(64x10 . 10x64)", lambda: qt @ kt.transpose(-2, -1),
         lambda: native.qbmm(q, kk, True, *bq, *bk, bits, threads)),
        ("attn.V 384x(64x64 . 64x10)", lambda: at @ vt, lambda: native.qbmm(attn, v, False, *ba, *bv, bits, threads)),
    ]
    # The whole window attention, Q.K^T + bias + shift mask + softmax + attn.V (what edgesr_qattention fuses).
    bias = rng.standard_normal((6, 64, 64), dtype=np.float32)
    mask = np.where(rng.random((64, 64, 64)) < 0.3, -100.0, 0.0).astype(np.float32)
    biast, maskt = torch.from_numpy(bias), torch.from_numpy(mask)

    def torch_attention():
        a = (qt @ kt.transpose(-2, -1)).reshape(64, 6, 64, 64) + biast + maskt[:, None]
        return a.reshape(384, 64, 64).softmax(-1) @ vt

    cases.append(("attention 384x64 tokens, fused", torch_attention,
                  lambda: native.qattention(q, kk, v, bias, mask, 6, [*bq, *bk, 0.0, 1.0, *bv], bits, threads)))
    for name, f_torch, f_nat in cases:
        t_torch, t_nat = _interleaved([f_torch, f_nat], reps, 3)
        print(f"  {name:<34}{t_torch:>10.1f}{t_nat:>11.1f}{t_torch / t_nat:>9.2f}x")


def bench_block(threads: int, bits: int, reps: int) -> None:
    """One SwinIR-light Swin block (shifted, 64x64 tokens): the native quantized block vs torch's FP32 block."""
    from edgesr.converter import QuantConfig, quantize
    from edgesr.converter.calibrate import calibrate
    from edgesr.converter.export import swin_block
    from edgesr.models.swinir import SwinIR

    torch.manual_seed(0)
    model = SwinIR().eval()  # SwinIR-light defaults; random weights, bounds from a MinMax pass
    config = QuantConfig(bits=bits, init="minmax")
    q = quantize(SwinIR().eval(), config)
    q.load_state_dict(model.state_dict(), strict=False)
    calibrate(q, torch.rand(1, 3, 64, 64), config)
    fp_blk, q_blk = model.layers[0].blocks[1], q.layers[0].blocks[1]
    block = native.SwinBlock(**swin_block.native_kwargs(swin_block.block_tensors(q_blk),
                                                        swin_block.block_scalars(q_blk, (64, 64))))
    x = torch.randn(1, 4096, 60)
    xn = x[0].numpy()

    def torch_block():
        with torch.no_grad():
            fp_blk(x, (64, 64))

    t_torch, t_nat = _interleaved([torch_block, lambda: block.run(xn, threads)], max(5, reps // 3), 1)
    print(f"\nwhole Swin block W{bits}A{bits} (64x64 tokens, shifted) vs torch FP32 block, threads={threads}")
    print(f"  {'':<16}{'torch us':>10}{'native us':>11}{'speed-up':>10}")
    print(f"  {'block':<16}{t_torch:>10.1f}{t_nat:>11.1f}{t_torch / t_nat:>9.2f}x")


def bench_isas(bits: int, reps: int, rng: np.random.Generator) -> None:
    print(f"\nquantized linear per ISA path (forced), W{bits}A{bits}, M=4096, threads=1, microseconds")
    isas = native.available_isas()
    print(f"  {'shape':<16}" + "".join(f"{name:>14}" for name in isas))
    for k, n in ((60, 60), (60, 180), (120, 60)):
        x = rng.standard_normal((4096, k), dtype=np.float32)
        w = (rng.standard_normal((n, k), dtype=np.float32) * 0.1).astype(np.float32)
        layers = []
        for isa in isas:
            with native.force_isa(isa):
                layers.append(native.QLinear.from_weight(w, bits, *_bounds(w), *_bounds(x)))
        times = _interleaved([lambda layer=layer: layer.run(x, 1) for layer in layers], max(5, reps // 3), 2)
        print(f"  K={k:<3} N={n:<8}" + "".join(f"{t:>14.1f}" for t in times))
        for layer in layers:
            layer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bits", type=int, default=4)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"edgesr native {native.version()}: paths {', '.join(native.available_isas())}; "
          f"dispatch picks {native.active_isa()}; torch {torch.__version__}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        bench_linear(threads, args.bits, args.reps, rng)
        bench_bmm(threads, args.bits, args.reps, rng)
        bench_block(threads, args.bits, args.reps)
    torch.set_num_threads(1)
    bench_isas(args.bits, args.reps, rng)


if __name__ == "__main__":
    main()
