"""Network definitions, checkpoint loading and the model zoo."""

from edgesr.models.swinir import (  # noqa: F401
    SwinIR,
    SwinIRConfig,
    count_parameters,
    pad_to_multiple,
    run_padded,
)
