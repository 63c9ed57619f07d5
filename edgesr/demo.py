"""The bundled demo: upscale scikit-image's sample photos with a model and with bicubic, side by side.

Needs nothing outside the installation: the photos ship with scikit-image, the weights with edgesr.
Each photo is shrunk with the MATLAB-compatible bicubic, upscaled back, and scored against the original.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr.data.imresize import bicubic_downscale, bicubic_upscale, modcrop
from edgesr.data.io import save_png
from edgesr.evaluate import Upscaler
from edgesr.metrics import psnr, ssim
from edgesr.progress import progress_bar

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def sample_photos(names=PHOTOS) -> dict[str, np.ndarray]:
    import skimage.data

    return {n: np.ascontiguousarray(getattr(skimage.data, n)()[..., :3]) for n in names}


def run_demo(ups: list[Upscaler], out_dir: str | Path | None, quiet: bool = False) -> list[dict]:
    """Score each upscaler (and bicubic) on the sample photos; rows hold ``psnr``/``ssim`` per method name."""
    s = ups[0].scale
    if any(u.scale != s for u in ups):
        raise ValueError("all models of a demo must have the same scale")
    rows = []
    photos = sample_photos()
    with progress_bar(f"demo x{s}", total=len(photos) * len(ups), disable=quiet) as bar:
        for name, img in photos.items():
            hr = modcrop(img, s)
            lr = bicubic_downscale(hr, s)
            outputs = {"bicubic": bicubic_upscale(lr, s)}
            for up in ups:
                outputs[up.name] = up.run(lr)
                bar.update(1, info=f"{name} / {up.name}")
            row = {"image": name, "size": f"{lr.shape[1]}x{lr.shape[0]} -> {hr.shape[1]}x{hr.shape[0]}",
                   "psnr": {k: psnr(v, hr, border=s) for k, v in outputs.items()},
                   "ssim": {k: ssim(v, hr, border=s) for k, v in outputs.items()}}
            rows.append(row)
            if out_dir is not None:
                save_png(lr, Path(out_dir) / f"{name}_lr.png")
                for k, v in outputs.items():
                    save_png(v, Path(out_dir) / f"{name}_x{s}_{k}.png")
    return rows
