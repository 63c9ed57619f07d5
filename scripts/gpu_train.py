"""The FP training recipe on a lent GPU, as one prepared job that resumes from the shipped weights.

Here, before the lease (a carried folder must live inside the repository and be git-ignored):

    python scripts/gpu_train.py pack --out .gpu/assets        # lossless WebP copy of calibration/ + Set5

On the GPU machine (x4 and x2 train side by side, each fitting its steps to the time budget):

    python scripts/gpu_train.py run --data-root .gpu/assets --out "$OUT" --budget 430

Back here: ``scripts/register_weights.py <out>/x4_best.safetensors --name swinir_light_x4`` scores the result
on Set5/Set14/B100 and ships it. The repository need not be pip-installed there: ``run`` maps the package's
folders onto an import path of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"models": "models", "runtime": "runtime", "converter": "converter", "native": "native"}

# Recipe per scale: each run continues the shipped weights of its scale (an x2 run without shipped x2 weights
# would start from the x4 body: `--set init='"swinir_light_x4"'`). Batch / patch as the official light models
# (64-px LR patches); lr peaks then cosine. On an H100 a 2e-4 stage gained 0.39 dB Set5 in 1165 steps after a
# 5e-4 stage had gained 0.20 in 1337 (not a controlled comparison).
# Non-deterministic GPU kernels: 125 instead of 166 ms per step on an H100 (same data order either way).
JOBS = {
    "x4": dict(scale=4, init="swinir_light_x4", batch=32, patch=64, lr=2e-4, warmup=200, val_every=500,
               save_every=250, probe_steps=100, deterministic=False, seed=11),
    "x2": dict(scale=2, init="swinir_light_x2", batch=32, patch=64, lr=2e-4, warmup=200, val_every=500,
               save_every=250, probe_steps=100, deterministic=False, seed=12),
}


def pack(out: Path, data_root: Path) -> None:
    """calibration/{T91,BSD200} as lossless WebP (about 2/3 of the PNG bytes) and benchmark/Set5 as is."""
    from PIL import Image
    import numpy as np

    for sub in ("T91", "BSD200"):
        dst = out / "calibration" / sub
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted((data_root / "calibration" / sub).iterdir()):
            target = dst / (f.stem + ".webp")
            img = Image.open(f).convert("RGB")
            img.save(target, "WEBP", lossless=True, quality=50, method=4)
            if not np.array_equal(np.asarray(Image.open(target).convert("RGB")), np.asarray(img)):
                raise SystemExit(f"{f}: WebP round trip is not lossless")
    shutil.copytree(data_root / "benchmark" / "Set5", out / "benchmark" / "Set5", dirs_exist_ok=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


def import_path() -> str:
    """A folder where ``import edgesr.models`` etc. resolve to this checkout without installing it."""
    root = Path(tempfile.mkdtemp(prefix="edgesr_path_"))
    shutil.copytree(REPO / "edgesr", root / "edgesr", symlinks=True)
    for name, folder in PACKAGE_DIRS.items():
        (root / "edgesr" / name).symlink_to(REPO / folder)
    return str(root)


def barrier(folder: str, name: str, count: int, timeout: float = 120.0) -> None:
    """Wait until ``count`` jobs have built their data: the jobs share one GPU, so their speed probes (which
    fix each run's step count) must all see it shared."""
    Path(folder, f"{name}.ready").touch()
    t = time.time()
    while len(list(Path(folder).glob("*.ready"))) < count and time.time() - t < timeout:
        time.sleep(0.2)


def run(data_root: Path, out: Path, budget: float, jobs: list[str], overrides: dict) -> int:
    env = dict(os.environ, PYTHONPATH=import_path(), PYTHONUNBUFFERED="1", CUBLAS_WORKSPACE_CONFIG=":4096:8")
    work = Path(tempfile.mkdtemp(prefix="edgesr_runs_"))
    procs = {}
    for name in jobs:
        cfg = dict(JOBS[name], steps=10**6, time_budget=budget, threads=2, **overrides)
        code = (
            "import json, sys; from edgesr.train import TrainConfig, train; "
            f"sys.path.insert(0, {str(REPO / 'scripts')!r}); from gpu_train import barrier; "
            f"print(json.dumps(train(TrainConfig(**{cfg!r}), {str(work / name)!r}, data_root={str(data_root)!r}, "
            f"quiet=True, on_ready=lambda: barrier({str(work)!r}, {name!r}, {len(jobs)}))))"
        )
        log = (out / f"{name}_stdout.log").open("w")
        procs[name] = (subprocess.Popen([sys.executable, "-c", code], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT), log)
    summary, rc = {}, 0
    for name, (p, log) in procs.items():
        rc |= p.wait()
        log.close()
        run_dir = work / name
        for f, target in (("best.safetensors", f"{name}_best.safetensors"), ("log.jsonl", f"{name}_log.jsonl")):
            if (run_dir / f).is_file():
                shutil.copy(run_dir / f, out / target)
        summary[name] = {
            "returncode": p.returncode,
            "config": json.loads((run_dir / "train_config.json").read_text()) if (run_dir / "train_config.json").is_file() else None,
            "set5": json.loads((run_dir / "set5.json").read_text())["sets"]["Set5"] if (run_dir / "set5.json").is_file() else None,
        }
    summary["device"] = _device_name()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    for name in jobs:
        s5 = summary[name]["set5"]
        steps = (summary[name]["config"] or {}).get("steps")
        print(f"{name}: rc {summary[name]['returncode']}, {steps} steps, Set5 "
              + (f"{s5['psnr_y']:.3f} dB / {s5['ssim_y']:.4f}" if s5 else "not scored"))
    return rc


def _device_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception as e:  # a report line, never a reason to lose the trained weights
        return f"unknown ({e})"


def profile(data_root: Path, out: Path, steps: int = 12) -> None:
    """Where a training step's time goes (x4 recipe): seconds per step with and without deterministic
    algorithms, and the profiler's top operators."""
    sys.path.insert(0, import_path())
    import torch

    from edgesr.data.patches import PatchSampler, build_pairs, calibration_files, split_holdout
    from edgesr.train import TrainConfig, _to_float, initial_model, train_step

    cfg = TrainConfig(**JOBS["x4"])
    pairs = build_pairs(split_holdout(calibration_files(data_root))[0][:40], 4)
    sampler = PatchSampler(pairs, 4, cfg.patch, cfg.batch)
    cuda = torch.device("cuda")
    batches = [tuple(_to_float(x, cuda) for x in sampler.batch_u8(i)) for i in range(4)]
    model = initial_model(cfg).to(cuda).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)

    def one(i, sync=True):
        loss = train_step(model, opt, *batches[i % 4], bf16=True)
        return float(loss.detach()) if sync else loss

    lines = []
    for det in (True, False):
        torch.use_deterministic_algorithms(det, warn_only=True)
        for _ in range(3):
            one(0)
        torch.cuda.synchronize()
        t = time.time()
        for i in range(steps):
            one(i, sync=False)
        torch.cuda.synchronize()
        lines.append(f"deterministic={det}: {(time.time() - t) / steps * 1000:.1f} ms/step")
        print(lines[-1], flush=True)
    from torch.profiler import ProfilerActivity, profile as prof

    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        for i in range(4):
            one(i)
    table = p.key_averages().table(sort_by="cuda_time_total", row_limit=25)
    (out / "profile.txt").write_text("\n".join(lines) + "\n" + table)
    print(table[:6000])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "assets")
    r = sub.add_parser("run")
    r.add_argument("--data-root", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget", type=float, default=430.0, help="seconds per job, data preparation included")
    r.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    r.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a TrainConfig field in every job (a dry run here: --set batch=2 --set patch=16)")
    f = sub.add_parser("profile")
    f.add_argument("--data-root", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "profile":
        a.out.mkdir(parents=True, exist_ok=True)
        profile(a.data_root.resolve(), a.out)
        return 0
    if a.cmd == "pack":
        pack(a.out, a.data_root)
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    rc = run(a.data_root.resolve(), a.out, a.budget, a.jobs, overrides)
    print(f"done in {time.time() - t:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
