"""ExecuTorch numbers for one FP model and its quantized artifact, measured side by side in one run.

    python scripts/bench_pte.py --quant results/artifacts/x4_w4_dobi_dqc.safetensors

Prints and writes (--out, default results/pte_x4.md + .json):
* bytes of the FP32 and INT4 .pte files, and the export time of each (exported here unless --reuse);
* latency at the static tile, 1 and 2 threads: FP32 XNNPACK .pte vs INT4 .pte, interleaved rounds, medians;
* fidelity on Set5/Set14/B100 with the same tiling for every backend (tile 64, overlap 16, feathered):
  INT4 .pte vs the fake-quant PyTorch model, FP32 .pte vs eager FP32 (Y-PSNR, border = scale).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgesr.converter.artifact import is_artifact, load_artifact, read_artifact_metadata
from edgesr.converter.export.executorch import export_pte
from edgesr.data.benchmark import count_images, iter_pairs
from edgesr.metrics import psnr
from edgesr.models.checkpoint import load_model
from edgesr.models.zoo import entries, resolve, sha256_of
from edgesr.progress import progress_bar
from edgesr.runtime.pte import PteModel, set_threads
from edgesr.runtime.session import TorchModel, upscale

SETS = ["Set5", "Set14", "B100"]


def export(model, path: Path, tile, reuse: bool, source: dict) -> dict:
    if reuse and path.is_file():
        return {"bytes": path.stat().st_size, "seconds": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = export_pte(model, path, tile=tile, source=source)
    return {"bytes": r["bytes"], "seconds": r["seconds"], "delegates": r["delegates"]}


def breakdown(path: Path) -> dict:
    """Where the bytes of a .pte go: delegate blobs per backend, shared named data (XNNPACK weights),
    constants outside delegates, and the program itself (graph, values, instructions)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    data = path.read_bytes()
    pte = deserialize_pte_binary(data)
    prog = pte.program
    plan = prog.execution_plan[0]
    blobs: dict[str, int] = {}
    for d in plan.delegates:
        size = len(prog.backend_delegate_data[d.processed.index].data)
        blobs[d.id] = blobs.get(d.id, 0) + size
    named = sum(len(b) for b in pte.named_data.buffers) if pte.named_data else 0
    consts = sum(len(b.storage) for b in prog.constant_buffer)
    out = {f"blob_{k}": v for k, v in blobs.items()}
    out.update(named_data=named, constants=consts, program=len(data) - named - consts - sum(blobs.values()))
    return out


def latency(models: dict, tile, threads: int, rounds: int) -> tuple[dict, dict]:
    torch.set_num_threads(threads)
    set_threads(threads, force=True)  # after torch's: see edgesr.runtime.pte.set_threads
    return interleaved_ms(models, tile, rounds)


def interleaved_ms(models: dict, tile, rounds: int) -> tuple[dict, dict]:
    """Median ms per ``run`` of each model at ``tile``, one warm-up each, then rounds that run every model once
    in turn (so a noisy neighbour slows all of them alike); and each model's process CPU seconds per wall second
    over its runs: about n for a file that keeps n threads busy, so a backend ignoring the thread setting shows ~1.0.
    """
    x = np.random.default_rng(0).random((1, 3, *tile), dtype=np.float32)
    for m in models.values():  # warm-up (and program reload after a pool resize)
        m.run(x)
    times = {k: [] for k in models}
    cpu = {k: 0.0 for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            c, t = time.process_time(), time.perf_counter()
            m.run(x)
            times[k].append(time.perf_counter() - t)
            cpu[k] += time.process_time() - c
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}, {k: cpu[k] / sum(times[k]) for k in models}


def record_latency(report: dict, threads: int, lat: dict, cpu_per_wall: dict) -> None:
    """One thread count's medians (with any ratios) and CPU shares into the report, and printed."""
    report.setdefault("latency_ms", {})[threads] = lat
    report.setdefault("cpu_per_wall", {})[threads] = cpu_per_wall
    print(f"threads {threads}: " + json.dumps({k: round(v, 2) for k, v in lat.items()})
          + " CPU s per s: " + json.dumps({k: round(v, 2) for k, v in cpu_per_wall.items()}), flush=True)


