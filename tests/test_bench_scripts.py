"""The runtime benchmark scripts pair a quantized artifact with the FP model it was made from, and no other."""

import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from edgesr.converter.artifact import save_artifact
from edgesr.converter.config import QuantConfig
from edgesr.converter.quant import quantize
from edgesr.models.swinir import SwinIR, SwinIRConfig
from edgesr.models.zoo import entries

from conftest import TINY

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
_spec = importlib.util.spec_from_file_location("bench_pte", SCRIPTS / "bench_pte.py")
bench_pte = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_pte)

BUNDLED = {e.sha256: e for e in entries().values() if e.file}


def _artifact(path, source_sha):
    torch.manual_seed(0)
    q = quantize(SwinIR(SwinIRConfig(scale=4, **TINY)).eval(), QuantConfig(bits=4, init="minmax"))
    save_artifact(q, path, {"source_sha256": source_sha})
    return str(path)


def test_default_fp_model_is_the_artifacts_source(tmp_path):
    entry = next(e for e in entries().values() if e.file and e.scale == 4)
    art = _artifact(tmp_path / "q.safetensors", entry.sha256)
    assert bench_pte.fp_source(art, None) == entry.path
    assert bench_pte.fp_source(art, entry.name) == entry.path


def test_another_fp_model_is_refused(tmp_path):
    x4, x2 = (next(e for e in entries().values() if e.file and e.scale == s) for s in (4, 2))
    art = _artifact(tmp_path / "q.safetensors", x4.sha256)
    with pytest.raises(SystemExit, match="was quantized from FP weights"):
        bench_pte.fp_source(art, x2.name)


def test_unknown_source_needs_model(tmp_path):
    art = _artifact(tmp_path / "q.safetensors", "0" * 64)
    with pytest.raises(SystemExit, match="pass it with --model"):
        bench_pte.fp_source(art, None)


def test_committed_results_were_measured_on_bundled_weights():
    """Every cell of the committed quantization tables names FP weights the zoo still ships, so the tables can be
    regenerated (scripts/quant_results.py --model <that entry>)."""
    cells = sorted((SCRIPTS.parent / "results").rglob("cache/*.json"))  # results/ and results/<older model>/
    assert cells
    for cell in cells:
        assert json.loads(cell.read_text())["fp_sha256"] in BUNDLED, cell.name


class _Busy:  # spends 20 ms of CPU per run on this thread
    def run(self, x):
        t = time.process_time()
        while time.process_time() - t < 0.02:
            pass


class _Idle:  # waits 20 ms per run without using a CPU
    def run(self, x):
        time.sleep(0.02)


def test_latency_reports_cpu_per_wall_second():
    """The CPU share tells a file that keeps a thread busy from one that does not (how a one-thread FP32 baseline
    in a 2-thread benchmark was caught: about 1.0 instead of 2.0)."""
    ms, share = bench_pte.interleaved_ms({"busy": _Busy(), "idle": _Idle()}, (8, 8), rounds=3)
    assert ms["busy"] >= 20 and ms["idle"] >= 20
    assert share["busy"] > 0.5 and share["idle"] < 0.2
