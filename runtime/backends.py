"""Backend registry: each model-file kind registers how to recognise and open itself.

A backend is (name, ``accepts(path) -> bool``, ``open(path, threads, tile) -> model``); a model exposes
``run(x)`` on (1, C, th, tw) float32, ``scale``, ``tile`` and ``metadata`` (with ``size_multiple``). Adding a
backend (e.g. .tflite) means one ``register`` call in its own module, listed in ``_BUILTIN``.
"""

from __future__ import annotations

import importlib
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
# Modules that register a backend when imported, in the order they are tried.
_BUILTIN = ("edgesr.runtime.pte", "edgesr.runtime.session")


def register(name: str, accepts: Callable[[Path], bool], opener: Callable[..., object], priority: int = 0) -> None:
    _REGISTRY[name] = Backend(name, accepts, opener, priority)


def backends() -> dict[str, Backend]:
    """Registered backends in the order ``auto`` tries them."""
    for mod in _BUILTIN:
        importlib.import_module(mod)
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