def fidelity(backends: dict, sets, scale: int, overlap: int, limit: int | None, data_root) -> dict:
    res = {s: {k: [] for k in backends} for s in sets}
    total = sum(min(count_images(s, data_root), limit or 10**9) for s in sets)
    with progress_bar("fidelity", total=total) as bar:
        for s in sets:
            for i, pair in enumerate(iter_pairs(s, scale, data_root)):
                if limit is not None and i >= limit:
                    break
                for k, m in backends.items():
                    res[s][k].append(psnr(upscale(m, pair.lr, overlap), pair.hr, border=scale, gray=pair.gray))
                bar.update(1, info=f"{s}/{pair.name}")
    return {s: {k: float(np.mean(v)) for k, v in r.items()} for s, r in res.items()}


def bench_arguments(doc: str, ext: str) -> argparse.ArgumentParser:
    """The options every runtime benchmark script takes; ``ext``: its file kind (pte, onnx, tflite)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quant", required=True, help="2DQuant artifact (.safetensors)")
    p.add_argument("--model", help="FP model (zoo name or checkpoint; default: the zoo entry the artifact was made "
                                   "from, by the sha256 in its provenance)")
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sets", nargs="*", default=SETS, help="benchmark sets for fidelity (none: skip)")
    p.add_argument("--limit", type=int, help="images per set (default: all)")
    p.add_argument("--work", type=Path, default=Path(f"results/{ext}"), help=f"where the .{ext} files go")
    p.add_argument("--reuse", action="store_true", help=f"reuse .{ext} files already in --work")
    p.add_argument("--out", type=Path, default=None, help=f"report path stem (default results/{ext}_x<scale>)")
    p.add_argument("--data-root")
    return p


def fp_source(quant: str, model: str | None) -> Path:
    """The FP checkpoint an artifact was quantized from: ``model`` when given (it must be that one), else the zoo
    entry with the sha256 the artifact's provenance records. The FP rows of a report and the quantized rows then
    always describe one model."""
    source = read_artifact_metadata(quant)["provenance"].get("source_sha256")
    if model is None:
        entry = next((e for e in entries().values() if e.sha256 == source and e.file), None)
        if entry is None:
            raise SystemExit(f"error: {quant}: its FP model (sha256 {str(source)[:16]}...) is not a bundled zoo "
                             "entry; pass it with --model")
        model = entry.name
    path, _ = resolve(model)
    digest = sha256_of(path)
    if source and digest != source:
        raise SystemExit(f"error: {quant} was quantized from FP weights with sha256 {source[:16]}..., not from "
                         f"{model} ({digest[:16]}...)")
    return path


def load_bench_models(args) -> tuple:
    """(FP checkpoint path, FP model, quantized model, tile, report header) from the common options."""
    if not is_artifact(args.quant):
        raise SystemExit(f"error: {args.quant}: not an edgesr quantized artifact")
    fp_path = fp_source(args.quant, args.model)
    fp = load_model(fp_path).eval()
    q = load_artifact(args.quant).eval()
    tile = (args.tile, args.tile)
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"tile": list(tile), "fp": str(fp_path), "fp_sha256": sha256_of(fp_path), "quant": args.quant,
              "bits": q.quant_config.bits, "files": {}}
    return fp_path, fp, q, tile, report


def main() -> int:
    args = bench_arguments(__doc__, "pte").parse_args()
    fp_path, fp, q, tile, report = load_bench_models(args)
    pte_fp, pte_q = args.work / f"x{fp.scale}_fp32.pte", args.work / f"x{fp.scale}_w{q.quant_config.bits}.pte"
    report["files"]["fp32"] = export(fp, pte_fp, tile, args.reuse, {"path": str(fp_path)})
    report["files"]["int"] = export(q, pte_q, tile, args.reuse, {"path": args.quant})
    for key, path in (("fp32", pte_fp), ("int", pte_q)):
        report["files"][key]["breakdown"] = breakdown(path)
    print(json.dumps(report["files"]), flush=True)

    models = {"fp32_pte": PteModel(pte_fp), "int_pte": PteModel(pte_q)}
    for threads in (1, 2):
        lat, share = latency(models, tile, threads, args.rounds)
        lat["ratio_fp32_over_int"] = lat["fp32_pte"] / lat["int_pte"]
        record_latency(report, threads, lat, share)

    if args.sets:
        torch.set_num_threads(2)
        set_threads(2, force=True)
        backends = {"fake_quant": TorchModel(q, tile), "int_pte": models["int_pte"],
                    "fp32_eager": TorchModel(fp, tile), "fp32_pte": models["fp32_pte"]}
        fid = fidelity(backends, args.sets, fp.scale, args.overlap, args.limit, args.data_root)
        for s, r in fid.items():
            r["delta_int"] = r["int_pte"] - r["fake_quant"]
            r["delta_fp32"] = r["fp32_pte"] - r["fp32_eager"]
        report["fidelity"] = fid
        report["fidelity_protocol"] = {"tile": list(tile), "overlap": args.overlap, "feather": True,
                                       "limit": args.limit}

    write_report(args.out or Path(f"results/pte_x{fp.scale}"), report, markdown(report))
    return 0


def write_report(stem: Path, report: dict, md: str) -> None:
    """``<stem>.json`` and ``<stem>.md``; the markdown is also printed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2))
    Path(f"{stem}.md").write_text(md)
    print(md)


