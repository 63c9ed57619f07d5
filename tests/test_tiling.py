"""Tiling planner and blend: coverage, weights, static tile shape, exactness for local models."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesr.runtime.tiling import mirror_pad, plan_axis, plan_tiles, run_tiled


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 400), tile=st.integers(1, 96), overlap_frac=st.floats(0, 0.9),
       scale=st.sampled_from([1, 2, 3, 4]), feather=st.booleans())
def test_axis_plan_covers_and_weights_sum_to_one(length, tile, overlap_frac, scale, feather):
    overlap = min(int(tile * overlap_frac), tile - 1)
    plan = plan_axis(length, tile, overlap)
    covered = np.zeros(length, bool)
    for s in plan.starts:
        assert 0 <= s and (s + tile <= length or plan.pad == tile - length)
        covered[s : s + tile] = True
    assert covered.all()
    w = plan.weights(scale, feather)
    assert w.shape == (len(plan.starts), length * scale)
    assert np.allclose(w.sum(0), 1.0) and (w >= 0).all()
    if length >= tile:
        assert plan.pad == 0 and plan.starts[-1] == length - tile
        assert all(b - a <= tile - overlap for a, b in zip(plan.starts, plan.starts[1:]))


def test_documented_example():
    plan = plan_axis(150, 64, 16)
    assert plan.starts == (0, 48, 86) and plan.pad == 0
    w = plan.weights(1)
    assert w[0, 47] == 1.0 and w[1, 64] == 1.0 and np.isclose(w[0, 48], 15.5 / 16)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), scale=st.sampled_from([1, 2, 4]),
       overlap=st.sampled_from([0, 4, 8]), feather=st.booleans())
def test_tiled_equals_whole_for_a_pointwise_model(h, w, scale, overlap, feather):
    rng = np.random.default_rng(h * 100 + w)
    img = rng.random((h, w, 3), dtype=np.float32)
    tile = (16, 24)

    def pointwise(t):
        return np.repeat(np.repeat(t * 2.0 - 0.5, scale, 0), scale, 1)

    def run_tile(t):
        assert t.shape[:2] == tile  # every call gets the static tile shape
        return pointwise(t)

    out = run_tiled(img, run_tile, tile, overlap, scale, feather, multiple=4)
    assert np.allclose(out, pointwise(img), atol=1e-6)


def test_mirror_pad_tiny_inputs():
    img = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    out = mirror_pad(img, 5, 3)
    assert out.shape == (6, 5, 3)
    assert (out[:, :2] == img[0]).all()  # a one-row image repeats
    assert (out[0, :, 0] == [0, 3, 3, 0, 0]).all()  # symmetric: 0 1 | 1 0 | 0 (edge repeated)


def test_plan_tiles_counts():
    p = plan_tiles(750, 1000, (64, 64), 16, 4)
    assert p.count == len(p.rows.starts) * len(p.cols.starts) == 16 * 21


def test_golden_plans():
    """The plans other runtimes must reproduce (runtime/TILING.md); a change here is a spec change."""
    import json
    from pathlib import Path

    files = sorted((Path(__file__).parent / "fixtures" / "tile_plans").glob("*.json"))
    assert len(files) >= 5
    for f in files:
        g = json.loads(f.read_text())
        p = plan_axis(g["length"], g["tile"], g["overlap"])
        assert list(p.starts) == g["starts"] and p.pad == g["pad"], f.name
        assert np.allclose(p.weights(g["scale"], True), g["weights_feathered"], atol=1e-8), f.name
        assert np.allclose(p.weights(g["scale"], False), g["weights_split"], atol=1e-8), f.name
