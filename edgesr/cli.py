"""``edgesr`` command line. User mistakes end in a one-line error and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import json

import numpy as np
import sys
import warnings

from edgesr import __version__
from edgesr.errors import EdgesrError

DEFAULT_SETS = ["Set5", "Set14", "B100"]


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def _int_at_least(low: int):
    """argparse type: an integer >= low (a mistyped count is an error at parse time, not a traceback later)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def _out_file(path: str | None):
    """Check an output file's place before any long work: not a folder, and its folder exists (or is created)
    and takes files."""
    from pathlib import Path

    from edgesr.data.io import make_output_dir

    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise EdgesrError(f"{p} is a folder; give a file path")
    make_output_dir(p.parent)  # created if missing, as the writers do
    return p


def _out_dir(path: str | None):
    """Create an output folder up front (with its parents), or say why it cannot be."""
    from pathlib import Path

    from edgesr.data.io import make_output_dir

    if path is None:
        return None
    make_output_dir(path)
    return Path(path)


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.table import Table

    from edgesr.evaluate import evaluate, load_upscaler, write_json

    _threads(args.threads)
    _out_file(args.json)
    up = load_upscaler(args.model, args.scale)
    result = evaluate(up, args.sets, data_root=args.data_root, quiet=args.quiet, limit=args.limit)
    table = Table(title=f"{up.name} x{up.scale}: Y-channel PSNR / SSIM (border {up.scale})")
    table.add_column("set")
    table.add_column("images", justify="right")
    table.add_column("PSNR (dB)", justify="right")
    table.add_column("SSIM", justify="right")
    expected = up.info.get("expected_psnr", {})
    if expected:
        table.add_column("expected PSNR", justify="right")
    for name, r in result["sets"].items():
        row = [name, str(len(r["images"])), f"{r['psnr_y']:.2f}", f"{r['ssim_y']:.4f}"]
        if expected:
            row.append(f"{expected[name]:.2f}" if name in expected else "-")
        table.add_row(*row)
    from edgesr.progress import stdout_console

    stdout_console().print(table)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.table import Table

    from edgesr.demo import run_demo
    from edgesr.evaluate import load_upscaler
    from edgesr.progress import stdout_console

    _threads(args.threads)
    ups = [load_upscaler(args.model, None)]
    _out_dir(args.out)
    source = ups[0].info.get("source")  # a quantized artifact also runs its FP source model, when present
    if source and Path(source).is_file():
        ups.append(load_upscaler(source, ups[0].scale))
        ups[-1].name = f"FP {ups[-1].name}"
    rows = run_demo(ups, args.out, quiet=args.quiet)
    names = [u.name for u in ups] + ["bicubic"]
    table = Table(title=f"x{ups[0].scale} on scikit-image sample photos: Y-PSNR dB / SSIM")
    table.add_column("photo")
    table.add_column("size")
    for n in names:
        table.add_column(n, justify="right")
    for r in rows:
        table.add_row(r["image"], r["size"], *(f"{r['psnr'][n]:.2f} / {r['ssim'][n]:.4f}" for n in names))
    means = [sum(r["psnr"][n] for r in rows) / len(rows) for n in names]
    table.add_row("mean", "", *(f"{m:.2f}" for m in means))
    stdout_console().print(table)
    if args.out:
        print(f"images written to {args.out}/")
    return 0


def _quant_config(args: argparse.Namespace):
    from edgesr.converter.config import DQCConfig, QuantConfig

    base = QuantConfig.load(args.config).to_dict() if args.config else {}
    preset = args.dqc or (None if args.config else "cpu-fast")
    if args.bits is not None:
        base["bits"] = args.bits
    if args.init is not None:
        base["init"] = args.init
    if preset is not None:
        base["dqc"] = {**base.get("dqc", {}), **DQCConfig.preset(preset).__dict__}
    if args.dqc_iterations is not None:
        base["dqc"] = {**base.get("dqc", {}), "iterations": args.dqc_iterations}
    return QuantConfig.from_dict(base)


