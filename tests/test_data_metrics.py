"""Bicubic, colour, metrics and image reading against independent references (PIL, scikit-image, MATLAB files)."""

import warnings

import numpy as np
import pytest
from PIL import Image

from edgesr.data.color import rgb_to_y, rgb_to_ycbcr
from edgesr.data.imresize import bicubic_downscale, bicubic_upscale, imresize, modcrop
from edgesr.data.io import list_images, load_rgb
from edgesr.errors import ImageError
from edgesr.metrics import psnr, ssim

from conftest import needs_data, DATA_ROOT

RNG = np.random.default_rng(0)


def _smooth_image(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(xx / 7.0 + c) * np.cos(yy / 5.0 - c) for c in range(3)], -1)
    return np.clip(img + RNG.normal(0, 3, img.shape), 0, 255).round().astype(np.uint8)


def test_upscale_interior_matches_pil_bicubic():
    lr = _smooth_image(40, 52)
    ours = bicubic_upscale(lr, 3).astype(int)
    pil = np.asarray(Image.fromarray(lr).resize((156, 120), Image.BICUBIC)).astype(int)
    inner = (slice(6, -6), slice(6, -6))
    assert np.abs(ours[inner] - pil[inner]).max() <= 1


def test_antialiased_downscale_interior_matches_pil():
    hr = _smooth_image(96, 120)
    ours = bicubic_downscale(hr, 4).astype(int)
    pil = np.asarray(Image.fromarray(hr).resize((30, 24), Image.BICUBIC)).astype(int)
    inner = (slice(3, -3), slice(3, -3))
    assert np.abs(ours[inner] - pil[inner]).max() <= 1


def test_imresize_properties():
    img = np.full((17, 23, 3), 77, np.uint8)
    assert np.array_equal(imresize(img, scale=0.5), np.full((9, 12, 3), 77, np.uint8))  # MATLAB: ceil(size*scale)
    x = RNG.random((12, 12))
    assert np.allclose(imresize(x, scale=1.0), x)
    assert modcrop(np.zeros((13, 10)), 4).shape == (12, 8)


@needs_data
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downscale_matches_shipped_matlab_lr(scale):
    from edgesr.data.benchmark import iter_pairs

    diffs = []
    for pair in iter_pairs("Set5", scale, DATA_ROOT):
        d = np.abs(bicubic_downscale(pair.hr, scale).astype(int) - pair.lr.astype(int))
        assert d.max() <= 2, pair.name
        diffs.append(d.mean())
    assert np.mean(diffs) < 0.2  # measured 0.10-0.14 grey levels


def test_y_channel_matches_matlab_definition():
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16.0)
    px = np.array([[[200, 100, 50]]], np.uint8)
    expected = 16 + (65.481 * 200 + 128.553 * 100 + 24.966 * 50) / 255
    assert rgb_to_y(px)[0, 0] == pytest.approx(expected)
    ycc = rgb_to_ycbcr(np.array([[[128, 128, 128]]], np.uint8))[0, 0]
    assert ycc[1] == pytest.approx(128.0) and ycc[2] == pytest.approx(128.0)


def test_psnr_matches_direct_formula():
    a, b = _smooth_image(30, 30), _smooth_image(30, 30)
    ya, yb = rgb_to_y(a)[2:-2, 2:-2], rgb_to_y(b)[2:-2, 2:-2]
    expected = 10 * np.log10(255**2 / np.mean((ya - yb) ** 2))
    assert psnr(a, b, border=2) == pytest.approx(expected)
    assert psnr(a, a) == float("inf")


def test_gray_sources_scored_on_gray_level():
    g = _smooth_image(20, 20)[..., :1].repeat(3, 2)
    h = np.clip(g.astype(int) + 3, 0, 255).astype(np.uint8)
    direct = 10 * np.log10(255**2 / np.mean((g[..., 0].astype(float) - h[..., 0]) ** 2))
    assert psnr(g, h, gray=True) == pytest.approx(direct, abs=1e-6)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    a = _smooth_image(48, 40)
    b = np.clip(a.astype(int) + RNG.integers(-12, 13, a.shape), 0, 255).astype(np.uint8)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    ref = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)


# ------------------------------------------------------------------ image reading


def test_gray_rgba_and_16bit_are_converted(tmp_path):
    Image.fromarray(np.full((8, 9), 40, np.uint8), "L").save(tmp_path / "g.png")
    assert load_rgb(tmp_path / "g.png").shape == (8, 9, 3)
    Image.fromarray(np.full((8, 9, 4), 90, np.uint8), "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha"):
        assert load_rgb(tmp_path / "a.png")[0, 0].tolist() == [90, 90, 90]
    Image.fromarray(np.full((8, 9), 65535, np.uint16)).save(tmp_path / "d.png")
    with pytest.warns(UserWarning, match="8 bits"):
        assert load_rgb(tmp_path / "d.png")[0, 0].tolist() == [255, 255, 255]


def test_unreadable_images_are_image_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nrubbish")
    with pytest.raises(ImageError, match="bad.png"):
        load_rgb(tmp_path / "bad.png")
    Image.fromarray(_smooth_image(64, 64)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="trunc.png"):
        load_rgb(tmp_path / "trunc.png")
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "missing.png")


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match="no images"):
        list_images(tmp_path)


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(_smooth_image(10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "o.jpg", exif=exif.tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rgb(tmp_path / "o.jpg").shape == (20, 10, 3)
