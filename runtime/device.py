"""On-device INT4 benchmark and parity through adb: push edgesr_runner and the model, run every residual group's
INT4 blocks at each thread count, pull the outputs and compare them with this machine's run of the same file.

The runner generates its input tokens from a fixed seed, so the device and the desktop see identical inputs with
nothing to upload; on the desktop the host build runs them. With LiteRT's ``benchmark_model`` for the device,
:func:`whole_model_bench` also times whole files (FP32 vs edgesr INT4). Used by ``edgesr device bench``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError

REMOTE_DIR = "/data/local/tmp/edgesr"


class DeviceError(EdgesrError):
    pass


class Adb:
    """``adb`` (or any command with its push / pull / shell interface, e.g. a test double), one device."""

    def __init__(self, adb: str = "adb", serial: str | None = None):
        self.argv = shlex.split(adb) + (["-s", serial] if serial else [])

    def _run(self, *args: str, timeout: float = 600) -> str:
        try:
            proc = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise DeviceError(f"{self.argv[0]}: not found (install Android platform-tools or pass --adb)") from None
        except OSError as e:
            raise DeviceError(f"{self.argv[0]}: cannot run it: {e.strerror or e}") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"adb {' '.join(args[:2])}: no answer within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise DeviceError(f"adb {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return proc.stdout

    def check_device(self) -> None:
        """One device online (``adb get-state`` says "device"), before anything is pushed."""
        try:
            state = self._run("get-state", timeout=30).strip()
        except DeviceError as e:
            raise DeviceError(f"no device reachable through adb: {e}") from None
        if state != "device":
            raise DeviceError(f"the device is {state!r}, not ready (unlock it and allow USB debugging)")

    def push(self, local: Path, remote: str) -> None:
        self._run("push", str(local), remote)

    def pull(self, remote: str, local: Path) -> None:
        self._run("pull", remote, str(local))

    def shell(self, command: str) -> str:
        return self._run("shell", command)


def cpu_features(adb: Adb) -> dict:
    """ABI and the kernels' CPU features (dotprod, i8mm, SME) from the device's /proc/cpuinfo."""
    info = adb.shell("cat /proc/cpuinfo")
    flags: set[str] = set()
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "features":
            flags |= set(value.split())
    abi = adb.shell("getprop ro.product.cpu.abi").strip() or "unknown"
    return {"abi": abi, "dotprod": "asimddp" in flags, "i8mm": "i8mm" in flags, "sme": "sme" in flags}


def _groups(model: Path) -> int:
    from edgesr.runtime.litert import TfliteError, read_metadata

    meta = read_metadata(model.read_bytes(), model)
    if "EDGESR_SWIN_BLOCK" not in (meta.get("custom_ops") or {}):
        raise TfliteError(f"{model}: has no EDGESR_SWIN_BLOCK ops (export it with --format tflite --quant)")
    return len(meta["config"]["depths"])


def _device_runner(adb: Adb, args: str) -> dict:
    """Runs the pushed edgesr_runner on the pushed model with ``args``; its JSON result line."""
    lines = adb.shell(f"{REMOTE_DIR}/edgesr_runner {REMOTE_DIR}/model.tflite {args}").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise DeviceError(f"edgesr_runner {args.split()[0]} on the device printed no result: "
                          f"{' '.join(lines)[-300:]}") from None


def device_image(adb: Adb, model: Path, host_runner: Path, image: Path, overlap: int, threads=(1, 2)) -> list[dict]:
    """One whole image through the standalone runner on the device (``--image``: the shared tile plan, every
    op of the INT4 file in the runner), per thread count: its latency and the pixels that differ from this
    machine's run. Expects the runner and model pushed by :func:`device_bench`."""
    from PIL import Image

    from edgesr.data.io import load_rgb

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgesr-device-") as tmp:
        tmp = Path(tmp)
        Image.fromarray(load_rgb(image)).save(tmp / "in.ppm")
        adb.push(tmp / "in.ppm", f"{REMOTE_DIR}/in.ppm")
        host = subprocess.run([str(host_runner), str(model), "--image", str(tmp / "in.ppm"), "--output",
                               str(tmp / "host.ppm"), "--overlap", str(overlap)], capture_output=True, text=True)
        if host.returncode != 0:
            raise DeviceError(f"edgesr_runner --image failed here: {host.stderr.strip()[-300:]}")
        want = np.asarray(Image.open(tmp / "host.ppm"))
        for t in threads:
            stats = _device_runner(adb, f"--image {REMOTE_DIR}/in.ppm --output {REMOTE_DIR}/out.ppm "
                                        f"--overlap {overlap} --threads {t}")
            adb.pull(f"{REMOTE_DIR}/out.ppm", tmp / "dev.ppm")
            got = np.asarray(Image.open(tmp / "dev.ppm"))
            stats["differing_values"] = int((got != want).sum()) if got.shape == want.shape else int(want.size)
            rows.append(stats)
    return rows


