"""The shipped example configs parse and carry the paper's settings."""
from pathlib import Path

import pytest

from agsm.config import load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_loads(path):
    config = load_config(path)
    assert config.tokens.num_tokens == 4 and config.train.lr == 1e-3


def test_exponent_notation_is_a_number_on_the_command_line_and_in_yaml(tmp_path):
    from agsm.config import load_config

    config = load_config(None, ["--train.min_lr", "1e-5", "--method.temperature=5e-2"])
    assert config.train.min_lr == 1e-5 and config.method.temperature == 0.05
    (tmp_path / "c.yaml").write_text("train:\n  min_lr: 1e-5\n")
    assert load_config(tmp_path / "c.yaml").train.min_lr == 1e-5
    with pytest.raises(ValueError, match="min_lr"):
        load_config(None, ["--train.min_lr", "small"])
