"""The demo app's native glue (android_demo/app/src/main/cpp) compiles for AArch64 with the cross compiler
(the NDK is not available here) and exports the JNI entry points the Kotlin layer binds."""

import shutil
import subprocess
from pathlib import Path

import pytest

from edgesr import native

REPO = Path(__file__).resolve().parent.parent
CPP = REPO / "android_demo" / "app" / "src" / "main" / "cpp"
ET_RUNTIME = REPO / "converter" / "export" / "executorch" / "runtime"
AARCH64_CC = shutil.which("aarch64-linux-gnu-gcc")
AARCH64_CXX = shutil.which("aarch64-linux-gnu-g++")
CLANG = shutil.which("clang")
# clang, the NDK's compiler, with the Android triple over Debian's AArch64 sysroot (bionic's headers are not
# here; glibc's stand in): the C sources see __ANDROID__ as under the NDK. Compile only.
CLANG_ANDROID = ["clang", "--target=aarch64-linux-android26", "--sysroot=/usr/aarch64-linux-gnu",
                 "-isystem", "/usr/aarch64-linux-gnu/include"]


def _jni_include() -> Path | None:
    for home in sorted(Path("/usr/lib/jvm").glob("*")) if Path("/usr/lib/jvm").is_dir() else []:
        if (home / "include" / "jni.h").is_file():
            return home / "include"
    return None


def test_jni_glue_builds_for_aarch64(tmp_path):
    jni = _jni_include()
    if not AARCH64_CC or not jni:
        pytest.skip("needs aarch64-linux-gnu-gcc and a JDK's jni.h (apt-get install gcc-aarch64-linux-gnu openjdk-17-jdk)")
    objects = []
    for _, obj, argv in native.compile_commands(AARCH64_CC, "aarch64", tmp_path):
        subprocess.run(argv, check=True, capture_output=True)
        objects.append(str(obj))
    delegate = REPO / "converter" / "export" / "tflite" / "runtime" / "edgesr_litert_delegate.c"
    nm = shutil.which("aarch64-linux-gnu-nm") or shutil.which("nm")
    # With .pte support the glue calls the C++ runner (linked in by the app's CMake; left undefined here).
    for pte, entries in ((False, ["pteOpen"]), (True, ["pteOpen", "pteMetadata", "pteShapes", "pteRun", "pteClose"])):
        lib = tmp_path / f"libedgesr_demo{'_pte' if pte else ''}.so"
        proc = subprocess.run([AARCH64_CC, "-O2", "-fPIC", "-shared", "-Wall", "-Werror", f"-I{jni}",
                               f"-I{jni / 'linux'}", f"-I{native.include_dir()}", f"-I{ET_RUNTIME}",
                               *(["-DEDGESR_DEMO_PTE=1"] if pte else []), str(CPP / "edgesr_jni.c"), str(delegate),
                               *objects, "-lm", "-pthread", "-o", str(lib)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        symbols = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
        for name in ("kernelPaths", "createDelegate", "destroyDelegate", *entries):
            assert f"Java_dev_edgesr_demo_NativeLib_{name}" in symbols
        assert "tflite_plugin_create_delegate" in symbols
        undefined = subprocess.run([nm, "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
        assert ("edgesr_pte_open" in undefined) == pte
        if CLANG:
            for src in (CPP / "edgesr_jni.c", delegate):
                proc = subprocess.run([*CLANG_ANDROID, "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{jni}",
                                       f"-I{jni / 'linux'}", f"-I{native.include_dir()}", f"-I{ET_RUNTIME}",
                                       *(["-DEDGESR_DEMO_PTE=1"] if pte else []), "-c", str(src),
                                       "-o", str(tmp_path / f"{src.stem}_clang.o")], capture_output=True, text=True)
                assert proc.returncode == 0, f"clang {src.name}: {proc.stderr[-2000:]}"


def test_pte_runner_and_backend_compile_for_aarch64(tmp_path):
    """The app's .pte runner and the edgesr ExecuTorch backend compile for AArch64 against ExecuTorch 1.4.1's
    headers (the wheel's; the app builds the same release from source, which cannot be fetched here)."""
    executorch = pytest.importorskip("executorch", reason="executorch is not installed (pip install -e '.[test]')")
    torch = pytest.importorskip("torch")
    if not AARCH64_CXX:
        pytest.skip("needs aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)")
    inc = Path(executorch.__path__[0]) / "include"
    compilers = [[AARCH64_CXX]]
    if CLANG:  # clang++ over the cross toolchain's libstdc++ (the NDK's libc++ is not here)
        compilers.append(["clang++", "--target=aarch64-linux-gnu"])
    for cxx, src in ((c, s) for c in compilers for s in (ET_RUNTIME / "edgesr_pte_runner.cpp",
                                                          ET_RUNTIME / "edgesr_int4_backend.cpp")):
        proc = subprocess.run([*cxx, "-std=c++17", "-O2", "-fPIC", "-Wall", "-Werror",
                               "-DC10_USING_CUSTOM_GENERATED_MACROS", f"-I{inc}",
                               f"-I{inc / 'executorch/runtime/core/portable_type/c10'}",
                               f"-I{Path(torch.__file__).parent / 'include'}",  # pthreadpool.h, as the build does
                               f"-I{native.include_dir()}", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        head = (tmp_path / (src.stem + ".o")).read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


def test_app_cmake_builds_the_native_library_from_the_repo_sources(tmp_path):
    """android_demo/app/src/main/cpp/CMakeLists.txt (what the app's Gradle build hands the NDK) builds with a cross
    toolchain: the JNI glue, the LiteRT delegate and native/ by add_subdirectory, no copies."""
    jni, cmake = _jni_include(), shutil.which("cmake")
    if not AARCH64_CC or not jni or not cmake:
        pytest.skip("needs cmake, aarch64-linux-gnu-gcc and a JDK's jni.h")
    build = tmp_path / "build"
    # Without .pte support: that part clones ExecuTorch's source release, which this machine cannot reach.
    subprocess.run([cmake, "-S", str(CPP), "-B", str(build), "-DCMAKE_SYSTEM_NAME=Linux", "-DEDGESR_DEMO_PTE=OFF",
                    "-DCMAKE_SYSTEM_PROCESSOR=aarch64", f"-DCMAKE_C_COMPILER={AARCH64_CC}",
                    f"-DCMAKE_C_FLAGS=-I{jni} -I{jni / 'linux'}"], check=True, capture_output=True)
    proc = subprocess.run([cmake, "--build", str(build), "-j2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    head = (build / "libedgesr_demo.so").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


def test_manifest_and_resources_link_with_aapt2(tmp_path):
    """aapt2 compiles the app's resources and links them with its manifest against the Android framework."""
    from tests.android_tools import AAPT2_SKIP, APP_MAIN, have_aapt2, link_resources

    if not have_aapt2():
        pytest.skip(AAPT2_SKIP)
    assert "package=" not in (APP_MAIN / "AndroidManifest.xml").read_text()  # namespace: app/build.gradle.kts
    proc = link_resources(tmp_path)
    assert proc.returncode == 0, proc.stderr
    r_java = (tmp_path / "gen" / "dev" / "edgesr" / "demo" / "R.java").read_text()
    for name in ("pick", "self_test", "status", "fp32_result", "int4_result", "activity_main", "app_name"):
        assert f" {name}=" in r_java, name
