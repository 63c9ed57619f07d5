"""`edgesr eval` / `demo` / `zoo` end to end, bicubic baselines, and one-line errors for user mistakes."""

import json

import numpy as np
import pytest
import torch

from edgesr.cli import main
from edgesr.models.checkpoint import save_checkpoint
from edgesr.models.swinir import SwinIR, SwinIRConfig

from conftest import DATA_ROOT, TINY, needs_data

# Published bicubic baselines (Y-PSNR, border = scale).
BASELINES = {
    "Set5": {2: 33.66, 3: 30.39, 4: 28.42},
    "Set14": {2: 30.24, 3: 27.55, 4: 26.00},
    "B100": {2: 29.56, 3: 27.21, 4: 25.96},
}


SSIM_SET5 = {2: 0.9299, 3: 0.8682, 4: 0.8104}


@needs_data
def test_bicubic_rgb_of_shipped_lr_files_is_close(tmp_path):
    # Enlarging the shipped MATLAB LR RGB files and scoring like a model lands within 0.02 dB of the baselines.
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "bicubic-rgb", "--scale", "4", "--sets", "Set5", "Set14", "--quiet", "--json", str(out), "--data-root", str(DATA_ROOT)]) == 0
    res = json.loads(out.read_text())
    for name in ("Set5", "Set14"):
        assert abs(res["sets"][name]["psnr_y"] - BASELINES[name][4]) <= 0.02


@needs_data
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_reproduces_published_baselines(tmp_path, scale, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "bicubic", "--scale", str(scale), "--quiet", "--json", str(out), "--data-root", str(DATA_ROOT)]) == 0
    res = json.loads(out.read_text())
    for name, table in BASELINES.items():
        got = res["sets"][name]["psnr_y"]
        assert abs(got - table[scale]) <= 0.01, (name, got)
    assert res["sets"]["Set5"]["ssim_y"] == pytest.approx(SSIM_SET5[scale], abs=5e-4)
    assert len(res["sets"]["B100"]["images"]) == 100
    assert "PSNR" in capsys.readouterr().out


@needs_data
def test_eval_model_checkpoint_writes_per_image_json(tmp_path):
    torch.manual_seed(0)
    m = SwinIR(SwinIRConfig(scale=4, **TINY))
    ckpt = save_checkpoint(m, tmp_path / "tiny.safetensors")
    out = tmp_path / "e.json"
    rc = main(["eval", "--model", str(ckpt), "--sets", "Set5", "--limit", "2", "--quiet", "--json", str(out), "--data-root", str(DATA_ROOT)])
    assert rc == 0
    res = json.loads(out.read_text())
    imgs = res["sets"]["Set5"]["images"]
    assert [r["image"] for r in imgs] == ["baby", "bird"]
    assert np.isfinite(res["sets"]["Set5"]["psnr_y"])


def _err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgesr: error:"), err
    assert "Traceback" not in err[0]
    return err[0]


def test_unknown_model_is_one_line_error(capsys):
    assert main(["eval", "--model", "no_such_model", "--quiet"]) == 2
    assert "neither a zoo model" in _err(capsys)


def test_unbundled_official_entry_explains(capsys):
    assert main(["eval", "--model", "official_swinir_light_x4", "--quiet"]) == 2
    assert "not bundled" in _err(capsys)


def test_wrong_architecture_file_is_one_line_error(tmp_path, capsys):
    torch.save({"params": {"body.0.weight": torch.zeros(3)}}, tmp_path / "edsr.pth")
    assert main(["eval", "--model", str(tmp_path / "edsr.pth"), "--quiet"]) == 2
    assert "conv_first.weight" in _err(capsys)


def test_missing_data_root_is_one_line_error(tmp_path, capsys):
    assert main(["eval", "--model", "bicubic", "--scale", "2", "--data-root", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "does not exist" in _err(capsys)


def test_unknown_set_is_one_line_error(tmp_path, capsys):
    (tmp_path / "benchmark").mkdir()
    assert main(["eval", "--model", "bicubic", "--scale", "2", "--sets", "Urban100", "--data-root", str(tmp_path), "--quiet"]) == 2
    assert "Urban100" in _err(capsys)


def test_corrupt_image_in_set_is_one_line_error(tmp_path, capsys):
    hr = tmp_path / "benchmark" / "Mine" / "HR"
    hr.mkdir(parents=True)
    (hr / "x.png").write_bytes(b"broken")
    assert main(["eval", "--model", "bicubic", "--scale", "2", "--sets", "Mine", "--data-root", str(tmp_path), "--quiet"]) == 2
    assert "x.png" in _err(capsys)


def test_lr_generated_when_lr_folder_absent(tmp_path):
    from PIL import Image

    hr = tmp_path / "benchmark" / "Mine" / "HR"
    hr.mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (34, 30, 3), dtype=np.uint8)).save(hr / "a.png")
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "bicubic", "--scale", "4", "--sets", "Mine", "--data-root", str(tmp_path), "--quiet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["sets"]["Mine"]["images"][0]["image"] == "a"


def test_demo_runs_on_bundled_photos(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(SwinIR(SwinIRConfig(scale=4, **TINY)), tmp_path / "tiny.safetensors")
    assert main(["demo", "--model", str(ckpt), "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    assert (tmp_path / "demo" / "astronaut_x4_bicubic.png").is_file()
    assert "bicubic" in capsys.readouterr().out


def test_zoo_lists_entries(capsys):
    assert main(["zoo"]) == 0
    assert "official_swinir_light_x4" in capsys.readouterr().out


def test_image_smaller_than_a_window_is_padded(tmp_path):
    from PIL import Image

    hr = tmp_path / "benchmark" / "Tiny" / "HR"
    hr.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (12, 20, 3), dtype=np.uint8)).save(hr / "t.png")
    ckpt = save_checkpoint(SwinIR(SwinIRConfig(scale=4, **TINY)), tmp_path / "tiny.safetensors")
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(ckpt), "--sets", "Tiny", "--data-root", str(tmp_path), "--quiet", "--json", str(out)]) == 0
    assert np.isfinite(json.loads(out.read_text())["sets"]["Tiny"]["psnr_y"])
