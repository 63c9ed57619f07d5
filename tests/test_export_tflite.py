"""LiteRT export: FP32 vs eager, edgesr INT4 (custom ops + the edgesr delegate) vs fake-quant and the INT4 .pte,
stock INT4 (ai-edge-quantizer) in an unmodified interpreter, op lists, metadata, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.test_export_pte import TILE, _fp_model, _quant_model

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install -e '.[test]')")

from ai_edge_litert import schema_py_generated as fb  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from edgesr.converter import QuantConfig, quantize  # noqa: E402
from edgesr.converter.export.tflite import export_tflite  # noqa: E402
from edgesr.converter.export.tflite.builder import op_names  # noqa: E402
from edgesr.errors import EdgesrError  # noqa: E402
from edgesr.runtime.litert import TfliteError, TfliteModel  # noqa: E402
from edgesr.runtime.session import open_model  # noqa: E402


def _x(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(seed))


def _tensor_types(path) -> list[tuple[int, list[int]]]:
    model = fb.Model.GetRootAs(path.read_bytes(), 0)
    sg = model.Subgraphs(0)
    return [(sg.Tensors(i).Type(), list(sg.Tensors(i).ShapeAsNumpy()) if sg.Tensors(i).ShapeLength() else [])
            for i in range(sg.TensorsLength())]


@pytest.fixture(scope="module")
def fp_tflite(tmp_path_factory):
    m = _fp_model()
    path = tmp_path_factory.mktemp("tflite") / "fp.tflite"
    return m, path, export_tflite(m, path, tile=TILE, source={"path": "test"})


@pytest.fixture(scope="module", params=[4, 2])
def q_tflite(request, tmp_path_factory):
    q = _quant_model(request.param)
    path = tmp_path_factory.mktemp("tflite") / f"w{request.param}.tflite"
    return q, path, export_tflite(q, path, tile=TILE)


def test_fp32_tflite_matches_eager(fp_tflite):
    m, path, report = fp_tflite
    model = TfliteModel(path)
    with torch.no_grad():
        ref = m(_x()).numpy()
    assert np.abs(model.run(_x().numpy()) - ref).max() < 1e-5
    assert model.scale == 2 and model.tile == TILE and model.custom_ops == {}
    assert model.metadata["quant_config"] is None and model.metadata["source"] == {"path": "test"}
    assert model.metadata["layout"] == "NHWC" and model.metadata["format"] == "tflite"


def test_fp32_tflite_ops_and_size(fp_tflite):
    m, path, report = fp_tflite
    names = op_names(path.read_bytes())
    n_block = sum(len(layer.blocks) for layer in m.layers)
    assert not any(n.startswith("Flex") or n == "CUSTOM" for n in names)
    assert names.count("FULLY_CONNECTED") == 6 * n_block and names.count("BATCH_MATMUL") == 2 * n_block
    assert names.count("SOFTMAX") == n_block and names.count("GELU") == n_block
    assert max(len(shape) for _, shape in _tensor_types(path)) <= 4
    # Parameters plus compact bias tables and small index constants: no constant-folded bias or mask.
    param_bytes = 4 * sum(p.numel() for p in m.parameters())
    assert report["bytes"] < param_bytes + 48_000, (report["bytes"], param_bytes)


def test_edgesr_int4_tflite_matches_fake_quant(q_tflite):
    q, path, report = q_tflite
    n_block = sum(len(layer.blocks) for layer in q.layers)
    names = op_names(path.read_bytes())
    assert names.count("EDGESR_SWIN_BLOCK") == n_block and report["custom_ops"] == {"EDGESR_SWIN_BLOCK": n_block}
    assert "FULLY_CONNECTED" not in names and "BATCH_MATMUL" not in names
    assert not any(n.startswith("Flex") for n in names)
    x = _x()
    with torch.no_grad():
        ref = q(x).numpy()
    for threads in (1, 2):
        model = TfliteModel(path, threads=threads)
        assert model.custom_ops == {"EDGESR_SWIN_BLOCK": n_block}
        assert model.metadata["quant_config"]["bits"] == q.quant_config.bits
        out = model.run(x.numpy())
        # The ExecuTorch issue's tolerance (see test_export_pte): float rounding, a tie may flip one code.
        assert np.abs(out - ref).mean() < 1e-5
        assert np.abs(out - ref).max() < 1e-3


def test_edgesr_int4_tflite_equals_int4_pte(tmp_path):
    pytest.importorskip("executorch", reason="executorch is not installed (pip install -e '.[test]')")
    from edgesr.converter.export.executorch import export_pte
    from edgesr.runtime.pte import PteModel

    q = _quant_model(4)
    export_tflite(q, tmp_path / "q.tflite", tile=TILE)
    export_pte(q, tmp_path / "q.pte", tile=TILE)
    x = _x(3).numpy()
    a, b = TfliteModel(tmp_path / "q.tflite").run(x), PteModel(tmp_path / "q.pte").run(x)
    # Same blob, same native kernels; only XNNPACK's conv / LayerNorm rounding differs between the runtimes.
    assert np.abs(a - b).mean() < 1e-5 and np.abs(a - b).max() < 1e-3


def test_custom_ops_exactly_where_the_quant_config_says(tmp_path):
    """Block (0, 0) left FP, block (1, 1)'s MLP left FP: that block's q, k, v, proj and both attention matmuls
    become per-layer custom ops, blocks (0, 1) and (1, 0) one EDGESR_SWIN_BLOCK each."""
    from edgesr.converter.calibrate import calibrate

    config = QuantConfig(bits=4, init="minmax", exclude=("layers.0.blocks.0.*", "layers.1.blocks.1.mlp.*"))
    q = quantize(_fp_model(), config)
    calibrate(q, torch.rand(2, 3, *TILE), config)
    path = tmp_path / "partial.tflite"
    report = export_tflite(q, path, tile=TILE)
    names = op_names(path.read_bytes())
    assert report["custom_ops"] == {"EDGESR_QBMM": 2, "EDGESR_QLINEAR": 4, "EDGESR_SWIN_BLOCK": 2}
    assert names.count("EDGESR_SWIN_BLOCK") == 2 and names.count("EDGESR_QLINEAR") == 4
    assert names.count("FULLY_CONNECTED") == 6 + 2 and names.count("BATCH_MATMUL") == 2  # the FP layers
    x = _x(2)
    with torch.no_grad():
        ref = q(x).numpy()
    for threads in (1, 2):
        out = TfliteModel(path, threads=threads).run(x.numpy())
        assert np.abs(out - ref).mean() < 1e-5 and np.abs(out - ref).max() < 1e-3


@pytest.mark.parametrize("int8_convs", [False, True])
def test_stock_int4_runs_in_an_unmodified_interpreter(tmp_path, fp_tflite, int8_convs):
    m, fp_path, _ = fp_tflite
    path = tmp_path / "stock.tflite"
    report = export_tflite(m, path, tile=TILE, stock_int4=True, stock_int8_convs=int8_convs)
    types = _tensor_types(path)
    n_block = sum(len(layer.blocks) for layer in m.layers)
    int4 = [shape for t, shape in types if t == fb.TensorType.INT4]
    int8 = [shape for t, shape in types if t == fb.TensorType.INT8 and len(shape) == 4]
    assert len(int4) == 6 * n_block and all(len(s) == 2 for s in int4)  # every FC weight, per channel
    assert len(int8) == (5 if int8_convs else 0)  # conv_first, 2 group convs, conv_after_body, upsampler
    model = TfliteModel(path)
    assert model.custom_ops == {} and model.metadata["stock_int4"][0]["operation"] == "FULLY_CONNECTED"
    assert report["bytes"] < fp_path.stat().st_size
    # A plain interpreter, no edgesr code: the profile users pick when they cannot ship a delegate.
    interp = Interpreter(str(path), num_threads=1)
    interp.allocate_tensors()
    x = _x().numpy()
    interp.set_tensor(interp.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1).copy())
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    err = np.abs(out - ref)
    # Quantized, so not equal, but close: measured 5% of the output's spread on this deliberately large-weight
    # model (the trained x4 model's PSNR is in results/tflite_x4.md).
    assert 0 < err.mean() < 0.1 * ref.std()
    np.testing.assert_allclose(model.run(x), out, atol=1e-6)


def test_stock_int4_refuses_a_quantized_model(tmp_path):
    with pytest.raises(EdgesrError, match="stock INT4 profile quantizes an FP model"):
        export_tflite(_quant_model(4), tmp_path / "x.tflite", tile=TILE, stock_int4=True)


def test_session_opens_tflite_with_the_auto_backend(q_tflite):
    q, path, _ = q_tflite
    model = open_model(path)
    assert isinstance(model, TfliteModel) and model.scale == 2
    with pytest.raises(TfliteError, match="does not match the exported tile"):
        model.run(np.zeros((1, 3, 16, 16), np.float32))


def test_truncated_foreign_and_plain_files(tmp_path, q_tflite, fp_tflite):
    _, path, _ = q_tflite
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(TfliteError, match="truncated or corrupt|cannot prepare"):
        TfliteModel(trunc)
    foreign = tmp_path / "photo.tflite"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(TfliteError, match="not a LiteRT model"):
        TfliteModel(foreign)
    with pytest.raises(TfliteError, match="no such file"):
        TfliteModel(tmp_path / "missing.tflite")
    # A valid .tflite that edgesr did not write: the graph without the descriptor.
    from edgesr.converter.export.tflite.builder import Graph

    g = Graph()
    x = g.tensor([1, 4])
    y = g.tensor([1, 4])
    g.op(fb.BuiltinOperator.RELU, [x], [y])
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(g.serialize([x], [y], {}, "plain"))
    with pytest.raises(TfliteError, match="not exported by edgesr"):
        TfliteModel(plain)


def test_custom_ops_need_the_edgesr_delegate(q_tflite):
    _, path, _ = q_tflite
    interp = Interpreter(str(path))
    with pytest.raises(RuntimeError, match="EDGESR_SWIN_BLOCK"):
        interp.allocate_tensors()


def test_missing_delegate_library_is_a_clear_error(q_tflite, fp_tflite):
    _, path, _ = q_tflite
    code = ("import sys\nfrom edgesr.runtime.litert import TfliteModel, TfliteError\n"
            f"try:\n    TfliteModel({str(path)!r})\nexcept TfliteError as e:\n    print('ERR', e); sys.exit(3)\n")
    env = {**os.environ, "EDGESR_LITERT_DELEGATE": "/nonexistent/libedgesr_litert_delegate.so"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 3 and "EDGESR_LITERT_DELEGATE" in proc.stdout and "Traceback" not in proc.stderr
    # An FP32 file needs no delegate at all.
    code_fp = f"from edgesr.runtime.litert import TfliteModel\nTfliteModel({str(fp_tflite[1])!r})\nprint('OK')\n"
    proc = subprocess.run([sys.executable, "-c", code_fp], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "OK" in proc.stdout


def test_delegate_rejects_unknown_options():
    from ai_edge_litert.interpreter import load_delegate

    from edgesr.runtime.litert import delegate_library

    assert load_delegate(str(delegate_library()), {"threads": "2"}) is not None  # the library itself loads
    with pytest.raises(ValueError):
        load_delegate(str(delegate_library()), {"thread": "2"})


def test_cli_exports_tflite(tmp_path, q_tflite):
    from edgesr.converter.artifact import save_artifact

    q, _, _ = q_tflite
    art = tmp_path / "q.safetensors"
    save_artifact(q, art)
    out = tmp_path / "q.tflite"
    proc = subprocess.run([sys.executable, "-m", "edgesr.cli", "export", "--format", "tflite", "--quant", str(art),
                           "--tile", f"{TILE[0]}x{TILE[1]}", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["custom_ops"] == {"EDGESR_SWIN_BLOCK": sum(len(layer.blocks) for layer in q.layers)}
    assert TfliteModel(out).metadata["source"]["path"] == str(art)
    # Tiled inference through the runtime equals tiled fake-quant (to one level of 255).
    from edgesr.runtime.session import TorchModel, upscale

    img = np.random.default_rng(3).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    a = upscale(open_model(out), img, overlap=4)
    b = upscale(TorchModel(q, TILE), img, overlap=4)
    assert a.shape == (26, 58, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    again = subprocess.run([sys.executable, "-m", "edgesr.cli", "export", "--format", "tflite", "--quant", str(art),
                            "--tile", f"{TILE[0]}x{TILE[1]}", "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.parametrize("flags,message", [(["--dynamic"], "needs --format onnx"),
                                           (["--per-layer"], "need --format pte"),
                                           (["--stock-int8-convs"], "goes with --format tflite --stock-int4")])
def test_cli_refuses_options_of_other_formats(tmp_path, capsys, flags, message):
    from edgesr.cli import main

    out = tmp_path / "x.tflite"
    assert main(["export", "--format", "tflite", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err and not out.exists()
