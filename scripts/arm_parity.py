"""x86 vs AArch64 parity of the INT4 layers on a real image (emulated AArch64: correctness only, never speed).

    python scripts/arm_parity.py --quant results/artifacts/x4_w4_dobi_dqc.safetensors

Exports the artifact's edgesr INT4 .tflite at the tile, takes the top-left LR tile of a Set5 image, records with
the fake-quant model the tokens entering each residual group, and runs each group's INT4 blocks with
edgesr_runner on this machine and under qemu-aarch64 for each --cpus model (i8mm, dotprod, plain NEON paths).
Also runs the whole model on that tile standalone (edgesr_runner --full: its convs, LayerNorms and pixel shuffle in
plain C, the blocks with the kernels), and golden integer vectors from the same image (the first q projection's
input codes and the model's weight codes). Prints and writes (--out, default results/arm_parity_x<scale>.json) the count of differing values
per group and CPU. Needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu qemu-user).
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
import torch

from edgesr import native
from edgesr.converter.artifact import load_artifact
from edgesr.converter.export.tflite import export_tflite
from edgesr.converter.quant import quant_codes
from edgesr.data.io import load_rgb, to_tensor
from edgesr.data.paths import resolve_data_root
from edgesr.native import runner


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quant", required=True, help="2DQuant artifact (.safetensors)")
    p.add_argument("--image", help="LR image (default: Set5 baby at the artifact's scale, from the data root)")
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--cpus", nargs="+", default=["max,sme=off", "cortex-a76", "cortex-a53"])
    p.add_argument("--out", type=Path)
    p.add_argument("--data-root")
    args = p.parse_args()
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if not cc or not qemu:
        print("needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu qemu-user)",
              file=sys.stderr)
        return 2

    q = load_artifact(args.quant).eval()
    scale, tile = q.config.scale, (args.tile, args.tile)
    image = Path(args.image) if args.image else resolve_data_root(args.data_root) / f"benchmark/Set5/LR_bicubic/X{scale}/babyx{scale}.png"
    lr = to_tensor(load_rgb(image))[:, :, : tile[0], : tile[1]]
    work = Path(tempfile.mkdtemp(prefix="arm-parity-"))
    model = work / "w.tflite"
    export_tflite(q, model, tile=tile)
    group_inputs = []
    hooks = [layer.register_forward_pre_hook(lambda _m, a: group_inputs.append(a[0].detach().clone()))
             for layer in q.layers]
    first_q_input = []
    blk = q.layers[0].blocks[0]
    hooks.append(blk.attn.q.register_forward_pre_hook(lambda _m, a: first_q_input.append(a[0].detach().clone())))
    with torch.no_grad():
        q(lr)
    for h in hooks:
        h.remove()

    host = runner.build_runner(work / "host")
    arm = runner.build_runner(work / "arm", compiler=cc, static=True)
    report = {"image": str(image), "tile": list(tile), "quant": args.quant, "groups": {}, "golden": {}}
    for g, tokens in enumerate(group_inputs):
        inp = work / f"g{g}.f32"
        tokens.numpy().astype(np.float32).tofile(inp)
        outs = {}
        for name, cmd in [("x86", [str(host)])] + [(cpu, [qemu, "-cpu", cpu, str(arm)]) for cpu in args.cpus]:
            out = work / f"g{g}_{name.replace(',', '_')}.f32"
            proc = subprocess.run([*cmd, str(model), "--input", str(inp), "--output", str(out), "--group", str(g),
                                   "--repeats", "1", "--warmup", "0"], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            outs[name] = (json.loads(proc.stdout)["isa"], np.fromfile(out, np.float32))
        x86 = outs["x86"][1]
        report["groups"][g] = {name: {"isa": isa, "differing_values": int((v != x86).sum()), "values": int(v.size)}
                               for name, (isa, v) in outs.items() if name != "x86"}
        print(f"group {g}: " + json.dumps(report["groups"][g]), flush=True)

    # The whole model on the tile, standalone (edgesr_runner --full): convs, LayerNorms, blocks, pixel shuffle.
    tile_file = work / "tile.f32"
    np.ascontiguousarray(lr.numpy().transpose(0, 2, 3, 1), dtype=np.float32).tofile(tile_file)
    full = {}
    for name, cmd in [("x86", [str(host)])] + [(cpu, [qemu, "-cpu", cpu, str(arm)]) for cpu in args.cpus]:
        out = work / f"full_{name.replace(',', '_')}.f32"
        proc = subprocess.run([*cmd, str(model), "--full", "--input", str(tile_file), "--output", str(out),
                               "--repeats", "1", "--warmup", "0"], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        full[name] = np.fromfile(out, np.float32)
    report["whole_model"] = {cpu: {"differing_values": int((full[cpu] != full["x86"]).sum()),
                                   "values": int(full["x86"].size)} for cpu in args.cpus}
    print("whole model: " + json.dumps(report["whole_model"]), flush=True)

    # Golden vectors from the image: the first q projection's input codes and its weight codes.
    lin = blk.attn.q
    bits = lin.input_quant.bits
    x_codes = quant_codes(first_q_input[0].reshape(-1, lin.weight.shape[1]), lin.input_quant.lower, lin.input_quant.upper, bits)
    w_codes = quant_codes(lin.weight.detach(), lin.weight_quant.lower, lin.weight_quant.upper, bits)
    golden = work / "golden.bin"
    runner.write_golden(golden, w_codes.numpy().astype(np.uint8), x_codes.numpy().astype(np.uint8), bits)
    ref = x_codes.numpy().astype(np.int64) @ w_codes.numpy().astype(np.int64).T
    subprocess.run([str(host), "--golden", str(golden), str(work / "acc_x86.bin")], check=True)
    x86_acc = (work / "acc_x86.bin").read_bytes()
    report["golden"]["x86_equals_int64_reference"] = bool(
        (runner.read_accumulators(work / "acc_x86.bin", *ref.shape) == ref).all())
    for cpu in args.cpus:
        out = work / "acc_arm.bin"
        subprocess.run([qemu, "-cpu", cpu, str(arm), "--golden", str(golden), str(out)], check=True)
        a, b = np.frombuffer(x86_acc, "<i4"), np.fromfile(out, "<i4")
        report["golden"][cpu] = {"differing_values": int((a != b).sum()), "values": int(a.size)}
    print("golden: " + json.dumps(report["golden"]))
    out = args.out or Path(f"results/arm_parity_x{scale}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"native ISA here: {native.active_isa()}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
