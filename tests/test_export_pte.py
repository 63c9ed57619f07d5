"""ExecuTorch export: FP32 .pte == eager, INT4 .pte == fake-quant, metadata, clear errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import TINY

executorch = pytest.importorskip("executorch", reason="executorch is not installed (pip install -e '.[test]')")

from edgesr.converter import QuantConfig, quantize  # noqa: E402
from edgesr.converter.export.executorch import export_pte  # noqa: E402
from edgesr.converter.export.graph import ExportableSwinIR  # noqa: E402
from edgesr.converter.quant import quantizers  # noqa: E402
from edgesr.models.swinir import SwinIR, SwinIRConfig  # noqa: E402
from edgesr.runtime.pte import PteError, PteModel  # noqa: E402

TILE = (8, 12)  # not square, to catch H/W mix-ups


def _fp_model() -> SwinIR:
    torch.manual_seed(0)
    m = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    with torch.no_grad():  # weights large enough that every block matters
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    return m


def _quant_model(bits: int = 4) -> SwinIR:
    from edgesr.converter.calibrate import calibrate

    config = QuantConfig(bits=bits, init="minmax")
    q = quantize(_fp_model(), config)
    calibrate(q, torch.rand(2, 3, *TILE), config)
    return q


@pytest.fixture(scope="module")
def fp_pte(tmp_path_factory):
    m = _fp_model()
    path = tmp_path_factory.mktemp("pte") / "fp.pte"
    report = export_pte(m, path, tile=TILE, source={"path": "test"})
    return m, path, report


@pytest.fixture(scope="module", params=["blocks", "attention", "layers"])
def int4_pte(request, tmp_path_factory):
    """blocks: one native call per Swin block (default); attention / layers: per-layer calls with the fused
    attention op or with two quantized matmuls around XNNPACK's softmax."""
    q = _quant_model()
    path = tmp_path_factory.mktemp("pte") / "int4.pte"
    report = export_pte(q, path, tile=TILE, fuse_attention=request.param == "attention",
                        fuse_blocks=request.param == "blocks")
    report["mode"] = request.param
    return q, path, report


def test_exportable_graph_matches_model():
    m = _fp_model()
    x = torch.rand(1, 3, *TILE)
    with torch.no_grad():
        assert (ExportableSwinIR(m, TILE)(x) - m(x)).abs().max() < 1e-5


def test_fp32_pte_matches_eager_and_is_one_delegate(fp_pte):
    m, path, report = fp_pte
    assert report["delegates"] == {"XnnpackBackend": 1}
    pte = PteModel(path)
    x = torch.rand(1, 3, *TILE)
    with torch.no_grad():
        ref = m(x).numpy()
    assert np.abs(pte.run(x.numpy()) - ref).max() < 1e-5
    assert pte.scale == 2 and pte.tile == TILE
    assert pte.metadata["window_size"] == 4 and pte.metadata["quant_config"] is None
    assert pte.metadata["source"] == {"path": "test"}


