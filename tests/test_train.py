"""FP training: the loss falls on a tiny network, and an interrupted run resumes to identical weights."""

import json

import torch

from edgesr.data.patches import PatchSampler, build_pairs, calibration_files, split_holdout
from edgesr.models.checkpoint import load_model
from edgesr.train import TrainConfig, train

from conftest import DATA_ROOT, TINY, needs_data


def _cfg(**kw):
    base = dict(scale=2, steps=8, batch=4, patch=16, lr=2e-3, warmup=2, val_every=4, save_every=2, bf16=False,
                downscales=(1.0,), model=TINY, max_images=6, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@needs_data
def test_holdout_split_is_disjoint_and_stable():
    files = calibration_files(DATA_ROOT)
    train, val = split_holdout(files)
    assert len(files) == 291 and len(val) == 15
    assert not set(train) & set(val)
    assert split_holdout(list(reversed(files))) == (train, val)
    assert not any("benchmark" in str(p) for p in files)


@needs_data
def test_sampler_is_a_function_of_seed_and_step():
    pairs = build_pairs(split_holdout(calibration_files(DATA_ROOT))[0][:3], 2)
    a = PatchSampler(pairs, 2, 16, 4, seed=5)
    b = PatchSampler(pairs, 2, 16, 4, seed=5)
    assert torch.equal(a.batch_at(7)[0], b.batch_at(7)[0])
    assert not torch.equal(a.batch_at(7)[0], a.batch_at(8)[0])
    lr, hr = a.batch_at(0)
    assert lr.shape == (4, 3, 16, 16) and hr.shape == (4, 3, 32, 32)


@needs_data
def test_loss_decreases(tmp_path):
    out = train(_cfg(steps=30, val_every=30, save_every=30), tmp_path, data_root=DATA_ROOT, quiet=True)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert out["best_val_psnr"] > 0
    assert out["set5"]["psnr_y"] > 5 and (tmp_path / "set5.json").is_file()
    assert load_model(tmp_path / "best.safetensors", scale=2).config.embed_dim == TINY["embed_dim"]


@needs_data
def test_resume_matches_uninterrupted_run(tmp_path):
    train(_cfg(), tmp_path / "a", data_root=DATA_ROOT, quiet=True)
    train(_cfg(), tmp_path / "b", data_root=DATA_ROOT, quiet=True, stop_after=3)  # "killed" after step 3
    partial = torch.load(tmp_path / "b" / "state.pt", weights_only=False)
    assert partial["step"] == 2  # last save point before the kill
    train(_cfg(), tmp_path / "b", data_root=DATA_ROOT, quiet=True)
    a = load_model(tmp_path / "a" / "last.safetensors").state_dict()
    b = load_model(tmp_path / "b" / "last.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@needs_data
def test_time_budget_fixes_the_length_once_and_resume_keeps_it(tmp_path):
    cfg = _cfg(steps=10**6, warmup=12, probe_steps=8, time_budget=20.0, val_every=10**6, save_every=4, set5_report=False)
    out = train(cfg, tmp_path, data_root=DATA_ROOT, quiet=True, stop_after=9)
    saved = json.loads((tmp_path / "train_config.json").read_text())
    fixed = saved["steps"]
    assert 8 < fixed < 10**6 and saved["time_budget"] == 20.0
    assert torch.load(tmp_path / "state.pt", weights_only=False)["steps_fixed"]
    # The resumed process keeps the chosen length instead of measuring again.
    out = train(_cfg(steps=10**6, warmup=12, probe_steps=8, time_budget=20.0, val_every=10**6, save_every=4,
                     set5_report=False), tmp_path, data_root=DATA_ROOT, quiet=True)
    assert out["step"] == fixed
    assert json.loads((tmp_path / "train_config.json").read_text())["steps"] == fixed


def test_budget_must_be_measured_inside_the_warmup(tmp_path):
    import pytest

    from edgesr.errors import EdgesrError

    with pytest.raises(EdgesrError, match="probe_steps < warmup"):
        train(_cfg(time_budget=5.0, warmup=4, probe_steps=8), tmp_path, data_root=DATA_ROOT, quiet=True)


def test_init_from_another_scale_keeps_the_body(tmp_path):
    from edgesr.models.checkpoint import save_checkpoint
    from edgesr.models.swinir import SwinIR, SwinIRConfig
    from edgesr.train import initial_model

    x4 = SwinIR(SwinIRConfig(scale=4, **TINY))
    save_checkpoint(x4, tmp_path / "x4.safetensors")
    x2 = initial_model(TrainConfig(scale=2, init=str(tmp_path / "x4.safetensors")))
    assert x2.scale == 2 and x2.config.embed_dim == TINY["embed_dim"]
    a, b = x4.state_dict(), x2.state_dict()
    new = [k for k in b if a[k].shape != b[k].shape]
    assert new and all(k.startswith("upsample") for k in new)
    assert all(torch.equal(a[k], b[k]) for k in b if k not in new)


@needs_data
def test_uint8_batches_are_the_float_batches():
    pairs = build_pairs(split_holdout(calibration_files(DATA_ROOT))[0][:2], 3)
    s = PatchSampler(pairs, 3, 12, 3, seed=2)
    lr_u8, hr_u8 = s.batch_u8(4)
    lr, hr = s.batch_at(4)
    assert lr_u8.dtype == "uint8" and lr_u8.shape == (3, 12, 12, 3)
    assert torch.equal(torch.from_numpy(hr_u8).permute(0, 3, 1, 2).float() / 255, hr)
    assert torch.equal(torch.from_numpy(lr_u8).permute(0, 3, 1, 2).float() / 255, lr)


def test_bad_device_and_budget_are_user_errors(tmp_path):
    import pytest

    from edgesr.cli import main
    from edgesr.errors import EdgesrError

    for kw, msg in ((dict(device="tpu9"), "unknown device"), (dict(time_budget=-1.0), "must be positive")):
        with pytest.raises(EdgesrError, match=msg):
            train(_cfg(**kw), tmp_path / "r", data_root=DATA_ROOT, quiet=True)
    if not torch.cuda.is_available():
        with pytest.raises(EdgesrError, match="no CUDA"):
            train(_cfg(device="cuda"), tmp_path / "r", data_root=DATA_ROOT, quiet=True)
        assert main(["train", "--run-dir", str(tmp_path / "c"), "--device", "cuda", "--steps", "1"]) == 2


@needs_data
def test_compiled_forward_trains_like_eager(tmp_path):
    kw = dict(steps=4, val_every=10**6, save_every=10**6, set5_report=False)
    train(_cfg(**kw), tmp_path / "eager", data_root=DATA_ROOT, quiet=True)
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    train(_cfg(compile=True, **kw), tmp_path / "compiled", data_root=DATA_ROOT, quiet=True)
    assert counters["stats"]["unique_graphs"] >= 1  # the forward really went through torch.compile
    loss = lambda d: [json.loads(x)["loss"] for x in (tmp_path / d / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert torch.allclose(torch.tensor(loss("compiled")), torch.tensor(loss("eager")), rtol=1e-3)


@needs_data
def test_run_folder_that_cannot_be_made_is_a_user_error(tmp_path):
    import pytest

    from edgesr.errors import EdgesrError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EdgesrError, match="cannot write into the output folder"):
        train(_cfg(), blocker / "run", data_root=DATA_ROOT, quiet=True)


def test_bf16_autocast_only_where_the_hardware_has_bf16():
    from edgesr.train import native_bf16

    cpu = torch.device("cpu")
    epyc = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n"
    sapphire = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile\n"
    graviton = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm bf16\n"
    cortex_a76 = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"
    assert [native_bf16(cpu, text) for text in (epyc, sapphire, graviton, cortex_a76, "")] == [
        False, True, True, False, False]


@needs_data
def test_auto_precision_is_resolved_and_recorded(tmp_path):
    from edgesr.train import native_bf16

    train(_cfg(steps=2, bf16=None, set5_report=False), tmp_path / "r", data_root=DATA_ROOT, quiet=True)
    saved = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert saved["bf16"] is native_bf16(torch.device("cpu"))


def _tiny_pairs(model, n=3, side=24, seed=0):
    """LR images of noise and the HR images a known head makes of them (rounded to uint8 like real data)."""
    import numpy as np

    from edgesr.data.patches import PairImage

    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        lr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        with torch.no_grad():
            hr = model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)
        hr = (hr[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        pairs.append(PairImage(lr, hr))
    return pairs


def test_upsampler_fit_recovers_a_known_head():
    from edgesr.head_fit import fit_upsampler
    from edgesr.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    model = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    conv = model.upsample[0]
    with torch.no_grad():
        conv.weight.mul_(0.2)  # keep the known head's output inside [0, 1], where uint8 targets are not clipped
    truth = (conv.weight.detach().clone(), conv.bias.detach().clone())
    pairs = _tiny_pairs(model)
    with torch.no_grad():
        conv.weight.normal_(0, 0.05)
        conv.bias.zero_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Whole images as crops: a Swin body's features depend on the window grid, so only the full image's features
    # are the ones that made the targets. Those carry only uint8 rounding (about 59 dB): the fit must reach that
    # level and recover the head.
    fit = fit_upsampler(model, pairs, crops=6, side=24, seed=1, ridge=1e-9)
    assert fit["psnr_before"] < 40 < fit["psnr_after"]
    rel = (conv.weight - truth[0]).norm() / truth[0].norm()
    assert rel < 0.05, rel
    assert (conv.bias - truth[1]).abs().max() < 0.01
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("upsample."))


def test_upsampler_fit_is_deterministic_and_rejects_tiny_images():
    import numpy as np
    import pytest

    from edgesr.data.patches import PairImage
    from edgesr.head_fit import fit_upsampler
    from edgesr.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    a = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    b = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    b.load_state_dict(a.state_dict())
    pairs = _tiny_pairs(a)
    fa, fb = fit_upsampler(a, pairs, crops=4, side=16, seed=2), fit_upsampler(b, pairs, crops=4, side=16, seed=2)
    assert fa == fb and torch.equal(a.upsample[0].weight, b.upsample[0].weight)
    small = [PairImage(np.zeros((3, 3, 3), np.uint8), np.zeros((6, 6, 3), np.uint8))]
    with pytest.raises(ValueError, match="LR side"):
        fit_upsampler(a, small, crops=2)


@needs_data
def test_run_from_another_scales_body_starts_from_the_fitted_head(tmp_path):
    from edgesr.models.checkpoint import save_checkpoint
    from edgesr.models.swinir import SwinIR, SwinIRConfig

    save_checkpoint(SwinIR(SwinIRConfig(scale=4, **TINY)), tmp_path / "x4.safetensors")
    cfg = _cfg(steps=2, val_every=10**6, save_every=2, init=str(tmp_path / "x4.safetensors"), head_fit=3,
               set5_report=False)
    train(cfg, tmp_path / "run", data_root=DATA_ROOT, quiet=True)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 0 and log[0]["head_fit"]["crops"] == 3
    assert log[0]["head_fit"]["psnr_after"] > log[0]["head_fit"]["psnr_before"]
    best = load_model(tmp_path / "run" / "best.safetensors")  # the fitted start, validated before step 1
    assert best.scale == 2 and log[0]["val_psnr"] > 0
    # Without an init from another scale, nothing is fitted.
    train(_cfg(steps=2, val_every=10**6, save_every=2, set5_report=False), tmp_path / "plain", data_root=DATA_ROOT,
          quiet=True)
    assert "head_fit" not in (tmp_path / "plain" / "log.jsonl").read_text()


@needs_data
def test_refit_of_a_trained_head_is_kept_only_when_held_out_psnr_rises(tmp_path, monkeypatch):
    import pytest

    import edgesr.head_fit
    from edgesr.errors import EdgesrError
    from edgesr.models.checkpoint import save_checkpoint
    from edgesr.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    init = SwinIR(SwinIRConfig(scale=2, **TINY))
    save_checkpoint(init, tmp_path / "x2.safetensors")
    cfg = dict(steps=0, init=str(tmp_path / "x2.safetensors"), head_fit=3, head_ridge=1e-3, refit_head=True,
               set5_report=False)
    # A random head: the 0-step refit raises the held-out PSNR, is kept and is the run's best checkpoint.
    out = train(_cfg(**cfg), tmp_path / "fit", data_root=DATA_ROOT, quiet=True)
    fit = json.loads((tmp_path / "fit" / "log.jsonl").read_text().splitlines()[0])["head_fit"]
    assert fit["kept_fit"] and fit["ridge"] == 1e-3 and out["best_val_psnr"] > fit["val_psnr_before"] + 1.0
    best = load_model(tmp_path / "fit" / "best.safetensors")
    assert not torch.equal(best.upsample[0].weight, init.upsample[0].weight)
    assert torch.equal(best.conv_first.weight, init.conv_first.weight)  # only the head moves

    # A fit that makes the head worse (here: scaled up 100x) is dropped and the init's head stays, bit for bit.
    def worse(model, *a, **k):
        with torch.no_grad():
            model.upsample[0].weight.mul_(100)
        return {"crops": 3, "pixels": 1, "psnr_before": 0.0, "psnr_after": 0.0}

    monkeypatch.setattr(edgesr.head_fit, "fit_upsampler", worse)
    out = train(_cfg(**cfg), tmp_path / "worse", data_root=DATA_ROOT, quiet=True)
    fit = json.loads((tmp_path / "worse" / "log.jsonl").read_text().splitlines()[0])["head_fit"]
    assert not fit["kept_fit"] and out["best_val_psnr"] == fit["val_psnr_before"]
    assert torch.equal(load_model(tmp_path / "worse" / "best.safetensors").upsample[0].weight, init.upsample[0].weight)

    with pytest.raises(EdgesrError, match="nothing to do"):
        train(_cfg(steps=0, init=str(tmp_path / "x2.safetensors")), tmp_path / "idle", data_root=DATA_ROOT, quiet=True)
    assert not (tmp_path / "idle").exists()


def test_l2_step_minimises_the_mean_squared_error_and_bad_losses_are_refused(tmp_path):
    import pytest

    from edgesr.errors import EdgesrError
    from edgesr.train import train_step

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    x, y = torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0])
    loss = train_step(lambda a: w * a, opt, x, y, bf16=False, loss="l2")
    assert float(loss) == pytest.approx(((2 * x - y) ** 2).mean().item())  # (1 + 16) / 2
    assert float(w) == pytest.approx(2.0 - 0.1 * (2 * ((2 * x - y) * x).mean()).item())  # one SGD step on the MSE
    l1 = train_step(lambda a: w * a, torch.optim.SGD([w], lr=0.0), x, y, bf16=False)
    assert float(l1) == pytest.approx((w.detach() * x - y).abs().mean().item())
    with pytest.raises(EdgesrError, match="choose l1 or l2"):
        train(_cfg(loss="huber"), tmp_path / "r", data_root=DATA_ROOT, quiet=True)
    assert not (tmp_path / "r").exists()
