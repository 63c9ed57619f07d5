"""ONNX export: FP32 vs eager, 2DQuant as uint4 QDQ vs the fake-quant model (onnxruntime), metadata, errors."""

import numpy as np
import pytest
import torch

from tests.test_export_pte import TILE, _fp_model, _quant_model

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[test]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[test]')")

from edgesr.converter.export.onnx import export_onnx  # noqa: E402
from edgesr.converter.quant import quantizers  # noqa: E402
from edgesr.runtime.onnxrt import OnnxError, OnnxModel  # noqa: E402


def _x(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, *TILE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def fp_onnx(tmp_path_factory):
    m = _fp_model()
    path = tmp_path_factory.mktemp("onnx") / "fp.onnx"
    return m, path, export_onnx(m, path, tile=TILE, source={"path": "test"})


@pytest.fixture(scope="module", params=[4, 3, 2, 8])
def q_onnx(request, tmp_path_factory):
    q = _quant_model(request.param)
    path = tmp_path_factory.mktemp("onnx") / f"w{request.param}.onnx"
    return q, path, export_onnx(q, path, tile=TILE)


def test_fp32_onnx_matches_eager(fp_onnx):
    m, path, report = fp_onnx
    model = OnnxModel(path)
    with torch.no_grad():
        ref = m(_x()).numpy()
    assert np.abs(model.run(_x().numpy()) - ref).max() < 1e-5
    assert report["lowered"] == {} and "QuantizeLinear" not in report["ops"]
    assert model.scale == 2 and model.tile == TILE and model.metadata["quant_config"] is None
    assert model.metadata["source"] == {"path": "test"}


def test_qdq_onnx_matches_fake_quant(q_onnx):
    q, path, report = q_onnx
    bits = q.quant_config.bits
    n_linear = sum(1 for n in quantizers(q) if n.endswith(".weight"))
    n_matmul = sum(1 for n in quantizers(q) if n.endswith(".a"))
    assert report["lowered"] == {"QLinear": n_linear, "QBmm": n_matmul}
    # One activation quantizer per linear, two per attention matmul; weights are stored as codes.
    assert report["ops"]["QuantizeLinear"] == n_linear + 2 * n_matmul
    assert report["ops"]["DequantizeLinear"] == 2 * n_linear + 2 * n_matmul
    proto = onnx.load(path)
    assert proto.opset_import[0].version == 21 and all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    code_type = onnx.TensorProto.UINT4 if bits <= 4 else onnx.TensorProto.UINT8
    codes = [i for i in proto.graph.initializer if "weight_codes" in i.name]
    assert len(codes) == n_linear and all(i.data_type == code_type for i in codes)
    model = OnnxModel(path)
    assert model.metadata["quant_config"]["bits"] == bits
    with torch.no_grad():
        ref = q(_x()).numpy()
    for threads in (1, 2):
        out = OnnxModel(path, threads=threads).run(_x().numpy())
        # The same arithmetic as fake-quant up to float rounding: a value on a rounding tie may flip one code.
        # On the 255-level grid of 8 bits such flips are frequent enough to spread through the network
        # (measured: mean 1.7e-4, max 2.9e-3 on outputs of magnitude 3); at 4 bits and below, max 6e-6.
        mean_tol, max_tol = (1e-3, 1e-2) if bits == 8 else (1e-5, 1e-3)
        assert np.abs(out - ref).mean() < mean_tol
        assert np.abs(out - ref).max() < max_tol


def test_qdq_weights_are_codes_not_floats(q_onnx, fp_onnx):
    q, path, _ = q_onnx
    bits = q.quant_config.bits
    proto, fp = onnx.load(path), onnx.load(fp_onnx[1])
    codes = [i for i in proto.graph.initializer if "weight_codes" in i.name]
    for init in codes:
        count = int(np.prod(init.dims))
        assert len(init.raw_data) == ((count + 1) // 2 if bits <= 4 else count)  # two 4-bit codes per byte

    def floats(m):
        return sum(int(np.prod(i.dims)) for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)

    linear_floats = sum(int(np.prod(i.dims)) for i in codes)
    # Every linear weight left the float initializers (what stays: convs, biases, norms, QDQ scalars).
    assert floats(proto) <= floats(fp) - linear_floats + 8 * len(codes) * 4


def test_errors(tmp_path, fp_onnx):
    _, path, _ = fp_onnx
    with pytest.raises(OnnxError, match="does not match the exported tile"):
        OnnxModel(path).run(np.zeros((1, 3, 16, 16), np.float32))
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OnnxError, match="cannot load the model"):
        OnnxModel(trunc)
    foreign = tmp_path / "photo.onnx"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(OnnxError, match="cannot load the model"):
        OnnxModel(foreign)
    plain = tmp_path / "plain.onnx"
    proto = onnx.load(path)
    del proto.metadata_props[:]
    onnx.save(proto, plain)
    with pytest.raises(OnnxError, match="not exported by edgesr"):
        OnnxModel(plain)
    with pytest.raises(OnnxError, match="no such file"):
        OnnxModel(tmp_path / "missing.onnx")


def test_export_cli_and_session(tmp_path):
    from edgesr.cli import main
    from edgesr.converter.artifact import save_artifact
    from edgesr.runtime.session import TorchModel, open_model, upscale

    q = _quant_model()
    art = tmp_path / "w4.safetensors"
    save_artifact(q, art)
    out = tmp_path / "w4.onnx"
    assert main(["export", "--format", "onnx", "--quant", str(art), "--tile", "8x12", "--out", str(out)]) == 0
    model = open_model(out)
    assert isinstance(model, OnnxModel) and model.tile == TILE
    img = np.random.default_rng(3).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    a = upscale(model, img, overlap=4)
    b = upscale(TorchModel(q, TILE), img, overlap=4)
    assert a.shape == (26, 58, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert main(["export", "--format", "onnx", "--quant", str(art), "--tile", "8x12", "--out", str(out)]) == 2


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "qdq"])
def test_dynamic_onnx_runs_any_window_multiple(tmp_path, quantized):
    m = _quant_model() if quantized else _fp_model()
    path = tmp_path / "dyn.onnx"
    report = export_onnx(m, path, tile=TILE, dynamic=True)
    assert report["tile"] is None and "If" not in report["ops"]
    model = OnnxModel(path, tile=(16, 8))
    assert model.dynamic and model.tile == (16, 8) and model.metadata["tile"] is None
    for hw in (TILE, (16, 8), (24, 20)):
        x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(hw[0]))
        with torch.no_grad():
            ref = m(x).numpy()
        out = model.run(x.numpy())
        assert out.shape == (1, 3, 2 * hw[0], 2 * hw[1])
        assert np.abs(out - ref).max() < 1e-3 and np.abs(out - ref).mean() < 1e-5
    with pytest.raises(OnnxError, match="multiples of 4"):
        model.run(np.zeros((1, 3, 10, 8), np.float32))
    with pytest.raises(OnnxError, match="not a multiple of the model's window"):
        OnnxModel(path, tile=(10, 8))


