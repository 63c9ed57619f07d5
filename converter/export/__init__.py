"""Lowering of FP and 2DQuant SwinIR-light models to deployment formats; one sub-package per target.

Shared by every target: :mod:`.graph` (the static-shape, export-friendly forward) and :mod:`.ops` (the
``edgesr::qlinear`` / ``edgesr::qbmm`` custom ops that stand for 2DQuant's integer layers in exported graphs).
"""
