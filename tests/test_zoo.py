"""Shipped weights: checksum, loader, model card."""

import pytest
import yaml

from edgesr.models.checkpoint import load_model
from edgesr.models.zoo import entries, identify, resolve, sha256_of

from conftest import DATA_ROOT, needs_data

BUNDLED = [e for e in entries().values() if e.file]


def test_zoo_has_a_bundled_default():
    assert any(e.name == "swinir_light_x4" for e in BUNDLED)


@pytest.mark.parametrize("entry", BUNDLED, ids=lambda e: e.name)
def test_bundled_weights_match_zoo_and_load(entry):
    assert sha256_of(entry.path) == entry.sha256
    path, found = resolve(entry.name)
    assert found == entry and identify(path) == entry
    model = load_model(path, scale=entry.scale)
    assert model.config.embed_dim == 60 and model.config.depths == (6, 6, 6, 6)
    assert entry.path.stat().st_size < 4_000_000  # params only: no masks or index buffers
    card = yaml.safe_load((entry.path.parent / entry.card).read_text())
    assert card["sha256"] == entry.sha256
    assert set(card["metrics"]["psnr_y"]) == {"Set5", "Set14", "B100"}
    assert card["training"]["steps"] > 0
    stages = card["training"].get("stages", [card["training"]])  # weights continued over several runs
    assert sum(st["steps"] for st in stages) == card["training"]["steps"]


def test_tampered_weights_are_rejected(tmp_path, monkeypatch):
    import edgesr.models.zoo as zoo
    from edgesr.errors import CheckpointError

    entry = BUNDLED[0]
    fake = tmp_path / entry.file
    fake.write_bytes(entry.path.read_bytes()[:-1] + b"\x00")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="sha256"):
        zoo.resolve(entry.name)


@needs_data
@pytest.mark.parametrize("entry", BUNDLED, ids=lambda e: e.name)
def test_bundled_weights_reach_their_zoo_psnr_on_set5(entry):
    from edgesr.evaluate import evaluate, torch_upscaler

    res = evaluate(torch_upscaler(load_model(entry.path), entry.name), ["Set5"], data_root=DATA_ROOT, quiet=True)
    assert res["sets"]["Set5"]["psnr_y"] == pytest.approx(entry.expected_psnr["Set5"], abs=0.006)
