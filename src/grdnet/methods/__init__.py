"""The method registry: every method is one sub-package `grdnet.methods.<name>` whose `METHOD` is its record.

`methods()` finds them by scanning this package (`pkgutil`), so adding a method adds one folder here (its record
and options; the model and recipe it names may live in `grdnet.models` / `grdnet.training.recipes`). Everything
that used to list methods derives from the registry: the configuration's `model` section (a union of the
options, discriminated by `name`), the CLI's `--model` choices, `build_model`, `build_recipe`, tiling checks and
the hardware profiles. Pydantic only: importing the registry imports no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from grdnet.errors import ConfigError
from grdnet.methods.base import Method, MethodOptions

DEFAULT_METHOD = "grdnet"
"""The method a configuration without `model.name` trains."""


@cache
def methods() -> dict[str, Method]:
    """Every registered method by name, in name order: each sub-package's `METHOD`."""
    found: dict[str, Method] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if not info.ispkg:
            continue
        record = getattr(importlib.import_module(f"{__name__}.{info.name}"), "METHOD", None)
        if not isinstance(record, Method) or record.name != info.name:
            raise TypeError(f"{__name__}.{info.name} must define METHOD = Method(name='{info.name}', ...)")
        found[record.name] = record
    return found


def method_names() -> tuple[str, ...]:
    """Names of the registered methods (the `--model` choices)."""
    return tuple(methods())


def get_method(name: str) -> Method:
    """The record of method `name`; ConfigError listing the choices when there is none."""
    try:
        return methods()[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(methods())}") from None


__all__ = ["DEFAULT_METHOD", "Method", "MethodOptions", "get_method", "method_names", "methods"]