def test_int4_pte_matches_fake_quant(int4_pte):
    q, path, report = int4_pte
    n_linear = sum(1 for n in quantizers(q) if n.endswith(".weight"))
    n_matmul = sum(1 for n in quantizers(q) if n.endswith(".a"))
    n_block = sum(len(layer.blocks) for layer in q.layers)
    # One partition per block; or one per linear plus one per attention (fused) or one per matmul.
    want = {"blocks": n_block, "attention": n_linear + n_matmul // 2, "layers": n_linear + n_matmul}
    assert report["delegates"]["EdgesrInt4Backend"] == want[report["mode"]]
    pte = PteModel(path)
    assert pte.metadata["quant_config"]["bits"] == 4
    x = torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = q(x).numpy()
    for threads in (1, 2):
        pte.set_threads(threads)
        out = pte.run(x.numpy())
        # Integer kernels equal fake-quant up to float rounding (measured: mean 2e-6, max 1.1e-5); a code
        # flipped by that rounding would move a few outputs by one quantization step, hence the looser max.
        assert np.abs(out - ref).mean() < 1e-5
        assert np.abs(out - ref).max() < 1e-3


def test_thread_change_reloads_the_program(fp_pte):
    """XNNPACK binds the thread pool when a program's delegates are built: after a resize the whole program
    must be reloaded, or the FP32 file keeps running on one thread (the benchmark's 2-thread baseline did)."""
    from edgesr.runtime.pte import set_threads

    _, path, _ = fp_pte
    pte = PteModel(path, threads=1)
    x = np.random.default_rng(3).random((1, 3, *TILE), dtype=np.float32)
    one, first = pte.run(x), pte._program
    torch_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        set_threads(2, force=True)
        two = pte.run(x)
        assert pte._program is not first
        assert np.abs(two - one).max() < 1e-5
    finally:
        torch.set_num_threads(torch_threads)
        set_threads(1, force=True)


def test_wrong_input_shape_is_a_clear_error(fp_pte):
    _, path, _ = fp_pte
    with pytest.raises(PteError, match="does not match the exported tile"):
        PteModel(path).run(np.zeros((1, 3, 16, 16), np.float32))


def test_truncated_and_foreign_files(tmp_path, int4_pte):
    _, path, _ = int4_pte
    trunc = tmp_path / "trunc.pte"
    trunc.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PteError, match="truncated or corrupt"):
        PteModel(trunc)
    foreign = tmp_path / "photo.pte"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(PteError, match="not an ExecuTorch program"):
        PteModel(foreign)
    with pytest.raises(PteError, match="no such file"):
        PteModel(tmp_path / "missing.pte")


