"""Full-precision SwinIR-light training (the FP teacher every quantization result is measured against).

Recipe: HR images of ``<data root>/calibration/{T91,BSD200}`` (never the benchmark sets) plus downscaled copies,
LR by MATLAB bicubic, random crops with the 8 dihedral transforms, L1 loss, Adam, linear warm-up then cosine.
Every ``val_every`` steps: PSNR on a held-out split of the training folders; the best weights are kept.
A run directory holds ``state.pt`` (resume point), ``best.safetensors``, ``last.safetensors`` and ``log.jsonl``;
the batch drawn at step t depends only on (seed, t), so a killed run resumes bit-for-bit where it stopped.
On a GPU the same recipe runs with bf16 autocast; ``time_budget`` fixes the step count from the speed measured
during warm-up (the warm-up learning rate does not depend on it), so a fixed lease ends with a finished cosine.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from edgesr.errors import EdgesrError
from edgesr.data.io import make_output_dir
from edgesr.data.patches import PatchSampler, build_pairs, calibration_files, split_holdout
from edgesr.metrics import psnr
from edgesr.models.checkpoint import load_model, save_checkpoint
from edgesr.models.swinir import SwinIR, SwinIRConfig, run_padded
from edgesr.progress import progress_bar


@dataclass
class TrainConfig:
    version: int = 1
    scale: int = 4
    steps: int = 4000
    batch: int = 8
    patch: int = 48  # LR patch side
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup: int = 100
    weight_decay: float = 0.0
    downscales: tuple[float, ...] = (1.0, 0.8, 0.6)
    holdout_every: int = 20
    val_every: int = 250
    save_every: int = 50
    seed: int = 0
    bf16: bool | None = None  # bf16 autocast; None: where the hardware has native bf16 (see native_bf16)
    threads: int = 0  # 0: torch default
    grad_clip: float = 0.0
    model: dict = field(default_factory=dict)  # SwinIRConfig overrides (e.g. a tiny test network)
    init: str = ""  # optional checkpoint to start from (e.g. the shipped weights)
    max_images: int = 0  # 0: all training images (tests use a few)
    set5_report: bool = True  # score the selected weights on Set5 when the run completes
    device: str = "auto"  # auto: CUDA when available, else CPU
    deterministic: bool = True  # False: about 25% faster steps on a GPU (measured on an H100), same data order
    compile: bool = False  # torch.compile the training forward (fuses the small kernels; validation stays eager)
    time_budget: float = 0.0  # seconds; > 0: `steps` is fixed after `probe_steps` so the run ends within it
    probe_steps: int = 40
    head_fit: int = 64  # crops for the least-squares upsampler fit when init gives only the body; 0: random head
    loss: str = "l1"  # l1 (the SwinIR recipe) or l2 (mean squared error: what PSNR measures; a late fine-tune)
    # The fit's ridge, relative to the mean diagonal of its Gram matrix. Held-out PSNR of an x4 refit (128 crops):
    # 27.6095 / 27.6135 / 27.6127 / 27.6125 dB at 1e-3 / 1e-4 / 1e-5 / 1e-6 (runs before this option used 1e-3).
    head_ridge: float = 1e-4
    refit_head: bool = False  # fit the upsampler even when init gives one (kept only if held-out PSNR improves)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def native_bf16(device: torch.device, cpuinfo: str | None = None) -> bool:
    """Whether bf16 autocast pays off on ``device``: a CUDA GPU with bf16, or a CPU with bf16 instructions
    (x86 AVX-512-BF16 or AMX-BF16, Arm BF16). Elsewhere oneDNN emulates bf16 and a step gets far slower:
    on a 2-core AMD EPYC with AVX2 only, 46.2 s per x4 step (batch 8, 48-px patches) against 5.37 s in fp32
    (``python scripts/bench_train_step.py --threads 2 --repeats 2``). ``cpuinfo``: the text of /proc/cpuinfo (read when None)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            words = set(value.split())
            return bool(words & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise EdgesrError(f"unknown device {name!r} (cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EdgesrError(f"device {name!r} requested, but this torch build sees no CUDA GPU")
    return dev


def initial_model(cfg: TrainConfig) -> SwinIR:
    """A fresh network, or one started from ``cfg.init``: a checkpoint of any scale gives every tensor whose
    shape fits (an x4 body starts an x2 run; only the upsampler's last conv is then new)."""
    return _initial_model(cfg)[0]


def _initial_model(cfg: TrainConfig) -> tuple[SwinIR, list[str]]:
    """initial_model and the names of the tensors ``cfg.init`` did not give (all of them without an init)."""
    if not cfg.init:
        model = SwinIR(SwinIRConfig(scale=cfg.scale, **cfg.model))
        return model, list(model.state_dict())
    from edgesr.models.zoo import resolve

    src = load_model(resolve(cfg.init)[0])
    model = SwinIR(replace(src.config, scale=cfg.scale))
    own, theirs = model.state_dict(), src.state_dict()
    fits = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fits, strict=False)
    return model, [k for k in own if k not in fits]


def _to_float(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC batch -> float NCHW in [0, 1] on ``device`` (the same values as PatchSampler.batch_at)."""
    return torch.from_numpy(x).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


def _batches(sampler: PatchSampler, start: int, ahead: int = 3):
    """Batches start, start+1, ... drawn ahead in a worker thread so the cropping overlaps the training step."""
    with ThreadPoolExecutor(1) as pool:
        queue = deque(pool.submit(sampler.batch_u8, s) for s in range(start, start + ahead))
        nxt = start + ahead
        while True:
            batch = queue.popleft().result()
            queue.append(pool.submit(sampler.batch_u8, nxt))
            nxt += 1
            yield batch


def train_step(forward, opt, lr_img: torch.Tensor, hr_img: torch.Tensor, bf16: bool, grad_clip: float = 0.0,
               loss: str = "l1"):
    """One L1 (or L2) step (bf16 autocast on the inputs' device); returns the loss tensor without synchronising."""
    with torch.autocast(lr_img.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = forward(lr_img)
    err = out.float() - hr_img
    loss = err.square().mean() if loss == "l2" else err.abs().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], grad_clip)
    opt.step()
    return loss


def _validate(model: SwinIR, pairs, scale: int, bf16: bool) -> float:
    from edgesr.data.io import to_tensor, to_uint8

    model.eval()
    dev = next(model.parameters()).device
    scores = []
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        for p in pairs:
            sr = to_uint8(run_padded(model, to_tensor(p.lr).to(dev)).float().cpu())
            scores.append(psnr(sr, p.hr, border=scale))
    model.train()
    return float(np.mean(scores))


def train(cfg: TrainConfig, run_dir: str | Path, data_root=None, quiet: bool = False, stop_after: int | None = None,
          on_ready=None) -> dict:
    """Train (or resume) into ``run_dir``. ``stop_after`` ends the process early (tests of resume);
    ``on_ready()`` runs once the data is built, before the first step (runs sharing a GPU start together, so
    each one's budget probe sees the shared speed)."""
    run_dir = Path(run_dir)
    if cfg.loss not in ("l1", "l2"):
        raise EdgesrError(f"loss {cfg.loss!r}: choose l1 or l2")
    if cfg.time_budget < 0:
        raise EdgesrError(f"time budget {cfg.time_budget} s: must be positive (0: no budget)")
    if cfg.time_budget and cfg.probe_steps >= cfg.warmup and not (run_dir / "state.pt").exists():
        raise EdgesrError("a time budget needs probe_steps < warmup (the warm-up must not depend on the step count)")
    dev = _device(cfg.device)
    if cfg.bf16 is None:
        cfg.bf16 = native_bf16(dev)
    files = calibration_files(data_root)  # before the run folder exists: a bad data root leaves nothing behind
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)

    state_path = run_dir / "state.pt"
    cfg_path = run_dir / "train_config.json"
    if state_path.exists():
        saved = json.loads(cfg_path.read_text())
        if saved.get("seed") != cfg.seed or saved.get("scale") != cfg.scale:
            raise EdgesrError(f"{run_dir} holds a run with another seed/scale; use a new run directory")

    t_begin = time.time()
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model, missing = _initial_model(cfg)
    model = model.to(dev).train()
    # Fit the upsampler on the body before the first step: always when only it is new (another scale's body), and
    # on request (--refit-head) when the init gave one.
    new_head = bool(missing) and all(k.startswith("upsample.") for k in missing)
    fit_head = cfg.head_fit > 0 and (new_head or (cfg.refit_head and bool(cfg.init) and not missing))
    if cfg.steps == 0 and not fit_head:
        raise EdgesrError("0 steps and no upsampler fit: nothing to do (a 0-step run needs --init and --refit-head)")
    make_output_dir(run_dir)
    if cfg.patch % model.window_size:
        raise EdgesrError(f"patch {cfg.patch} must be a multiple of the window size {model.window_size}")
    # One fused kernel per step on a GPU (Adam took 11.7 ms of a 108 ms H100 step as separate kernels).
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=dev.type == "cuda")
    step, best, steps_fixed = 0, -1.0, False
    if state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        step, best = st["step"], st["best"]
        if st.get("steps_fixed"):  # a budgeted run keeps the length it chose
            cfg.steps, steps_fixed = st["steps"], True
    cfg_path.write_text(json.dumps(asdict(cfg), indent=2))
    if cfg.time_budget and not steps_fixed and cfg.probe_steps >= cfg.warmup:
        raise EdgesrError("a time budget needs probe_steps < warmup (the warm-up must not depend on the step count)")

    train_files, val_files = split_holdout(files, cfg.holdout_every)
    if cfg.max_images:
        train_files, val_files = train_files[: cfg.max_images], val_files[: max(1, cfg.max_images // 4)]
    pairs = build_pairs(train_files, cfg.scale, cfg.downscales)
    val_pairs = build_pairs(val_files, cfg.scale)
    sampler = PatchSampler(pairs, cfg.scale, cfg.patch, cfg.batch, seed=cfg.seed)

    log = (run_dir / "log.jsonl").open("a")
    if fit_head and step == 0:
        from edgesr.head_fit import fit_upsampler

        t_fit = time.time()
        head = model.upsample[0]
        # A trained head is a candidate too: the fit replaces it only if the held-out PSNR rises.
        if not new_head:
            init_score = _validate(model, val_pairs, cfg.scale, cfg.bf16)
            init_head = {k: v.clone() for k, v in head.state_dict().items()}
        with progress_bar("fit upsampler", total=cfg.head_fit, disable=quiet) as bar:
            fit = fit_upsampler(model, pairs, crops=cfg.head_fit, seed=cfg.seed, ridge=cfg.head_ridge,
                                progress=lambda: bar.update(advance=1))
            fit["seconds"] = round(time.time() - t_fit, 1)
            best = _validate(model, val_pairs, cfg.scale, cfg.bf16)  # the fitted start is a candidate too
            msg = (f"upsampler least-squares fit on {fit['crops']} crops: training PSNR "
                   f"{fit['psnr_before']:.2f} -> {fit['psnr_after']:.2f} dB; step 0: held-out PSNR {best:.3f} dB")
            if not new_head:
                fit["val_psnr_before"], fit["val_psnr_fit"] = init_score, best
                fit["kept_fit"] = best > init_score
                msg += f" (init's head: {init_score:.3f} dB; {'fit kept' if fit['kept_fit'] else 'init head kept'})"
                if not fit["kept_fit"]:
                    head.load_state_dict(init_head)
                    best = init_score
            bar.log(msg)
        save_checkpoint(model, run_dir / "best.safetensors", {"step": "0", "val_psnr": f"{best:.4f}"})
        log.write(json.dumps({"step": 0, "time": 0.0, "head_fit": fit, "val_psnr": best}) + "\n")
        log.flush()
    if on_ready is not None:
        on_ready()
    t0, done_here = time.time(), 0
    ema_loss, t_probe = None, None
    batches = _batches(sampler, step)
    forward = torch.compile(model) if cfg.compile else model  # shares the parameters; compiled on first use
    with progress_bar(f"train x{cfg.scale}", total=cfg.steps, completed=step, disable=quiet or not cfg.steps) as bar:
        while step < cfg.steps:
            lr_u8, hr_u8 = next(batches)
            lr_img, hr_img = _to_float(lr_u8, dev), _to_float(hr_u8, dev)
            for g in opt.param_groups:
                g["lr"] = cfg.lr_at(step)
            loss = train_step(forward, opt, lr_img, hr_img, cfg.bf16, cfg.grad_clip, cfg.loss)
            step += 1
            done_here += 1
            lv = float(loss.detach())
            ema_loss = lv if ema_loss is None else 0.98 * ema_loss + 0.02 * lv
            bar.update(advance=1, info=f"loss {ema_loss:.4f} lr {cfg.lr_at(step - 1):.2e}")
            record = {"step": step, "loss": lv, "lr": cfg.lr_at(step - 1), "time": time.time() - t0}
            if cfg.time_budget and not steps_fixed:
                if done_here == 5:  # the first steps pay for allocation and kernel selection
                    t_probe = time.time()
                elif done_here == cfg.probe_steps:
                    rate = (done_here - 5) / (time.time() - t_probe)
                    left = cfg.time_budget - (time.time() - t_begin)
                    cfg.steps = min(cfg.steps, max(step + 1, step + int(0.92 * left * rate)))  # 8%: validations, saves
                    steps_fixed = True
                    cfg_path.write_text(json.dumps(asdict(cfg), indent=2))
                    bar.set_total(cfg.steps)
                    bar.log(f"{rate:.2f} steps/s: {cfg.steps} steps fit the {cfg.time_budget:.0f} s budget")
                    record["steps_fixed"] = cfg.steps
            if step % cfg.val_every == 0 or step == cfg.steps:
                v = _validate(model, val_pairs, cfg.scale, cfg.bf16)
                record["val_psnr"] = v
                if v > best:
                    best = v
                    save_checkpoint(model, run_dir / "best.safetensors", {"step": str(step), "val_psnr": f"{v:.4f}"})
                bar.log(f"step {step}: held-out PSNR {v:.3f} dB (best {best:.3f})")
            log.write(json.dumps(record) + "\n")
            if step % cfg.save_every == 0 or step == cfg.steps:
                log.flush()
                tmp = state_path.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "best": best,
                            "steps": cfg.steps, "steps_fixed": steps_fixed}, tmp)
                tmp.replace(state_path)
                save_checkpoint(model, run_dir / "last.safetensors", {"step": str(step)})
            if stop_after is not None and done_here >= stop_after:
                break
    batches.close()
    log.close()
    out = {"step": step, "best_val_psnr": best, "seconds": time.time() - t0, "device": str(dev)}
    if step >= cfg.steps and cfg.set5_report:
        out["set5"] = _set5_report(run_dir, data_root, quiet)
    return out


def _set5_report(run_dir: Path, data_root, quiet: bool) -> dict | None:
    """Score the selected (best held-out) weights on Set5 with the project's eval; skipped without the data."""
    from edgesr.errors import DataError
    from edgesr.evaluate import evaluate, torch_upscaler, write_json

    try:
        model = load_model(run_dir / "best.safetensors")
        res = evaluate(torch_upscaler(model, "best"), ["Set5"], data_root=data_root, quiet=True)
    except DataError:
        return None
    write_json(res, run_dir / "set5.json")
    r = res["sets"]["Set5"]
    if not quiet:
        print(f"Set5 x{model.scale} (best held-out checkpoint): {r['psnr_y']:.2f} dB / {r['ssim_y']:.4f}")
    return {"psnr_y": r["psnr_y"], "ssim_y": r["ssim_y"]}
