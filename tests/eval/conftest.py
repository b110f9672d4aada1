"""Fixtures for the evaluation runners (helpers in eval_helpers.py, importable from the tests of this folder)."""
from types import SimpleNamespace

import pytest
from eval_helpers import FakeMetric, fake_extractor, fake_loader, write_coco, write_pie


@pytest.fixture
def coco_dir(tmp_path):
    return write_coco(tmp_path / "coco")


@pytest.fixture
def pie_dir(tmp_path):
    return write_pie(tmp_path / "pie")


@pytest.fixture
def fakes():
    """The fake metric loader factory and FID extractor, for tests to pass to the runners."""
    return SimpleNamespace(loader=fake_loader, extractor=fake_extractor, Metric=FakeMetric)