def test_dynamic_needs_onnx(tmp_path):
    from edgesr.cli import main
    from edgesr.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(_fp_model(), ckpt)
    assert main(["export", "--model", str(ckpt), "--tile", "8x12", "--dynamic", "--out", str(tmp_path / "a.pte")]) == 2
    out = tmp_path / "a.onnx"
    assert main(["export", "--format", "onnx", "--dynamic", "--model", str(ckpt), "--tile", "8x12",
                 "--out", str(out)]) == 0
    assert OnnxModel(out).tile == (64, 64)


def test_qdq_only_where_the_config_quantizes(tmp_path):
    from edgesr.converter import QuantConfig, quantize
    from edgesr.converter.calibrate import calibrate

    config = QuantConfig(bits=4, init="minmax", exclude=("layers.0.blocks.0.*", "layers.1.blocks.1.mlp.*"))
    q = quantize(_fp_model(), config)
    calibrate(q, torch.rand(2, 3, *TILE), config)
    report = export_onnx(q, tmp_path / "partial.onnx", tile=TILE)
    # 4 blocks x 6 linears, less block 0's 6 and block (1, 1)'s fc1 / fc2; 4 x 2 matmuls, less block 0's 2.
    assert report["lowered"] == {"QLinear": 16, "QBmm": 6}
    assert report["ops"]["QuantizeLinear"] == 16 + 2 * 6
    with torch.no_grad():
        ref = q(_x()).numpy()
    out = OnnxModel(tmp_path / "partial.onnx").run(_x().numpy())
    assert np.abs(out - ref).mean() < 1e-5 and np.abs(out - ref).max() < 1e-3


def test_stock_int4_profile(tmp_path, fp_onnx):
    from edgesr.cli import main
    from edgesr.models.checkpoint import save_checkpoint

    m, fp_path, _ = fp_onnx
    path = tmp_path / "stock.onnx"
    report = export_onnx(m, path, tile=TILE, stock_int4=True)
    n_linear = 6 * sum(len(layer.blocks) for layer in m.layers)
    assert report["ops"]["MatMulNBits"] == n_linear and report["stock_int4"]["layers"] == n_linear
    model = OnnxModel(path)
    assert model.metadata["stock_int4"]["block_size"] == 32 and model.metadata["quant_config"] is None
    with torch.no_grad():
        ref = m(_x()).numpy()
    out = model.run(_x().numpy())
    # Weight-only INT4 of this test model's large random weights: close to FP, not equal (measured 5.3%).
    rel = np.abs(out - ref).mean() / np.abs(ref).mean()
    assert 0 < rel < 0.1, rel
    with pytest.raises(ValueError, match="quantizes an FP model"):
        export_onnx(_quant_model(), tmp_path / "x.onnx", tile=TILE, stock_int4=True)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(m, ckpt)
    assert main(["export", "--stock-int4", "--model", str(ckpt), "--tile", "8x12", "--out", str(tmp_path / "a.pte")]) == 2
