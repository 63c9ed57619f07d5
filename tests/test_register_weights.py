"""The model card's record of a training run (scripts/register_weights.py: stage)."""

import importlib.util
import json
from pathlib import Path

from edgesr.models.zoo import entries

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
_spec = importlib.util.spec_from_file_location("register_weights", SCRIPTS / "register_weights.py")
register_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(register_weights)


def _run(tmp_path, init, log):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train_config.json").write_text(json.dumps(dict(init=init, batch=8, patch=48, lr=2e-4, warmup=100,
                                                                 min_lr=1e-6, bf16=False, downscales=[1.0])))
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return tmp_path


def test_stage_names_the_init_weights_and_the_head_fit(tmp_path):
    log = [{"step": 0, "time": 0.0, "head_fit": {"crops": 64}, "val_psnr": 31.0},
           {"step": 1, "loss": 0.1, "time": 12.0}, {"step": 2, "loss": 0.1, "time": 24.0, "val_psnr": 31.5}]
    st = register_weights.stage(_run(tmp_path, "swinir_light_x4", log), "cpu", {"edgesr.step": "2"})
    sha = entries()["swinir_light_x4"].sha256
    assert st["init"] == f"swinir_light_x4 (sha256 {sha}); new upsampler fitted by least squares on 64 training crops"
    assert st["steps"] == 2 and "31.500 dB at last validation" in st["selected_by"]


def test_stage_of_a_path_init_without_a_fit(tmp_path):
    log = [{"step": 1, "loss": 0.1, "time": 3600.0}, {"step": 2, "loss": 0.1, "time": 7200.0}]
    st = register_weights.stage(_run(tmp_path, "/somewhere/best.safetensors", log), "cpu")
    assert st["init"] == "best.safetensors" and st["wall_time_hours"] == 1.0 and st["steps"] == 2


def test_stage_names_the_selected_checkpoints_score(tmp_path):
    log = [{"step": 1, "time": 1.0, "val_psnr": 30.0}, {"step": 2, "time": 2.0, "val_psnr": 29.0}]
    st = register_weights.stage(_run(tmp_path, "", log), "cpu", {"edgesr.step": "1", "edgesr.val_psnr": "30.0000"})
    assert st["selected_by"] == "held-out validation PSNR (30.000 dB, the best of 2 validations)"
    assert st["init"] == "random" and st["steps"] == 1


def test_stage_of_a_zero_step_refit(tmp_path):
    fit = {"crops": 128, "ridge": 1e-4, "seconds": 360.0, "val_psnr_before": 27.5, "val_psnr_fit": 27.6, "kept_fit": True}
    log = [{"step": 0, "time": 0.0, "head_fit": fit, "val_psnr": 27.6}]
    st = register_weights.stage(_run(tmp_path, "/runs/a/best.safetensors", log), "cpu",
                                {"edgesr.step": "0", "edgesr.val_psnr": "27.6000"})
    assert st["init"] == ("best.safetensors; upsampler refitted by least squares on 128 training crops, ridge 0.0001 "
                          "(held-out 27.500 -> 27.600 dB, fit kept)")
    assert st["steps"] == 0 and st["wall_time_hours"] == 0.1 and "optimizer" not in st
    assert st["selected_by"] == "held-out validation PSNR (27.600 dB, the best of 1 validations)"


def test_an_intermediate_run_is_recorded_at_the_checkpoint_the_next_run_took(tmp_path):
    import torch

    from edgesr.models.checkpoint import save_checkpoint
    from edgesr.models.swinir import SwinIR, SwinIRConfig

    first = _run(tmp_path / "a", "", [{"step": 5, "time": 1.0, "val_psnr": 27.6}, {"step": 9, "time": 2.0, "val_psnr": 27.5}])
    torch.manual_seed(0)
    save_checkpoint(SwinIR(SwinIRConfig(scale=2, embed_dim=12, depths=(1,), num_heads=(2,), window_size=4)),
                    first / "best.safetensors", {"step": "5", "val_psnr": "27.6000"})
    nxt = _run(tmp_path / "b", str(first / "best.safetensors"), [])
    meta = register_weights.continued_checkpoint(first, nxt)
    st = register_weights.stage(first, "cpu", meta)
    assert st["steps"] == 5 and st["selected_by"] == "held-out validation PSNR (27.600 dB, the best of 2 validations)"
    # A next run that started elsewhere: the run is recorded at its last step.
    other = _run(tmp_path / "c", "swinir_light_x4", [])
    assert register_weights.continued_checkpoint(first, other) is None
    assert register_weights.stage(first, "cpu", None)["steps"] == 9
