"""`edgesr quantize` end to end on a tiny model, and its one-line errors."""

import json

import numpy as np
import torch
from PIL import Image

from edgesr.cli import main
from edgesr.converter.artifact import load_artifact, read_artifact_metadata
from edgesr.models.checkpoint import save_checkpoint
from edgesr.models.swinir import SwinIR, SwinIRConfig

from conftest import TINY


def _setup(tmp_path, n=3, size=64):
    torch.manual_seed(0)
    ckpt = save_checkpoint(SwinIR(SwinIRConfig(scale=2, **TINY)), tmp_path / "fp.safetensors")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    return ckpt, calib


def _err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("edgesr: error:") and not any("Traceback" in e for e in err), err
    return err[-1]


def test_quantize_then_eval_artifact(tmp_path, capsys):
    ckpt, calib = _setup(tmp_path, n=25)
    cfg = tmp_path / "q.yaml"
    cfg.write_text("bits: 3\ncalib_images: 4\ncalib_patch: 16\ndqc: {iterations: 3, batch: 2, patch: 16}\n")
    out = tmp_path / "q.safetensors"
    rc = main(["quantize", "--model", str(ckpt), "--config", str(cfg), "--calib", str(calib), "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["artifact_bytes"] == out.stat().st_size
    meta = read_artifact_metadata(out)
    assert meta["quant_config"]["bits"] == 3 and len(meta["provenance"]["dqc_history"]) == 3
    assert meta["provenance"]["source_sha256"]
    assert load_artifact(out).scale == 2
    # The demo runs the artifact next to its FP source and bicubic.
    assert main(["demo", "--model", str(out), "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "FP fp.safetensors" in printed and "bicubic" in printed
    # Refuses to overwrite.
    assert main(["quantize", "--model", str(ckpt), "--config", str(cfg), "--calib", str(calib), "--out", str(out), "--quiet"]) == 2
    assert "exists" in _err(capsys)
    # An artifact where an FP checkpoint belongs, an exported file where a PyTorch model belongs.
    assert main(["quantize", "--model", str(out), "--calib", str(calib), "--out", str(tmp_path / "q2.safetensors"),
                 "--quiet"]) == 2
    assert "is a quantized artifact" in _err(capsys)
    exported = tmp_path / "m.tflite"
    exported.write_bytes(b"\0" * 64)
    assert main(["eval", "--model", str(exported), "--quiet"]) == 2
    assert "an exported file" in _err(capsys)


def test_empty_calibration_folder(tmp_path, capsys):
    ckpt, _ = _setup(tmp_path)
    (tmp_path / "empty").mkdir()
    assert main(["quantize", "--model", str(ckpt), "--calib", str(tmp_path / "empty"), "--out", str(tmp_path / "o.safetensors"), "--quiet"]) == 2
    assert "no images" in _err(capsys)
    assert not (tmp_path / "o.safetensors").exists()


def test_calibration_images_smaller_than_patch(tmp_path, capsys):
    ckpt, calib = _setup(tmp_path, n=25, size=24)
    assert main(["quantize", "--model", str(ckpt), "--calib", str(calib), "--out", str(tmp_path / "o.safetensors"), "--quiet"]) == 2
    assert "large enough" in _err(capsys)


def test_bad_bits_and_unknown_preset(tmp_path, capsys):
    ckpt, calib = _setup(tmp_path)
    assert main(["quantize", "--model", str(ckpt), "--bits", "9", "--calib", str(calib), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "bits must be one of" in _err(capsys)
    assert main(["quantize", "--model", str(ckpt), "--dqc", "turbo", "--calib", str(calib), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "unknown DQC preset" in _err(capsys)


def test_bare_machine_calibrates_on_sample_photos(tmp_path, monkeypatch, capsys):
    # No data root: the converter falls back to scikit-image's bundled photos.
    monkeypatch.setenv("EDGESR_DATA_ROOT", str(tmp_path / "nothing"))
    ckpt, _ = _setup(tmp_path)
    cfg = tmp_path / "q.yaml"
    cfg.write_text("calib_images: 2\ncalib_patch: 16\ndqc: {iterations: 1, batch: 1, patch: 16}\n")
    out = tmp_path / "q.safetensors"
    assert main(["quantize", "--model", str(ckpt), "--config", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert "edgesr_sample_photos" in read_artifact_metadata(out)["provenance"]["calibration"][0]


def test_output_places_and_data_root_checked_before_calibration(tmp_path, capsys):
    """A place the artifact cannot go, or a named data root without calibration images, fails at once."""
    ckpt, calib = _setup(tmp_path)
    base = ["quantize", "--model", str(ckpt), "--bits", "4", "--dqc", "none", "--quiet"]
    assert main([*base, "--calib", str(calib), "--out", "/proc/edgesr-test.safetensors"]) == 2
    assert "cannot" in _err(capsys)
    assert main([*base, "--calib", str(calib), "--out", str(tmp_path)]) == 2
    assert "is a folder" in _err(capsys)
    assert main([*base, "--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "q.safetensors")]) == 2
    assert "no calibration/T91" in _err(capsys)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main([*base, "--calib", str(calib), "--work-dir", str(blocker), "--out", str(tmp_path / "q.safetensors")]) == 2
    assert "not a folder" in _err(capsys)
    assert not (tmp_path / "q.safetensors").exists()


def test_config_values_of_the_wrong_type(tmp_path, capsys):
    ckpt, calib = _setup(tmp_path)
    for text, field in (("bits: 4.0", "bits"), ("linears: '*.attn.q'", "linears"), ("dqc: {iterations: 1.5}", "iterations")):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text + "\n")
        assert main(["quantize", "--model", str(ckpt), "--config", str(cfg), "--calib", str(calib),
                     "--out", str(tmp_path / "q.safetensors"), "--quiet"]) == 2
        assert field in _err(capsys)
