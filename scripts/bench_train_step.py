"""Side-by-side cost of one SwinIR-light training step: fp32 vs bf16 autocast, interleaved in one run.

    python scripts/bench_train_step.py --scale 4 --batch 8 --patch 48 --repeats 4

Prints the median seconds per step of each and the fp32/bf16 ratio (this machine is shared and noisy, so the
two are measured alternately, not one after the other).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from edgesr.models.swinir import SwinIR, SwinIRConfig


def step(model, opt, lr, hr, bf16: bool) -> float:
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(lr)
    loss = (out.float() - hr).abs().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SwinIR(SwinIRConfig(scale=args.scale)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    lr = torch.rand(args.batch, 3, args.patch, args.patch)
    hr = torch.rand(args.batch, 3, args.patch * args.scale, args.patch * args.scale)
    times = {False: [], True: []}
    for bf16 in (False, True):  # warm-up
        step(model, opt, lr, hr, bf16)
    for _ in range(args.repeats):
        for bf16 in (False, True):
            times[bf16].append(step(model, opt, lr, hr, bf16))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, LR patch {args.patch}: "
          f"fp32 {fp32:.2f} s/step, bf16 autocast {bf16:.2f} s/step, ratio fp32/bf16 {fp32 / bf16:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
