"""Shared fixtures: a tiny built-in dataset and a tiny GRD-Net configuration (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from grdnet.data.builtin import make_builtin_dataset

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