def markdown(r: dict) -> str:
    f = r["files"]
    lines = [f"# ExecuTorch x4, tile {r['tile'][0]}x{r['tile'][1]}, W{r['bits']}A{r['bits']}", "",
             f"FP weights sha256 {r['fp_sha256'][:16]}..., artifact `{r['quant']}`.", "",
             "| file | bytes | export s | delegates |", "|---|---:|---:|---|"]
    for k, v in f.items():
        lines.append(f"| {k} | {v['bytes']:,} | {v['seconds'] if v['seconds'] is not None else '-'} | {v.get('delegates', '-')} |")
    lines += ["", "Bytes by part (blob_*: delegate payloads; named_data: XNNPACK weights; constants: tensors outside "
              "delegates; program: graph, values, instructions):", ""]
    for k, v in f.items():
        lines.append(f"- {k}: " + ", ".join(f"{n} {b:,}" for n, b in v.get("breakdown", {}).items()))
    lines += ["", "Latency: median of interleaved rounds; CPU s/s: process CPU seconds per wall second while the file "
              "ran (about the number of busy threads).", "",
              "| threads | FP32 XNNPACK .pte ms | INT .pte ms | FP32 / INT | CPU s/s FP32 | CPU s/s INT |",
              "|---:|---:|---:|---:|---:|---:|"]
    for t, lat in r["latency_ms"].items():
        share = r["cpu_per_wall"][t]
        lines.append(f"| {t} | {lat['fp32_pte']:.1f} | {lat['int_pte']:.1f} | {lat['ratio_fp32_over_int']:.2f}x | "
                     f"{share['fp32_pte']:.2f} | {share['int_pte']:.2f} |")
    if "fidelity" in r:
        lines += ["", "Y-PSNR (dB), every backend tiled identically "
                  f"(overlap {r['fidelity_protocol']['overlap']}, feathered):", "",
                  "| set | fake-quant | INT .pte | Δ | FP32 eager | FP32 .pte | Δ |", "|---|---:|---:|---:|---:|---:|---:|"]
        for s, v in r["fidelity"].items():
            lines.append(f"| {s} | {v['fake_quant']:.4f} | {v['int_pte']:.4f} | {v['delta_int']:+.4f} | "
                         f"{v['fp32_eager']:.4f} | {v['fp32_pte']:.4f} | {v['delta_fp32']:+.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
