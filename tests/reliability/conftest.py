"""Fixtures for the reliability tests: tiny training runs sharing one encoded cache (helpers: reliability_helpers.py)."""
import pytest

from agsm.training.config import load_config


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One cache folder for every tiny run of these tests: the 16 images are encoded once per model."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_args(sd15_dir, image_folder, shared_cache, tmp_path):
    """tiny_args(*overrides, out=..., model=...) -> `agsm train` options of a 2-step run into tmp_path/run."""
    def make(*extra, out=None, model=None):
        return ["--model.path", str(model or sd15_dir), "--data.path", str(image_folder), "--data.cache_dir",
                str(shared_cache), "--train.output_dir", str(out or tmp_path / "run"), "--train.steps", "2",
                "--train.checkpoint_every", "1", "--train.log_every", "1", "--method.ema_decay", "0.9", *map(str, extra)]
    return make


@pytest.fixture
def tiny_config(tiny_args):
    """tiny_config(*overrides, out=..., model=...) -> the Config of tiny_args."""
    return lambda *extra, **kw: load_config(None, tiny_args(*extra, **kw))
