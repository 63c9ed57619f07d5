"""Where the shared data lives: ``--data-root`` > ``EDGESR_DATA_ROOT`` > ``../shared/assets`` when present."""

from __future__ import annotations

import os
from pathlib import Path

from edgesr.errors import DataError

_REPO = Path(__file__).resolve().parents[2]


def default_data_root() -> Path | None:
    env = os.environ.get("EDGESR_DATA_ROOT")
    if env:
        return Path(env)
    for cand in (_REPO.parent / "shared" / "assets", Path.cwd().parent / "shared" / "assets"):
        if cand.is_dir():
            return cand
    return None


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    root = Path(data_root) if data_root else default_data_root()
    if root is None:
        raise DataError("no data root: pass --data-root or set EDGESR_DATA_ROOT (expects benchmark/ and calibration/)")
    if not root.is_dir():
        raise DataError(f"data root {root} {'is not a folder' if root.exists() else 'does not exist'}")
    return root
