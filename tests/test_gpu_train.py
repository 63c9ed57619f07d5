"""scripts/gpu_train.py: the packed data are the training data, and the side-by-side job returns its results.

Run here on the CPU with a tiny network: the orchestration (import path without installing, start barrier,
budgeted runs, what comes back) is the same code a GPU lease runs.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edgesr.models.checkpoint import load_model

from conftest import DATA_ROOT, TINY, needs_data

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_train.py"


def test_pack_is_lossless_and_keeps_the_layout(tmp_path):
    src = tmp_path / "assets"
    rng = np.random.default_rng(0)
    for sub in ("T91", "BSD200"):
        (src / "calibration" / sub).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(src / "calibration" / sub / "a.png")
    (src / "benchmark" / "Set5" / "HR").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "benchmark" / "Set5" / "HR" / "b.png")
    out = tmp_path / "packed"
    subprocess.run([sys.executable, str(SCRIPT), "pack", "--out", str(out), "--data-root", str(src)], check=True,
                   capture_output=True)
    for sub in ("T91", "BSD200"):
        a = np.asarray(Image.open(src / "calibration" / sub / "a.png"))
        b = np.asarray(Image.open(out / "calibration" / sub / "a.webp").convert("RGB"))
        assert np.array_equal(a, b)
    assert (out / "benchmark" / "Set5" / "HR" / "b.png").is_file()


@needs_data
def test_side_by_side_budgeted_runs_return_weights_and_summary(tmp_path):
    tiny = ["--set", f"model={json.dumps(TINY)}", "--set", 'init=""', "--set", "batch=2", "--set", "patch=16",
            "--set", "probe_steps=6", "--set", "warmup=10", "--set", "max_images=3", "--set", "val_every=1000"]
    r = subprocess.run([sys.executable, str(SCRIPT), "run", "--data-root", str(DATA_ROOT), "--out", str(tmp_path),
                        "--budget", "12", *tiny], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    for name, scale in (("x4", 4), ("x2", 2)):
        s = summary[name]
        assert s["returncode"] == 0 and s["config"]["time_budget"] == 12
        assert 6 < s["config"]["steps"] < 10**6  # fixed by the probe, not the placeholder cap
        assert s["set5"]["psnr_y"] > 10
        assert load_model(tmp_path / f"{name}_best.safetensors", scale=scale).config.embed_dim == TINY["embed_dim"]
        steps = [json.loads(line)["step"] for line in (tmp_path / f"{name}_log.jsonl").read_text().splitlines()]
        assert steps[-1] == s["config"]["steps"]
