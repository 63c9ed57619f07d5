"""Tiling numbers, measured in one run:

    python scripts/bench_tiling.py --pte results/pte/x4_fp32.pte

1. Tiled vs whole-image output of the FP32 model (eager PyTorch for both, tile 64): PSNR (RGB, uint8) for overlap
   0, 8, 16, 32 feathered and 16 without feathering, pooled over Set5 + Set14, and the worst image's.
2. Tiling overhead on a 1000x750 LR image at overlap 16: wall time of `upscale` vs the time of the same number
   of bare model calls on one tile (planning, padding and blending are the difference).
3. Peak RSS of `edgesr upscale` for that image (1000x750 -> 4000x3000 at x4), from /usr/bin/time -v.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgesr.data.benchmark import iter_pairs
from edgesr.data.io import to_tensor, to_uint8
from edgesr.models.checkpoint import load_model
from edgesr.models.swinir import run_padded
from edgesr.models.zoo import resolve
from edgesr.runtime.session import TorchModel, open_model, tile_count, upscale

CONFIGS = [(0, True), (8, True), (16, True), (32, True), (16, False)]


def pooled_psnr(errors: list[tuple[float, int]]) -> float:
    """PSNR of the squared errors pooled over all images (images fitting one tile contribute exact zeros)."""
    sse, n = sum(e for e, _ in errors), sum(c for _, c in errors)
    return float("inf") if sse == 0 else float(10 * np.log10(255.0**2 * n / sse))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="swinir_light_x4")
    p.add_argument("--pte", help="FP32 .pte for the overhead and memory runs (default: eager PyTorch)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--out", type=Path, default=Path("results/tiling_x4.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    fp = load_model(resolve(args.model)[0]).eval()
    tile = (64, 64)
    report: dict = {"tile": list(tile), "model": args.model}

    scores = {f"overlap {o}{'' if f else ' no feather'}": [] for o, f in CONFIGS}
    images = [pair.lr for s in args.sets for pair in iter_pairs(s, fp.scale)]
    tm = TorchModel(fp, tile)
    for lr in images:
        with torch.inference_mode():
            whole = to_uint8(run_padded(fp, to_tensor(lr)))
        for (o, f), key in zip(CONFIGS, scores):
            d = upscale(tm, lr, overlap=o, feather=f).astype(np.float64) - whole
            scores[key].append((float(np.sum(d * d)), d.size))
    report["tiled_vs_whole_psnr"] = {k: pooled_psnr(v) for k, v in scores.items()}
    report["tiled_vs_whole_worst_image_psnr"] = {k: min(pooled_psnr([e]) for e in v) for k, v in scores.items()}
    report["tiled_vs_whole_images"] = len(images)
    print(json.dumps({"pooled": report["tiled_vs_whole_psnr"],
                      "worst image": report["tiled_vs_whole_worst_image_psnr"]}), flush=True)

    photo = next(iter_pairs("Set14", fp.scale)).hr  # a real photo, resized to 1000x750
    big = np.asarray(Image.fromarray(photo).resize((1000, 750), Image.BICUBIC))
    model = open_model(args.pte, threads=2) if args.pte else tm
    tiles = tile_count(model, 750, 1000, overlap=16)
    x = np.random.default_rng(0).random((1, 3, *model.tile), dtype=np.float32)
    model.run(x)
    t0 = time.perf_counter()
    for _ in range(tiles):
        model.run(x)
    bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    upscale(model, big, overlap=16)
    tiled = time.perf_counter() - t0
    report["overhead"] = {"tiles": tiles, "bare_model_s": bare, "upscale_s": tiled, "ratio": tiled / bare}
    print(json.dumps(report["overhead"]), flush=True)

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "big.png"
        Image.fromarray(big).save(src)
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "edgesr.cli", "upscale", str(src), "-o", str(Path(d) / "o"),
               "--model", args.pte or args.model, "--threads", "2", "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        if proc.returncode != 0 or not m:
            raise SystemExit(f"upscale run failed: {proc.stderr[-1500:]}")
        out = np.asarray(Image.open(Path(d) / "o" / "big.png"))
        report["peak_rss_mb"] = int(m.group(1)) / 1024
        report["peak_rss_output"] = list(out.shape)
    print(json.dumps({"peak_rss_mb": report["peak_rss_mb"], "output": report["peak_rss_output"]}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
