"""``QuantConfig``: the whole 2DQuant recipe as one versioned, serialisable dataclass.

It round-trips through JSON and YAML and is stored inside every quantized artifact, so an artifact says
exactly how it was made.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from edgesr.errors import EdgesrError

CONFIG_VERSION = 1

# Module-name patterns (fnmatch) of the layers 2DQuant quantizes in every Swin block.
DEFAULT_LINEARS = ("*.attn.q", "*.attn.k", "*.attn.v", "*.attn.proj", "*.mlp.fc1", "*.mlp.fc2")
DEFAULT_MATMULS = ("*.attn.qk_matmul", "*.attn.av_matmul")
# Inputs with one-sided ("exponential") distributions: DOBI fixes the lower bound and moves only the upper.
DEFAULT_ONE_SIDED = ("*.attn.av_matmul.a", "*.mlp.fc2.input")

INIT_METHODS = ("minmax", "percentile", "dobi")
SUPPORTED_BITS = (2, 3, 4, 8)


class QuantConfigError(EdgesrError):
    pass


def _check_types(obj, where: str) -> None:
    """Each field of a config dataclass holds its declared type (YAML gives 4.0, "4" or a bare string where a
    number or a list belongs; those would fail deep inside calibration otherwise)."""
    for f in fields(obj):
        v, t = getattr(obj, f.name), str(f.type)
        if t == "int":
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif t == "float":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif t == "bool":
            ok = isinstance(v, bool)
        elif t == "str":
            ok = isinstance(v, str)
        elif t.startswith("tuple[str"):
            ok = isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
        else:
            continue
        if not ok:
            kind = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(
                t, "a list of strings")
            raise QuantConfigError(f"{where}{f.name} must be {kind}, got {v!r}")


@dataclass
class DQCConfig:
    """Distillation quantization calibration: train only the clipping bounds."""

    iterations: int = 0  # 0: skip DQC
    batch: int = 32
    patch: int = 64
    lr: float = 1e-2
    feature_weight: float = 1.0  # lambda: per-sample squared distance of unit-norm features is ~ the output L1
    seed: int = 0

    @classmethod
    def preset(cls, name: str) -> "DQCConfig":
        if name not in DQC_PRESETS:
            raise QuantConfigError(f"unknown DQC preset {name!r} (choose from {', '.join(DQC_PRESETS)})")
        return cls(**DQC_PRESETS[name])


DQC_PRESETS = {
    "none": dict(iterations=0),
    # The paper's budget (GPU-sized).
    "paper": dict(iterations=3000, batch=32, patch=64),
    # Fits in about 15 minutes on a 2-core CPU (see README: measured per-iteration cost).
    "cpu-fast": dict(iterations=200, batch=2, patch=32),
}


@dataclass
class QuantConfig:
    version: int = CONFIG_VERSION
    bits: int = 4  # weights and activations (2DQuant uses the same width for both)
    init: str = "dobi"  # minmax | percentile | dobi
    percentile: float = 99.9  # for init=percentile: bounds at (100-p, p) percentiles
    dobi_candidates: int = 100  # K
    dobi_one_sided: bool = True  # the paper's one-sided search for post-softmax / post-GELU inputs
    linears: tuple[str, ...] = DEFAULT_LINEARS
    matmuls: tuple[str, ...] = DEFAULT_MATMULS
    exclude: tuple[str, ...] = ()
    one_sided: tuple[str, ...] = DEFAULT_ONE_SIDED
    calib_images: int = 32  # LR patches in the DOBI batch (one per image)
    calib_patch: int = 64
    seed: int = 0
    dqc: DQCConfig = field(default_factory=DQCConfig)

    def __post_init__(self):
        if isinstance(self.dqc, dict):
            self.dqc = DQCConfig(**self.dqc)
        _check_types(self, "")
        _check_types(self.dqc, "dqc.")
        for name in ("linears", "matmuls", "exclude", "one_sided"):
            setattr(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        if self.version != CONFIG_VERSION:
            raise QuantConfigError(f"QuantConfig version {self.version} is not supported (this edgesr reads {CONFIG_VERSION})")
        if self.bits not in SUPPORTED_BITS:
            raise QuantConfigError(f"bits must be one of {SUPPORTED_BITS}, got {self.bits}")
        if self.init not in INIT_METHODS:
            raise QuantConfigError(f"init must be one of {INIT_METHODS}, got {self.init!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise QuantConfigError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.dobi_candidates < 1:
            raise QuantConfigError("dobi_candidates must be >= 1")
        if self.calib_images < 1 or self.calib_patch < 8:
            raise QuantConfigError("calib_images must be >= 1 and calib_patch >= 8")
        d = self.dqc
        if d.iterations < 0 or d.batch < 1 or d.patch < 8 or d.lr <= 0 or d.feature_weight < 0:
            raise QuantConfigError(f"bad DQC settings: {d}")

    # --------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("linears", "matmuls", "exclude", "one_sided"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        if not isinstance(d, dict):
            raise QuantConfigError("a QuantConfig must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise QuantConfigError(f"unknown QuantConfig keys: {sorted(unknown)}")
        d = dict(d)
        if "dqc" in d:
            dq = d["dqc"]
            if not isinstance(dq, dict):
                raise QuantConfigError("dqc must be a mapping")
            unknown = set(dq) - {f.name for f in fields(DQCConfig)}
            if unknown:
                raise QuantConfigError(f"unknown dqc keys: {sorted(unknown)}")
            d["dqc"] = DQCConfig(**dq)
        try:
            return cls(**d)
        except TypeError as e:
            raise QuantConfigError(str(e)) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "QuantConfig":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix in (".yaml", ".yml") else self.to_json()
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "QuantConfig":
        path = Path(path)
        if not path.is_file():
            raise QuantConfigError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except yaml.YAMLError as e:
            raise QuantConfigError(f"{path}: not valid YAML/JSON ({e})") from None
        return cls.from_dict(data or {})
