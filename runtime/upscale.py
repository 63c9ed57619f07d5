"""``edgesr upscale``: files or folders in, PNG out, tile by tile with the runtime's plan.

Output rows are produced band by band (one row of tiles) and streamed into the PNG, so memory is bounded by
the tile band, not the output image. Files are written atomically (temporary file, then rename), so an
interrupted run leaves no partial PNG;
existing outputs are kept unless ``force``. A pixel limit turns a giant input into a clear error instead of
an out-of-memory kill.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from edgesr.data.io import IMAGE_SUFFIXES, list_images, load_rgb, make_output_dir
from edgesr.errors import EdgesrError, ImageError
from edgesr.progress import progress_bar
from edgesr.runtime.session import tile_count, upscale_bands

DEFAULT_MAX_PIXELS = 50_000_000  # input pixels; a 12 MP camera frame is well inside


def collect_inputs(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(list_images(p))
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise ImageError(f"{p}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
            files.append(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    return files


def output_paths(files: list[Path], out: Path, force: bool) -> tuple[list[Path], list[Path]]:
    """One input file and a non-folder ``out`` name the file; otherwise ``out`` is a folder of <stem>.png.
    Returns the targets and the folders created for them (see :func:`edgesr.data.io.make_output_dir`)."""
    suffix = out.suffix.lower()
    if suffix in IMAGE_SUFFIXES and suffix != ".png":
        raise EdgesrError(f"{out}: outputs are PNG files; name it .png, or give a folder")
    if suffix == ".png" and len(files) > 1 and not out.is_dir():
        raise EdgesrError(f"{out}: {len(files)} inputs need an output folder, not a .png name")
    if len(files) == 1 and suffix == ".png" and not out.is_dir():
        targets = [out]
    else:
        targets = [out / f"{f.stem}.png" for f in files]
    inputs = {f.resolve() for f in files}
    same = [t for t in targets if t.exists() and t.resolve() in inputs]
    if same:
        raise EdgesrError(f"{same[0]} is an input; write the outputs elsewhere")
    if len(set(targets)) != len(targets):
        raise EdgesrError("two inputs share a file name; upscale them into different folders")
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise EdgesrError(f"{existing[0]} exists (use --force to overwrite)")
    created: list[Path] = []
    for parent in sorted({t.parent for t in targets}):
        created += make_output_dir(parent)
    return targets, created


def write_png_bands(path: Path, width: int, height: int, bands) -> None:
    """Stream (y0, uint8 band) pairs into an RGB PNG, band by band; atomic (temporary file, then rename),
    so an interrupted run (Ctrl-C included) leaves nothing at ``path``."""
    import png

    tmp = path.with_name(f".{path.name}.tmp")

    def rows():
        for _, band in bands:
            yield from band.reshape(band.shape[0], -1)

    try:
        with open(tmp, "wb") as fh:
            png.Writer(width, height, greyscale=False, bitdepth=8, compression=6).write(fh, rows())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def upscale_files(model, files: list[Path], targets: list[Path], overlap: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                  quiet: bool = False) -> list[dict]:
    """Upscale each file with ``model`` (``run``, ``scale``, ``tile``); one progress bar over all tiles."""
    sizes = []
    for f in files:
        try:
            with Image.open(f) as im:
                w, h = im.size
        except OSError as e:
            raise ImageError(f"{f}: cannot read image ({e})") from None
        if w * h == 0:
            raise ImageError(f"{f}: image has no pixels")
        if w * h > max_pixels:
            raise ImageError(f"{f}: {w}x{h} is over the pixel limit {max_pixels:,} (raise it with --max-pixels)")
        sizes.append((h, w))
    total = sum(tile_count(model, h, w, overlap) for h, w in sizes)
    rows = []
    with progress_bar("upscale", total=total, disable=quiet) as bar:
        for f, t in zip(files, targets):
            img = load_rgb(f)
            bands = upscale_bands(model, img, overlap, on_tile=lambda: bar.update(1, info=f.name))
            oh, ow = img.shape[0] * model.scale, img.shape[1] * model.scale
            write_png_bands(t, ow, oh, bands)
            rows.append({"input": str(f), "output": str(t), "size": [img.shape[1], img.shape[0]],
                         "out_size": [ow, oh]})
    return rows
