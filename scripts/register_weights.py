"""Ship a trained checkpoint: copy it to models/weights/, evaluate it, write its model card and zoo entry.

    python scripts/register_weights.py runs/x4/best.safetensors --name swinir_light_x4 --hardware "..."

The weights file keeps only parameters (fp32) and the config; the card records the training run (steps, batch,
patch, wall time from the run's log) and the Y-PSNR/SSIM measured here with `edgesr eval`'s code. A run that
continued earlier weights lists every stage: ``--inherit-card`` takes the stages of an earlier card, and
``--stage DIR HARDWARE`` adds an intermediate run (its ``train_config.json`` and ``log.jsonl``), in order.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import yaml

from edgesr.evaluate import evaluate, torch_upscaler
from edgesr.models.checkpoint import load_model, read_metadata, save_checkpoint
from edgesr.models.zoo import WEIGHTS_DIR, ZOO_FILE, entries, sha256_of

SETS = ["Set5", "Set14", "B100"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--hardware", default=f"{platform.processor() or platform.machine()}, CPU")
    ap.add_argument("--data-root")
    ap.add_argument("--inherit-card", type=Path, help="an earlier model card whose training stages came first")
    ap.add_argument("--stage", nargs=2, action="append", default=[], metavar=("RUN_DIR", "HARDWARE"),
                    help="an intermediate training run, in order (repeatable)")
    args = ap.parse_args()

    model = load_model(args.checkpoint)
    meta = read_metadata(args.checkpoint)
    stages = []
    if args.inherit_card:
        old = yaml.safe_load(args.inherit_card.read_text())["training"]
        stages += old.get("stages", [old])
    runs = [Path(d) for d, _ in args.stage] + [args.checkpoint.parent]
    stages += [stage(Path(d), hw, continued_checkpoint(Path(d), runs[i + 1])) for i, (d, hw) in enumerate(args.stage)]
    stages.append(stage(args.checkpoint.parent, args.hardware, meta))

    target = WEIGHTS_DIR / f"{args.name}.safetensors"
    save_checkpoint(model, target, {"step": str(stages[-1]["steps"]), "val_psnr": meta.get("edgesr.val_psnr", "")})
    digest = sha256_of(target)
    res = evaluate(torch_upscaler(model, args.name), SETS, data_root=args.data_root)
    psnr = {s: round(r["psnr_y"], 2) for s, r in res["sets"].items()}
    ssim = {s: round(r["ssim_y"], 4) for s, r in res["sets"].items()}

    card = {
        "name": args.name,
        "architecture": "SwinIR-light",
        "config": model.config.to_dict(),
        "weights": target.name,
        "bytes": target.stat().st_size,
        "sha256": digest,
        "training": stages[0] if len(stages) == 1 else {
            "steps": sum(st["steps"] for st in stages),
            "wall_time_hours": round(sum(st["wall_time_hours"] for st in stages), 2),
            "stages": stages,
        },
        "metrics": {"psnr_y": psnr, "ssim_y": ssim, "protocol": "Y channel (MATLAB BT.601), border = scale, MATLAB-bicubic LR"},
    }
    card_path = WEIGHTS_DIR / f"{args.name}.yaml"
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))

    text = ZOO_FILE.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    zoo = yaml.safe_load(text)
    zoo["models"][args.name] = {"arch": "swinir_light", "scale": model.scale, "file": target.name, "sha256": digest,
                                "expected_psnr": psnr, "card": card_path.name}
    ZOO_FILE.write_text(header + yaml.safe_dump(zoo, sort_keys=False))
    print(json.dumps({"weights": str(target), "sha256": digest, "psnr_y": psnr, "ssim_y": ssim}, indent=2))
    return 0


def _ridge(fit: dict) -> str:
    return f", ridge {fit['ridge']:g}" if "ridge" in fit else ""  # runs before the ridge was an option: 1e-3


def continued_checkpoint(run_dir: Path, next_run: Path) -> dict | None:
    """The metadata (step, held-out score) of the checkpoint of ``run_dir`` that ``next_run`` started from, when
    its --init is a file of that run; None otherwise (the card then records the run's last step)."""
    cfg = next_run / "train_config.json"
    init = Path(json.loads(cfg.read_text()).get("init") or "") if cfg.is_file() else Path()
    if init.is_file() and init.parent.resolve() == run_dir.resolve():
        return read_metadata(init)
    return None


def stage(run_dir: Path, hardware: str, meta: dict | None = None) -> dict:
    """One training run as the card records it (the selected checkpoint's step when ``meta`` is given)."""
    cfg = json.loads((run_dir / "train_config.json").read_text()) if (run_dir / "train_config.json").is_file() else {}
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()] if (run_dir / "log.jsonl").is_file() else []
    step = int((meta or {}).get("edgesr.step", log[-1]["step"] if log else 0))
    fits = [r["head_fit"] for r in log if "head_fit" in r]
    wall = sum(b["time"] - a["time"] for a, b in zip(log, log[1:]) if b["time"] > a["time"])  # over resumes
    wall += sum(f.get("seconds", 0.0) for f in fits)  # the fit runs before the step clock starts
    vals = [r for r in log if "val_psnr" in r]
    init = Path(cfg["init"]).name if cfg.get("init") else "random"
    entry = entries().get(cfg.get("init", ""))
    if entry is not None:  # a zoo name: record which weights it named then
        init += f" (sha256 {entry.sha256})"
    if fits and "kept_fit" in fits[-1]:  # a refit of the init's own upsampler
        f = fits[-1]
        init += (f"; upsampler refitted by least squares on {f['crops']} training crops{_ridge(f)} (held-out "
                 f"{f['val_psnr_before']:.3f} -> {f['val_psnr_fit']:.3f} dB, "
                 f"{'fit kept' if f['kept_fit'] else 'init upsampler kept'})")
    elif fits:
        init += f"; new upsampler fitted by least squares on {fits[-1]['crops']} training crops{_ridge(fits[-1])}"
    selected_by = "held-out validation PSNR"
    if (meta or {}).get("edgesr.val_psnr"):
        selected_by += f" ({float(meta['edgesr.val_psnr']):.3f} dB, the best of {len(vals)} validations)"
    elif vals:
        selected_by += f" ({vals[-1]['val_psnr']:.3f} dB at last validation)"
    data = ("T91 + BSD200 (291 HR images; every 20th held out for validation), MATLAB-bicubic LR, "
            f"HR downscales {cfg.get('downscales')}")
    if step == 0:  # only the upsampler fit: no optimiser, batch or patch to record
        return {"data": data, "init": init, "steps": 0, "loss": "least squares (upsampler only)",
                "wall_time_hours": round(wall / 3600, 2), "hardware": hardware, "selected_by": selected_by}
    return {
        "data": f"{data}, 8 dihedral augmentations",
        "init": init,
        "steps": step,
        "batch": cfg.get("batch"),
        "lr_patch": cfg.get("patch"),
        "optimizer": f"Adam lr {cfg.get('lr')}, warm-up {cfg.get('warmup')}, cosine to {cfg.get('min_lr')}",
        "loss": cfg.get("loss", "l1").upper(),
        "bf16_autocast": cfg.get("bf16"),
        "wall_time_hours": round(wall / 3600, 2),
        "hardware": hardware,
        "selected_by": selected_by,
    }


if __name__ == "__main__":
    raise SystemExit(main())
