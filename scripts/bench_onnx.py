"""ONNX numbers for one FP model and its quantized artifact (onnxruntime, CPU), side by side in one run.

    python scripts/bench_onnx.py --quant results/artifacts/x4_w4_dobi_dqc.safetensors

Prints and writes (--out, default results/onnx_x4.md + .json):
* bytes and export time of the FP32, the 2DQuant QDQ and the stock INT4 (onnxruntime MatMulNBits) .onnx
  (exported here unless --reuse);
* latency at the static tile, 1 and 2 threads, FP32 vs QDQ, interleaved rounds, medians;
* fidelity on Set5/Set14/B100, every backend tiled the same way (as scripts/bench_pte.py): QDQ .onnx vs the
  fake-quant PyTorch model, FP32 .onnx and stock INT4 .onnx vs eager FP32 (Y-PSNR, border = scale).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch

from bench_pte import bench_arguments, load_bench_models, fidelity, interleaved_ms, record_latency, write_report  # scripts/ is on sys.path when run as a script

from edgesr.converter.export.onnx import export_onnx
from edgesr.runtime.onnxrt import OnnxModel
from edgesr.runtime.session import TorchModel


def export(model, path: Path, tile, reuse: bool, source: dict, stock_int4: bool = False) -> dict:
    if reuse and path.is_file():
        return {"bytes": path.stat().st_size, "seconds": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = export_onnx(model, path, tile=tile, source=source, stock_int4=stock_int4)
    return {"bytes": r["bytes"], "seconds": r["seconds"], "lowered": r["lowered"]}


def latency(paths: dict, tile, threads: int, rounds: int) -> tuple[dict, dict]:
    return interleaved_ms({k: OnnxModel(p, threads=threads) for k, p in paths.items()}, tile, rounds)


def main() -> int:
    p = bench_arguments(__doc__, "onnx")
    args = p.parse_args()

    torch.set_num_threads(1)
    fp_path, fp, q, tile, report = load_bench_models(args)
    bits = q.quant_config.bits
    paths = {"fp32_onnx": args.work / f"x{fp.scale}_fp32.onnx", "qdq_onnx": args.work / f"x{fp.scale}_w{bits}.onnx",
             "stock_onnx": args.work / f"x{fp.scale}_stock_int4.onnx"}
    report["files"]["fp32_onnx"] = export(fp, paths["fp32_onnx"], tile, args.reuse, {"path": str(fp_path)})
    report["files"]["qdq_onnx"] = export(q, paths["qdq_onnx"], tile, args.reuse, {"path": args.quant})
    report["files"]["stock_onnx"] = export(fp, paths["stock_onnx"], tile, args.reuse, {"path": str(fp_path)},
                                           stock_int4=True)
    print(json.dumps(report["files"]), flush=True)

    for threads in (1, 2):
        lat, share = latency(paths, tile, threads, args.rounds)
        lat["ratio_fp32_over_qdq"] = lat["fp32_onnx"] / lat["qdq_onnx"]
        lat["ratio_fp32_over_stock"] = lat["fp32_onnx"] / lat["stock_onnx"]
        record_latency(report, threads, lat, share)

    if args.sets:
        torch.set_num_threads(2)
        backends = {"fake_quant": TorchModel(q, tile), "qdq_onnx": OnnxModel(paths["qdq_onnx"], threads=2),
                    "fp32_eager": TorchModel(fp, tile), "fp32_onnx": OnnxModel(paths["fp32_onnx"], threads=2),
                    "stock_onnx": OnnxModel(paths["stock_onnx"], threads=2)}
        fid = fidelity(backends, args.sets, fp.scale, args.overlap, args.limit, args.data_root)
        for r in fid.values():
            r["delta_qdq"] = r["qdq_onnx"] - r["fake_quant"]
            r["delta_fp32"] = r["fp32_onnx"] - r["fp32_eager"]
            r["delta_stock"] = r["stock_onnx"] - r["fp32_eager"]
        report["fidelity"] = fid
        report["fidelity_protocol"] = {"tile": list(tile), "overlap": args.overlap, "feather": True,
                                       "limit": args.limit}

    write_report(args.out or Path(f"results/onnx_x{fp.scale}"), report, markdown(report))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# ONNX (onnxruntime CPU), tile {r['tile'][0]}x{r['tile'][1]}, "
             f"W{r['bits']}A{r['bits']} as QDQ", "",
             f"FP weights sha256 {r['fp_sha256'][:16]}..., artifact `{r['quant']}`.", "",
             "| file | bytes | export s |", "|---|---:|---:|"]
    for k, v in r["files"].items():
        lines.append(f"| {k} | {v['bytes']:,} | {v['seconds'] if v['seconds'] is not None else '-'} |")
    lines += ["", "stock_onnx: onnxruntime's blockwise weight-only INT4 (MatMulNBits, block 32) of the FP model, "
              "not 2DQuant.", "",
              "| threads | FP32 .onnx ms | QDQ .onnx ms | FP32 / QDQ | stock INT4 .onnx ms | FP32 / stock |",
              "|---:|---:|---:|---:|---:|---:|"]
    for t, lat in r["latency_ms"].items():
        lines.append(f"| {t} | {lat['fp32_onnx']:.1f} | {lat['qdq_onnx']:.1f} | {lat['ratio_fp32_over_qdq']:.2f}x | "
                     f"{lat['stock_onnx']:.1f} | {lat['ratio_fp32_over_stock']:.2f}x |")
    if "fidelity" in r:
        lines += ["", "Y-PSNR (dB), every backend tiled identically "
                  f"(overlap {r['fidelity_protocol']['overlap']}, feathered):", "",
                  "| set | fake-quant | QDQ .onnx | Δ | FP32 eager | FP32 .onnx | Δ | stock INT4 .onnx | Δ vs FP32 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s, v in r["fidelity"].items():
            lines.append(f"| {s} | {v['fake_quant']:.4f} | {v['qdq_onnx']:.4f} | {v['delta_qdq']:+.4f} | "
                         f"{v['fp32_eager']:.4f} | {v['fp32_onnx']:.4f} | {v['delta_fp32']:+.4f} | "
                         f"{v['stock_onnx']:.4f} | {v['delta_stock']:+.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
