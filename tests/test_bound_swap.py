"""scripts/bound_swap.py: a hybrid takes exactly one class of quantizers from the donor artifact."""

import importlib.util
from pathlib import Path

import torch

from edgesr.converter.artifact import save_artifact
from edgesr.converter.config import QuantConfig
from edgesr.converter.quant import quantize, quantizers
from edgesr.models.swinir import SwinIR, SwinIRConfig

from conftest import TINY

_spec = importlib.util.spec_from_file_location(
    "bound_swap", Path(__file__).resolve().parent.parent / "scripts" / "bound_swap.py")
bound_swap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bound_swap)


def _artifact(path, fp, act_range, weight_shrink):
    """fp quantized with every activation bound (-act_range, act_range), weight bounds shrunk by weight_shrink."""
    q = quantize(fp, QuantConfig(bits=4))
    for name, fq in quantizers(q).items():
        if fq.is_weight:
            w = q.get_submodule(name.rsplit(".", 1)[0]).weight
            fq.set_bounds(float(w.min()) * weight_shrink, float(w.max()) * weight_shrink)
        else:
            fq.set_bounds(-act_range, act_range)
    save_artifact(q, path)
    return path


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith(".weight")}


def test_each_class_comes_from_the_donor_and_nothing_else(tmp_path):
    torch.manual_seed(0)
    fp = SwinIR(SwinIRConfig(scale=2, **TINY)).eval()
    base = _artifact(tmp_path / "base.safetensors", fp, 1.0, 1.0)
    donor = _artifact(tmp_path / "donor.safetensors", fp, 2.0, 0.5)
    base_w, donor_w = _weights(bound_swap.hybrid(base, donor, None)), _weights(bound_swap.hybrid(base, donor, "all"))
    assert any(not torch.equal(base_w[n], donor_w[n]) for n in base_w)

    classes = {bound_swap.quantizer_class(n, q) for n, q in quantizers(bound_swap.hybrid(base, donor, None)).items()}
    assert classes == set(bound_swap.CLASSES)

    for swap in bound_swap.CLASSES:
        model = bound_swap.hybrid(base, donor, swap)
        for name, q in quantizers(model).items():
            if q.is_weight:
                continue
            from_donor = swap == bound_swap.quantizer_class(name, q)
            assert float(q.upper) == (2.0 if from_donor else 1.0), (swap, name)
        expected_w = donor_w if swap == "weight" else base_w
        assert all(torch.equal(p, expected_w[n]) for n, p in _weights(model).items()), swap


def test_a_file_that_is_not_an_artifact_is_refused_without_a_traceback(tmp_path):
    import subprocess
    import sys

    bogus = tmp_path / "x.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    script = Path(__file__).resolve().parent.parent / "scripts" / "bound_swap.py"
    r = subprocess.run([sys.executable, str(script), "--base", str(bogus), "--donor", str(bogus)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "not an edgesr quantized artifact" in r.stderr and "Traceback" not in r.stderr
