"""Backend registry: each model-file kind registers how to recognise and open itself.

A backend is (name, ``accepts(path) -> bool``, ``open(path, threads, tile) -> model``); a model exposes
``run(x)`` on (1, C, th, tw) float32, ``scale``, ``tile`` and ``metadata`` (with ``size_multiple``). Every
module of this package is imported on first use and registers itself, so adding a backend (e.g. .tflite) is
adding one file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgesr.errors import EdgesrError


@dataclass(frozen=True)
class Backend:
    name: str
    accepts: Callable[[Path], bool]
    open: Callable[..., object]
    priority: int = 0  # lower is tried first; catch-alls use a high value


_REGISTRY: dict[str, Backend] = {}


def register(name: str, accepts: Callable[[Path], bool], opener: Callable[..., object], priority: int = 0) -> None:
    _REGISTRY[name] = Backend(name, accepts, opener, priority)


def backends() -> dict[str, Backend]:
    """Registered backends in the order ``auto`` tries them."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(_REGISTRY.items(), key=lambda kv: kv[1].priority))


def open_with(path: str | Path, backend: str = "auto", **kwargs):
    table = backends()
    if backend != "auto":
        if backend not in table:
            raise EdgesrError(f"unknown backend {backend!r} (have: {', '.join(table)})")
        return table[backend].open(path, **kwargs)
    p = Path(path)
    for b in table.values():
        if b.accepts(p):
            return b.open(path, **kwargs)
    raise EdgesrError(f"{path}: no backend recognises this model (have: {', '.join(table)})")
