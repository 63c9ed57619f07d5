"""LiteRT numbers for one FP model and its quantized artifact (ai-edge-litert, XNNPACK on), side by side in one run.

    python scripts/bench_tflite.py --quant results/artifacts/x4_w4_dobi_dqc.safetensors

Prints and writes (--out, default results/tflite_x4.md + .json):
* bytes and export time of four .tflite files: FP32; stock INT4 (LiteRT's per-channel INT4 fully-connected weights,
  dynamic activations), the same with INT8 convs; edgesr INT4 (2DQuant blocks as custom ops, edgesr delegate);
* latency at the static tile, 1 and 2 threads, every file against the FP32 .tflite, interleaved rounds, medians;
* fidelity on Set5/Set14/B100, every backend tiled the same way (as scripts/bench_pte.py): edgesr INT4 vs the
  fake-quant PyTorch model, FP32 and stock files vs eager FP32 (Y-PSNR, border = scale).

``--reference-fp32 FILE`` adds an FP32 .tflite of the same model made by another converter (e.g. litert-torch
0.10.0: ``litert_torch.convert(model, (torch.rand(1, 3, 64, 64),)).export(FILE)``) to the latency rounds, to
check that edgesr's FP32 file is a fair baseline; its max abs difference to eager is reported too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench_pte import bench_arguments, load_bench_models, fidelity, interleaved_ms, record_latency, write_report  # scripts/ is on sys.path when run as a script

from edgesr.converter.export.tflite import export_tflite
from edgesr.runtime.litert import TfliteModel
from edgesr.runtime.session import TorchModel


class ReferenceTflite:
    """A .tflite from another converter (no edgesr metadata): NCHW or NHWC input, detected by its shape."""

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(str(path), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp, self.out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        self.nchw = int(self.inp["shape"][1]) == 3

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.inp["index"], np.ascontiguousarray(x if self.nchw else x.transpose(0, 2, 3, 1)))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        return y if self.nchw else y.transpose(0, 3, 1, 2)

ROWS = {  # key: (title, quantized artifact?, export options)
    "fp32": ("FP32", False, {}),
    "stock_int4": ("stock INT4 (FC)", False, {"stock_int4": True}),
    "stock_int4_conv8": ("stock INT4 (FC) + INT8 convs", False, {"stock_int4": True, "stock_int8_convs": True}),
    "edgesr_int4": ("edgesr INT4 (2DQuant, delegate)", True, {}),
}


def main() -> int:
    p = bench_arguments(__doc__, "tflite")
    p.add_argument("--reference-fp32", type=Path, help="an FP32 .tflite of --model from another converter")
    args = p.parse_args()

    torch.set_num_threads(1)
    fp_path, fp, q, tile, report = load_bench_models(args)
    bits = q.quant_config.bits
    paths = {}
    for key, (_, quantized, opts) in ROWS.items():
        paths[key] = args.work / f"x{fp.scale}_{key}{f'_w{bits}' if quantized else ''}.tflite"
        if args.reuse and paths[key].is_file():
            report["files"][key] = {"bytes": paths[key].stat().st_size, "seconds": None}
            continue
        model, source = (q, args.quant) if quantized else (fp, str(fp_path))
        r = export_tflite(model, paths[key], tile=tile, source={"path": source}, **opts)
        report["files"][key] = {"bytes": r["bytes"], "seconds": r["seconds"], "ops": r["ops"]}
    if args.reference_fp32:
        x = np.random.default_rng(0).random((1, 3, *tile), dtype=np.float32)
        with torch.no_grad():
            ref = fp(torch.from_numpy(x)).numpy()
        report["reference_fp32"] = {"path": str(args.reference_fp32), "bytes": args.reference_fp32.stat().st_size,
                                    "max_abs_vs_eager": float(np.abs(ReferenceTflite(args.reference_fp32, 1).run(x) - ref).max())}
    print(json.dumps({k: v["bytes"] for k, v in report["files"].items()}), flush=True)

    for threads in (1, 2):
        models = {k: TfliteModel(p, threads=threads) for k, p in paths.items()}
        if args.reference_fp32:
            models["reference_fp32"] = ReferenceTflite(args.reference_fp32, threads)
        lat, share = interleaved_ms(models, tile, args.rounds)
        lat.update({f"ratio_fp32_over_{k}": lat["fp32"] / lat[k] for k in ROWS if k != "fp32"})
        record_latency(report, threads, lat, share)

    if args.sets:
        torch.set_num_threads(2)
        backends = {"fake_quant": TorchModel(q, tile), "fp32_eager": TorchModel(fp, tile)}
        backends.update({k: TfliteModel(p, threads=2) for k, p in paths.items()})
        fid = fidelity(backends, args.sets, fp.scale, args.overlap, args.limit, args.data_root)
        for r in fid.values():
            r["delta_edgesr_int4"] = r["edgesr_int4"] - r["fake_quant"]
            for k in ("fp32", "stock_int4", "stock_int4_conv8"):
                r[f"delta_{k}"] = r[k] - r["fp32_eager"]
        report["fidelity"] = fid
        report["fidelity_protocol"] = {"tile": list(tile), "overlap": args.overlap, "feather": True,
                                       "limit": args.limit}

    write_report(args.out or Path(f"results/tflite_x{fp.scale}"), report, markdown(report))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# LiteRT (ai-edge-litert, XNNPACK), tile {r['tile'][0]}x{r['tile'][1]}, 2DQuant W{r['bits']}A{r['bits']}",
             "", f"FP weights sha256 {r['fp_sha256'][:16]}..., artifact `{r['quant']}`.", "",
             "| file | bytes | export s | ms, 1 thread | FP32 / file | ms, 2 threads | FP32 / file |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lat1, lat2 = r["latency_ms"][1], r["latency_ms"][2]
    for k, (title, _, _) in ROWS.items():
        v = r["files"][k]
        ratio = (lambda lat: "1.00x" if k == "fp32" else f"{lat[f'ratio_fp32_over_{k}']:.2f}x")
        lines.append(f"| {title} | {v['bytes']:,} | {v['seconds'] if v['seconds'] is not None else '-'} | "
                     f"{lat1[k]:.1f} | {ratio(lat1)} | {lat2[k]:.1f} | {ratio(lat2)} |")
    if "reference_fp32" in r:
        ref = r["reference_fp32"]
        lines += ["", f"Reference FP32 .tflite from another converter (`{ref['path']}`): {ref['bytes']:,} bytes, "
                  f"max abs vs eager {ref['max_abs_vs_eager']:.1e}, {lat1['reference_fp32']:.1f} ms at 1 thread and "
                  f"{lat2['reference_fp32']:.1f} ms at 2 (edgesr FP32: {lat1['fp32']:.1f} / {lat2['fp32']:.1f} ms, "
                  "same rounds)."]
    if "fidelity" in r:
        lines += ["", "Y-PSNR (dB), every backend tiled identically "
                  f"(overlap {r['fidelity_protocol']['overlap']}, feathered); Δ of the edgesr file vs fake-quant, of "
                  "the others vs eager FP32:", "",
                  "| set | fake-quant | edgesr INT4 | Δ | FP32 eager | FP32 | Δ | stock INT4 | Δ | stock INT4 + INT8 conv | Δ |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s, v in r["fidelity"].items():
            lines.append(f"| {s} | {v['fake_quant']:.4f} | {v['edgesr_int4']:.4f} | {v['delta_edgesr_int4']:+.4f} | "
                         f"{v['fp32_eager']:.4f} | {v['fp32']:.4f} | {v['delta_fp32']:+.4f} | "
                         f"{v['stock_int4']:.4f} | {v['delta_stock_int4']:+.4f} | {v['stock_int4_conv8']:.4f} | "
                         f"{v['delta_stock_int4_conv8']:+.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
