"""``convert``: FP checkpoint + calibration images + QuantConfig -> quantized artifact (DOBI, then DQC)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from edgesr.converter.artifact import save_artifact
from edgesr.converter.calibrate import calibrate, calibration_batch, calibration_sampler
from edgesr.converter.config import QuantConfig
from edgesr.converter.dqc import run_dqc
from edgesr.converter.quant import quantize
from edgesr.data.paths import default_data_root
from edgesr.errors import DataError
from edgesr.models.zoo import sha256_of
from edgesr.progress import console


def default_calibration_folders(data_root: str | Path | None = None) -> list[Path]:
    """``<data root>/calibration/{T91,BSD200}`` when present, else scikit-image's sample photos (written to a
    cache folder once), so the converter runs on a fresh installation."""
    root = Path(data_root) if data_root else default_data_root()
    if root is not None and (root / "calibration").is_dir():
        folders = [root / "calibration" / f for f in ("T91", "BSD200") if (root / "calibration" / f).is_dir()]
        if folders:
            return folders
    return [sample_photo_folder()]


def sample_photo_folder() -> Path:
    from edgesr.data.io import save_png
    from edgesr.demo import sample_photos

    folder = Path(tempfile.gettempdir()) / "edgesr_sample_photos"
    photos = sample_photos(("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"))
    for name, img in photos.items():
        if not (folder / f"{name}.png").is_file():
            save_png(img, folder / f"{name}.png")
    return folder


def convert(fp_model, config: QuantConfig, calib_folders: list[Path] | None, out: str | Path,
            source: str | Path | None = None, quiet: bool = False, work_dir: str | Path | None = None,
            data_root: str | Path | None = None) -> dict:
    """Quantize ``fp_model`` with ``config`` and write the artifact to ``out``; returns a report."""
    folders = [Path(f) for f in (calib_folders or default_calibration_folders(data_root))]
    for f in folders:
        if not f.is_dir():
            raise DataError(f"calibration folder {f} {'is not a folder' if f.exists() else 'does not exist'}")
    t0 = time.time()
    scale = fp_model.scale
    fp_model.eval()
    qmodel = quantize(fp_model, config)
    batch = calibration_batch(folders, scale, config)
    init_report = calibrate(qmodel, batch, config, quiet=quiet)
    t_init = time.time() - t0
    dqc = {"iterations": 0, "seconds": 0.0, "history": []}
    if config.dqc.iterations:
        d = config.dqc
        sampler = calibration_sampler(folders, scale, d.patch, d.batch, seed=d.seed + 1)
        state = Path(work_dir) / "dqc_state.pt" if work_dir else None
        dqc = run_dqc(qmodel, fp_model, sampler, d, state_path=state, quiet=quiet)
    provenance = {
        "source": str(source) if source else None,
        "source_sha256": sha256_of(source) if source and Path(source).is_file() else None,
        "calibration": [str(f) for f in folders],
        "bounds_init": init_report,
        "init_seconds": round(t_init, 2),
        "dqc_seconds": round(dqc["seconds"], 2),
        "dqc_history": dqc["history"][-50:],
    }
    size = save_artifact(qmodel, out, provenance)
    if not quiet:
        console.print(f"wrote {out}: {size['artifact_bytes']:,} bytes ({size['ratio']:.1%} of FP32 parameters)")
    return {"artifact": str(out), **size, "init_seconds": t_init, "dqc_seconds": dqc["seconds"], "model": qmodel}
