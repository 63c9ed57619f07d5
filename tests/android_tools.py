"""Shared helpers of the Android tests: aapt2 linking of the demo app's manifest and resources."""

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP_MAIN = REPO / "android_demo" / "app" / "src" / "main"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
AAPT2_SKIP = "needs aapt2 and framework-res.apk (apt-get install android-sdk-build-tools android-framework-res)"


def have_aapt2() -> bool:
    return bool(shutil.which("aapt2")) and FRAMEWORK_RES.is_file()


def link_resources(out: Path) -> subprocess.CompletedProcess:
    """aapt2 compile + link into ``out`` (R.java under out/gen). The manifest gets the package attribute that the
    Gradle plugin injects from ``namespace``."""
    aapt2 = shutil.which("aapt2")
    out.mkdir(parents=True, exist_ok=True)
    manifest = (APP_MAIN / "AndroidManifest.xml").read_text()
    (out / "AndroidManifest.xml").write_text(manifest.replace("<manifest ", '<manifest package="dev.edgesr.demo" ', 1))
    subprocess.run([aapt2, "compile", "--dir", str(APP_MAIN / "res"), "-o", str(out / "res.zip")], check=True,
                   capture_output=True)
    return subprocess.run([aapt2, "link", "-I", str(FRAMEWORK_RES), "--manifest", str(out / "AndroidManifest.xml"),
                           "-o", str(out / "app.apk"), "--java", str(out / "gen"), str(out / "res.zip")],
                          capture_output=True, text=True)
