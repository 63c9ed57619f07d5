"""The Android app's pure Kotlin module (android_demo/core): compiled with kotlinc and its JVM checks run against
the same golden tile plans as Python (tests/fixtures/tile_plans)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "android_demo" / "core" / "src"
NPM_KOTLINC = Path.home() / ".cache" / "edgesr" / "kotlin" / "node_modules" / "kotlin-compiler" / "bin" / "kotlinc"


def _kotlinc() -> str | None:
    for candidate in (os.environ.get("EDGESR_KOTLINC"), shutil.which("kotlinc"), str(NPM_KOTLINC)):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_kotlin_core_agrees_with_the_golden_plans(tmp_path):
    kotlinc, java = _kotlinc(), shutil.which("java")
    if not kotlinc or not java:
        pytest.skip("Kotlin checks not run: needs java (JDK 17) and kotlinc "
                    "(npm install --prefix ~/.cache/edgesr/kotlin kotlin-compiler@2.4.20, or set EDGESR_KOTLINC)")
    jar = tmp_path / "core.jar"
    sources = sorted(str(p) for p in CORE.rglob("*.kt"))
    proc = subprocess.run([kotlinc, "-jvm-target", "17", "-d", str(jar), *sources], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stdlib = Path(kotlinc).resolve().parent.parent / "lib" / "kotlin-stdlib.jar"
    cases = _tiled_cases(tmp_path / "tiled")
    proc = subprocess.run([java, "-cp", f"{jar}{os.pathsep}{stdlib}", "dev.edgesr.core.CoreTestsKt",
                           str(REPO / "tests" / "fixtures" / "tile_plans"), str(tmp_path / "tiled")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ALL PASSED" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    golden = sorted(p.name for p in (REPO / "tests" / "fixtures" / "tile_plans").glob("*.json"))
    assert all(f"ok golden {name}" in proc.stdout for name in golden)
    assert all(f"ok tiled {name}.json" in proc.stdout for name in cases) and "ok layout" in proc.stdout


def _ramp_model(scale: int):
    """numpy twin of CoreTests.kt's RampModel: nearest-neighbour upscale * 0.75 + ((3x + y + k) mod 5) / 16."""
    def run(tile: np.ndarray) -> np.ndarray:
        th, tw, _ = tile.shape
        y, x, k = np.meshgrid(np.arange(th * scale), np.arange(tw * scale), np.arange(3), indexing="ij")
        ramp = ((3 * x + y + k) % 5).astype(np.float32) * np.float32(0.0625)
        return tile.repeat(scale, 0).repeat(scale, 1) * np.float32(0.75) + ramp
    return run


def _tiled_cases(folder: Path) -> list[str]:
    """Inputs and the desktop runtime's tiled output (runtime/tiling.py, then runtime/session.py's byte
    conversion) for the Kotlin TiledUpscaler to reproduce: odd sizes (window padding), a multi-tile grid, and an
    image smaller than the tile (mirror padding up to it)."""
    from edgesr.runtime.tiling import run_tiled

    folder.mkdir()
    rng = np.random.default_rng(5)
    names = []
    for name, (h, w), (th, tw), scale, window, overlap in (("grid", (37, 53), (16, 12), 2, 4, 4),
                                                           ("small", (7, 10), (16, 16), 3, 8, 4),
                                                           ("wide", (20, 90), (20, 32), 2, 4, 8)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = rgb.astype(np.float32) / np.float32(255)  # float32 division, as the app's b / 255f
        out = run_tiled(image, _ramp_model(scale), (th, tw), overlap, scale, multiple=window)
        (folder / f"{name}.in.rgb").write_bytes(rgb.tobytes())
        (folder / f"{name}.out.rgb").write_bytes(np.floor(np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).tobytes())
        (folder / f"{name}.json").write_text(json.dumps(
            {"height": h, "width": w, "tile_h": th, "tile_w": tw, "scale": scale, "window": window,
             "overlap": overlap}))
        names.append(name)
    return names


def test_android_layer_compiles_against_the_stubs(tmp_path):
    """The app's Kotlin layer (activities, tiled upscaler, delegate glue) and the pure module against minimal
    stand-ins of the framework and LiteRT classes it uses (tests/android_stubs) and the R class aapt2 generates."""
    from tests.android_tools import AAPT2_SKIP, have_aapt2, link_resources

    kotlinc, javac = _kotlinc(), shutil.which("javac")
    if not kotlinc or not javac:
        pytest.skip("needs javac (JDK 17) and kotlinc (npm install --prefix ~/.cache/edgesr/kotlin kotlin-compiler@2.4.20)")
    if not have_aapt2():
        pytest.skip(AAPT2_SKIP)
    assert link_resources(tmp_path / "res").returncode == 0
    classes = tmp_path / "classes"
    java_sources = sorted(str(p) for p in (REPO / "tests" / "android_stubs").rglob("*.java"))
    java_sources += [str(tmp_path / "res" / "gen" / "dev" / "edgesr" / "demo" / "R.java")]
    subprocess.run([javac, "--release", "11", "-d", str(classes), *java_sources], check=True, capture_output=True)
    sources = sorted(str(p) for p in (REPO / "android_demo").rglob("src/main/kotlin/**/*.kt"))
    assert {Path(s).name for s in sources} >= {"NativeLib.kt", "MainActivity.kt", "BenchmarkActivity.kt", "TileModels.kt",
                                                "TiledUpscaler.kt", "TilePlan.kt"}
    proc = subprocess.run([kotlinc, "-jvm-target", "11", "-cp", str(classes), "-d", str(tmp_path / "app.jar"),
                           *sources], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_selftest_pack_writes_the_apps_self_test_files(tmp_path):
    """`edgesr device selftest-pack`: the input and this machine's tiled upscale of it with the same file
    (.tflite or .pte), which the app's self-test compares its own output of that file with."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install -e '.[test]')")
    import numpy as np
    from PIL import Image

    from edgesr.cli import main
    from edgesr.converter.export.tflite import export_tflite
    from edgesr.runtime.session import open_model, upscale
    from tests.test_export_pte import TILE, _quant_model

    from edgesr.converter.export.executorch import export_pte

    q = _quant_model(4)
    out = tmp_path / "pack"
    for name, export in (("w4.tflite", export_tflite), ("w4.pte", export_pte)):  # two packs, one input
        model = tmp_path / name
        export(q, model, tile=TILE)
        assert main(["device", "selftest-pack", "--model", str(model), "--size", "20", "--overlap", "4",
                     "--out", str(out)]) == 0
        lr = np.asarray(Image.open(out / "selftest_input.png"))
        sr = np.asarray(Image.open(out / f"selftest_expected_{name}.png"))
        assert lr.shape == (20, 20, 3) and sr.shape == (40, 40, 3)
        np.testing.assert_array_equal(sr, upscale(open_model(model), lr, 4))
    assert main(["device", "selftest-pack", "--model", str(model), "--out", str(out)]) == 2  # exists, no --force
    other = tmp_path / "other.pte"
    other.write_bytes(model.read_bytes())
    assert main(["device", "selftest-pack", "--model", str(other), "--size", "12", "--out", str(out)]) == 2  # input