def cmd_quantize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgesr.converter.api import convert
    from edgesr.models.checkpoint import load_model
    from edgesr.models.zoo import resolve

    _threads(args.threads)
    out = _out_file(args.out)
    if out.exists() and not args.force:
        raise EdgesrError(f"{out} exists (use --force to overwrite)")
    if args.work_dir:
        _out_dir(args.work_dir)
    if args.data_root and not args.calib:  # a named data root must hold the calibration sets
        calib = Path(args.data_root) / "calibration"
        if not any((calib / f).is_dir() for f in ("T91", "BSD200")):
            raise EdgesrError(f"--data-root {args.data_root}: no calibration/T91 or calibration/BSD200 folder")
    config = _quant_config(args)
    path, _ = resolve(args.model)
    model = load_model(path)
    report = convert(model, config, args.calib, out, source=path, quiet=args.quiet, work_dir=args.work_dir,
                     data_root=args.data_root)
    report.pop("model")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in report.items()}))
    return 0


def _tile(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"tile must look like 64 or 64x48, got {text!r}")
    return parts[0], parts[1]


def _wxh(text: str) -> tuple[int, int]:
    """"1000x750" (width x height, as image sizes are written) -> (height, width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"image size must look like 1000x750 (width x height), got {text!r}")
    return int(parts[1]), int(parts[0])


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgesr.converter.artifact import is_artifact, load_artifact
    from edgesr.models.checkpoint import load_model
    from edgesr.models.zoo import resolve, sha256_of

    _threads(args.threads)
    out = _out_file(args.out)
    if out.exists() and not args.force:
        raise EdgesrError(f"{out} exists (use --force to overwrite)")
    suffix = out.suffix.lower().lstrip(".")
    if args.format is None:  # from the file name; .pte when it says nothing
        args.format = suffix if suffix in ("pte", "tflite", "onnx") else "pte"
    elif suffix in ("pte", "tflite", "onnx") and suffix != args.format:
        raise EdgesrError(f"--format {args.format} but --out ends in .{suffix}")
    if args.quant and args.model is not None:
        raise EdgesrError("--model and --quant do not go together: the artifact records the FP model it came from")
    args.model = args.model or "swinir_light_x4"
    if args.quant:
        path = Path(args.quant)
        if not path.is_file():
            raise EdgesrError(f"{path}: no such file")
        if not is_artifact(path):
            raise EdgesrError(f"{path}: not an edgesr quantized artifact (make one with `edgesr quantize`)")
        model = load_artifact(path)
    else:
        path, _ = resolve(args.model)
        if is_artifact(path):
            raise EdgesrError(f"{path} is a quantized artifact: pass it with --quant")
        model = load_model(path)
    ws = model.window_size
    if args.tile[0] % ws or args.tile[1] % ws:
        raise EdgesrError(f"tile {args.tile[0]}x{args.tile[1]} must be a multiple of the window size {ws}")
    source = {"path": str(path), "sha256": sha256_of(path)}
    if args.dynamic and args.format != "onnx":
        raise EdgesrError(f"--dynamic needs --format onnx (a .{args.format} file is built for one static tile)")
    if (args.per_layer or args.fuse_attention) and args.format != "pte":
        raise EdgesrError("--per-layer and --fuse-attention choose the ExecuTorch lowering; they need --format pte")
    if args.stock_int4 and (args.format == "pte" or args.quant):
        raise EdgesrError("--stock-int4 needs --format onnx or tflite and an FP --model (it is the runtime's own "
                          "INT4, not 2DQuant)")
    if args.stock_int8_convs and not (args.stock_int4 and args.format == "tflite"):
        raise EdgesrError("--stock-int8-convs goes with --format tflite --stock-int4")
    if args.format == "pte":
        try:
            from edgesr.converter.export.executorch import export_pte
        except ImportError as e:
            raise EdgesrError(f"--format pte needs executorch (pip install 'edgesr[pte]'): {e}") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = export_pte(model, out, tile=args.tile, source=source, fuse_attention=args.fuse_attention,
                                fuse_blocks=not args.per_layer)
    elif args.format == "tflite":
        try:
            from edgesr.converter.export.tflite import export_tflite
        except ImportError as e:
            raise EdgesrError(f"--format tflite needs ai-edge-litert (pip install 'edgesr[tflite]'): {e}") from None
        report = export_tflite(model, out, tile=args.tile, source=source, stock_int4=args.stock_int4,
                               stock_int8_convs=args.stock_int8_convs)
    else:
        try:
            from edgesr.converter.export.onnx import export_onnx
        except ImportError as e:
            raise EdgesrError(f"--format onnx needs onnx and onnxruntime (pip install 'edgesr[onnx]'): {e}") from None
        report = export_onnx(model, out, tile=args.tile, source=source, dynamic=args.dynamic,
                             stock_int4=args.stock_int4)
    print(json.dumps(report))
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgesr.data.io import remove_empty_dirs
    from edgesr.runtime.upscale import collect_inputs, output_paths

    files = collect_inputs(args.inputs)
    targets, created = output_paths(files, Path(args.out), args.force)
    try:
        return _upscale(args, files, targets)
    except (EdgesrError, KeyboardInterrupt):
        remove_empty_dirs(created)  # outputs already written keep their folders
        raise


def _upscale(args: argparse.Namespace, files, targets) -> int:
    from edgesr.runtime.session import open_model, size_multiple
    from edgesr.runtime.upscale import upscale_files

    model = open_model(args.model, threads=args.threads or 1, tile=args.tile or (64, 64))
    tile, multiple = tuple(model.tile), size_multiple(model)
    if args.tile and tuple(args.tile) != tile:
        warnings.warn(f"{args.model} runs its own {tile[0]}x{tile[1]} tile; --tile is ignored")
    if tile[0] % multiple or tile[1] % multiple:
        raise EdgesrError(f"--tile {tile[0]}x{tile[1]} must be a multiple of the model's window size {multiple}")
    overlap = 16 if args.overlap is None else args.overlap  # the default is capped below small tiles
    if args.overlap is not None and args.overlap >= min(tile):
        raise EdgesrError(f"--overlap {args.overlap} must be smaller than the {tile[0]}x{tile[1]} tile")
    rows = upscale_files(model, files, targets, overlap, args.max_pixels, quiet=args.quiet)
    for r in rows:
        print(f"{r['input']} ({r['size'][0]}x{r['size'][1]}) -> {r['output']} ({r['out_size'][0]}x{r['out_size'][1]})")
    return 0


def _layer_parity(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.table import Table

    from edgesr.converter.artifact import is_artifact, load_artifact
    from edgesr.data.io import load_rgb, to_tensor
    from edgesr.models.swinir import pad_to_multiple
    from edgesr.progress import stdout_console
    from edgesr.runtime.layers import compare_layers

    if not is_artifact(Path(args.a)):
        raise EdgesrError(f"--layers takes a quantized artifact as A, got {args.a}")
    q = load_artifact(args.a)
    x = pad_to_multiple(to_tensor(load_rgb(args.b)), q.window_size)
    rows = compare_layers(q, x)
    table = Table(title=f"per-layer parity, fake-quant vs native integer kernels: {args.a} on {args.b}")
    for col in ("layer", "max |diff|", "rel. L2"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    first = next((r["layer"] for r in rows if r["rel_l2"] > 1e-4), None)
    for r in rows:
        table.add_row(r["layer"], f"{r['max_abs']:.3g}", f"{r['rel_l2']:.3g}")
    stdout_console().print(table)
    print(f"first layer above 1e-4 relative error: {first or 'none'}")
    if args.json:
        from edgesr.evaluate import write_json

        write_json({"layers": rows, "first_divergent": first}, args.json)
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from rich.table import Table

    from edgesr.progress import stdout_console
    from edgesr.runtime.parity import parity

    _out_file(args.json)
    if args.heatmap:
        _out_dir(args.heatmap)
    if args.layers:
        return _layer_parity(args)
    res = parity(args.a, args.b, tile=args.tile, heatmap_dir=args.heatmap)
    table = Table(title=f"parity {args.a} vs {args.b}")
    for col in ("image", "PSNR dB", "max |diff|", "mean |diff|", "> 1 level", f"worst {args.tile}px tile"):
        table.add_column(col, justify="right" if col != "image" else "left")
    for r in res["images"]:
        grid = np.asarray(r["tile_max_abs"])
        ty, tx = np.unravel_index(int(grid.argmax()), grid.shape)
        table.add_row(r["name"], f"{r['psnr']:.2f}", str(r["max_abs"]), f"{r['mean_abs']:.4f}",
                      f"{100 * r['share_over_1']:.3f}%", f"row {ty}, col {tx}: {grid.max()}")
    stdout_console().print(table)
    if args.json:
        from edgesr.evaluate import write_json

        write_json(res, args.json)
    if args.max_abs is not None and res["max_abs"] > args.max_abs:
        print(f"edgesr: parity: max |diff| {res['max_abs']} > {args.max_abs} ({res['worst']})", file=sys.stderr)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgesr.train import TrainConfig, train

    run_dir = Path(args.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise EdgesrError(f"--run-dir {run_dir} exists and is not a folder")

    cfg = TrainConfig(
        scale=args.scale,
        steps=args.steps,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        seed=args.seed,
        bf16=False if args.fp32 else True if args.bf16 else None,
        threads=args.threads or 0,
        val_every=args.val_every,
        init=args.init or "",
        device=args.device,
        time_budget=args.time_budget or 0.0,
        compile=args.compile,
        head_fit=args.head_fit,
        refit_head=args.refit_head,
        head_ridge=args.head_ridge,
        loss=args.loss,
    )
    out = train(cfg, args.run_dir, data_root=args.data_root, quiet=args.quiet)
    print(json.dumps(out))
    return 0


def cmd_device_bench(args: argparse.Namespace) -> int:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from rich.table import Table

    from edgesr.native import NativeBuildError
    from edgesr.native.runner import build_runner
    from edgesr.progress import stdout_console
    from edgesr.runtime.device import Adb, device_bench

    from edgesr.runtime.litert import read_metadata

    model = Path(args.model)
    if not model.is_file():
        raise EdgesrError(f"{model}: no such file")
    _out_file(args.json)
    meta = read_metadata(model.read_bytes(), model)
    adb = Adb(args.adb, args.serial)
    adb.check_device()
    if args.image and not Path(args.image).is_file():
        raise EdgesrError(f"--image {args.image}: no such file")
    if (args.benchmark_model or args.image) and not 0 <= args.overlap < min(meta["tile"]):
        raise EdgesrError(f"--overlap must be in [0, {min(meta['tile'])}) for this file's {meta['tile'][0]}x"
                          f"{meta['tile'][1]} tile, got {args.overlap}")
    with tempfile.TemporaryDirectory(prefix="edgesr-runner-") as tmp:
        host = build_runner(Path(tmp) / "host")
        if args.runner:
            device_runner = Path(args.runner)
            if not device_runner.is_file():
                raise EdgesrError(f"--runner {device_runner}: no such file")
        else:
            cc = os.environ.get("EDGESR_DEVICE_CC") or shutil.which("aarch64-linux-gnu-gcc")
            if not cc:
                raise EdgesrError("no AArch64 compiler for the device runner: install gcc-aarch64-linux-gnu, set "
                                  "EDGESR_DEVICE_CC (e.g. the NDK's aarch64-linux-android30-clang) or pass --runner")
            try:
                device_runner = build_runner(Path(tmp) / "device", compiler=cc, static=True)
            except NativeBuildError as e:
                raise EdgesrError(f"building the device runner failed: {e}") from None
        console = stdout_console()
        report = device_bench(adb, model, device_runner, host, threads=args.threads,
                              repeats=args.repeats, warmup=args.warmup, image=args.image, overlap=args.overlap,
                              progress=lambda r: console.print(f"group {r['group']}, {r['threads']} thread(s): "
                                                               f"{r['ms_median']:.2f} ms"))
    dev = report["device"]
    table = Table(title=f"{model.name} INT4 blocks on the device ({dev['abi']}; dotprod {dev['dotprod']}, "
                        f"i8mm {dev['i8mm']}, SME {dev['sme']})")
    for col in ("group", "threads", "ISA", "blocks", "median ms", "min ms", "max ms", "values off vs desktop"):
        table.add_column(col, justify="right")
    for r in report["runs"]:
        table.add_row(str(r["group"]), str(r["threads"]), r["isa"], str(r["blocks"]), f"{r['ms_median']:.2f}",
                      f"{r['ms_min']:.2f}", f"{r['ms_max']:.2f}", f"{r['differing_values']} / {r['tokens'] * r['dim']}")
    console.print(table)
    for t in args.threads:
        tile_ms = sum(r["ms_median"] for r in report["runs"] if r["threads"] == t)
        console.print(f"{t} thread(s): all INT4 blocks of one tile {tile_ms:.2f} ms")
    for r in report.get("image", []):
        console.print(f"image {r['input'][0]}x{r['input'][1]} -> {r['output'][0]}x{r['output'][1]}, {r['tiles']} tiles, "
                      f"{r['threads']} thread(s), standalone runner: {r['ms_total']:.1f} ms ({r['ms_per_tile']:.2f} "
                      f"ms/tile); values off vs desktop: {r['differing_values']}")
    if args.benchmark_model:
        from edgesr.runtime.device import whole_model_bench
        from edgesr.runtime.tiling import plan_tiles

        files = {"int4": model}
        if args.fp32:
            files = {"fp32": Path(args.fp32), **files}
        for f in files.values():
            if not f.is_file():
                raise EdgesrError(f"{f}: no such file")
        if args.delegate and not Path(args.delegate).is_file():
            raise EdgesrError(f"--delegate {args.delegate}: no such file")
        h, w = args.image_size
        tiles = plan_tiles(h, w, tuple(meta["tile"]), args.overlap, int(meta["scale"])).count
        lat = whole_model_bench(adb, Path(args.benchmark_model), files,
                                Path(args.delegate) if args.delegate else None, threads=args.threads,
                                num_runs=args.repeats)
        whole = Table(title=f"whole files on the device (LiteRT benchmark_model); per image: {w}x{h} LR, "
                            f"{tiles} tiles of {meta['tile'][0]}x{meta['tile'][1]}, overlap {args.overlap}")
        for col in ("threads", *(f"{k} ms/tile" for k in files), *(["FP32 / INT4"] if "fp32" in files else []),
                    *(f"{k} s/image" for k in files)):
            whole.add_column(col, justify="right")
        for t, row in lat.items():
            ratio = [f"{row['fp32'] / row['int4']:.2f}x"] if "fp32" in row else []
            whole.add_row(str(t), *(f"{row[k]:.1f}" for k in files), *ratio,
                          *(f"{row[k] * tiles / 1e3:.2f}" for k in files))
        console.print(whole)
        report["whole_model_ms"] = lat
        report["per_image"] = {"lr_size": [w, h], "tiles": tiles, "overlap": args.overlap}
    if args.json:
        from edgesr.evaluate import write_json

        write_json(report, args.json)
    rows = report["runs"] + report.get("image", [])
    return 0 if all(r["differing_values"] == 0 for r in rows) or not args.strict else 1


def cmd_device_selftest_pack(args: argparse.Namespace) -> int:
    """The demo app's self-test files: an LR input and this machine's upscale of it with the same model file,
    named after it (selftest_expected_w4.pte.png), so one folder can hold the packs of several models made from
    the same input."""
    from pathlib import Path

    from edgesr.data.io import load_rgb, save_png
    from edgesr.demo import sample_photos
    from edgesr.runtime.session import open_model, upscale

    model_path = Path(args.model)
    if not model_path.is_file():
        raise EdgesrError(f"{model_path}: no such file")
    out = Path(args.out)
    input_png, expected_png = out / "selftest_input.png", out / f"selftest_expected_{model_path.name}.png"
    if expected_png.exists() and not args.force:
        raise EdgesrError(f"{expected_png} already exists (use --force to overwrite)")
    image = load_rgb(args.image) if args.image else sample_photos(["astronaut"])["astronaut"][::4, ::4]
    image = np.ascontiguousarray(image[: args.size, : args.size])
    _out_dir(out)
    if input_png.exists() and not args.force and not np.array_equal(load_rgb(input_png), image):
        raise EdgesrError(f"{input_png} holds another input (other --image/--size?): the other models' expected "
                          "outputs were made from it; use another --out, or --force to replace it")
    expected = upscale(open_model(model_path), image, args.overlap)
    save_png(image, input_png)
    save_png(expected, expected_png)
    print(f"{input_png} ({image.shape[1]}x{image.shape[0]}), {expected_png} ({expected.shape[1]}x{expected.shape[0]}); "
          f"adb push them with {model_path.name} to /sdcard/Android/data/dev.edgesr.demo/files/")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from edgesr.progress import stdout_console
    from rich.table import Table

    from edgesr.models.zoo import entries

    table = Table(title="edgesr model zoo")
    for col in ("name", "scale", "weights", "sha256", "expected Y-PSNR Set5/Set14/B100"):
        table.add_column(col)
    for e in entries().values():
        exp = "/".join(f"{e.expected_psnr.get(s, float('nan')):.2f}" for s in DEFAULT_SETS)
        table.add_row(e.name, f"x{e.scale}", e.file or f"user-supplied ({e.filename})", e.sha256[:16] + "...", exp)
    stdout_console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgesr", description="Low-bit SwinIR-light super-resolution for phones.")
    p.add_argument("--version", action="version", version=f"edgesr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-root", help="folder with benchmark/ and calibration/ (default: $EDGESR_DATA_ROOT or ../shared/assets)")
    common.add_argument("--threads", type=_positive, default=None, help="torch CPU threads")
    common.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", parents=[common], help="Y-PSNR/SSIM of a model on benchmark sets")
    e.add_argument("--model", required=True, help="'bicubic', a zoo name (see `edgesr zoo`) or a checkpoint path")
    e.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (default: the model's)")
    e.add_argument("--sets", nargs="+", default=DEFAULT_SETS, help="benchmark sets (default: Set5 Set14 B100)")
    e.add_argument("--json", help="write per-image and mean results here")
    e.add_argument("--limit", type=_positive, help="evaluate at most this many images per set")
    e.set_defaults(func=cmd_eval)

    t = sub.add_parser("train", parents=[common], help="train a full-precision SwinIR-light (resumable)")
    t.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    t.add_argument("--run-dir", required=True, help="checkpoints and logs; an existing run resumes")
    t.add_argument("--steps", type=_non_negative, default=4000, help="0: only the --refit-head fit")
    t.add_argument("--batch", type=_positive, default=8)
    t.add_argument("--patch", type=_positive, default=48, help="LR patch side (a multiple of the window size)")
    t.add_argument("--lr", type=_positive_float, default=5e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-every", type=_positive, default=250)
    prec = t.add_mutually_exclusive_group()
    prec.add_argument("--fp32", action="store_true", help="no bf16 autocast (default: bf16 only where the CPU or GPU "
                      "has bf16 instructions; elsewhere it is emulated and many times slower)")
    prec.add_argument("--bf16", action="store_true", help="bf16 autocast even without native bf16")
    t.add_argument("--init", help="start from these weights (a zoo name or a path; another scale gives its body)")
    t.add_argument("--head-fit", type=_non_negative, default=64, metavar="CROPS",
                   help="when --init gives only the body (another scale): fit the new upsampler by least squares "
                        "on this many training crops before the first step (0: random upsampler)")
    t.add_argument("--loss", choices=("l1", "l2"), default="l1",
                   help="l1: the SwinIR recipe; l2: mean squared error, what PSNR measures (for late fine-tuning)")
    t.add_argument("--head-ridge", type=_positive_float, default=1e-4,
                   help="ridge of the upsampler fit, relative to the mean diagonal of its Gram matrix")
    t.add_argument("--refit-head", action="store_true",
                   help="also refit the upsampler when --init gives one (a least-squares polish of trained weights; "
                        "the fit is kept only if it raises the held-out PSNR)")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: CUDA when available)")
    t.add_argument("--time-budget", type=_positive_float, metavar="SECONDS",
                   help="fit the step count to this many seconds (measured during the warm-up; --steps is the cap)")
    t.add_argument("--compile", action="store_true", help="torch.compile the training forward (GPU runs)")
    t.set_defaults(func=cmd_train)

    q = sub.add_parser("quantize", aliases=["convert"], parents=[common],
                       help="2DQuant: FP checkpoint -> quantized artifact (DOBI bounds, then DQC)")
    q.add_argument("--model", default="swinir_light_x4", help="zoo name or checkpoint, official .pth included")
    q.add_argument("--out", required=True, help="artifact path (.safetensors)")
    q.add_argument("--config", help="QuantConfig YAML/JSON; flags below override it")
    q.add_argument("--bits", type=int, help="weight and activation bits (2, 3, 4, 8)")
    q.add_argument("--init", choices=("minmax", "percentile", "dobi"), help="bound initialisation")
    q.add_argument("--dqc", default=None, help="DQC preset: none, cpu-fast (default without --config), paper")
    q.add_argument("--dqc-iterations", type=int, help="override the preset's iteration count")
    q.add_argument("--calib", nargs="+", help="calibration image folders (default: <data root>/calibration/{T91,BSD200})")
    q.add_argument("--work-dir", help="folder for the resumable DQC state")
    q.add_argument("--force", action="store_true", help="overwrite --out")
    q.set_defaults(func=cmd_quantize)

    x = sub.add_parser("export", parents=[common], help="lower a model to a deployment file (.pte, .tflite, .onnx)")
    x.add_argument("--format", choices=("pte", "tflite", "onnx"), default=None,
                   help="target format: pte (ExecuTorch, edgesr INT4 delegate), tflite (LiteRT, edgesr INT4 "
                        "delegate) or onnx (QDQ, onnxruntime); default: from --out's extension, else pte")
    x.add_argument("--model", default=None, help="FP zoo name or checkpoint (FP32 export; default swinir_light_x4)")
    x.add_argument("--quant", help="quantized artifact: export its integer model (pte, tflite: edgesr INT4 "
                                   "delegate; onnx: uint4 QDQ)")
    x.add_argument("--tile", type=_tile, default=(64, 64), help="static LR tile, e.g. 64 or 64x48 (default 64)")
    x.add_argument("--stock-int4", action="store_true",
                   help="FP model, no custom code on the device: onnx: onnxruntime's blockwise weight-only INT4 "
                        "(MatMulNBits); tflite: LiteRT's per-channel INT4 fully-connected weights, dynamic "
                        "activations (ai-edge-quantizer)")
    x.add_argument("--stock-int8-convs", action="store_true",
                   help="tflite --stock-int4: INT8 conv weights as well")
    x.add_argument("--dynamic", action="store_true",
                   help="onnx only: any H, W (multiples of the window) instead of one static tile")
    x.add_argument("--per-layer", action="store_true",
                   help="one native call per quantized linear / matmul instead of one per Swin block")
    x.add_argument("--fuse-attention", action="store_true",
                   help="with --per-layer: quantized attention as one fused native op (default: two quantized "
                        "matmuls + XNNPACK softmax)")
    x.add_argument("--out", required=True, help="output file")
    x.add_argument("--force", action="store_true", help="overwrite --out")
    x.set_defaults(func=cmd_export)

    u = sub.add_parser("upscale", parents=[common], help="upscale image files or folders, tile by tile")
    u.add_argument("inputs", nargs="+", help="images (PNG/JPEG/WebP/...) or folders of images")
    u.add_argument("-o", "--out", required=True, help="output folder, or a .png path for a single input")
    u.add_argument("--model", default="swinir_light_x4", help=".pte, quantized artifact, checkpoint or zoo name")
    u.add_argument("--tile", type=_tile, default=None,
                   help="LR tile for PyTorch models (default 64; exported files have their own)")
    u.add_argument("--overlap", type=_non_negative, default=None,
                   help="tile overlap in LR pixels, below the tile size (default 16, capped below small tiles)")
    u.add_argument("--max-pixels", type=_positive, default=50_000_000, help="refuse larger inputs (default 50 MP)")
    u.add_argument("--force", action="store_true", help="overwrite existing outputs")
    u.set_defaults(func=cmd_upscale)

    pa = sub.add_parser("parity", help="compare two outputs or two folders of outputs (desktop vs device)")
    pa.add_argument("a", help="output image or folder; with --layers: a quantized artifact")
    pa.add_argument("b", help="output image or folder; with --layers: an LR input image")
    pa.add_argument("--layers", action="store_true",
                    help="per-layer comparison of artifact A on image B: fake-quant vs native integer kernels")
    pa.add_argument("--tile", type=_positive, default=256, help="tile size (output pixels) of the error grid")
    pa.add_argument("--heatmap", help="folder for per-image error heatmaps (PNG)")
    pa.add_argument("--json", help="write the full report here")
    pa.add_argument("--max-abs", type=_non_negative, help="exit 1 when any pixel differs by more than this (for CI)")
    pa.set_defaults(func=cmd_parity)

    d = sub.add_parser("demo", parents=[common], help="upscale bundled sample photos; model vs bicubic")
    d.add_argument("--model", default="swinir_light_x4", help="zoo name or checkpoint (default: swinir_light_x4)")
    d.add_argument("--out", default="edgesr_demo", help="folder for the LR / SR / bicubic PNGs")
    d.set_defaults(func=cmd_demo)

    dv = sub.add_parser("device", help="run edgesr on an Android / ARM device through adb")
    dsub = dv.add_subparsers(dest="device_command", required=True)
    db = dsub.add_parser("bench", help="latency of an INT4 .tflite's blocks on the device, and parity with this machine")
    db.add_argument("--model", required=True, help="edgesr INT4 .tflite (edgesr export --format tflite --quant ...)")
    db.add_argument("--adb", default="adb", help="adb command (default: adb on PATH)")
    db.add_argument("--serial", help="device serial (adb -s)")
    db.add_argument("--runner", help="prebuilt device edgesr_runner (default: built with aarch64-linux-gnu-gcc or "
                                     "$EDGESR_DEVICE_CC, statically)")
    db.add_argument("--threads", type=_positive, nargs="+", default=[1, 2])
    db.add_argument("--repeats", type=_positive, default=10)
    db.add_argument("--warmup", type=_non_negative, default=2)
    db.add_argument("--json", help="write the report here")
    db.add_argument("--strict", action="store_true", help="exit 1 when any device value differs from the desktop's")
    db.add_argument("--benchmark-model", help="LiteRT's benchmark_model binary for the device: also time whole files")
    db.add_argument("--fp32", help="with --benchmark-model: the FP32 .tflite to compare against")
    db.add_argument("--delegate", help="with --benchmark-model: the edgesr LiteRT delegate built for the device "
                                       "(Android: edgesr.converter.export.tflite.build.build_delegate(compiler=<NDK clang>))")
    db.add_argument("--image-size", type=_wxh, default=(750, 1000),
                    help="LR image size (width x height) for the per-image figure; default 1000x750")
    db.add_argument("--overlap", type=_non_negative, default=16, help="tile overlap for the per-image figures")
    db.add_argument("--image", help="also upscale this image on the device with the standalone runner (whole INT4 "
                                    "model, shared tile plan) and compare it with this machine's")
    db.set_defaults(func=cmd_device_bench)
    dp = dsub.add_parser("selftest-pack", help="input + expected output for the Android app's self-test button")
    dp.add_argument("--model", required=True, help="the file the app runs (w4.tflite or w4.pte)")
    dp.add_argument("--image", help="LR input (default: a crop of scikit-image's astronaut)")
    dp.add_argument("--size", type=_positive, default=96, help="crop the input to at most SIZE x SIZE (default 96)")
    dp.add_argument("--overlap", type=_non_negative, default=16, help="tile overlap, as the app uses (default 16)")
    dp.add_argument("--out", required=True, help="folder for selftest_input.png and selftest_expected_<model>.png")
    dp.add_argument("--force", action="store_true")
    dp.set_defaults(func=cmd_device_selftest_pack)

    z = sub.add_parser("zoo", help="list the model zoo")
    z.set_defaults(func=cmd_zoo)
    return p


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a killed job, a closed container) unwinds like Ctrl-C, so partial outputs are removed."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the console script, not a caller's process
        _sigterm_as_interrupt()
    warnings.showwarning = lambda msg, *a, **k: print(f"edgesr: warning: {msg}", file=sys.stderr)
    try:
        return args.func(args)
    except EdgesrError as e:
        print(f"edgesr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
