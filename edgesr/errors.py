"""User-facing errors: the CLI prints them as one line and exits non-zero, never with a traceback."""


class EdgesrError(Exception):
    """A problem with the user's input (file, option, checkpoint), not a bug in edgesr."""


class ImageError(EdgesrError):
    pass


class CheckpointError(EdgesrError):
    pass


class DataError(EdgesrError):
    pass
