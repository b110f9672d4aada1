"""The shipped example configs parse and carry the paper's settings."""
from pathlib import Path

import pytest

from agsm.config import load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_loads(path):
    config = load_config(path)
    assert config.tokens.num_tokens == 4 and config.train.lr == 1e-3
