"""The Android app's pure Kotlin module (android_demo/core): compiled with kotlinc and its JVM checks run against
the same golden tile plans as Python (tests/fixtures/tile_plans)."""

import os
import shutil
import subprocess
from pathlib import Path

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
    proc = subprocess.run([java, "-cp", f"{jar}{os.pathsep}{stdlib}", "dev.edgesr.core.CoreTestsKt",
                           str(REPO / "tests" / "fixtures" / "tile_plans")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ALL PASSED" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    golden = sorted(p.name for p in (REPO / "tests" / "fixtures" / "tile_plans").glob("*.json"))
    assert all(f"ok golden {name}" in proc.stdout for name in golden)
