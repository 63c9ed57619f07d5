"""What the exported-file backends (.pte, .tflite, .onnx) share: the descriptor every edgesr file carries
(``metadata``: scale, tile, channels, ...) and the delegate library a file may need."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from edgesr.errors import EdgesrError


class ModelFile:
    """Base of the file-backed models: ``scale`` and ``tile`` from the descriptor, and the input check of a
    static-tile file. Subclasses set ``path``, ``metadata`` and their ``error`` type."""

    path: Path
    metadata: dict
    error: type[EdgesrError] = EdgesrError

    @property
    def scale(self) -> int:
        return int(self.metadata["scale"])

    @property
    def tile(self) -> tuple[int, int]:
        return tuple(self.metadata["tile"])

    def check_input(self, x: np.ndarray) -> None:
        expected = (1, int(self.metadata["in_channels"]), *self.tile)
        if tuple(x.shape) != expected:
            raise self.error(f"{self.path}: input {tuple(x.shape)} does not match the exported tile {expected}")


def delegate_library(env: str, what: str, build: Callable[[], Path], error: type[EdgesrError]) -> Path:
    """A delegate library: the file ``$env`` names, else ``build()`` (built once into the native cache)."""
    value = os.environ.get(env)
    if value:
        path = Path(value)
        if not path.is_file():
            raise error(f"{env}={value}: no such file ({what})")
        return path
    return build()
