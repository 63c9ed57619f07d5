import os

import pytest
import torch

from edgesr.data.paths import default_data_root

torch.set_num_threads(int(os.environ.get("EDGESR_TEST_THREADS", "2")))
torch.manual_seed(0)

DATA_ROOT = default_data_root()
HAVE_DATA = DATA_ROOT is not None and (DATA_ROOT / "benchmark" / "Set5" / "HR").is_dir()
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason="benchmark/calibration data not found: set EDGESR_DATA_ROOT or place ../shared/assets"
)

TINY = dict(embed_dim=12, depths=(2, 2), num_heads=(2, 3), window_size=4)
