"""Lowering of FP and 2DQuant SwinIR-light models to deployment formats; one sub-package per target
(:mod:`.executorch`, :mod:`.onnx`).

Shared by every target: :mod:`.graph` (the static-shape, export-friendly forward), :mod:`.ops` (the
``edgesr::qlinear`` / ``edgesr::qbmm`` / ``edgesr::qattention`` / ``edgesr::qswin_block`` custom ops that stand
for 2DQuant's integer layers in exported graphs), :mod:`.swin_block` (a quantized block's arguments) and
:mod:`.descriptor` (the metadata every file carries).
"""
