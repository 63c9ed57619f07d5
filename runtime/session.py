"""Open any model edgesr produces and upscale images with the tiling rules of :mod:`.tiling`.

Backends: PyTorch checkpoints / zoo names / quantized artifacts (eager, any tile) and ``.pte`` files (the
tile they were exported for). Each reads scale and tile shape from the model itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr.runtime.tiling import run_tiled

DEFAULT_TILE = (64, 64)
DEFAULT_OVERLAP = 16


class TorchModel:
    """An FP or fake-quant SwinIR run eagerly on static tiles (the desktop reference of an exported file)."""

    def __init__(self, model, tile: tuple[int, int] = DEFAULT_TILE, threads: int | None = None, name: str = ""):
        import torch

        self.model, self.tile, self.name = model.eval(), tuple(tile), name
        self.metadata = {"scale": model.scale, "tile": list(self.tile), "window_size": model.window_size,
                         "size_multiple": model.window_size}
        if threads:
            torch.set_num_threads(threads)

    @property
    def scale(self) -> int:
        return self.model.scale

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def open_model(spec: str | Path, threads: int = 1, tile: tuple[int, int] = DEFAULT_TILE):
    """A ``.pte`` file, a quantized artifact, a checkpoint or a zoo name -> a runnable tile model."""
    from edgesr.runtime.pte import PteModel, is_pte

    path = Path(spec)
    if path.suffix == ".pte" or (path.is_file() and is_pte(path)):
        return PteModel(path, threads=threads)
    from edgesr.converter.artifact import is_artifact, load_artifact
    from edgesr.models.checkpoint import load_model
    from edgesr.models.zoo import resolve

    path, _ = resolve(str(spec))
    model = load_artifact(path) if is_artifact(path) else load_model(path)
    return TorchModel(model, tile, threads, name=path.stem)


def upscale(model, image: np.ndarray, overlap: int = DEFAULT_OVERLAP, feather: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (sH, sW, 3) uint8, tile by tile as the device does."""
    x = image.astype(np.float32) / np.float32(255.0)

    def run_tile(t: np.ndarray) -> np.ndarray:
        y = model.run(t.transpose(2, 0, 1)[None])
        return y[0].transpose(1, 2, 0)

    out = run_tiled(x, run_tile, tuple(model.tile), overlap, model.scale, feather,
                    multiple=int(model.metadata.get("size_multiple") or model.metadata.get("window_size") or 1))
    return np.floor(np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # as edgesr.data.io.to_uint8