def device_bench(adb: Adb, model: Path, device_runner: Path, host_runner: Path, threads=(1, 2), repeats: int = 10,
                 warmup: int = 2, progress=None, image: Path | None = None, overlap: int = 16) -> dict:
    """Latency of each group's INT4 blocks on the device, and its outputs against the host's; with ``image``,
    also that image end to end (:func:`device_image`)."""
    model = Path(model)
    groups = _groups(model)
    report = {"model": str(model), "device": cpu_features(adb), "runs": []}
    adb.shell(f"mkdir -p {REMOTE_DIR}")
    adb.push(device_runner, f"{REMOTE_DIR}/edgesr_runner")
    adb.shell(f"chmod 755 {REMOTE_DIR}/edgesr_runner")
    adb.push(model, f"{REMOTE_DIR}/model.tflite")
    with tempfile.TemporaryDirectory(prefix="edgesr-device-") as tmp:
        tmp = Path(tmp)
        for g in range(groups):
            host_out = tmp / f"host_g{g}.f32"
            subprocess.run([str(host_runner), str(model), "--group", str(g), "--repeats", "1", "--warmup", "0",
                            "--output", str(host_out)], check=True, capture_output=True)
            want = np.fromfile(host_out, np.float32)
            for t in threads:
                remote_out = f"{REMOTE_DIR}/g{g}_t{t}.f32"
                stats = _device_runner(adb, f"--group {g} --threads {t} --repeats {repeats} --warmup {warmup} "
                                            f"--output {remote_out}")
                local = tmp / f"dev_g{g}_t{t}.f32"
                adb.pull(remote_out, local)
                got = np.fromfile(local, np.float32)
                if got.shape != want.shape:
                    raise DeviceError(f"group {g}: device output has {got.size} values, desktop {want.size}")
                stats.update(differing_values=int((got != want).sum()), max_abs=float(np.abs(got - want).max()))
                report["runs"].append(stats)
                if progress:
                    progress(stats)
    if image is not None:
        report["image"] = device_image(adb, model, host_runner, Path(image), overlap, threads)
    adb.shell(f"rm -rf {REMOTE_DIR}")
    return report


_AVG_US = re.compile(r"Inference \(avg\):\s*([0-9.eE+]+)")


def whole_model_bench(adb: Adb, benchmark_model: Path, models: dict[str, Path], delegate: Path | None,
                      threads=(1, 2), num_runs: int = 20, progress=None) -> dict:
    """Whole-file latency per thread count with LiteRT's own ``benchmark_model`` on the device: the FP32 file as
    is, edgesr INT4 files with the edgesr delegate as its external delegate (a library built for the device's
    libc: with the Android NDK for a phone). Returns {threads: {name: ms}} from its "Inference (avg)" line."""
    from edgesr.runtime.litert import read_metadata

    adb.shell(f"mkdir -p {REMOTE_DIR}")
    adb.push(benchmark_model, f"{REMOTE_DIR}/benchmark_model")
    adb.shell(f"chmod 755 {REMOTE_DIR}/benchmark_model")
    needs_delegate = {}
    for name, path in models.items():
        adb.push(path, f"{REMOTE_DIR}/{name}.tflite")
        needs_delegate[name] = bool(read_metadata(Path(path).read_bytes(), Path(path)).get("custom_ops"))
    if any(needs_delegate.values()):
        if delegate is None:
            raise DeviceError("an edgesr INT4 file needs the edgesr LiteRT delegate built for the device (--delegate)")
        adb.push(delegate, f"{REMOTE_DIR}/libedgesr_litert_delegate.so")
    out: dict[int, dict[str, float]] = {}
    for t in threads:
        out[t] = {}
        for name in models:
            cmd = (f"{REMOTE_DIR}/benchmark_model --graph={REMOTE_DIR}/{name}.tflite --num_threads={t} "
                   f"--num_runs={num_runs}")
            if needs_delegate[name]:
                cmd += (f" --external_delegate_path={REMOTE_DIR}/libedgesr_litert_delegate.so"
                        f" --external_delegate_options=threads:{t}")
            text = adb.shell(cmd)
            m = _AVG_US.search(text)
            if not m:
                raise DeviceError(f"benchmark_model printed no 'Inference (avg)' for {name}: {text.strip()[-300:]}")
            out[t][name] = float(m.group(1)) / 1e3
            if progress:
                progress(name, t, out[t][name])
    return out
