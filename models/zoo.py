"""The model zoo: names -> architecture, weights, sha256 and expected PSNR (``zoo.yaml`` beside this file)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgesr.errors import CheckpointError

ZOO_FILE = Path(__file__).with_name("zoo.yaml")
WEIGHTS_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class ZooEntry:
    name: str
    scale: int
    sha256: str
    arch: str = "swinir_light"  # SwinIR-light: embed 60, depths 6x4, heads 6, window 8, pixelshuffledirect
    file: str | None = None  # bundled file under models/weights/, or None for user-supplied weights
    filename: str | None = None  # the usual file name of user-supplied weights
    expected_psnr: dict = field(default_factory=dict)
    card: str | None = None

    @property
    def path(self) -> Path | None:
        return WEIGHTS_DIR / self.file if self.file else None


@functools.lru_cache(maxsize=1)
def entries() -> dict[str, ZooEntry]:
    data = yaml.safe_load(ZOO_FILE.read_text())
    return {name: ZooEntry(name=name, **spec) for name, spec in data["models"].items()}


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def identify(path: str | Path) -> ZooEntry | None:
    """The zoo entry whose sha256 matches a file, if any."""
    digest = sha256_of(path)
    return next((e for e in entries().values() if e.sha256 == digest), None)


def resolve(name_or_path: str) -> tuple[Path, ZooEntry | None]:
    """A zoo name (bundled weights, checksum verified) or a checkpoint path."""
    if name_or_path in entries():
        e = entries()[name_or_path]
        if e.path is None:
            raise CheckpointError(
                f"{e.name}: weights are not bundled; download {e.filename} (sha256 {e.sha256[:12]}...) and pass its path"
            )
        if not e.path.is_file():
            raise CheckpointError(f"{e.name}: bundled weights {e.path} are missing from this installation")
        digest = sha256_of(e.path)
        if digest != e.sha256:
            raise CheckpointError(f"{e.name}: {e.path} has sha256 {digest}, the zoo expects {e.sha256}")
        return e.path, e
    path = Path(name_or_path)
    if path.is_file():
        return path, identify(path)
    raise CheckpointError(f"{name_or_path!r} is neither a zoo model ({', '.join(entries())}) nor a file")
