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
