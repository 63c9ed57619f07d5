"""`edgesr parity`: metrics, tile localisation, folders, heatmaps, CI exit code."""

import json
import math

import numpy as np
from PIL import Image

from edgesr.cli import main
from edgesr.runtime.parity import compare


def test_compare_metrics_and_tile_grid():
    a = np.zeros((40, 60, 3), np.uint8)
    b = a.copy()
    b[25, 45, 1] = 3  # one value off by 3, in tile (1, 2) of a 20-px grid
    r = compare(a, b, tile=20)
    assert r["max_abs"] == 3 and np.isclose(r["share_over_1"], 1 / a.size)
    assert np.isclose(r["psnr"], 10 * math.log10(255**2 / (9 / a.size)))
    assert r["tile_max_abs"] == [[0, 0, 0], [0, 0, 3]]
    assert compare(a, a)["psnr"] == math.inf


def test_parity_cli_folders(tmp_path, capsys):
    da, db = tmp_path / "desktop", tmp_path / "device"
    da.mkdir()
    db.mkdir()
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(da / "x.png")
    off = img.copy()
    off[0, 0, 0] ^= 4
    Image.fromarray(off).save(db / "x.png")
    report = tmp_path / "r.json"
    assert main(["parity", str(da), str(db), "--json", str(report), "--heatmap", str(tmp_path / "h")]) == 0
    data = json.loads(report.read_text())
    assert data["max_abs"] == 4 and (tmp_path / "h" / "x_diff.png").is_file()
    assert main(["parity", str(da), str(db), "--max-abs", "1"]) == 1
    Image.fromarray(img[:16]).save(db / "x.png")
    assert main(["parity", str(da), str(db)]) == 2
    assert "differ in size" in capsys.readouterr().err
    Image.fromarray(img).save(db / "y.png")
    assert main(["parity", str(da), str(db)]) == 2
    assert "counterpart" in capsys.readouterr().err


def test_layer_parity_fake_quant_vs_native(tmp_path):
    """Integer kernels reproduce every quantized layer of the fake-quant model up to float rounding."""
    import torch

    from edgesr.converter import QuantConfig, quantize
    from edgesr.converter.artifact import save_artifact
    from edgesr.converter.calibrate import calibrate
    from edgesr.models.swinir import SwinIR, SwinIRConfig
    from edgesr.runtime.layers import compare_layers
    from tests.conftest import TINY

    torch.manual_seed(0)
    config = QuantConfig(bits=4, init="minmax")
    q = quantize(SwinIR(SwinIRConfig(scale=2, **TINY)).eval(), config)
    calibrate(q, torch.rand(1, 3, 8, 8), config)
    rows = compare_layers(q, torch.rand(1, 3, 8, 8))
    blocks = sum(TINY["depths"])
    assert len(rows) == blocks * 8 + 1  # per block 6 linears + 2 matmuls, then the output
    assert all(r["rel_l2"] < 1e-3 for r in rows)
    art = tmp_path / "q.safetensors"
    save_artifact(q, art)
    img = tmp_path / "lr.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "layers.json"
    assert main(["parity", "--layers", str(art), str(img), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["layers"][-1]["layer"] == "output"
    assert main(["parity", "--layers", str(img), str(img)]) == 2
