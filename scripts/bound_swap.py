"""Which quantizers cost PSNR: one class of bounds at a time taken from a second artifact.

    python scripts/bound_swap.py --base results/artifacts/x4_w4_dobi.safetensors \\
        --donor results/artifacts/x4_w4_percentile.safetensors --sets Set5 Set14

Both artifacts must come from the same FP model at the same bits (e.g. the DOBI and Percentile cells of
scripts/quant_results.py). Quantizer classes: weight (every linear's weights), lin_in (inputs of q/k/v/proj/fc1),
gelu (fc2's input), qk (both operands of Q·Kᵀ), map (the softmax map), v (V of attn·V). For an activation class
only the bounds move. An artifact stores its weights already quantized with its own bounds, so for "weight" the
model starts from the donor and every activation bound comes from the base instead.

Prints one row per variant (base, donor, base with each class from the donor) with the Y-PSNR per set and the
change from the base; --out also writes it as markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from edgesr.converter.artifact import is_artifact, load_artifact, read_artifact_metadata
from edgesr.converter.quant import FakeQuantizer, quantizers
from edgesr.evaluate import evaluate, torch_upscaler

CLASSES = ("weight", "lin_in", "gelu", "qk", "map", "v")


def quantizer_class(name: str, q: FakeQuantizer) -> str:
    if q.is_weight:
        return "weight"
    if name.endswith("mlp.fc2.input"):
        return "gelu"
    if name.endswith("av_matmul.a"):
        return "map"
    if name.endswith("av_matmul.b"):
        return "v"
    if ".qk_matmul." in name:
        return "qk"
    return "lin_in"


def hybrid(base: Path, donor: Path, swap: str | None) -> torch.nn.Module:
    """The base model with the donor's quantizers of class ``swap`` (None: the base itself; "all": the donor)."""
    if swap is None:
        return load_artifact(base)
    if swap == "all":
        return load_artifact(donor)
    if swap == "weight":  # the donor's weights (stored quantized with its bounds), every activation bound from the base
        model, lender = load_artifact(donor), quantizers(load_artifact(base))
    else:
        model, lender = load_artifact(base), quantizers(load_artifact(donor))
    for name, q in quantizers(model).items():
        if not q.is_weight and (swap == "weight" or quantizer_class(name, q) == swap):
            q.set_bounds(float(lender[name].lower), float(lender[name].upper))
    return model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="artifact whose bounds are kept")
    p.add_argument("--donor", type=Path, required=True, help="artifact lending one class at a time")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--classes", nargs="+", default=list(CLASSES), choices=CLASSES)
    p.add_argument("--data-root")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (args.base, args.donor):
        if not is_artifact(path):
            print(f"error: {path}: not an edgesr quantized artifact", file=sys.stderr)
            return 2
    mb, md = read_artifact_metadata(args.base), read_artifact_metadata(args.donor)
    if mb["provenance"].get("source_sha256") != md["provenance"].get("source_sha256"):
        print("error: the two artifacts come from different FP models", file=sys.stderr)
        return 2
    if mb["quant_config"]["bits"] != md["quant_config"]["bits"]:
        print("error: the two artifacts use different bit widths", file=sys.stderr)
        return 2

    variants = [("base", None), ("donor", "all")] + [(f"base, {c} from donor", c) for c in args.classes]
    rows = []
    for label, swap in variants:
        with torch.no_grad():
            r = evaluate(torch_upscaler(hybrid(args.base, args.donor, swap), label), args.sets, args.data_root)
        rows.append((label, {s: r["sets"][s]["psnr_y"] for s in args.sets}))
        print(label, " ".join(f"{s} {v:.4f}" for s, v in rows[-1][1].items()), flush=True)

    ref = rows[0][1]
    lines = [
        f"Base `{args.base.name}`, donor `{args.donor.name}`: Y-PSNR (dB), change from the base in brackets.",
        "",
        "| variant | " + " | ".join(args.sets) + " |",
        "|---|" + "---:|" * len(args.sets),
    ]
    for label, psnr in rows:
        lines.append(f"| {label} | " + " | ".join(f"{psnr[s]:.4f} ({psnr[s] - ref[s]:+.4f})" for s in args.sets) + " |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
