"""Shared fixtures: a tiny built-in dataset and a tiny GRD-Net configuration (CPU, seconds)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from grdnet.builtin_dataset import make_builtin_dataset

from support import tiny_config


@pytest.fixture(scope="session")
def builtin_category(tmp_path_factory) -> Path:
    """A small built-in dataset (48 training images, 12 good and 4 per defect type in test), generated once
    per test session; small so that the many short training runs of the suite stay fast."""
    return make_builtin_dataset(tmp_path_factory.mktemp("builtin"), seed=0, n_train=48, n_test_good=12,
                                n_test_defect_per_type=4)


@pytest.fixture
def make_config(builtin_category, tmp_path):
    def factory(name: str = "run", **train):
        return tiny_config(builtin_category, tmp_path / name, **train)

    return factory


TRAINING_FIXTURES = {"trained", "tiled_run", "served", "report"}
"""Fixtures that train a model: a test using one is `slow`."""
TRAINING_MODULES = {"test_trainer", "test_distributed", "test_contamination", "test_known_defects", "test_cli", "test_demo"}
"""Test modules whose tests (nearly) all train or run the command line end to end."""


def pytest_collection_modifyitems(items):
    """Mark every test that trains a model `slow` (a training fixture, a training module, or `.fit(` in its body),
    so `pytest -m "not slow"` is a quick unit run; the plain `pytest` of scripts/test.sh still runs all. Tests
    that run a command, a benchmark script or a build end to end carry `@pytest.mark.slow` themselves."""
    for item in items:
        function = getattr(item, "function", None)
        trains = (TRAINING_FIXTURES & set(getattr(item, "fixturenames", ()))
                  or item.module.__name__.rpartition(".")[2] in TRAINING_MODULES
                  or (function is not None and ".fit(" in inspect.getsource(function)))
        if trains:
            item.add_marker("slow")
