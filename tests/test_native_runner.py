"""edgesr_runner (native/tools/): the INT4 layers of a .tflite run standalone, on the host and on AArch64 under qemu;
integer golden vectors made on x86 give the same bytes on every AArch64 path."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgesr import native
from edgesr.native import runner
from tests.test_export_pte import TILE, _fp_model, _quant_model

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install -e '.[test]')")

from edgesr.converter.export import swin_block  # noqa: E402
from edgesr.converter.export.tflite import export_tflite  # noqa: E402

AARCH64_CC = shutil.which("aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64")
REPO_FIXTURES = Path(__file__).parent / "fixtures"
ARM_CPUS = ["max,sme=off", "cortex-a76", "cortex-a53"]  # i8mm, dotprod, plain NEON paths


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    q = _quant_model(4).eval()
    path = tmp_path_factory.mktemp("runner") / "w4.tflite"
    export_tflite(q, path, tile=TILE)
    return q, path


@pytest.fixture(scope="module")
def host_runner(tmp_path_factory):
    return runner.build_runner(tmp_path_factory.mktemp("host"))


@pytest.fixture(scope="module")
def arm_runner(tmp_path_factory):
    if not AARCH64_CC or not QEMU:
        pytest.skip("AArch64 runner not checked: needs aarch64-linux-gnu-gcc and qemu-aarch64 "
                    "(apt-get install gcc-aarch64-linux-gnu qemu-user)")
    return runner.build_runner(tmp_path_factory.mktemp("arm"), compiler=AARCH64_CC, static=True)


def _tokens(tmp_path, seed=0):
    x = np.random.default_rng(seed).normal(size=(TILE[0] * TILE[1], 12)).astype(np.float32)
    path = tmp_path / "tokens.f32"
    x.tofile(path)
    return x, path


def _run(cmd, model_path, tokens_path, out_path, group=0, extra=()):
    proc = subprocess.run([*cmd, str(model_path), "--input", str(tokens_path), "--output", str(out_path),
                           "--group", str(group), "--repeats", "2", *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), np.fromfile(out_path, np.float32)


def test_runner_equals_the_native_blocks(model, host_runner, tmp_path):
    q, path = model
    x, tokens = _tokens(tmp_path)
    for g, layer in enumerate(q.layers):
        stats, out = _run([str(host_runner)], path, tokens, tmp_path / f"out{g}.f32", group=g)
        assert stats["blocks"] == len(layer.blocks) and stats["tokens"] == TILE[0] * TILE[1] and stats["dim"] == 12
        assert stats["ms_min"] <= stats["ms_median"] <= stats["ms_max"] and stats["isa"] == native.active_isa()
        want = x
        for blk in layer.blocks:  # the same blobs through the Python binding
            want = native.SwinBlock.from_blob(swin_block.block_blob(blk, TILE)).run(want)
        np.testing.assert_array_equal(out, want.reshape(-1))


def test_runner_errors(model, host_runner, tmp_path):
    _, path = model
    bad = tmp_path / "photo.tflite"
    bad.write_bytes(b"\x89PNG" + bytes(64))
    proc = subprocess.run([str(host_runner), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "not an edgesr INT4 .tflite" in proc.stderr
    proc = subprocess.run([str(host_runner), str(path), "--group", "7"], capture_output=True, text=True)
    assert proc.returncode == 1 and "no group 7" in proc.stderr
    short = tmp_path / "short.f32"
    short.write_bytes(bytes(12))
    proc = subprocess.run([str(host_runner), str(path), "--input", str(short)], capture_output=True, text=True)
    assert proc.returncode == 1 and "float32 tokens" in proc.stderr
    proc = subprocess.run([str(host_runner), str(path), "--isa", "no_such_isa"], capture_output=True, text=True)
    assert proc.returncode == 2 and "not available" in proc.stderr


def _golden(tmp_path, bits=4, n=60, k=60, m=257, seed=4):
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 1 << bits, (n, k), dtype=np.uint8)
    x = rng.integers(0, 1 << bits, (m, k), dtype=np.uint8)
    path = tmp_path / f"golden_w{bits}_{n}x{k}.bin"
    runner.write_golden(path, w, x, bits)
    return path, x.astype(np.int64) @ w.astype(np.int64).T


@pytest.mark.parametrize("bits,n,k", [(4, 60, 60), (4, 180, 60), (3, 120, 61), (2, 61, 120), (8, 60, 120)])
def test_golden_vectors_on_the_host(host_runner, tmp_path, bits, n, k):
    path, ref = _golden(tmp_path, bits, n, k)
    for isa in native.available_isas():
        out = tmp_path / f"acc_{isa}.bin"
        proc = subprocess.run([str(host_runner), "--golden", str(path), str(out), "--isa", isa], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(runner.read_accumulators(out, *ref.shape), ref)


@pytest.mark.parametrize("cpu", ARM_CPUS)
def test_aarch64_golden_vectors_equal_x86(arm_runner, host_runner, tmp_path, cpu):
    """Golden vectors written and answered on x86; every AArch64 path must give the same bytes."""
    for bits, n, k in [(4, 60, 60), (3, 120, 61), (2, 61, 120), (8, 60, 120)]:
        path, ref = _golden(tmp_path, bits, n, k)
        x86, arm = tmp_path / "x86.bin", tmp_path / "arm.bin"
        subprocess.run([str(host_runner), "--golden", str(path), str(x86)], check=True)
        proc = subprocess.run([QEMU, "-cpu", cpu, str(arm_runner), "--golden", str(path), str(arm)], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert x86.read_bytes() == arm.read_bytes()
        np.testing.assert_array_equal(runner.read_accumulators(arm, *ref.shape), ref)


@pytest.mark.parametrize("cpu", ARM_CPUS)
def test_aarch64_blocks_equal_x86(model, arm_runner, host_runner, tmp_path, cpu):
    """The whole INT4 blocks of the model on AArch64 (under qemu) against x86: count of differing values."""
    _, path = model
    _, tokens = _tokens(tmp_path, seed=1)
    _, x86 = _run([str(host_runner)], path, tokens, tmp_path / "x86.f32", group=1)
    stats, arm = _run([QEMU, "-cpu", cpu, str(arm_runner)], path, tokens, tmp_path / "arm.f32", group=1)
    assert stats["isa"] == {"max,sme=off": "neon_i8mm", "cortex-a76": "neon_dotprod", "cortex-a53": "neon"}[cpu]
    assert int((x86 != arm).sum()) == 0


@pytest.mark.parametrize("cpu,features", [("max,sme=off", "fp asimd asimddp i8mm"), ("cortex-a53", "fp asimd")])
def test_device_bench_end_to_end_with_a_fake_adb(model, arm_runner, tmp_path, cpu, features):
    """`edgesr device bench` against an adb double whose device is a folder and whose CPU is qemu."""
    import os
    import sys

    from edgesr.cli import main

    _, path = model
    root = tmp_path / "device"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text(f"processor\t: 0\nFeatures\t: {features}\nCPU part\t: 0xd0b\n")
    adb = f"{sys.executable} {REPO_FIXTURES / 'fake_adb.py'}"
    env = {"FAKE_ADB_ROOT": str(root), "FAKE_ADB_QEMU_CPU": cpu}
    report_path = tmp_path / "device.json"
    from PIL import Image

    Image.fromarray(np.random.default_rng(5).integers(0, 256, (11, 18, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rc = main(["device", "bench", "--model", str(path), "--adb", adb, "--runner", str(arm_runner), "--threads",
                   "1", "2", "--repeats", "2", "--warmup", "0", "--json", str(report_path), "--strict",
                   "--image", str(tmp_path / "photo.png"), "--overlap", "4"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert rc == 0
    report = json.loads(report_path.read_text())
    has_i8mm = "i8mm" in features
    assert report["device"] == {"abi": "arm64-v8a", "dotprod": has_i8mm, "i8mm": has_i8mm, "sme": False}
    assert [(r["group"], r["threads"]) for r in report["runs"]] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert {r["isa"] for r in report["runs"]} == {"neon_i8mm" if has_i8mm else "neon"}
    assert all(r["differing_values"] == 0 for r in report["runs"])
    # The whole image on the "device" (whole INT4 model, shared tile plan) equals this machine's, pixel for pixel.
    assert [r["threads"] for r in report["image"]] == [1, 2]
    assert all(r["differing_values"] == 0 and r["output"] == [36, 22] and r["tiles"] >= 2 for r in report["image"])
    assert not (root / "data/local/tmp/edgesr").exists()  # cleaned up on the device


def test_device_bench_times_whole_files_with_benchmark_model(model, arm_runner, tmp_path):
    """--benchmark-model: the FP32 and INT4 files through LiteRT's tool on the device (here a double that checks
    its flags and the pushed files), per tile and per image."""
    import os
    import sys

    from edgesr.cli import main

    q, path = model
    fp32 = tmp_path / "fp32.tflite"
    export_tflite(_fp_model(), fp32, tile=TILE)
    root = tmp_path / "device"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text("Features\t: fp asimd asimddp\n")
    delegate = tmp_path / "libedgesr_litert_delegate.so"
    delegate.write_bytes(b"\x7fELF stand-in")  # only pushed and checked for presence by the double
    report_path = tmp_path / "report.json"
    os.environ.update(FAKE_ADB_ROOT=str(root), FAKE_ADB_QEMU_CPU="cortex-a76")
    try:
        rc = main(["device", "bench", "--model", str(path), "--adb", f"{sys.executable} {REPO_FIXTURES / 'fake_adb.py'}",
                   "--runner", str(arm_runner), "--threads", "1", "2", "--repeats", "2", "--warmup", "0",
                   "--benchmark-model", str(REPO_FIXTURES / "fake_benchmark_model.py"), "--fp32", str(fp32),
                   "--delegate", str(delegate), "--image-size", "40x30", "--overlap", "2", "--json", str(report_path)])
    finally:
        os.environ.pop("FAKE_ADB_ROOT")
        os.environ.pop("FAKE_ADB_QEMU_CPU")
    assert rc == 0
    report = json.loads(report_path.read_text())
    # The double answers 200 ms / threads for FP32 and half that with the delegate: parsed, not invented here.
    assert report["whole_model_ms"] == {"1": {"fp32": 200.0, "int4": 100.0}, "2": {"fp32": 100.0, "int4": 50.0}}
    from edgesr.runtime.tiling import plan_tiles

    assert report["per_image"]["tiles"] == plan_tiles(30, 40, TILE, 2, 2).count


def test_device_bench_errors(model, tmp_path):
    from edgesr.cli import main

    _, path = model
    assert main(["device", "bench", "--model", str(tmp_path / "missing.tflite")]) == 2
    assert main(["device", "bench", "--model", str(path), "--adb", str(tmp_path / "no-adb"),
                 "--runner", str(path)]) == 2


def test_litert_delegate_cross_builds_for_aarch64():
    if not AARCH64_CC:
        pytest.skip("needs aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)")
    from edgesr.converter.export.tflite.build import build_delegate

    lib = build_delegate(compiler=AARCH64_CC)
    head = lib.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    nm = shutil.which("aarch64-linux-gnu-nm") or shutil.which("nm")
    symbols = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    assert "tflite_plugin_create_delegate" in symbols and "tflite_plugin_destroy_delegate" in symbols


def _tile_file(tmp_path, seed=7):
    x = np.random.default_rng(seed).random((1, 3, *TILE), dtype=np.float32)
    path = tmp_path / "tile.f32"
    x.transpose(0, 2, 3, 1).tofile(path)
    return x, path


def test_whole_graph_mode_equals_litert(model, host_runner, tmp_path):
    """--full interprets the whole INT4 file in C (convs, LayerNorms, pixel shuffle, the blocks): it matches LiteRT
    with the edgesr delegate up to float rounding (XNNPACK's conv sums in another order)."""
    from edgesr.runtime.litert import TfliteModel

    _, path = model
    x, tile = _tile_file(tmp_path)
    out = tmp_path / "out.f32"
    proc = subprocess.run([str(host_runner), str(path), "--full", "--input", str(tile), "--output", str(out),
                           "--repeats", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["mode"] == "full" and stats["input"] == [*TILE, 3] and stats["output"] == [2 * TILE[0], 2 * TILE[1], 3]
    got = np.fromfile(out, np.float32).reshape(1, 2 * TILE[0], 2 * TILE[1], 3).transpose(0, 3, 1, 2)
    want = TfliteModel(path).run(x)
    assert np.abs(got - want).mean() < 1e-5 and np.abs(got - want).max() < 1e-3


def test_whole_graph_mode_refuses_files_it_cannot_run(host_runner, tmp_path):
    fp = tmp_path / "fp32.tflite"
    from tests.test_export_pte import _fp_model

    export_tflite(_fp_model(), fp, tile=TILE)
    proc = subprocess.run([str(host_runner), str(fp), "--full"], capture_output=True, text=True)
    assert proc.returncode == 1 and "not supported in whole-graph mode" in proc.stderr


@pytest.mark.parametrize("cpu", ARM_CPUS)
def test_aarch64_whole_model_equals_x86(model, arm_runner, host_runner, tmp_path, cpu):
    """The whole INT4 model, standalone, on every AArch64 path under qemu: the same bytes as on x86."""
    _, path = model
    _, tile = _tile_file(tmp_path)
    x86, arm = tmp_path / "x86.f32", tmp_path / "arm.f32"
    subprocess.run([str(host_runner), str(path), "--full", "--input", str(tile), "--output", str(x86), "--repeats", "1",
                    "--warmup", "0"], check=True, capture_output=True)
    proc = subprocess.run([QEMU, "-cpu", cpu, str(arm_runner), str(path), "--full", "--input", str(tile), "--output",
                           str(arm), "--repeats", "1", "--warmup", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert x86.read_bytes() == arm.read_bytes()


@pytest.mark.parametrize("overlap,feather", [(4, True), (0, True), (2, False)])
def test_image_mode_equals_the_python_runtime(model, host_runner, tmp_path, overlap, feather):
    """--image: a whole PPM through the shared tile plan (runtime/TILING.md) in C, against Python's tiled LiteRT
    run of the same file: at most one level apart (float rounding of the convs), measured 0."""
    from PIL import Image

    from edgesr.runtime.session import open_model, upscale_bands

    _, path = model
    img = np.random.default_rng(3).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.ppm")
    cmd = [str(host_runner), str(path), "--image", str(tmp_path / "in.ppm"), "--output", str(tmp_path / "out.ppm"),
           "--overlap", str(overlap), *([] if feather else ["--no-feather"])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["mode"] == "image" and stats["output"] == [58, 26] and stats["tiles"] >= 2
    got = np.asarray(Image.open(tmp_path / "out.ppm"))
    want = np.concatenate([b for _, b in upscale_bands(open_model(path), img, overlap, feather=feather)])
    assert got.shape == want.shape == (26, 58, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_image_mode_on_aarch64_equals_x86(model, arm_runner, host_runner, tmp_path):
    from PIL import Image

    _, path = model
    img = np.random.default_rng(4).integers(0, 256, (11, 17, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.ppm")
    outs = {}
    for name, cmd in (("x86", [str(host_runner)]), ("arm", [QEMU, "-cpu", "cortex-a76", str(arm_runner)])):
        proc = subprocess.run([*cmd, str(path), "--image", str(tmp_path / "in.ppm"), "--output",
                               str(tmp_path / f"{name}.ppm"), "--overlap", "4"], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs[name] = (tmp_path / f"{name}.ppm").read_bytes()
    assert outs["x86"] == outs["arm"]


def test_image_mode_errors(model, host_runner, tmp_path):
    _, path = model
    bad = tmp_path / "bad.ppm"
    bad.write_bytes(b"P3\n2 2\n255\n0 0 0")
    proc = subprocess.run([str(host_runner), str(path), "--image", str(bad), "--output", str(tmp_path / "o.ppm")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "not a binary 8-bit PPM" in proc.stderr and not (tmp_path / "o.ppm").exists()
    from PIL import Image

    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "in.ppm")
    proc = subprocess.run([str(host_runner), str(path), "--image", str(tmp_path / "in.ppm"), "--output",
                           str(tmp_path / "o.ppm"), "--overlap", "8"], capture_output=True, text=True)
    assert proc.returncode == 1 and "overlap must be in [0, tile)" in proc.stderr
