"""`edgesr upscale`: tiled upscaling of files and folders with clear errors for user mistakes."""

import numpy as np
import pytest
import torch
from PIL import Image

from edgesr.cli import main
from edgesr.models.checkpoint import save_checkpoint
from edgesr.models.swinir import SwinIR, SwinIRConfig
from tests.conftest import TINY


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    m = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(m, path)
    return m, path


def _img(path, h, w, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_upscale_folder_and_overwrite_rules(tmp_path, tiny_ckpt):
    m, ckpt = tiny_ckpt
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png", 10, 14)
    _img(src / "b.jpg", 7, 5, seed=1)
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), "--model", str(ckpt), "--tile", "8", "--overlap", "4", "--quiet"]
    assert main(args) == 0
    a = np.asarray(Image.open(out / "a.png"))
    assert a.shape == (20, 28, 3) and np.asarray(Image.open(out / "b.png")).shape == (14, 10, 3)
    # The CLI (streamed, file round trip) and the in-memory runtime follow one tile plan: identical pixels.
    from edgesr.runtime.session import TorchModel, upscale

    again = upscale(TorchModel(m, (8, 8)), np.asarray(Image.open(src / "a.png")), overlap=4)
    assert np.array_equal(again, a)
    assert main(args) == 2  # outputs exist
    assert main(args + ["--force"]) == 0


def test_upscale_errors(tmp_path, tiny_ckpt, capsys):
    _, ckpt = tiny_ckpt
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["upscale", str(bad), "-o", str(tmp_path / "o"), "--model", str(ckpt), "--quiet"]) == 2
    assert "cannot read image" in capsys.readouterr().err
    good = tmp_path / "g.png"
    _img(good, 9, 9)
    assert main(["upscale", str(good), "-o", str(tmp_path / "o"), "--model", str(ckpt), "--max-pixels", "50",
                 "--quiet"]) == 2
    assert "pixel limit" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert main(["upscale", str(good), "-o", str(tmp_path / "o"), "--model", str(good), "--quiet"]) == 2
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["upscale", str(good), "-o", str(blocker / "sub"), "--model", str(ckpt), "--quiet"]) == 2
    assert "output folder" in capsys.readouterr().err
    assert not list(tmp_path.glob("o/*.png"))  # no output from failed runs


def test_session_api(tiny_ckpt):
    from PIL import Image as PILImage

    from edgesr.errors import EdgesrError
    from edgesr.runtime.backends import backends
    from edgesr.runtime.session import Session

    assert list(backends())[-1] == "pytorch"  # the catch-all is tried last
    assert "executorch" in backends()
    _, ckpt = tiny_ckpt
    s = Session(ckpt, tile=(8, 8), overlap=4)
    img = np.random.default_rng(1).integers(0, 256, (11, 13, 3), dtype=np.uint8)
    out = s.upscale(img)
    assert out.shape == (22, 26, 3) and out.dtype == np.uint8
    assert np.array_equal(s.upscale(PILImage.fromarray(img)), out)
    f = s.upscale(img.astype(np.float32) / 255.0)
    assert f.dtype == np.float32 and np.allclose(f * 255.0, out, atol=1e-3)
    gray = s.upscale(img[..., 0])
    assert gray.shape == (22, 26) and gray.dtype == np.uint8
    assert s.upscale(img[..., :1]).shape == (22, 26, 1)
    with pytest.warns(UserWarning, match="alpha"):
        assert np.array_equal(s.upscale(np.dstack([img, img[..., :1]])), out)
    wide = s.upscale(img.astype(np.uint16) * 257)
    assert wide.dtype == np.uint16 and np.array_equal(wide // 257, out)
    with pytest.raises(EdgesrError, match="array, got shape"):
        s.upscale(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(EdgesrError, match="unknown backend"):
        Session(ckpt, backend="tflite")


def test_streamed_png_equals_in_memory_result(tmp_path, tiny_ckpt):
    """Band-by-band output written with pypng == the whole-array tiled result."""
    from edgesr.runtime.session import TorchModel, upscale

    m, ckpt = tiny_ckpt
    src = tmp_path / "p.png"
    _img(src, 21, 30, seed=5)
    out = tmp_path / "p_x2.png"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(ckpt), "--tile", "8", "--overlap", "4",
                 "--quiet"]) == 0
    want = upscale(TorchModel(m, (8, 8)), np.asarray(Image.open(src)), overlap=4)
    assert np.array_equal(np.asarray(Image.open(out)), want)


