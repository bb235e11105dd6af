"""Shared fixtures: a tiny built-in dataset and a tiny GRD-Net configuration (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from grdnet.data.builtin import make_builtin_dataset

from support import tiny_config


@pytest.fixture(scope="session")
def builtin_category(tmp_path_factory) -> Path:
    """The built-in dataset (default parameters), generated once per test session."""
    return make_builtin_dataset(tmp_path_factory.mktemp("builtin"), seed=0)


@pytest.fixture
def make_config(builtin_category, tmp_path):
    def factory(name: str = "run", **train):
        return tiny_config(builtin_category, tmp_path / name, **train)

    return factory
