"""The whole edgesr INT4 .tflite on AArch64 (LiteRT + the edgesr delegate, under qemu) against x86.

    sudo scripts/arm64_root.sh /opt/edgesr-arm64-root          # once, about 7 minutes
    python scripts/arm_litert_parity.py --quant results/artifacts/x4_w4_dobi_dqc.safetensors

Exports the artifact's edgesr INT4 and FP32 .tflite at a small tile (emulation is ~400x slower than the host),
cross-builds the edgesr LiteRT delegate for AArch64, runs both files in the arm64 root's ai-edge-litert (XNNPACK
on) on the top-left tile of a Set5 LR image, and compares with this machine's outputs of the same files. Writes
results/arm_litert_parity_x<scale>.json. Emulated: correctness only, never speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgesr.converter.artifact import load_artifact
from edgesr.converter.export.tflite import export_tflite
from edgesr.converter.export.tflite.build import build_delegate
from edgesr.data.io import load_rgb, to_tensor
from edgesr.data.paths import resolve_data_root
from edgesr.metrics import psnr
from edgesr.models.checkpoint import load_model
from edgesr.models.zoo import resolve
from edgesr.runtime.litert import TfliteModel

DEVICE_SCRIPT = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate
model, x_path, out_path = sys.argv[1:4]
delegates = [load_delegate(sys.argv[4], {"threads": "1"})] if len(sys.argv) > 4 else []
it = Interpreter(model, num_threads=1, experimental_delegates=delegates)
it.allocate_tensors()
it.set_tensor(it.get_input_details()[0]["index"], np.load(x_path))
it.invoke()
np.save(out_path, it.get_tensor(it.get_output_details()[0]["index"]))
print("nodes", len(it._get_ops_details()))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quant", required=True, help="2DQuant artifact (.safetensors)")
    p.add_argument("--model", default="swinir_light_x4", help="FP model for the FP32 row")
    p.add_argument("--root", type=Path, default=Path("/opt/edgesr-arm64-root"), help="arm64 root (arm64_root.sh)")
    p.add_argument("--tile", type=int, default=16)
    p.add_argument("--cpu", default="max,sme=off", help="qemu CPU model (SME off: see the toolchain notes)")
    p.add_argument("--out", type=Path)
    p.add_argument("--data-root")
    args = p.parse_args()
    qemu = args.root / "usr/bin/qemu-aarch64-static"
    python = args.root / "opt/venv/bin/python"
    cc = shutil.which("aarch64-linux-gnu-gcc")
    if not qemu.exists() or not python.exists() or not cc:
        print(f"needs the arm64 root ({args.root}; scripts/arm64_root.sh) and aarch64-linux-gnu-gcc", file=sys.stderr)
        return 2

    q = load_artifact(args.quant).eval()
    fp = load_model(resolve(args.model)[0]).eval()
    scale, tile = q.config.scale, (args.tile, args.tile)
    image = resolve_data_root(args.data_root) / f"benchmark/Set5/LR_bicubic/X{scale}/babyx{scale}.png"
    x = to_tensor(load_rgb(image))[:, :, : tile[0], : tile[1]].numpy()
    inside = Path(tempfile.mkdtemp(prefix="edgesr-", dir=args.root / "tmp"))
    rel = Path("/") / inside.relative_to(args.root)
    (inside / "run.py").write_text(DEVICE_SCRIPT)
    np.save(inside / "x.npy", np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    shutil.copy(build_delegate(compiler=cc), inside / "delegate.so")
    report = {"image": str(image), "tile": list(tile), "cpu": args.cpu, "rows": {}}
    for name, model in (("edgesr_int4", q), ("fp32", fp)):
        path = inside / f"{name}.tflite"
        export_tflite(model, path, tile=tile)
        host = TfliteModel(path).run(x)
        cmd = ["chroot", str(args.root), str(Path("/usr/bin/qemu-aarch64-static")), "-cpu", args.cpu,
               "/opt/venv/bin/python", str(rel / "run.py"), str(rel / path.name), str(rel / "x.npy"),
               str(rel / f"{name}_out.npy")]
        if name == "edgesr_int4":
            cmd.append(str(rel / "delegate.so"))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return 1
        arm = np.load(inside / f"{name}_out.npy").transpose(0, 3, 1, 2)
        diff = np.abs(arm - host)
        report["rows"][name] = {"differing_values": int((diff > 0).sum()), "values": int(diff.size),
                                "max_abs": float(diff.max()),
                                "psnr_arm_vs_x86_db": float(psnr(arm[0].transpose(1, 2, 0), host[0].transpose(1, 2, 0)))
                                if diff.max() > 0 else float("inf"),
                                "arm_nodes": proc.stdout.strip().splitlines()[-1]}
        print(name, json.dumps(report["rows"][name]), flush=True)
    shutil.rmtree(inside, ignore_errors=True)
    out = args.out or Path(f"results/arm_litert_parity_x{scale}.json")
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
