"""Builds ``libedgesr_litert_delegate.so``: the LiteRT external delegate (runtime/, plain C, no TensorFlow
headers) linked with the shared native kernels (native/). Built once per sources and compiler into the native
cache; no manual steps."""

from __future__ import annotations

from pathlib import Path

from edgesr import native

DELEGATE_SOURCE = Path(__file__).parent / "runtime" / "edgesr_litert_delegate.c"
LIB_NAME = "libedgesr_litert_delegate.so"


def build_delegate(force: bool = False) -> Path:
    cc = native._compiler()
    argv = [*cc, *native.compile_flags(DELEGATE_SOURCE), "-fvisibility=hidden"]
    return native.build_plugin(LIB_NAME, [(DELEGATE_SOURCE, argv)], [*cc], native.link_flags(), force=force)
