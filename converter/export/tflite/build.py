"""Builds ``libedgesr_litert_delegate.so``: the LiteRT external delegate (runtime/, plain C, no TensorFlow
headers) linked with the shared native kernels (native/). Built once per sources and compiler into the native
cache; no manual steps."""

from __future__ import annotations

from pathlib import Path

from edgesr import native

DELEGATE_SOURCE = Path(__file__).parent / "runtime" / "edgesr_litert_delegate.c"
LIB_NAME = "libedgesr_litert_delegate.so"


def build_delegate(force: bool = False, compiler: str | list[str] | None = None) -> Path:
    """The delegate for this machine, or with ``compiler`` (e.g. aarch64-linux-gnu-gcc, an NDK clang) for its
    target."""
    cc = native._compiler(compiler)
    argv = [*cc, *native.compile_flags(DELEGATE_SOURCE, native.target_arch(cc)), "-fvisibility=hidden"]
    return native.build_plugin(LIB_NAME, [(DELEGATE_SOURCE, argv)], [*cc], native.link_flags(), force=force,
                               compiler=cc)