def test_interrupted_upscale_leaves_no_file(tmp_path, tiny_ckpt, monkeypatch):
    from edgesr.runtime import session

    _, ckpt = tiny_ckpt
    src = tmp_path / "i.png"
    _img(src, 24, 24)
    calls = {"n": 0}
    orig = session.TorchModel.run

    def flaky(self, x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return orig(self, x)

    monkeypatch.setattr(session.TorchModel, "run", flaky)
    out = tmp_path / "o"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(ckpt), "--tile", "8", "--quiet"]) == 130
    assert not out.exists()  # no partial PNG, and the folder this run created is gone again


def test_upscale_refuses_unsafe_outputs_and_bad_tiling(tmp_path, tiny_ckpt, capsys):
    _, ckpt = tiny_ckpt
    src = tmp_path / "a.png"
    _img(src, 12, 12)
    before = src.read_bytes()
    base = ["--model", str(ckpt), "--tile", "8", "--quiet"]
    # the output would replace its own input
    assert main(["upscale", str(src), "-o", str(src), "--force", *base]) == 2
    assert "is an input" in capsys.readouterr().err and src.read_bytes() == before
    assert main(["upscale", str(src), "-o", str(tmp_path), "--force", *base]) == 2
    assert src.read_bytes() == before
    # a JPEG name, and one .png name for several inputs
    assert main(["upscale", str(src), "-o", str(tmp_path / "x.jpg"), *base]) == 2
    assert "outputs are PNG" in capsys.readouterr().err and not (tmp_path / "x.jpg").exists()
    other = tmp_path / "b.png"
    _img(other, 12, 12, seed=2)
    assert main(["upscale", str(src), str(other), "-o", str(tmp_path / "two.png"), *base]) == 2
    assert "need an output folder" in capsys.readouterr().err and not (tmp_path / "two.png").exists()
    # overlap as large as the tile (a stride of one pixel), a tile off the window grid, a negative thread count
    assert main(["upscale", str(src), "-o", str(tmp_path / "o1.png"), *base, "--overlap", "8"]) == 2
    assert "smaller than the 8x8 tile" in capsys.readouterr().err
    assert main(["upscale", str(src), "-o", str(tmp_path / "o2.png"), "--model", str(ckpt), "--tile", "6"]) == 2
    assert "multiple of the model's window size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["upscale", str(src), "-o", str(tmp_path / "o3.png"), *base, "--threads", "-1"])
    assert e.value.code == 2
    assert not any((tmp_path / f"o{i}.png").exists() for i in (1, 2, 3))


def test_sigterm_during_upscale_leaves_no_partial_file(tmp_path, tiny_ckpt):
    """The console script turns SIGTERM into the Ctrl-C path, which removes the temporary PNG."""
    import os
    import signal
    import subprocess
    import sys
    import time

    _, ckpt = tiny_ckpt
    src = tmp_path / "big.png"
    _img(src, 256, 256)
    out = tmp_path / "out.png"
    code = ("import sys, time; import edgesr.runtime.upscale as u; orig = u.write_png_bands\n"
            "def slow(path, w, h, bands):\n"
            "    def gen():\n"
            "        for b in bands:\n"
            "            yield b; time.sleep(0.5)\n"
            "    return orig(path, w, h, gen())\n"
            "u.write_png_bands = slow\n"
            "from edgesr.cli import main; sys.argv = ['edgesr'] + sys.argv[1:]; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", code, "upscale", str(src), "-o", str(out), "--model", str(ckpt),
                             "--tile", "32", "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.png.tmp")):
        time.sleep(0.1)
    assert list(tmp_path.glob(".out.png.tmp")), "the upscale never started writing"
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 130 and "interrupted" in proc.stderr.read()
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_failed_upscale_removes_the_folders_it_created(tmp_path, tiny_ckpt):
    _, ckpt = tiny_ckpt
    src = tmp_path / "mixed"
    src.mkdir()
    _img(src / "a.png", 9, 9)
    (src / "z.png").write_bytes(b"not an image")
    out = tmp_path / "new" / "deeper"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(ckpt), "--tile", "8", "--quiet"]) == 2
    assert not (tmp_path / "new").exists()