def test_missing_delegate_library_is_a_clear_error(int4_pte, tmp_path):
    _, path, _ = int4_pte
    code = (
        "import sys\nfrom edgesr.runtime.pte import PteModel, PteError\n"
        f"try:\n    PteModel({str(path)!r})\nexcept PteError as e:\n    print('ERR', e); sys.exit(3)\n"
    )
    env = {"EDGESR_ET_DELEGATE": str(tmp_path / "nope.so"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "EDGESR_ET_DELEGATE" in proc.stdout and "no such file" in proc.stdout


def test_export_cli(tmp_path):
    from edgesr.cli import main
    from edgesr.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(_fp_model(), ckpt)
    out = tmp_path / "tiny.pte"
    assert main(["export", "--model", str(ckpt), "--tile", "8x12", "--out", str(out)]) == 0
    assert PteModel(out).tile == TILE
    assert main(["export", "--model", str(ckpt), "--tile", "8x12", "--out", str(out)]) == 2  # exists, no --force
    assert main(["export", "--model", str(ckpt), "--tile", "10", "--out", str(tmp_path / "b.pte")]) == 2
    assert not (tmp_path / "b.pte").exists()
    # mistakes caught before any lowering: format vs file name, --model with --quant, a missing artifact,
    # an output path that is a folder or cannot be written
    bad = [["--format", "onnx", "--out", str(tmp_path / "c.pte")],
           ["--quant", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "d.pte")],
           ["--out", str(tmp_path)], ["--out", "/proc/edgesr-test.pte"]]
    for extra in bad:
        assert main(["export", "--model", str(ckpt), "--tile", "8x12", *extra]) == 2
    assert main(["export", "--quant", str(ckpt), "--model", str(ckpt), "--out", str(tmp_path / "e.pte")]) == 2
    assert not any((tmp_path / f"{n}.pte").exists() for n in "cde")


def test_tiled_pte_matches_tiled_eager(fp_pte):
    """The runtime drives a .pte and the eager model through the same tile plan; outputs agree."""
    from edgesr.runtime.session import TorchModel, open_model, upscale

    m, path, _ = fp_pte
    pte = open_model(path)
    assert isinstance(pte, PteModel) and pte.tile == TILE
    img = np.random.default_rng(3).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    a = upscale(pte, img, overlap=4)
    b = upscale(TorchModel(m, TILE), img, overlap=4)
    assert a.shape == (26, 58, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_partly_quantized_model_keeps_fp_layers_and_falls_back_per_layer(tmp_path):
    """A QuantConfig that leaves block 0 FP and block (1, 1)'s MLP FP: block 0 has no edgesr op, block (1, 1)
    is not uniformly quantized and is lowered per layer, the other two blocks are one op each."""
    from edgesr.converter.calibrate import calibrate

    config = QuantConfig(bits=4, init="minmax", exclude=("layers.0.blocks.0.*", "layers.1.blocks.1.mlp.*"))
    q = quantize(_fp_model(), config)
    calibrate(q, torch.rand(2, 3, *TILE), config)
    path = tmp_path / "partial.pte"
    report = export_pte(q, path, tile=TILE)
    # blocks (0, 1) and (1, 0): 1 each; block (1, 1): q, k, v, proj and the two matmuls.
    assert report["delegates"]["EdgesrInt4Backend"] == 2 + 6
    x = torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = q(x).numpy()
    out = PteModel(path).run(x.numpy())
    assert np.abs(out - ref).mean() < 1e-5 and np.abs(out - ref).max() < 1e-3


def _pte_runner():
    """The C API of converter/export/executorch/runtime/edgesr_pte_runner.cpp (what the Android app's JNI glue
    calls), built against the wheel's runtime; the delegate library (EdgesrInt4Backend) is loaded first."""
    import ctypes

    from edgesr.converter.export.executorch.build import build_pte_runner
    from edgesr.runtime.pte import load_delegate

    load_delegate()
    lib = ctypes.CDLL(str(build_pte_runner()))
    lib.edgesr_pte_open.restype = ctypes.c_void_p
    lib.edgesr_pte_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    lib.edgesr_pte_metadata.restype = ctypes.c_char_p
    lib.edgesr_pte_metadata.argtypes = [ctypes.c_void_p]
    lib.edgesr_pte_shapes.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.edgesr_pte_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.edgesr_pte_close.argtypes = [ctypes.c_void_p]
    return lib


def test_c_runner_equals_the_python_runtime(fp_pte, int4_pte):
    """The app's C++ runner (own loader, planned memory, metadata method) gives the Python runtime's bytes."""
    import ctypes
    import json

    lib = _pte_runner()
    err = ctypes.create_string_buffer(512)
    x = torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(3)).numpy()
    for _, path, _ in (fp_pte, int4_pte):
        py = PteModel(path)
        py.set_threads(1)
        handle = lib.edgesr_pte_open(str(path).encode(), 1, err, len(err))
        assert handle, err.value
        try:
            assert json.loads(lib.edgesr_pte_metadata(handle)) == py.metadata
            shapes = np.zeros(8, np.int32)
            lib.edgesr_pte_shapes(handle, shapes.ctypes.data, shapes[4:].ctypes.data)
            assert list(shapes) == [1, 3, *TILE, 1, 3, TILE[0] * 2, TILE[1] * 2]
            out = np.full((1, 3, TILE[0] * 2, TILE[1] * 2), np.nan, np.float32)
            assert lib.edgesr_pte_run(handle, x.ctypes.data, out.ctypes.data, err, len(err)) == 0, err.value
            assert np.array_equal(out, py.run(x))
        finally:
            lib.edgesr_pte_close(handle)


def test_c_runner_errors_are_messages(tmp_path, int4_pte):
    import ctypes

    lib = _pte_runner()
    err = ctypes.create_string_buffer(512)
    _, path, _ = int4_pte
    trunc = tmp_path / "trunc.pte"
    trunc.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "photo.pte"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    for bad, message in ((tmp_path / "missing.pte", b"cannot open"), (foreign, b"not an ExecuTorch program"),
                         (trunc, b"truncated or corrupt")):
        assert not lib.edgesr_pte_open(str(bad).encode(), 1, err, len(err))
        assert message in err.value, err.value
