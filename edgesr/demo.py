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


def run_demo(up: Upscaler, out_dir: str | Path | None, quiet: bool = False) -> list[dict]:
    s = up.scale
    rows = []
    photos = sample_photos()
    with progress_bar(f"demo {up.name} x{s}", total=len(photos), disable=quiet) as bar:
        for name, img in photos.items():
            hr = modcrop(img, s)
            lr = bicubic_downscale(hr, s)
            sr = up.run(lr)
            bic = bicubic_upscale(lr, s)
            rows.append(
                {
                    "image": name,
                    "size": f"{lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]}",
                    "psnr_model": psnr(sr, hr, border=s),
                    "psnr_bicubic": psnr(bic, hr, border=s),
                    "ssim_model": ssim(sr, hr, border=s),
                    "ssim_bicubic": ssim(bic, hr, border=s),
                }
            )
            if out_dir is not None:
                save_png(lr, Path(out_dir) / f"{name}_lr.png")
                save_png(sr, Path(out_dir) / f"{name}_x{s}_{up.name}.png")
                save_png(bic, Path(out_dir) / f"{name}_x{s}_bicubic.png")
            bar.update(1, info=name)
    return rows
