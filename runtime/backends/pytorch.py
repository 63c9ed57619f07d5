"""PyTorch checkpoints, quantized artifacts and zoo names, run eagerly on static tiles. The catch-all: tried
last, and ``resolve`` says what a path is not."""

from edgesr.runtime.backends import register


def _open(spec, threads: int = 1, tile=None):
    from edgesr.converter.artifact import is_artifact, load_artifact
    from edgesr.models.checkpoint import load_model
    from edgesr.models.zoo import resolve
    from edgesr.runtime.session import DEFAULT_TILE, TorchModel

    path, _ = resolve(str(spec))
    model = load_artifact(path) if is_artifact(path) else load_model(path)
    return TorchModel(model, tile or DEFAULT_TILE, threads, name=path.stem)


register("pytorch", lambda path: True, _open, priority=100)
